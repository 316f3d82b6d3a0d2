"""Evaluation measures of spec section 5 that compare trajectories: D_stsp (binned / GMM) and D_H.

Pure NumPy/SciPy on ``(T, N)`` arrays; both accept a batch of generated trajectories ``(T, K, N)``
(scored at once, result ``(K,)``). The n-step prediction error, which runs the model, is in
``dsr.analysis.prediction``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dsr._validation import check_choice, check_positive
from dsr.errors import DsrInputError

LAPLACE_ALPHA = 1e-5
BIN_MARGIN_SD = 0.1
GMM_AUTO_MIN_DIM = 6
# log of the smallest positive float64: a density whose direct evaluation would underflow to 0
# counts as "p = 0" (spec: average over samples with p, q > 0), although we compute in log space.
LOG_ZERO = float(np.log(np.nextafter(0.0, 1.0)))
_CHUNK_ELEMENTS = 2**24


def _as_batch(x: np.ndarray, x_gen: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate ``x`` (T, N) and ``x_gen`` (T', N) or (T', K, N); return x, (T', K, N), batched."""
    x, x_gen = np.asarray(x, dtype=np.float64), np.asarray(x_gen, dtype=np.float64)
    if x.ndim != 2:
        raise DsrInputError(f"data must be a 2-D array (T, N); got shape {x.shape}")
    batched = x_gen.ndim == 3
    if x_gen.ndim == 2:
        x_gen = x_gen[:, None]
    if x_gen.ndim != 3 or x_gen.shape[-1] != x.shape[1]:
        raise DsrInputError(
            f"generated data must be (T, N) or (T, K, N) with N = {x.shape[1]}; got {x_gen.shape}"
        )
    if not np.isfinite(x).all():
        raise DsrInputError("data contains NaN or infinite values; pass the valid time points only")
    return x, x_gen, batched


def _binned_divergence(x: np.ndarray, x_gen: np.ndarray, n_bins: int) -> np.ndarray:
    """Laplace-smoothed KL of 30^N-bin histograms; only occupied bins are materialised."""
    n_dim, n_batch = x.shape[1], x_gen.shape[1]
    n_total = n_bins**n_dim
    if n_total * n_batch >= 2**62:
        raise DsrInputError(f"{n_bins}^{n_dim} bins is too many; use method='gmm' for N >= 6")
    sd = x.std(axis=0, ddof=1)
    lo, hi = x.min(axis=0) - BIN_MARGIN_SD * sd, x.max(axis=0) + BIN_MARGIN_SD * sd
    width = (hi - lo) / n_bins
    radix = n_bins ** np.arange(n_dim - 1, -1, -1, dtype=np.int64)

    def linear_index(v):
        idx = np.minimum(np.floor((v - lo) / width), n_bins - 1).astype(np.int64)
        return idx @ radix

    inside = ((x_gen >= lo) & (x_gen <= hi)).all(axis=-1)  # (T', K); outside points are dropped
    data_bins, data_counts = np.unique(linear_index(x), return_counts=True)
    gen_keys = linear_index(np.where(inside[..., None], x_gen, lo)) + np.arange(n_batch) * n_total
    keys = np.concatenate(
        [(data_bins + np.arange(n_batch)[:, None] * n_total).ravel(), gen_keys[inside]]
    )
    uniq, inv = np.unique(keys, return_inverse=True)
    n_data_keys = n_batch * data_bins.size
    n_p = np.bincount(inv[:n_data_keys], np.tile(data_counts, n_batch), minlength=uniq.size)
    n_q = np.bincount(inv[n_data_keys:], minlength=uniq.size)
    owner = uniq // n_total
    sum_q = inside.sum(axis=0).astype(np.float64)  # (K,)
    a_k = LAPLACE_ALPHA * n_total
    p = (n_p + LAPLACE_ALPHA) / (x.shape[0] + a_k)
    q = (n_q + LAPLACE_ALPHA) / (sum_q[owner] + a_k)
    kl = np.bincount(owner, p * np.log(p / q), minlength=n_batch)
    p0 = LAPLACE_ALPHA / (x.shape[0] + a_k)
    q0 = LAPLACE_ALPHA / (sum_q + a_k)
    n_empty = n_total - np.bincount(owner, minlength=n_batch)
    kl = kl + n_empty * p0 * np.log(p0 / q0)
    return np.where(sum_q > 0, kl, np.nan)


def _log_mixture_density(s: np.ndarray, centres: np.ndarray, variance: float) -> np.ndarray:
    """log of the mean of isotropic Gaussians at ``centres`` (K, C, N) evaluated at ``s`` (S, N).

    Returns (K, S); chunked over K so that at most ~2^24 distances are held at once.
    """
    n_batch, n_centres, n_dim = centres.shape
    out = np.empty((n_batch, s.shape[0]))
    chunk = max(1, _CHUNK_ELEMENTS // (s.shape[0] * n_centres))
    s_sq = (s**2).sum(-1)
    norm = np.log(n_centres) + 0.5 * n_dim * np.log(2 * np.pi * variance)
    for k in range(0, n_batch, chunk):
        c = centres[k : k + chunk]
        d2 = s_sq[None, :, None] + (c**2).sum(-1)[:, None, :] - 2 * np.einsum("sn,kcn->ksc", s, c)
        e = -np.maximum(d2, 0.0) / (2 * variance)
        m = e.max(axis=-1, keepdims=True)
        out[k : k + chunk] = (m[..., 0] + np.log(np.exp(e - m).sum(-1))) - norm
    return out


def _gmm_divergence(x, x_gen, variance, seed, max_points, n_samples) -> np.ndarray:
    x, x_gen = x[:max_points], x_gen[:max_points]
    rng = np.random.default_rng(seed)
    s = x[rng.integers(0, x.shape[0], n_samples)]
    s = s + np.sqrt(variance) * rng.standard_normal(s.shape)
    log_p = _log_mixture_density(s, x[None], variance)[0]  # (S,)
    log_q = _log_mixture_density(s, np.moveaxis(x_gen, 1, 0), variance)  # (K, S)
    valid = (log_p > LOG_ZERO) & (log_q > LOG_ZERO) & np.isfinite(log_q)
    diff = np.where(valid, log_p - np.where(valid, log_q, 0.0), 0.0)
    n_valid = valid.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, diff.sum(-1) / n_valid, np.nan)


