"""The compiled (numba) GTF rollout: same recurrence as the torch loop, thread-independent, and a
warned fall-back to the torch loop when numba cannot be imported."""

from __future__ import annotations

import sys

import pytest
import torch

import dsr.models
import dsr.models.rollout as rollout
from dsr.models import compiled, make_model
from dsr.models.rollout import ForcedRollout

pytest.importorskip("numba")


def _problem(name, E, B, M, L, T, D, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    model = make_model(name, E, M, L, generator=g, dtype=dtype)
    with torch.no_grad():  # both signs of h2, nonzero h1
        model.h2.copy_(torch.randn(E, L, generator=g, dtype=dtype))
        model.h1.copy_(0.1 * torch.randn(E, M, generator=g, dtype=dtype))
    z0 = torch.randn(E, B, M, generator=g, dtype=dtype, requires_grad=True)
    keep = torch.rand(T, E, B, D, generator=g, dtype=dtype)
    target = torch.randn(T, E, B, D, generator=g, dtype=dtype)
    weight = torch.randn(T, E, B, M, generator=g, dtype=dtype)
    return model, z0, keep, target, weight


def _run(backend, monkeypatch, model, z0, keep, target, weight):
    monkeypatch.setattr(rollout, "BACKEND", backend)
    assert backend == "torch" or rollout._use_compiled(z0), "the compiled kernels did not load"
    params = [z0, *model.parameters()]
    out = model.forced_rollout(z0, keep, target)
    return [out, *torch.autograd.grad((out * weight).sum(), params)]


@pytest.mark.parametrize(
    ("name", "E", "B", "M", "L", "T", "D"),
    [
        ("cshPLRNN", 3, 4, 5, 7, 11, 5),  # fewer windows than lanes
        ("cshPLRNN", 2, 37, 6, 50, 30, 4),  # three chunks, D < M, T not a multiple of 8
        ("shPLRNN", 2, 16, 9, 13, 17, 9),
        ("cshPLRNN", 1, 16, 16, 50, 64, 16),  # LEMON-like
    ],
)
def test_compiled_rollout_matches_torch_loop(monkeypatch, name, E, B, M, L, T, D):
    problem = _problem(name, E, B, M, L, T, D)
    compiled = _run("auto", monkeypatch, *problem)
    reference = _run("torch", monkeypatch, *problem)
    for a, b in zip(compiled, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_compiled_rollout_float32_and_layouts(monkeypatch):
    """Training runs float32; the forcing arrives model-major from the decoder (no copy)."""
    model, z0, keep, target, weight = _problem("cshPLRNN", 2, 16, 6, 20, 25, 6, torch.float32)
    model_major = [t.transpose(0, 1).contiguous().transpose(0, 1) for t in (keep, target)]
    compiled = _run("auto", monkeypatch, model, z0, *model_major, weight)
    reference = _run("torch", monkeypatch, model, z0, keep, target, weight)
    for a, b in zip(compiled, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_rollout_gradcheck(monkeypatch):
    monkeypatch.setattr(rollout, "BACKEND", "auto")
    model, z0, keep, target, _ = _problem("cshPLRNN", 2, 3, 4, 5, 9, 3)
    leaves = [p.detach().clone().requires_grad_() for p in [z0, *model.parameters()]]

    def f(z, A, W1, W2, h1, h2):
        return ForcedRollout.apply(z, keep, target, A, W1, W2, h1, h2, True)

    assert torch.autograd.gradcheck(f, leaves)


def test_compiled_rollout_does_not_depend_on_threads(monkeypatch):
    problem = _problem("cshPLRNN", 5, 37, 6, 20, 33, 4, torch.float32, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("auto", monkeypatch, *problem)
        torch.set_num_threads(2)
        two = _run("auto", monkeypatch, *problem)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


def test_without_numba_the_torch_loop_runs_with_a_warning(monkeypatch):
    problem = _problem("cshPLRNN", 2, 5, 4, 6, 8, 4)
    reference = _run("torch", monkeypatch, *problem)
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    for name in "rollout_numba decoder_numba forcing_numba noise_numba _simd _vector".split():
        monkeypatch.delitem(sys.modules, f"dsr.models.{name}", raising=False)
        monkeypatch.delattr(dsr.models, name, raising=False)
    monkeypatch.setattr(compiled, "_STATE", {})
    monkeypatch.setattr(rollout, "BACKEND", "auto")
    with pytest.warns(RuntimeWarning, match="numba is not available.*DSR_ROLLOUT=torch"):
        assert rollout.compiled_kernels() is None
    params = [problem[1], *problem[0].parameters()]
    out = problem[0].forced_rollout(*problem[1:4])
    fallback = [out, *torch.autograd.grad((out * problem[4]).sum(), params)]
    for a, b in zip(fallback, reference, strict=True):
        assert torch.equal(a, b)


def test_only_cpu_tensors_take_the_compiled_path():
    cpu = torch.zeros(2, 3, 4)
    assert rollout._use_compiled(cpu, cpu)
    assert not rollout._use_compiled(torch.zeros(2, 3, 4, device="meta"), cpu)
    assert not rollout._use_compiled(cpu.to(torch.bfloat16), cpu)
