"""Non-stationarity screen: does a region's variance drift with time?

Following the convSSM paper's screen: the moving variance (window 40 samples) of each region is
correlated with time; ``|r| > 0.16`` flags the region. The subject statistic is the same correlation
for the region-averaged moving variance (our reading of the paper's subject-level criterion).

The moving variance of a window of 40 samples is strongly autocorrelated, so ``|r| > 0.16`` is
common in stationary data too (36 of 60 white-noise series of 500 samples in the tests). The
screen therefore also reports ``subject_p``: the share of stationary surrogates
(phase-randomised copies: same power spectra and cross-spectra, Theiler et al. 1992) whose
``|r|`` reaches the subject's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dsr.errors import DsrInputError

WINDOW = 40
THRESHOLD = 0.16
N_SURROGATES = 199


def moving_variance(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Variance (ddof 1) over a sliding window along the time axis ``-2``; ``(..., T, N) ->
    (..., T - window + 1, N)``; a 1-D ``x`` is one region."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[-2] < window + 2:
        raise DsrInputError(
            f"non-stationarity screen: {x.shape[-2]} time points is too short for a window of "
            f"{window}; use a shorter window or skip the screen"
        )
    x = x - x.mean(axis=-2, keepdims=True)
    pad = np.zeros((*x.shape[:-2], 1, x.shape[-1]))
    c1, c2 = (np.concatenate([pad, np.cumsum(v, axis=-2)], axis=-2) for v in (x, x * x))
    w1 = c1[..., window:, :] - c1[..., :-window, :]
    w2 = c2[..., window:, :] - c2[..., :-window, :]
    return np.maximum(w2 - w1 * w1 / window, 0.0) / (window - 1)


def _corr_with_time(v: np.ndarray) -> np.ndarray:
    """Correlation of each column of ``v`` (..., T', K) with time; a constant column gives 0."""
    t = np.arange(v.shape[-2], dtype=np.float64)
    t = ((t - t.mean()) / t.std())[:, None]
    vc = v - v.mean(axis=-2, keepdims=True)
    sd = vc.std(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (t * vc).mean(axis=-2) / sd
    return np.where(sd > 0, r, 0.0)


def _surrogates(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` phase-randomised copies of ``x`` (T, N) -> (n, T, N): every frequency gets one random
    phase shared by the regions, which keeps each spectrum and the cross-spectra."""
    spec = np.fft.rfft(x - x.mean(axis=0), axis=0)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (n, spec.shape[0], 1))
    phase[:, 0] = 0.0
    if len(x) % 2 == 0:
        phase[:, -1] = 0.0  # the Nyquist term stays real
    return np.fft.irfft(spec * np.exp(1j * phase), n=len(x), axis=1)


def screen_nonstationarity(
    x: np.ndarray, window: int = WINDOW, threshold: float = THRESHOLD, seed: int = 0
) -> dict[str, Any]:
    """Correlation of the moving variance with time, per region and for the subject.

    Parameters
    ----------
    x : np.ndarray, shape (T, N)
        NaN columns (empty regions) are ignored (reported as None).

    Returns
    -------
    dict
        ``window``, ``threshold``, ``region_corr`` (N floats or None), ``region_flag`` (N bools),
        ``subject_corr``, ``flagged`` (subject-level bool: the paper's rule), ``subject_p``
        (share of ``N_SURROGATES`` stationary surrogates at least as extreme, +1 smoothed).
    """
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x).any(axis=0)
    r = _corr_with_time(moving_variance(x[:, ok], window))
    region_corr: list[float | None] = [None] * x.shape[1]
    for i, val in zip(np.flatnonzero(ok), r, strict=True):
        region_corr[i] = float(val)
    subject_corr, subject_p = 0.0, 1.0
    if ok.any():
        both = np.concatenate([x[None, :, ok], _surrogates(x[:, ok], N_SURROGATES, seed)])
        corr = _corr_with_time(moving_variance(both, window).mean(axis=-1, keepdims=True))[:, 0]
        subject_corr = float(corr[0])
        subject_p = float((1 + np.sum(np.abs(corr[1:]) >= abs(corr[0]))) / (1 + N_SURROGATES))
    return {
        "window": int(window),
        "threshold": float(threshold),
        "region_corr": region_corr,
        "region_flag": [c is not None and abs(c) > threshold for c in region_corr],
        "subject_corr": subject_corr,
        "flagged": bool(abs(subject_corr) > threshold),
        "subject_p": subject_p,
    }