DSTSP_METHODS = {"auto": None, "bins": _binned_divergence, "gmm": _gmm_divergence}


def state_space_divergence(
    x: np.ndarray,
    x_gen: np.ndarray,
    n_bins: int = 30,
    gmm_scaling: float = 1.0,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 10_000,
    n_samples: int = 1000,
) -> float | np.ndarray:
    """State-space divergence D_stsp = KL(p_data || q_model), spec section 5.

    Parameters
    ----------
    x : np.ndarray, shape (T, N)
        Ground truth (finite).
    x_gen : np.ndarray, shape (T', N) or (T', K, N)
        Model-generated series; a batch of K trajectories is scored at once. Non-finite generated
        points fall outside every bin (bins) or give q = 0 (GMM) and are thus ignored.
    n_bins : int
        Bins per dimension (binned method); range per dim ``[min - 0.1 sd, max + 0.1 sd]`` of ``x``,
        Laplace smoothing ``alpha = 1e-5`` over all ``n_bins ** N`` bins.
    gmm_scaling : float
        Variance (not SD) of the isotropic Gaussian placed on every point (GMM method).
    method : {"auto", "bins", "gmm"}
        "auto": bins for N < 6, GMM otherwise.
    seed, max_points, n_samples : int
        GMM: Monte-Carlo seed, points used per series (the first ones), samples drawn from the
        data mixture.

    Returns
    -------
    float, or np.ndarray of shape (K,) for a batch; NaN where the model histogram is empty (bins) or
    no sample has p, q > 0 (GMM).
    """
    check_choice("method", method, DSTSP_METHODS)
    for name, value in [("n_bins", n_bins), ("max_points", max_points), ("n_samples", n_samples)]:
        check_positive(name, value, integer=True)
    check_positive("gmm_scaling", gmm_scaling)
    x, x_gen, batched = _as_batch(x, x_gen)
    if method == "auto":
        method = "bins" if x.shape[1] < GMM_AUTO_MIN_DIM else "gmm"
    if method == "bins":
        if x.shape[0] < 2:
            raise DsrInputError("binned D_stsp needs at least 2 data points (T >= 2)")
        out = _binned_divergence(x, x_gen, n_bins)
    else:
        out = _gmm_divergence(x, x_gen, gmm_scaling, seed, max_points, n_samples)
    return out if batched else float(out[0])


def _normalised_spectrum(x: np.ndarray, smoothing: float) -> np.ndarray:
    """Smoothed, normalised power spectrum along axis 0 of a z-scored series."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        power = np.abs(np.fft.rfft(z, axis=0)) ** 2
        if smoothing > 0:
            power = gaussian_filter1d(power, smoothing, axis=0, mode="mirror", truncate=4.0)
        power = np.maximum(power, 0.0)
        return power / power.sum(axis=0)


def power_spectrum_error(
    x: np.ndarray, x_gen: np.ndarray, smoothing: float = 1.0
) -> float | np.ndarray:
    """Power-spectrum error D_H: mean over dims of Hellinger distances of spectra (spec section 5).

    Each dim is z-scored, ``|rfft|^2`` is smoothed with ``gaussian_filter1d(P, smoothing,
    mode="mirror", truncate=4.0)``, clamped at 0 and normalised to sum 1; then
    ``H = ||sqrt(p) - sqrt(q)||_2 / sqrt(2)`` per dim (0: identical, 1: disjoint).

    Parameters
    ----------
    x : np.ndarray, shape (T, N)
    x_gen : np.ndarray, shape (T, N) or (T, K, N)
        Same length T as ``x``. A constant generated dim (a run sitting on a fixed point) has no
        spectrum to compare: it counts as disjoint from the data's (H = 1), never as missing.
    smoothing : float
        Gaussian SD in frequency bins (1.0 for evaluation, 20 for training monitors); 0 disables it.

    Returns
    -------
    float, or np.ndarray of shape (K,) for a batch.
    """
    if isinstance(smoothing, bool) or not np.isfinite(smoothing) or smoothing < 0:
        raise DsrInputError(f"'smoothing' must be a finite number >= 0; got {smoothing!r}")
    x, x_gen, batched = _as_batch(x, x_gen)
    if x_gen.shape[0] != x.shape[0]:
        raise DsrInputError(
            f"power_spectrum_error needs equal lengths; got T = {x.shape[0]} and {x_gen.shape[0]}"
        )
    p = _normalised_spectrum(x, smoothing)[:, None]  # (F, 1, N)
    q = _normalised_spectrum(x_gen, smoothing)  # (F, K, N)
    hellinger = np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum(axis=0) / 2.0)  # (K, N)
    flat = np.all(x_gen == x_gen[:1], axis=0)  # (K, N): a generated dim without any oscillation
    hellinger = np.where(flat & np.isfinite(x_gen[0]), 1.0, hellinger)
    out = hellinger.mean(axis=-1)
    return out if batched else float(out[0])
