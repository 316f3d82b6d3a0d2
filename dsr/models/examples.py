"""Known-answer example systems for tests, benchmarks, validation and the demo cohort.

``limit_cycle_plrnn`` is a 3-D cshPLRNN (hidden 10) with a stable limit cycle of period ≈ 49 steps
(λ_max ≈ 0, found by a seeded search); ``simulate_convolved`` pushes a latent trajectory (of it, or
of Lorenz-63 from :mod:`dsr.synthetic.lorenz`) through a kernel and adds observation noise.
"""

from __future__ import annotations

import numpy as np
import torch

from dsr.models.plrnn import ClippedShallowPLRNN
from dsr.models.registry import make_model
from dsr.signal.kernels import causal_convolve


def limit_cycle_plrnn(dtype: torch.dtype = torch.float64) -> ClippedShallowPLRNN:
    """A single (E = 1) cshPLRNN, M = 3, L = 10, whose attractor is a limit cycle."""
    g = torch.Generator().manual_seed(32)
    model = make_model("cshPLRNN", 1, 3, 10, generator=g, dtype=dtype)
    with torch.no_grad():
        model.W1.mul_(4.0)
        model.h2.mul_(4.0)
    return model


@torch.no_grad()
def simulate_latent(model, n_steps: int, *, transient: int = 1000, seed: int = 0) -> np.ndarray:
    """Free-run the first model of ``model`` from a random state; returns ``(n_steps, M)``."""
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(1, 1, model.latent_dim, generator=g, dtype=model.A.dtype)
    return model.generate(z0, transient + n_steps)[transient:, 0, 0].cpu().numpy()


def simulate_convolved(
    latent: np.ndarray,
    kernel: np.ndarray,
    *,
    noise_sd: float = 0.01,
    n_obs: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Standardise ``latent`` (T, M), mix to ``n_obs`` channels (identity when None), convolve
    causally with ``kernel``, standardise again and add white noise of SD ``noise_sd``.

    Returns
    -------
    np.ndarray, shape (T - h + 1, N): only samples with a full kernel history.
    """
    rng = np.random.default_rng(seed)
    z = (latent - latent.mean(0)) / latent.std(0)
    if n_obs is not None:
        z = z @ rng.standard_normal((z.shape[1], n_obs)) / np.sqrt(z.shape[1])
    x = causal_convolve(z, kernel)[len(kernel) - 1 :]
    x = (x - x.mean(0)) / x.std(0)
    return x + noise_sd * rng.standard_normal(x.shape)
