"""A cohort's distance matrix (e.g. cross-subject D_stsp, not symmetric) seen as points:
:func:`symmetric_distance`, :func:`classical_mds` (2-D embedding) and :func:`cluster`
(average linkage, scipy)."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform


def symmetric_distance(d: np.ndarray) -> np.ndarray:
    """``(D + Dᵀ)/2`` off the diagonal, 0 on it, negatives and NaN clipped to 0 / the max."""
    d = np.asarray(d, float)
    s = (d + d.T) / 2
    s = np.where(np.isfinite(s), s, np.nanmax(s[np.isfinite(s)]) if np.isfinite(s).any() else 0)
    s = np.clip(s, 0, None)
    np.fill_diagonal(s, 0)
    return s


def classical_mds(d: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS of a distance matrix ``(S, S)`` -> coordinates ``(S, k)``."""
    d = symmetric_distance(d)
    n = len(d)
    j = np.eye(n) - 1 / n
    b = -0.5 * j @ (d**2) @ j
    w, v = np.linalg.eigh(b)
    order = np.argsort(w)[::-1][:n_components]
    coords = v[:, order] * np.sqrt(np.clip(w[order], 0, None))
    if coords.shape[1] < n_components:
        coords = np.pad(coords, ((0, 0), (0, n_components - coords.shape[1])))
    return coords


def cluster(d: np.ndarray, n_clusters: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage clustering; returns (labels (S,), 1..k; linkage matrix)."""
    s = symmetric_distance(d)
    if len(s) < 2:
        return np.ones(len(s), int), np.zeros((0, 4))
    z = linkage(squareform(s, checks=False), method="average")
    return fcluster(z, t=min(n_clusters, len(s)), criterion="maxclust"), z
