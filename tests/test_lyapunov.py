"""Lyapunov spectra (PLRNN and Lorenz-63), QR re-orthonormalisation, Kaplan-Yorke dimension, units."""

import numpy as np
import pytest
import torch

from dsr.analysis.lyapunov import (
    _orthonormalize,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    max_lyapunov_exponent,
    per_second,
    qr_lyapunov,
)
from dsr.errors import DsrInputError
from dsr.models import make_model


def test_spectrum_of_linear_model_is_log_abs_diagonal():
    model = make_model("cshPLRNN", 3, 4, 5, dtype=torch.float64)
    a = torch.tensor([[0.9, -0.5, 0.2, 0.7], [0.3, 0.95, -0.8, 0.1], [0.5, 0.5, 0.6, -0.4]])
    with torch.no_grad():
        model.A.copy_(a)
        model.W1.zero_()
    spectrum = lyapunov_spectrum(model, n_steps=200, transient=10)
    expected = -np.sort(-np.log(np.abs(a.numpy())), axis=1)
    np.testing.assert_allclose(spectrum, expected, atol=1e-6)


def test_stable_fixed_point_has_negative_lambda_max():
    g = torch.Generator().manual_seed(3)
    model = make_model("cshPLRNN", 2, 3, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        model.W1.mul_(0.1)  # weak coupling: contraction towards a fixed point
    lam = max_lyapunov_exponent(model, n_steps=500, transient=100)
    assert (lam < 0).all()


def test_batched_spectrum_equals_single_models():
    g = torch.Generator().manual_seed(5)
    model = make_model("cshPLRNN", 3, 3, 10, generator=g, dtype=torch.float64)
    with torch.no_grad():
        model.W1.mul_(4.0)
        model.h2.mul_(4.0)
    z0 = torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    batched = lyapunov_spectrum(model, z0=z0, n_steps=300, transient=50)
    for e in range(3):
        single = make_model("cshPLRNN", 1, 3, 10, dtype=torch.float64)
        single.load_state_dict({k: v[e : e + 1] for k, v in model.state_dict().items()})
        alone = lyapunov_spectrum(single, z0=z0[e : e + 1], n_steps=300, transient=50)
        np.testing.assert_allclose(batched[e], alone[0], atol=1e-10)
    every4 = lyapunov_spectrum(model, z0=z0, n_steps=300, transient=50, qr_every=4)
    np.testing.assert_allclose(every4, batched, atol=1e-8)


def _lorenz(u, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    return torch.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], dim=-1)


def _lorenz_jac(u, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows = [
        torch.stack([-sigma * one, sigma * one, zero], -1),
        torch.stack([rho - z, -one, -x], -1),
        torch.stack([y, x, -beta * one], -1),
    ]
    return torch.stack(rows, dim=-2)


def _rk4_with_tangent(u, dt=0.01):
    """One RK4 step and its Jacobian (the tangent map propagated through the stages)."""
    eye = torch.eye(3, dtype=u.dtype)
    k1, j1 = _lorenz(u), _lorenz_jac(u)
    u2 = u + 0.5 * dt * k1
    k2, d2 = _lorenz(u2), _lorenz_jac(u2) @ (eye + 0.5 * dt * j1)
    u3 = u + 0.5 * dt * k2
    k3, d3 = _lorenz(u3), _lorenz_jac(u3) @ (eye + 0.5 * dt * d2)
    u4 = u + dt * k3
    k4, d4 = _lorenz(u4), _lorenz_jac(u4) @ (eye + dt * d3)
    step = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    jac = eye + dt / 6 * (j1 + 2 * d2 + 2 * d3 + d4)
    return step, jac


@pytest.mark.parametrize(
    "n_steps", [8_000, pytest.param(100_000, marks=pytest.mark.slow)], ids=["fast", "1e5"]
)
def test_lorenz63_lambda_max_with_the_same_routine(n_steps):
    dt, cache = 0.01, {}

    def jacobian(u):  # one RK4 pass gives the step and its tangent map; the step is reused
        cache["next"], jac = _rk4_with_tangent(u, dt)
        return jac

    z0 = torch.tensor([[1.0, 1.0, 20.0], [-5.0, 3.0, 25.0], [2.0, -4.0, 15.0]], dtype=torch.float64)
    spectrum = qr_lyapunov(jacobian, lambda u: cache["next"], z0, n_steps, transient=500)
    lam = spectrum.mean(0) / dt  # per time unit
    assert lam[0].item() == pytest.approx(0.906, abs=0.05)
    assert abs(lam[1].item()) < 0.05
    assert lam.sum().item() == pytest.approx(-(10 + 1 + 8 / 3), abs=0.1)


def test_kaplan_yorke_and_units():
    assert kaplan_yorke_dimension(np.array([0.9, 0.0, -14.57])) == pytest.approx(2 + 0.9 / 14.57)
    assert kaplan_yorke_dimension(np.array([-0.1, -0.2])) == 0.0
    assert kaplan_yorke_dimension(np.array([0.1, 0.2])) == 2.0
    batch = kaplan_yorke_dimension(np.array([[1.0, -2.0], [-1.0, -2.0], [np.nan, 0.0]]))
    np.testing.assert_allclose(batch, [1.5, 0.0, np.nan])
    np.testing.assert_allclose(per_second(np.array([0.14, -0.28]), tr_s=1.4), [0.1, -0.2])
    np.testing.assert_allclose(per_second(np.array([0.1]), fs_hz=30.0), [3.0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: per_second(np.ones(2)), "exactly one"),
        (lambda: per_second(np.ones(2), tr_s=1.0, fs_hz=2.0), "exactly one"),
        (lambda: per_second(np.ones(2), tr_s=-1.0), "tr_s"),
        (lambda: kaplan_yorke_dimension(np.array([])), "M >= 1"),
        (lambda: qr_lyapunov(None, None, torch.zeros(1, 2), 0), "n_steps"),
        (lambda: qr_lyapunov(None, None, torch.zeros(1, 2), 5, transient=-1), "transient"),
        (
            lambda: lyapunov_spectrum(make_model("cshPLRNN", 2, 3, 4), z0=np.zeros((3, 1, 3))),
            "'z0' must be",
        ),
    ],
)
def test_lyapunov_errors(call, match):
    with pytest.raises(DsrInputError, match=match):
        call()


def test_orthonormalize_matches_householder_and_falls_back():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64)
    q[0, 0, :, 0] = 0.0  # singular: Cholesky fails -> Householder fallback for the batch
    for a in (q[1:], q):
        Q, d = _orthonormalize(a.clone())
        _, r = torch.linalg.qr(a)
        torch.testing.assert_close(d, r.diagonal(dim1=-2, dim2=-1).abs(), rtol=1e-9, atol=1e-12)
        eye = torch.eye(16, dtype=torch.float64).expand_as(Q)
        torch.testing.assert_close(Q.mT @ Q, eye, rtol=0, atol=1e-10)
