"""Non-stationarity screen: does a region's variance drift with time?

Following the convSSM paper's screen: the moving variance (window 40 samples) of each region is
correlated with time; ``|r| > 0.16`` flags the region. The subject statistic is the same correlation
for the region-averaged moving variance (our reading of the paper's subject-level criterion).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dsr.errors import DsrInputError

WINDOW = 40
THRESHOLD = 0.16


def moving_variance(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Variance over a sliding window of ``window`` samples; ``(T, N) -> (T - window + 1, N)``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] < window + 2:
        raise DsrInputError(
            f"non-stationarity screen: {x.shape[0]} time points is too short for a window of "
            f"{window}; use a shorter window or skip the screen"
        )
    return sliding_window_view(x, window, axis=0).var(axis=-1, ddof=1)


def _corr_with_time(v: np.ndarray) -> np.ndarray:
    t = np.arange(v.shape[0], dtype=np.float64)
    t = (t - t.mean()) / t.std()
    vc = v - v.mean(axis=0)
    sd = vc.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (t[:, None] * vc).mean(axis=0) / sd
    return np.where(sd > 0, r, 0.0)


def screen_nonstationarity(
    x: np.ndarray, window: int = WINDOW, threshold: float = THRESHOLD
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
        ``subject_corr``, ``flagged`` (subject-level bool).
    """
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x).any(axis=0)
    mv = moving_variance(x[:, ok], window)
    r = _corr_with_time(mv)
    region_corr: list[float | None] = [None] * x.shape[1]
    for i, val in zip(np.flatnonzero(ok), r, strict=True):
        region_corr[i] = float(val)
    subject_corr = float(_corr_with_time(mv.mean(axis=1, keepdims=True))[0]) if ok.any() else 0.0
    return {
        "window": int(window),
        "threshold": float(threshold),
        "region_corr": region_corr,
        "region_flag": [c is not None and abs(c) > threshold for c in region_corr],
        "subject_corr": subject_corr,
        "flagged": bool(abs(subject_corr) > threshold),
    }


def exclude_nonstationary(results: list) -> tuple[list, list[str]]:
    """Drop subjects whose ``meta["nonstationarity"]["flagged"]`` is true.

    Returns the kept results and the excluded subject ids (for the cohort report).
    """
    kept, excluded = [], []
    for res in results:
        flagged = res.meta.get("nonstationarity", {}).get("flagged", False)
        (excluded.append(res.meta.get("subject", "?")) if flagged else kept.append(res))
    if not kept:
        raise DsrInputError(
            f"every subject ({excluded}) failed the non-stationarity screen; "
            "disable the exclusion or raise the threshold"
        )
    return kept, excluded
