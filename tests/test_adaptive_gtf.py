"""Adaptive GTF (Hess et al., ICML 2023): alpha* = max(0, 1 - 1/N) from the Jacobians along the
forcing signals, raised at once, decayed with gamma = 0.999; per model."""

import numpy as np
import pytest
import torch

from dsr.errors import DsrInputError
from dsr.models import make_decoder, make_model
from dsr.models.examples import limit_cycle_plrnn, simulate_convolved, simulate_latent
from dsr.signal.kernels import spm_hrf
from dsr.training.gtf import AGTF_GAMMA, adaptive_alpha
from dsr.training.loop import TrainingConfig, fit_ensemble


def _linear_models(a_values):
    """E = len(a_values) linear latent maps z -> diag(a) z (W1 = 0): ‖J‖₂ = max |a|."""
    E, M = len(a_values), 2
    model = make_model("cshPLRNN", E, M, 3, dtype=torch.float64)
    with torch.no_grad():
        model.W1.zero_()
        model.A.copy_(torch.tensor(a_values, dtype=torch.float64))
    dec = make_decoder("standard", E, M, M, None, dtype=torch.float64)
    x = torch.randn(20, E, 4, M, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return model, dec, (x, x, None, None)


def test_alpha_star_is_one_minus_inverse_spectral_norm():
    model, dec, window = _linear_models([[2.0, 0.5], [0.5, 0.9], [-4.0, 1.0]])
    # alpha* = 1 - 1/2 = 0.5, 0 (contracting map), 1 - 1/4 = 0.75
    raised = adaptive_alpha(model, dec, window, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(raised, torch.tensor([0.5, 0.0, 0.75], dtype=torch.float64))
    decayed = adaptive_alpha(model, dec, window, torch.ones(3, dtype=torch.float64))
    expected = AGTF_GAMMA + (1 - AGTF_GAMMA) * torch.tensor([0.5, 0.0, 0.75], dtype=torch.float64)
    torch.testing.assert_close(decayed, expected)


def test_a_diverging_model_gets_full_forcing_and_spares_the_others():
    """One model with a non-finite weight (diverging inside an epoch) must not stop the norms of
    the whole ensemble: it gets alpha* = 1, the others their closed-form alpha*."""
    model, dec, window = _linear_models([[2.0, 0.5], [0.5, 0.9], [-4.0, 1.0]])
    with torch.no_grad():
        model.A[1, 0] = float("nan")
    raised = adaptive_alpha(model, dec, window, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(raised, torch.tensor([0.5, 1.0, 0.75], dtype=torch.float64))


def test_adaptive_fit_runs_and_differs_from_fixed():
    kernel = spm_hrf(1.2)
    x = simulate_convolved(simulate_latent(limit_cycle_plrnn(), 400), kernel, noise_sd=0.05)
    cfg = dict(epochs=2, batches_per_epoch=6, seq_len=60, hidden_dim=8, checkpoint_every=0)
    fixed = fit_ensemble([x], kernel, config=TrainingConfig(**cfg), device="cpu")
    adaptive = fit_ensemble([x], kernel, config=TrainingConfig(**cfg, gtf="adaptive"), device="cpu")
    assert np.isfinite(adaptive.final_loss).all()
    assert not torch.equal(fixed.model.W1, adaptive.model.W1)
    with pytest.raises(DsrInputError, match="'gtf' must be one of"):
        TrainingConfig(gtf="sometimes")


def test_alpha_star_matches_numpy_svd_on_a_nonlinear_model():
    """𝒩 from the Jacobians of a random (non-normal, piecewise-linear) cshPLRNN equals the
    geometric mean of numpy's largest singular values, maximised over sequences."""
    E, M, T, B = 3, 4, 15, 5
    torch.manual_seed(1)
    model = make_model("cshPLRNN", E, M, 12, dtype=torch.float64)
    with torch.no_grad():
        for p in (model.W1, model.W2, model.h2):
            p.normal_(0, 1.5)
    dec = make_decoder("standard", E, M, M, None, dtype=torch.float64)
    x = torch.randn(T, E, B, M, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    raised = adaptive_alpha(model, dec, (x, x, None, None), torch.zeros(E, dtype=torch.float64))
    z = dec.state_from_forcing(dec.forcing(x, None).permute(1, 0, 2, 3).reshape(E, T * B, M))
    jac = model.jacobian(z).detach().numpy().reshape(E, T, B, M, M)
    log_norm = np.log(np.linalg.svd(jac, compute_uv=False)[..., 0])  # (E, T, B)
    growth = np.exp(log_norm.mean(1)).max(1)
    expected = np.maximum(0.0, 1 - 1 / growth)
    assert (expected > 0).all()  # the test exercises alpha* > 0 in every model
    np.testing.assert_allclose(raised.numpy(), expected, rtol=1e-10)
