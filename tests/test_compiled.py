"""The gate to the compiled kernels (dsr.models.compiled): when numba is missing or a kernel fails to
compile, training warns once (naming the failure and the fix) and runs today's torch path, with
the same results as ``DSR_ROLLOUT=torch``."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

import dsr.models
import dsr.models.rollout as rollout
from dsr.models import compiled, make_model
from dsr.models.decoders import make_decoder
from dsr.signal.kernels import spm_hrf
from dsr.training.gtf import gtf_loss

pytest.importorskip("numba")
NUMBA_MODULES = "rollout_numba decoder_numba forcing_numba noise_numba _simd _vector".split()


def _batch(backend, monkeypatch):
    """Loss and gradients of one noisy GTF batch (float32, seeded) on ``backend``."""
    monkeypatch.setattr(rollout, "BACKEND", backend)
    g = torch.Generator().manual_seed(3)
    model = make_model("cshPLRNN", 3, 6, 10, generator=g)
    dec = make_decoder("convolved", 3, 5, 6, spm_hrf(1.4), generator=g)
    x = torch.randn(41, 3, 20, 5, generator=g)
    x_deconv = torch.randn(41, 3, 20, 5, generator=g)
    window = (x, x_deconv, None, None)
    loss = gtf_loss(model, dec, window, 0.2, 0.05, torch.Generator().manual_seed(9))
    params = [*model.parameters(), dec.B]
    return [loss, *torch.autograd.grad(loss.sum(), params)]


def _break_compilation(monkeypatch):
    def fail(mods, dtype):
        raise RuntimeError("LLVM ERROR: simulated lowering failure\nsecond line")

    monkeypatch.setattr(compiled, "_probe", fail)


def _hide_numba(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    for name in NUMBA_MODULES:
        monkeypatch.delitem(sys.modules, f"dsr.models.{name}", raising=False)
        monkeypatch.delattr(dsr.models, name, raising=False)


@pytest.mark.parametrize(
    ("simulate", "message"),
    [
        (_break_compilation, r"failed to compile for torch.float32 \(RuntimeError: LLVM ERROR"),
        (_hide_numba, "numba is not available"),
    ],
)
def test_without_compiled_kernels_training_warns_and_runs_the_torch_path(
    monkeypatch, simulate, message
):
    reference = _batch("torch", monkeypatch)  # today's path: torch ops and torch's sampler
    compiled_run = _batch("auto", monkeypatch)
    assert not torch.equal(compiled_run[0], reference[0])  # the compiled path has its own noise
    monkeypatch.setattr(compiled, "_STATE", {})
    simulate(monkeypatch)
    with pytest.warns(RuntimeWarning, match=message) as record:
        fallback = _batch("auto", monkeypatch)
    assert len(record) == 1 and "DSR_ROLLOUT=torch" in str(record[0].message)
    assert "pip install" in str(record[0].message)
    for a, b in zip(fallback, reference, strict=True):
        assert torch.equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process (and dtype), not per batch
        _batch("auto", monkeypatch)


def test_dsr_rollout_torch_never_loads_the_kernels(monkeypatch):
    monkeypatch.setattr(compiled, "_STATE", {})
    _hide_numba(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _batch("torch", monkeypatch)
    assert "modules" not in compiled._STATE


def test_kernels_load_for_both_float_dtypes():
    assert compiled.kernels(torch.float32) is not None
    assert compiled.kernels(torch.float64) is not None
    assert compiled.kernels(torch.bfloat16) is None
