"""CUDA path against the CPU path (skipped without a CUDA device; run on a GPU machine with
``python -m pytest -m gpu``). Same inputs on both devices: values within float tolerance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.models import make_model
from dsr.models.decoders import make_decoder
from dsr.signal.kernels import spm_hrf
from dsr.training.ensemble import load_ensemble, save_ensemble
from dsr.training.gtf import gtf_loss
from dsr.training.loop import TrainingConfig, fit_ensemble

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
E, B, N, M, L, T = 4, 5, 3, 4, 8, 60


def _model_and_decoder(dtype):
    g = torch.Generator().manual_seed(0)
    model = make_model("cshPLRNN", E, M, L, generator=g, dtype=dtype)
    decoder = make_decoder("convolved", E, N, M, spm_hrf(1.2), generator=g, dtype=dtype)
    return model, decoder


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_gtf_loss_and_gradients_match_cpu(dtype, tol):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, E, B, N, generator=g, dtype=dtype)
    x_deconv = torch.randn(T, E, B, N, generator=g, dtype=dtype)
    x_deconv[-5:] = float("nan")  # right edge cut of the forcing (windows start inside)
    results = []
    for device in ("cpu", "cuda"):
        model, decoder = (m.to(device) for m in _model_and_decoder(dtype))
        window = (x.to(device), x_deconv.to(device), None, None)
        loss = gtf_loss(model, decoder, window, alpha=0.1, noise_sd=0.0, generator=None)
        params = [*model.parameters(), decoder.B]  # J is empty without confounds
        grads = torch.autograd.grad(loss.sum(), params)
        results.append([loss.detach().cpu(), *(gr.cpu() for gr in grads)])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)


def test_lyapunov_spectrum_matches_cpu():
    model, _ = _model_and_decoder(torch.float64)
    z0 = torch.randn(E, 2, M, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cpu = lyapunov_spectrum(model, z0=z0, n_steps=500, transient=50)
    gpu = lyapunov_spectrum(copy.deepcopy(model).cuda(), z0=z0.cuda(), n_steps=500, transient=50)
    np.testing.assert_allclose(np.asarray(gpu), np.asarray(cpu), atol=1e-8)


def test_fit_runs_on_cuda_and_loads_on_cpu(tmp_path):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((300, N)), 0)
    x = (x - x.mean(0)) / x.std(0)
    config = TrainingConfig(hidden_dim=L, epochs=5, batches_per_epoch=3, batch_size=4, seq_len=40)
    fitted = fit_ensemble([x, x[::-1].copy()], spm_hrf(1.2), n_restarts=2, config=config,
                          device="cuda")  # fmt: skip
    assert fitted.device.startswith("cuda") and fitted.status == ["ok"] * 4
    assert np.isfinite(fitted.final_loss).all()
    loaded = load_ensemble(save_ensemble(fitted, tmp_path / "model.pt"))
    for a, b in zip(fitted.model.parameters(), loaded.model.parameters(), strict=True):
        torch.testing.assert_close(b, a.detach().cpu())
