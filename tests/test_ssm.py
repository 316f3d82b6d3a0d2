"""The state-space latent maps: S4D diagonal linear SSM and the selective (gated) SSM."""

import math

import numpy as np
import pytest
import torch
import yaml

from dsr.analysis.fixed_points import fixed_points_and_cycles, search_method
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.cli import main
from dsr.models import MODELS, DiagonalSSM, SelectiveSSM, make_model
from dsr.models.latent import LatentMap
from dsr.models.registry import model_name
from dsr.training.ensemble import load_ensemble, save_ensemble
from dsr.training.loop import TrainingConfig, fit_ensemble

E, B, L = 3, 4, 7
SSMS = ["S4D", "selectiveSSM"]
SCHEMA = "workflow/schemas/config.schema.yaml"


def _model(name, M=5, seed=0, n_models=E):
    g = torch.Generator().manual_seed(seed)
    return make_model(name, n_models, M, L, generator=g, dtype=torch.float64)


def _s4d_random(M, seed=0):
    """An S4D ensemble with random (trained-like) modes and bias."""
    m = _model("S4D", M, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        m.log_a.copy_(torch.randn(m.log_a.shape, generator=g, dtype=torch.float64) - 1)
        m.b.copy_(20 * torch.randn(m.b.shape, generator=g, dtype=torch.float64))
        m.h.copy_(torch.randn(m.h.shape, generator=g, dtype=torch.float64))
    return m


def test_registry_holds_the_ssms():
    assert MODELS["S4D"] is DiagonalSSM and MODELS["selectiveSSM"] is SelectiveSSM
    assert all(issubclass(cls, LatentMap) for cls in MODELS.values())
    assert model_name(_model("selectiveSSM")) == "selectiveSSM"


@pytest.mark.parametrize("M", [4, 5])
def test_s4d_lin_initialisation(M):
    m = _model("S4D", M)
    P, Q = M // 2, (M + 1) // 2
    assert m.log_dt.shape == m.log_a.shape == (E, Q) and m.b.shape == (E, P) and m.h.shape == (E, M)
    torch.testing.assert_close(m.log_a.exp(), torch.full((E, Q), 0.5, dtype=torch.float64))
    torch.testing.assert_close(m.b, math.pi * torch.arange(P, dtype=torch.float64).expand(E, P))
    dt = m.log_dt.exp()
    assert torch.all((dt >= 1e-3) & (dt <= 1e-1)) and torch.all(m.h == 0)
    assert torch.all(m.eigenvalues().abs() < 1)


@pytest.mark.parametrize("M", [4, 5])
def test_s4d_step_is_complex_multiplication(M):
    m = _s4d_random(M)
    z = torch.randn(E, B, M, dtype=torch.float64)
    lam = m.eigenvalues()[:, 0::2][..., None, :]  # one per mode (E, 1, Q)
    P = M // 2
    zc = torch.complex(z[..., 0 : 2 * P : 2], z[..., 1 : 2 * P : 2])
    hc = torch.complex(m.h[:, 0 : 2 * P : 2], m.h[:, 1 : 2 * P : 2])[:, None]
    out = lam[..., :P] * zc + hc
    expected = torch.stack([out.real, out.imag], -1).flatten(-2)
    if M % 2:
        real = lam[..., P:].real * z[..., -1:] + m.h[:, None, -1:]
        expected = torch.cat([expected, real], -1)
    torch.testing.assert_close(m.step(z), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("M", [4, 5])
def test_s4d_lyapunov_spectrum_is_log_abs_eigenvalues(M):
    m = _s4d_random(M)
    spectrum = lyapunov_spectrum(m, n_steps=500, transient=20, n_initial=3)
    expected = -np.sort(-np.log(m.eigenvalues().abs().detach().numpy()), axis=-1)
    np.testing.assert_allclose(spectrum, expected, rtol=0, atol=1e-8)
    assert np.all(spectrum < 0)  # linear and stable: never chaotic


def test_selective_step_matches_equation():
    m = _model("selectiveSSM")
    z = torch.randn(E, B, 5, dtype=torch.float64)
    e, b = 1, 2
    a = torch.sigmoid(m.G[e] @ z[e, b] + m.g[e])
    expected = a * z[e, b] + m.W[e] @ torch.tanh(m.V[e] @ z[e, b] + m.c[e]) + m.h[e]
    torch.testing.assert_close(m.step(z)[e, b], expected)
    assert m.G.shape == (E, 5, 5) and m.V.shape == (E, L, 5) and m.W.shape == (E, 5, L)
    assert torch.all((torch.sigmoid(m.g) >= 0.05) & (torch.sigmoid(m.g) <= 0.95))


@pytest.mark.parametrize("name", SSMS)
@pytest.mark.parametrize("M", [1, 4, 5])
def test_jacobian_matches_autograd(name, M):
    m = _s4d_random(M) if name == "S4D" else _model(name, M)
    z = 3 * torch.randn(E, B, M, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    auto = torch.autograd.functional.jacobian(m.step, z)  # (E, B, M, E, B, M)
    idx = torch.arange(E)[:, None], torch.arange(B)[None, :]
    expected = auto[idx[0], idx[1], :, idx[0], idx[1], :]
    torch.testing.assert_close(m.jacobian(z), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SSMS)
def test_forced_rollout_is_the_map_under_forcing(name):
    """The rollout (parameter transforms hoisted out of the loop) equals stepping ``step`` by
    hand, and its gradient passes gradcheck in float64."""
    m = _model(name, M=4, n_models=2)
    T, D = 6, 3
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(2, 3, 4, dtype=torch.float64, generator=g)
    keep = torch.rand(T, 2, 3, D, dtype=torch.float64, generator=g)
    target = torch.randn(T, 2, 3, D, dtype=torch.float64, generator=g)
    preds, z = [], z0
    for t in range(T):
        z_hat = m.step(z)
        preds.append(z_hat)
        z = torch.cat([z_hat[..., :D] * keep[t] + target[t], z_hat[..., D:]], -1)
    torch.testing.assert_close(m.forced_rollout(z0, keep, target), torch.stack(preds))
    names = [n for n, _ in m.named_parameters()]

    def rollout(z0, *values):
        call = dict(zip(names, values, strict=True))
        return torch.func.functional_call(m, call, (z0, keep, target), strict=True)

    m.forward = m.forced_rollout  # functional_call runs forward
    inputs = (z0.requires_grad_(), *(p.detach().clone().requires_grad_() for p in m.parameters()))
    assert torch.autograd.gradcheck(rollout, inputs)


def test_s4d_fixed_point_is_one_exact_solve():
    m = _s4d_random(5)
    cycles = fixed_points_and_cycles(m, max_order=3)
    assert search_method(m) == "linear solve"
    assert [(c.model, c.period) for c in cycles] == [(e, 1) for e in range(E)]  # no k-cycles
    lam = m.transition_matrix().detach()
    expected = torch.linalg.solve(torch.eye(5, dtype=torch.float64) - lam, m.h.detach())
    for c in cycles:
        np.testing.assert_allclose(c.points[0], expected[c.model].numpy(), rtol=1e-12)
        np.testing.assert_allclose(
            np.sort(np.abs(c.eigenvalues)), np.sort(m.eigenvalues()[c.model].abs().detach())
        )
        assert c.stable and c.residual < 1e-10


def test_selective_fixed_points_are_not_searched():
    m = _model("selectiveSSM")
    assert search_method(m) == "not searched"
    assert fixed_points_and_cycles(m, max_order=2) == []
    assert search_method(_model("cshPLRNN")) == "region iteration"


@pytest.mark.parametrize("name", SSMS)
def test_short_fit_saves_and_loads(tmp_path, name):
    t = np.arange(260)
    x = np.stack([np.sin(0.3 * t), np.cos(0.21 * t), np.sin(0.05 * t)], 1)
    config = TrainingConfig(
        model=name, epochs=3, batches_per_epoch=2, batch_size=4, seq_len=30, hidden_dim=6
    )
    fitted = fit_ensemble([x], np.array([0.2, 0.5, 0.3]), n_restarts=2, config=config)
    assert fitted.status == ["ok", "ok"] and np.isfinite(fitted.loss_history).all()
    loaded = load_ensemble(save_ensemble(fitted, tmp_path / "model.pt"), dtype=torch.float64)
    assert type(loaded.model) is MODELS[name] and loaded.model.hidden_dim == 6
    for (k, v), (k2, v2) in zip(
        fitted.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v.double(), v2)


@pytest.mark.parametrize("name", SSMS)
def test_cli_fits_every_model(tmp_path, name):
    t = np.arange(200)
    np.save(tmp_path / "x.npy", np.stack([np.sin(0.3 * t), np.cos(0.17 * t)], 1))
    args = ["--epochs", "1", "--batches-per-epoch", "2", "--seq-len", "40", "--n-models", "2"]
    out = tmp_path / "run"
    assert (
        main(
            [
                "fit",
                str(tmp_path / "x.npy"),
                "--tr",
                "2.0",
                "--out",
                str(out),
                "--model",
                name,
                *args,
            ]
        )
        == 0
    )
    assert type(load_ensemble(out / "model.pt").model) is MODELS[name]


def test_config_schema_lists_every_model():
    schema = yaml.safe_load(open(SCHEMA))
    assert set(schema["properties"]["fit"]["properties"]["model"]["enum"]) == set(MODELS)
