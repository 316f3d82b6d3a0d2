"""The feature space of a hierarchical cohort model, made comparable across restarts.

A subject's features ``p_s`` are defined only up to an invertible linear map (``p_s T`` with the
group tensors ``T⁻¹ P_X`` is the same model), and every restart picks its own. What is not arbitrary
is where they put the subject in **parameter space**: ``θ_s = p_s · G`` (all materialised latent
parameters of subject s, flattened). Per restart, the centred ``θ_s`` (S, K) span at most P
directions; their principal-component scores, scaled to unit total variance, are canonical
coordinates of the features (an affine image of them, the same for every invertible ``T``). The
restarts' coordinates are rotated onto a reference restart (orthogonal Procrustes) and averaged:
the **consensus**. New subjects fitted by transfer are projected with the same maps.

A linear readout needs no consensus: an OLS readout of a restart's own coordinates is unchanged by
the map that makes its features arbitrary, so covariates are read out per restart and the
held-out predictions averaged over restarts (:func:`restarts_loo_r2`, :func:`restarts_predict`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

PARAMETERS = ("A", "W1", "W2", "h1", "h2")


def parameter_matrix(model) -> np.ndarray:
    """Materialised latent parameters of an ensemble (``A``, ``W1``, ``W2``, ``h1``, ``h2``)
    flattened per model -> ``(E, K)`` float64."""
    return np.concatenate(
        [
            getattr(model, n).detach().cpu().double().reshape(model.n_models, -1).numpy()
            for n in PARAMETERS
        ],
        axis=1,
    )


def per_restart(matrix: np.ndarray, n_restarts: int) -> np.ndarray:
    """Rows of a subject-major ``(S·R, ...)`` array as ``(R, S, ...)``."""
    return np.swapaxes(matrix.reshape(-1, n_restarts, *matrix.shape[1:]), 0, 1)


def _procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Orthogonal Q minimising ``‖source Q − target‖`` (both (S, k))."""
    u, _, vt = np.linalg.svd(source.T @ target)
    return u @ vt


@dataclasses.dataclass
class FeatureSpace:
    """Consensus coordinates of S subjects from R restarts' parameter matrices ``(R, S, K)``.

    ``coords`` (S, k): consensus over ``restarts`` (ordered by variance); ``per_restart``
    (R, S, k): every restart's canonical coordinates, rotated onto the consensus.
    """

    mean: np.ndarray  # (R, K)
    basis: np.ndarray  # (R, K, k), scaled so the cohort's coordinates have unit total variance
    rotation: np.ndarray  # (R, k, k)
    restarts: np.ndarray  # restarts averaged into the consensus
    coords: np.ndarray
    per_restart: np.ndarray
    spread: np.ndarray  # (R,) RMS distance of the subjects' parameters from their mean / its norm

    @classmethod
    def fit(cls, params: np.ndarray, n_dims: int, restarts=None) -> FeatureSpace:
        """``params`` (R, S, K); ``n_dims`` k (the number of features P: the rank of the centred
        parameters); ``restarts``: those to average (default all; the first is the reference)."""
        R, S, K = params.shape
        k = max(1, min(n_dims, S - 1, K))
        restarts = np.arange(R) if restarts is None or not len(restarts) else np.asarray(restarts)
        mean = params.mean(1)
        basis, spread = np.zeros((R, K, k)), np.zeros(R)
        for r in range(R):
            centred = np.nan_to_num(params[r] - mean[r])
            _, sv, vt = np.linalg.svd(centred, full_matrices=False)
            total = np.sqrt((sv**2).sum() / max(S - 1, 1)) or 1.0
            spread[r] = total / (np.linalg.norm(np.nan_to_num(mean[r])) or 1.0)
            basis[r, :, : min(k, len(sv))] = vt[:k].T / total
        local = np.einsum("rsk,rkj->rsj", np.nan_to_num(params - mean[:, None]), basis)
        ref = local[restarts[0]]
        rotation = np.stack([_procrustes(local[r], ref) for r in range(R)])
        for _ in range(3):  # refine the reference: the mean of the aligned selected restarts
            ref = np.einsum("rsk,rkj->rsj", local, rotation)[restarts].mean(0)
            rotation = np.stack([_procrustes(local[r], ref) for r in range(R)])
        aligned = np.einsum("rsk,rkj->rsj", local, rotation)
        consensus = aligned[restarts].mean(0)
        _, _, vt = np.linalg.svd(consensus - consensus.mean(0), full_matrices=False)
        final = vt.T  # principal axes of the consensus, largest variance first
        rotation = rotation @ final
        return cls(mean, basis, rotation, restarts, consensus @ final, aligned @ final, spread)

    def transform_per_restart(self, params: np.ndarray) -> np.ndarray:
        """Every restart's coordinates ``(R, S_new, k)`` of new subjects' parameters
        ``(R, S_new, K)`` (e.g. fitted by transfer to the same restarts), as ``per_restart``."""
        local = np.einsum("rsk,rkj->rsj", params - self.mean[:, None], self.basis)
        return np.einsum("rsk,rkj->rsj", local, self.rotation)

    def transform(self, params: np.ndarray) -> np.ndarray:
        """Consensus coordinates ``(S_new, k)`` of new subjects' parameters ``(R, S_new, K)``."""
        return self.transform_per_restart(params)[self.restarts].mean(0)


