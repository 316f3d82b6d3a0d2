"""Reliability: fused rollout = autograd reference, kill-safe resume, per-model divergence,
determinism, atomic writes, and training memory that does not grow with the series length T."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from dsr.atomic import write_json
from dsr.cli import main, write_fit_outputs
from dsr.models import make_model
from dsr.models.decoders import causal_valid_convolution
from dsr.models.rollout import ForcedRollout
from dsr.signal.kernels import make_kernel
from dsr.training.loop import TrainingConfig, fit_ensemble

TINY = TrainingConfig(
    hidden_dim=6, epochs=4, batches_per_epoch=2, batch_size=3, seq_len=25, checkpoint_every=2
)


def _series(n_time=300, n_obs=3, seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((n_time, n_obs)), 0)
    return (x - x.mean(0)) / x.std(0)


def _reference_rollout(model, z0, keep, target):
    """Naive per-step autograd GTF loop (the pre-fusion implementation)."""
    n_forced, preds, z = keep.shape[-1], [], z0
    for t in range(keep.shape[0]):
        z_hat = model.step(z)
        preds.append(z_hat)
        z = torch.cat([z_hat[..., :n_forced] * keep[t] + target[t], z_hat[..., n_forced:]], -1)
    return torch.stack(preds)


@pytest.mark.parametrize("name", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("n_forced", [5, 2])
def test_fused_rollout_matches_autograd_reference(name, n_forced):
    g = torch.Generator().manual_seed(1)
    E, B, M, L, T = 3, 4, 5, 7, 11
    model = make_model(name, E, M, L, generator=g, dtype=torch.float64)
    with torch.no_grad():  # both signs of h2, nonzero h1
        model.h2.copy_(torch.randn(E, L, generator=g, dtype=torch.float64))
        model.h1.copy_(0.1 * torch.randn(E, M, generator=g, dtype=torch.float64))
    z0 = torch.randn(E, B, M, generator=g, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(T, E, B, n_forced, generator=g, dtype=torch.float64)
    target = torch.randn(T, E, B, n_forced, generator=g, dtype=torch.float64)
    weight = torch.randn(T, E, B, M, generator=g, dtype=torch.float64)
    params = [z0, *model.parameters()]
    fused = model.forced_rollout(z0, keep, target)
    ref = _reference_rollout(model, z0, keep, target)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    g_fused = torch.autograd.grad((fused * weight).sum(), params)
    g_ref = torch.autograd.grad((ref * weight).sum(), params)
    for a, b in zip(g_fused, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    leaves = [p.detach().clone().requires_grad_() for p in params]

    def f(z, A, W1, W2, h1, h2):
        return ForcedRollout.apply(z, keep, target, A, W1, W2, h1, h2, name == "cshPLRNN")

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize(
    ("n_time", "h"), [(12, 1), (12, 3), (300, 23), (700, 11), (900, 161), (23, 23)]
)
def test_banded_convolution_matches_unfold(n_time, h):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n_time, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.rand(h, generator=g, dtype=torch.float64)
    weight = torch.randn(n_time - h + 1, 2, 3, generator=g, dtype=torch.float64)
    got, expected = causal_valid_convolution(z, k), z.unfold(0, h, 1) @ k.flip(0)
    torch.testing.assert_close(got, expected)
    grads = [torch.autograd.grad((y * weight).sum(), z)[0] for y in (got, expected)]
    torch.testing.assert_close(*grads)  # the hand-written backward (several blocks for T >> h)


def _fit_args(data, out, epochs):
    return [
        "fit", str(data), "--tr", "2.0", "--out", str(out), "--epochs", str(epochs),
        "--batches-per-epoch", "1", "--seq-len", "25", "--hidden-dim", "6", "--n-models", "2",
        "--checkpoint-every", "5", "--device", "cpu", "--seed", "3",
    ]  # fmt: skip


def test_sigkill_mid_run_resumes_to_identical_parameters(tmp_path):
    data = tmp_path / "sub.npy"
    np.save(data, _series(400))
    epochs = 120  # long enough to be killed mid-run
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    cmd = [sys.executable, "-m", "dsr.cli", *_fit_args(data, killed, epochs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoints" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / "model.pt").exists()
    state = torch.load(ckpt, weights_only=False)  # never half-written
    assert 0 < state["epoch"] < epochs
    assert main(_fit_args(data, killed, epochs)) == 0  # resume
    assert main(_fit_args(data, ref, epochs)) == 0  # uninterrupted
    a = torch.load(killed / "model.pt", weights_only=True)
    b = torch.load(ref / "model.pt", weights_only=True)
    for key in ("model_state", "decoder_state"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)
    torch.testing.assert_close(a["loss_history"], b["loss_history"], rtol=0, atol=0, equal_nan=True)
    for out in (killed, ref):
        assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_diverged_model_is_flagged_and_others_train_on(tmp_path, monkeypatch, caplog):
    import dsr.training.state as train_state

    real = train_state.make_model

    def corrupting(*args, **kwargs):
        model = real(*args, **kwargs)
        with torch.no_grad():
            model.A[1] = 50.0  # model 1 explodes within a few steps: loss non-finite
        return model

    monkeypatch.setattr(train_state, "make_model", corrupting)
    fitted = fit_ensemble([_series()], make_kernel("hrf", tr_s=2.0), n_restarts=3, config=TINY)
    assert fitted.status == ["ok", "diverged", "ok"]
    assert "diverged" in caplog.text
    assert np.isfinite(fitted.loss_history[:, [0, 2]]).all()
    for p in [*fitted.model.parameters(), *fitted.decoder.parameters()]:
        assert torch.isfinite(p).all(), "diverged model must keep its last finite parameters"
    assert fitted.model.A[1].eq(50.0).all()  # restored to the last finite (initial) state
    write_fit_outputs(fitted, tmp_path)
    report = json.loads((tmp_path / "fit.json").read_text())
    assert [m["status"] for m in report["models"]] == ["ok", "diverged", "ok"]


def test_same_seed_gives_identical_results_on_cpu():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        kernel = make_kernel("hrf", tr_s=2.0)
        runs = [
            fit_ensemble([_series()], kernel, n_restarts=2, config=TINY, seed=s, device="cpu")
            for s in (5, 5, 6)
        ]
    finally:
        torch.use_deterministic_algorithms(previous)
    same, other = runs[1], runs[2]
    np.testing.assert_array_equal(runs[0].loss_history, same.loss_history)
    for p, q in zip(runs[0].model.parameters(), same.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not np.array_equal(runs[0].loss_history, other.loss_history)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    write_json(tmp_path / "fit.json", {"ok": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "fit.json", {"bad": object()})
    assert json.loads((tmp_path / "fit.json").read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json"]


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from dsr.signal.kernels import make_kernel
    from dsr.training.loop import TrainingConfig, fit_ensemble
    n = int(sys.argv[1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4))
    kernel = make_kernel("hrf", tr_s=2.0)
    cfg = TrainingConfig(hidden_dim=8, epochs=1, batches_per_epoch=2, batch_size=4, seq_len=40)
    fit_ensemble([x[:200]], kernel, config=cfg, device="cpu")  # warm up allocator and imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fit_ensemble([x], kernel, config=cfg, device="cpu")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, x.nbytes)
    """
)


def _peak_growth(n_time: int) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n_time)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    growth, nbytes = map(int, out.stdout.split())
    return growth, nbytes


def test_training_memory_does_not_scale_with_series_length():
    small, _ = _peak_growth(1_000)
    large, nbytes = _peak_growth(100_000)  # data: 3.2 MB float64
    # only per-subject preprocessing (validation, deconvolution, float32 copies) scales with T;
    # the training loop itself is bounded by batch and ensemble size
    assert large - small < 25 * nbytes, (small, large, nbytes)
