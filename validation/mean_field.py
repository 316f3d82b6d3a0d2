"""A small whole-brain mean-field simulator: 16 coupled Wilson–Cowan E/I nodes (validation only).

``τ dE_i/dt = −E_i + S_E(c_EE E_i − c_EI I_i + G Σ_j C_ij E_j + P_i) + σ ξ``
``τ dI_i/dt = −I_i + S_I(c_IE E_i − c_II I_i + Q)``,
``S(x) = 1/(1 + e^{−a(x−θ)}) − 1/(1 + e^{aθ})``

Classic oscillatory parameters (Wilson & Cowan 1972: c_EE 16, c_EI 12, c_IE 15, c_II 3,
a_E 1.3, θ_E 4, a_I 2, θ_I 3.7, P ≈ 1.25) give a limit cycle per node; heterogeneous drives P_i
give each node its own frequency and the coupling G through a random sparse connectome C makes
the network dynamics irregular. Time is rescaled (τ = ``tau_s``) so that node rhythms are slow
(periods ~10–20 s) and visible through the HRF at TR 0.5 s. Euler–Maruyama, vectorised over
data sets.
"""

from __future__ import annotations

import numpy as np

from dsr.signal.kernels import causal_convolve

PARAMS = dict(
    c_ee=16.0, c_ei=12.0, c_ie=15.0, c_ii=3.0, a_e=1.3, th_e=4.0, a_i=2.0, th_i=3.7, q=0.0
)


def _sig(x, a, th):
    return 1.0 / (1.0 + np.exp(-a * (x - th))) - 1.0 / (1.0 + np.exp(a * th))


def simulate_network(
    n_sets: int,
    n_regions: int = 16,
    n_samples: int = 1500,
    tr_s: float = 0.5,
    *,
    tau_s: float = 1.0,
    coupling: float = 1.0,
    noise: float = 0.02,
    dt_s: float = 0.01,
    transient_s: float = 100.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``n_sets`` independent networks; returns excitatory activity sampled every TR
    ``(n_sets, n_samples, n_regions)`` (the true latent) and the connectomes ``(n_sets, R, R)``."""
    p = PARAMS
    rng = np.random.default_rng(seed)
    conn = rng.random((n_sets, n_regions, n_regions)) * (
        rng.random((n_sets, n_regions, n_regions)) < 0.3
    )
    conn[:, np.arange(n_regions), np.arange(n_regions)] = 0.0
    conn /= conn.sum(-1, keepdims=True).clip(1e-9)
    drive = rng.uniform(1.0, 1.6, (n_sets, n_regions))
    e = rng.uniform(0, 0.3, (n_sets, n_regions))
    i = rng.uniform(0, 0.3, (n_sets, n_regions))
    every = int(round(tr_s / dt_s))
    n_trans = int(round(transient_s / dt_s))
    out = np.empty((n_sets, n_samples, n_regions))
    k = dt_s / tau_s
    sq = np.sqrt(dt_s) / tau_s * noise
    for step in range(n_trans + n_samples * every):
        net = np.einsum("sij,sj->si", conn, e)
        de = -e + _sig(p["c_ee"] * e - p["c_ei"] * i + coupling * net + drive, p["a_e"], p["th_e"])
        di = -i + _sig(p["c_ie"] * e - p["c_ii"] * i + p["q"], p["a_i"], p["th_i"])
        e = e + k * de + sq * rng.standard_normal(e.shape)
        i = i + k * di
        j = step - n_trans
        if j >= 0 and (j + 1) % every == 0:
            out[:, j // every] = e
    return out, conn


def bold(
    latent: np.ndarray, kernel: np.ndarray, noise_sd: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised latent (T, R) -> z-scored causal HRF convolution + white noise; both cut to
    the samples with a full kernel history, time-aligned."""
    rng = np.random.default_rng(seed)
    z = (latent - latent.mean(0)) / latent.std(0)
    h = len(kernel)
    x = causal_convolve(z, kernel)[h - 1 :]
    x = (x - x.mean(0)) / x.std(0) + noise_sd * rng.standard_normal(x.shape)
    return x, z[h - 1 :]