def _design(features: np.ndarray) -> np.ndarray:
    """OLS design matrix ``(n, k + 1)``: the features and an intercept column."""
    features = np.asarray(features, float)
    return np.c_[features, np.ones(len(features))]


def loo_predictions(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions ``ŷ_(−i)`` of an ordinary least-squares readout
    ``target ~ features`` (with intercept), shape of ``target``; NaN for rows with a non-finite
    value, and everywhere when fewer than ``n_features + 3`` rows are finite."""
    x = _design(features)
    y = np.asarray(target, float)
    ok = np.flatnonzero(np.isfinite(x).all(1) & np.isfinite(y))
    pred = np.full(len(y), np.nan)
    if len(ok) < x.shape[1] + 2:
        return pred
    for i in ok:
        keep = ok[ok != i]
        pred[i] = x[i] @ np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
    return pred


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    """``1 − Σ (y_i − ŷ_i)² / Σ (y_i − ȳ)²`` over the rows where the prediction is finite."""
    ok = np.isfinite(pred)
    if not ok.any():
        return float("nan")
    y = np.asarray(target, float)[ok]
    return float(1 - ((y - pred[ok]) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def loo_r2(features: np.ndarray, target: np.ndarray) -> float:
    """Leave-one-out cross-validated R² of an ordinary least-squares readout ``target ~ features``
    (with intercept): ``1 − Σ (y_i − ŷ_(−i))² / Σ (y_i − ȳ)²`` over the finite rows."""
    return _r2(loo_predictions(features, target), target)


def restarts_loo_predictions(per_restart: np.ndarray, target: np.ndarray, restarts) -> np.ndarray:
    """Leave-one-out predictions ``(S,)`` of the restarts' mean readout: every restart in
    ``restarts`` fits its own OLS readout on its own coordinates ``per_restart[r]`` (S, k), and
    the held-out subject's predictions are averaged. Each restart's readout is unchanged by the
    invertible map that makes its features arbitrary, so nothing is lost aligning restarts (the
    consensus is for looking)."""
    return np.mean([loo_predictions(per_restart[r], target) for r in restarts], axis=0)


def restarts_loo_r2(per_restart: np.ndarray, target: np.ndarray, restarts) -> float:
    """Leave-one-out R² of the restarts' mean readout (:func:`restarts_loo_predictions`)."""
    return _r2(restarts_loo_predictions(per_restart, target, restarts), target)


def restarts_predict(per_restart, target, restarts, new_per_restart) -> np.ndarray:
    """The restarts' mean readout, fitted on all S subjects, applied to new subjects:
    ``per_restart`` (R, S, k) and ``target`` (S,) fit; ``new_per_restart`` (R, S_new, k)
    -> predictions (S_new,)."""
    preds = []
    for r in restarts:
        coef = np.linalg.lstsq(_design(per_restart[r]), target, rcond=None)[0]
        preds.append(_design(new_per_restart[r]) @ coef)
    return np.mean(preds, axis=0)


def ward_clusters(coords: np.ndarray, n_clusters: int = 2) -> np.ndarray:
    """Ward-linkage clusters (labels 1..k) of points in a Euclidean feature space ``(S, k)``."""
    if len(coords) < 2:
        return np.ones(len(coords), int)
    return fcluster(
        linkage(coords, method="ward"), t=min(n_clusters, len(coords)), criterion="maxclust"
    )


def cluster_agreement(labels, truth) -> float:
    """Fraction of subjects whose 2-cluster label matches ``truth`` (best of the two labelings)."""
    a, b = np.asarray(labels), np.asarray(truth)
    same = np.mean((a == a[0]) == (b == b[0]))
    return float(max(same, 1 - same))


def select_restarts(table, min_fraction: float = 0.5) -> np.ndarray:
    """Restarts whose model is ``eligible`` (PE_1 ≤ 1, not escaped; ``selected`` in tables without
    that column) for at least ``min_fraction`` of the subjects (from an evaluation table with
    ``subject``, ``restart``, ``eligible``/``selected``, ``status``); if none, the restarts with
    status ok for every subject; sorted best first by median ``dstsp_test`` (or ``dstsp_train``).

    Eligibility, not the per-subject selection, decides: the consensus needs several restarts
    (single restarts place subjects noisily), and selection keeps only each subject's best few."""
    score = "dstsp_test" if np.isfinite(table.get("dstsp_test", np.nan)).any() else "dstsp_train"
    by = table.groupby("restart")
    frac = by["eligible" if "eligible" in table else "selected"].mean()
    keep = frac.index[frac >= min_fraction]
    if not len(keep):
        ok = by["status"].apply(lambda s: (s == "ok").all())
        keep = ok.index[ok]
    if not len(keep):
        keep = frac.index
    median = by[score].median().reindex(keep)
    return np.asarray(median.sort_values(na_position="last").index, dtype=int)
