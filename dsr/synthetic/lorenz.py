"""Lorenz-63: vector field, Jacobian, an accurate simulator and its largest Lyapunov exponent
(≈ 0.906 per time unit at σ = 10, ρ = 28, β = 8/3) — the field's standard known-answer system —
and its view through a causal kernel (``observe_lorenz``, the demo writers' ground truth)."""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from dsr.signal.kernels import causal_convolve

SIGMA, BETA = 10.0, 8.0 / 3.0


def lorenz63(x: np.ndarray, rho, sigma: float = SIGMA, beta: float = BETA) -> np.ndarray:
    """Lorenz-63 vector field ``dx/dt``; ``x`` of shape (..., 3), ``rho`` broadcast over ``...``."""
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    return np.stack([sigma * (b - a), a * (rho - c) - b, a * b - beta * c], axis=-1)


def lorenz63_jacobian(x: np.ndarray, rho, sigma: float = SIGMA, beta: float = BETA) -> np.ndarray:
    """Jacobian ``∂f/∂x`` of :func:`lorenz63`; shape (..., 3, 3)."""
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    one, zero = np.ones_like(a), np.zeros_like(a)
    rows = [
        [-sigma * one, sigma * one, zero],
        [rho - c, -one, -a],
        [b, a, -beta * one],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def lyapunov_max_lorenz(
    rho, *, dt: float = 0.01, n_steps: int = 20_000, n_transient: int = 2_000, seed: int = 0
) -> np.ndarray:
    """Largest Lyapunov exponent of Lorenz-63 per time unit (Benettin's method, RK4).

    State and tangent vector are integrated together (variational equation ``dv/dt = J(x) v``),
    the tangent renormalised every step and the log growth averaged. Vectorised over ``rho``.
    ≈ 0.906 for ρ = 28.

    Returns
    -------
    np.ndarray, shape like ``rho``
    """
    rho = np.atleast_1d(np.asarray(rho, dtype=np.float64))
    rng = np.random.default_rng(seed)
    # rows 0-2: state (a, b, c); rows 3-5: tangent vector v; columns: one system per rho
    y = np.zeros((6, rho.size))
    y[:3] = np.array([[1.0], [1.0], [20.0]]) + rng.normal(0, 0.1, (3, rho.size))
    y[3] = 1.0

    def f(u):
        a, b, c, v0, v1, v2 = u
        return np.array(
            [
                SIGMA * (b - a),
                a * (rho - c) - b,
                a * b - BETA * c,  # lorenz63
                SIGMA * (v1 - v0),
                (rho - c) * v0 - v1 - a * v2,
                b * v0 + a * v1 - BETA * v2,  # J v
            ]
        )

    log_sum = np.zeros(rho.size)
    for step in range(n_transient + n_steps):
        k1 = f(y)
        k2 = f(y + dt / 2 * k1)
        k3 = f(y + dt / 2 * k2)
        k4 = f(y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        norm = np.sqrt((y[3:] ** 2).sum(axis=0))
        y[3:] /= norm
        if step >= n_transient:
            log_sum += np.log(norm)
    return log_sum / (n_steps * dt)


def simulate_lorenz(
    n_samples: int, dt: float, rho: float, *, seed: int = 0, transient: float = 50.0
) -> np.ndarray:
    """Lorenz-63 orbit sampled every ``dt`` time units after a transient, standardised; (T, 3)."""
    x0 = np.array([1.0, 1.0, 20.0]) + np.random.default_rng(seed).normal(0, 1.0, 3)
    t_eval = transient + dt * np.arange(n_samples)
    sol = solve_ivp(
        lambda t, x: lorenz63(x, rho),
        (0.0, t_eval[-1]),
        x0,
        t_eval=t_eval,
        method="DOP853",
        rtol=1e-9,
        atol=1e-9,
    )
    z = sol.y.T
    return (z - z.mean(axis=0)) / z.std(axis=0)


def observe_lorenz(n: int, dt: float, rho: float, seed: int, kernel, readout, one_branch=False):
    """Lorenz-63 seen through a causal kernel, the fMRI and calcium demo writers' ground truth.

    Simulates ``n + len(kernel) - 1`` samples (time step ``dt`` in Lorenz time units, standardised)
    so that the convolution is warmed up, and returns the last n: the latent (n, 3) and
    ``causal_convolve(readout(latent), kernel)`` (n, K), where ``readout`` maps (T, 3) to (T, K).
    ``one_branch``: reflect the orbit (x, y -> -x, -y, a symmetry of Lorenz-63) where x is
    negatively skewed, so that every periodic ρ gives the same one of its two mirror-image cycles
    (which one a simulation lands on depends on its initial state).
    """
    warm = len(kernel) - 1
    latent = simulate_lorenz(n + warm, dt, rho, seed=seed)
    if one_branch and np.mean(latent[:, 0] ** 3) < 0:
        latent[:, :2] *= -1
    return latent[warm:], causal_convolve(readout(latent), kernel)[warm:]
