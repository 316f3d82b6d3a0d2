"""Evaluation of a fitted ensemble (spec section 5): free runs, D_stsp, D_H, PE_n, Lyapunov
spectra, and the ``metrics.tsv`` / ``summary.json`` outputs of a run (model selection and the
summary come from :mod:`dsr.analysis.selection`).

Models are scored as one batch: latent trajectories are ``(T, E, K, M)`` (K free runs per model),
subjects of different length are NaN-padded on the time axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dsr._validation import check_confounds, check_positive, check_timeseries
from dsr.analysis.free_runs import (
    analysis_setup,
    escaped_runs,
    free_run_scores,
    initial_states,
    stack_per_model,
)
from dsr.analysis.lyapunov import (
    average_finite,
    kaplan_yorke_dimension,
    lyapunov_spectra,
    per_second,
)
from dsr.analysis.metrics import power_spectrum_error, state_space_divergence
from dsr.analysis.prediction import prediction_error
from dsr.analysis.selection import select_models, summarise
from dsr.atomic import write_json, write_npy, write_text
from dsr.errors import DsrInputError
from dsr.signal.deconvolution import sliding_deconvolve, wiener_deconvolve
from dsr.training.ensemble import load_ensemble
from dsr.training.windows import train_length


@dataclasses.dataclass
class SubjectData:
    """One subject's series: training part ``x`` (T, N) and an optional test part that follows it."""

    x: np.ndarray
    r: np.ndarray | None = None
    x_test: np.ndarray | None = None
    r_test: np.ndarray | None = None


@dataclasses.dataclass
class Evaluation:
    """``table``: one row per model; ``summary``: JSON-ready dict per subject; ``spectra`` (E, M)."""

    table: pd.DataFrame
    summary: dict
    spectra: np.ndarray


def _subject(sid: str, value, test_fraction: float) -> SubjectData:
    """Checked data of one subject; a whole series without ``x_test`` is split as in the fit."""
    fields = [f.name for f in dataclasses.fields(SubjectData)]
    if isinstance(value, Mapping) and (set(value) - set(fields) or "x" not in value):
        raise DsrInputError(
            f"subject {sid!r}: data keys must be 'x' and optionally {fields[1:]}; got {sorted(value)}"
        )
    v = (
        value
        if isinstance(value, SubjectData)
        else (SubjectData(**value) if isinstance(value, Mapping) else SubjectData(value))
    )
    if v.x_test is None and v.r_test is not None:
        raise DsrInputError(f"subject {sid!r}: test confounds given without test data (x_test)")
    x = check_timeseries(v.x, name=f"subject {sid!r}")
    xt = None if v.x_test is None else check_timeseries(v.x_test, name=f"test data of {sid!r}")
    if xt is not None and xt.shape[1] != x.shape[1]:
        raise DsrInputError(
            f"test data of {sid!r} has {xt.shape[1]} regions, training {x.shape[1]}"
        )
    if xt is not None and (v.r is None) != (v.r_test is None):
        raise DsrInputError(f"subject {sid!r}: give confounds for both train and test parts")
    r = None if v.r is None else check_confounds(v.r, len(x), name=f"confounds of {sid!r}")
    rt = (
        None
        if v.r_test is None
        else check_confounds(v.r_test, len(xt), name=f"test confounds of {sid!r}")
    )
    if xt is None and test_fraction > 0:
        n = train_length(len(x), test_fraction)
        return SubjectData(x[:n], None if r is None else r[:n], x[n:], None if r is None else r[n:])
    return SubjectData(x, r, xt, rt)


def _joined(train: np.ndarray | None, test: np.ndarray | None) -> np.ndarray | None:
    """Training part followed by the test part (if any) on the time axis."""
    return train if train is None or test is None else np.vstack([train, test])


def _train_stacks(subj, index, n_time, kernel, floor, cut_left, cut_right):
    """Training data, its deconvolution, confounds and theirs (or None), each stacked per model
    ``(n_time, E, F)`` (NaN-padded); ``index`` (E,) is the subject of each model."""
    dec = [wiener_deconvolve(s.x, kernel, floor, cut_left, cut_right) for s in subj]
    rdec = [
        None if s.r is None else wiener_deconvolve(s.r, kernel, floor, cut_left, cut_right)
        for s in subj
    ]
    arrays = ([s.x for s in subj], dec, [s.r for s in subj], rdec)
    return tuple(stack_per_model(a, n_time, index) for a in arrays)


def _pe_test(model, decoder, full, rfull, n_train, index, pe_steps, kernel, floor, cut_right):
    """PE_n (n = ``pe_steps``) on the test parts, from the leak-free sliding deconvolution, (E,).

    ``full`` and ``rfull`` are per-subject train+test series (T_s, N) and (T_s, P) (or None),
    ``n_train`` (S,) the training lengths, ``index`` (E,) the subject of each model."""
    pairs, rpairs = list(zip(full, n_train, strict=True)), list(zip(rfull, n_train, strict=True))
    x_te = [np.where(np.arange(len(f))[:, None] < n, np.nan, f) for f, n in pairs]
    xd_te = [sliding_deconvolve(f, n, pe_steps, cut_right, kernel, floor) for f, n in pairs]
    rd_te = [
        None if r is None else sliding_deconvolve(r, n, pe_steps, cut_right, kernel, floor)
        for r, n in rpairs
    ]
    t_max = max(len(f) for f in full)
    stacked = [stack_per_model(a, t_max, index) for a in (x_te, xd_te, rfull, rd_te)]
    return prediction_error(model, decoder, *stacked, pe_steps, 0, 0)


def _lyapunov_columns(spectra: np.ndarray, n_finite: np.ndarray, tr_s, fs_hz) -> dict:
    """``lambda_max`` (per step), ``lambda_max_per_s`` (with ``tr_s``/``fs_hz``), ``ky_dim`` and
    ``lyap_n_finite`` (initial conditions averaged) columns, (E,) each, from spectra (E, M)."""
    columns = {"lambda_max": spectra[:, 0], "lyap_n_finite": n_finite}
    if tr_s is not None or fs_hz is not None:
        columns["lambda_max_per_s"] = per_second(spectra[:, 0], tr_s=tr_s, fs_hz=fs_hz)
    columns["ky_dim"] = kaplan_yorke_dimension(spectra)
    return columns


def evaluate_ensemble(
    fitted,
    data: Mapping,
    *,
    n_trajectories: int = 100,
    perturbation_sd=0.01,
    pe_steps: int = 10,
    gmm_scaling: float = 1.0,
    smoothing: float = 1.0,
    lyap_steps: int = 10_000,
    lyap_transient: int = 1000,
    lyap_initial: int = 4,
    escape_horizon: float = 10.0,
    tr_s: float | None = None,
    fs_hz: float | None = None,
    chunk: int = 10,
    seed: int = 0,
    select_fraction: float | None = None,
) -> Evaluation:
    """Score every model of a fitted ensemble against its subject's data.

    ``data`` maps each subject id of the ensemble to a :class:`SubjectData` (or a dict with its
    fields, or a bare (T, N) array). Free runs start from ``d`` at index ``cut_left`` perturbed by
    ``N(0, perturbation_sd^2)`` (``n_trajectories`` per model), cover train+test, are decoded with
    the full ``r`` and split at the train/test boundary; D_stsp (GMM variance ``gmm_scaling``) and
    D_H (``smoothing``) are averaged over the runs. PE_n on the training part uses the whole-series
    deconvolution, on the test part the leak-free sliding one. The Lyapunov spectrum (per step; per
    second with ``tr_s``/``fs_hz``) starts from the first ``lyap_initial`` of the same states.

    Held-out data: a subject given as a whole series (no ``x_test``) is split as the fit split it
    (``fitted.config['test_fraction']``): the fit trained on the first part, the rest is scored.
    The free runs are also iterated ``escape_horizon`` times the series length; a model with a run
    that goes non-finite or leaves the data's range by a wide margin is ``escaped``. Selection
    (:func:`dsr.analysis.selection.select_models`): PE_1 on the training part <= 1, not escaped,
    then ranked by held-out D_stsp and D_H (training scores when there is no test part);
    ``select_fraction`` f keeps the best 2f by D_stsp, then the better half of those by D_H
    (``keep_fraction``).
    """
    check_positive("n_trajectories", n_trajectories, integer=True)
    missing = [s for s in fitted.subject_ids if s not in data]
    if missing:
        raise DsrInputError(f"no data for subject(s) {missing}; pass one entry per subject id")
    test_fraction = float(fitted.config.get("test_fraction", 0.0))
    subj = [_subject(s, data[s], test_fraction) for s in fitted.subject_ids]
    idx = np.asarray(fitted.model_subject, dtype=int)
    model, decoder, kernel, floor, cl, cr = analysis_setup(fitted)
    full = [_joined(s.x, s.x_test) for s in subj]
    rfull = [_joined(s.r, s.r_test) for s in subj]
    n_train = np.array([len(s.x) for s in subj])
    t_max = max(len(f) for f in full)
    x_tr, xd_tr, r_tr, rd_tr = _train_stacks(subj, idx, t_max, kernel, floor, cl, cr)
    table = {
        "model": np.arange(len(idx)),
        "subject": [fitted.subject_ids[i] for i in idx],
        "restart": np.asarray(fitted.model_restart),
        "status": list(fitted.status),
        **{
            f"pe{n}_train": prediction_error(model, decoder, x_tr, xd_tr, r_tr, rd_tr, n, cl, cr)
            for n in sorted({1, pe_steps})
        },
    }
    if any(s.x_test is not None for s in subj):
        table[f"pe{pe_steps}_test"] = _pe_test(
            model, decoder, full, rfull, n_train, idx, pe_steps, kernel, floor, cr
        )
    rd0 = None if rd_tr is None else rd_tr[cl]
    z0 = initial_states(decoder, xd_tr[cl], rd0, n_trajectories, perturbation_sd, seed)
    table |= free_run_scores(
        model, decoder, z0, full, rfull, n_train, idx, chunk, gmm_scaling, smoothing, seed
    )
    low, high = (np.array([fn(f, axis=0) for f in full])[idx] for fn in (np.nanmin, np.nanmax))
    horizon = int(np.ceil(escape_horizon * t_max))
    table["escaped"], table["n_bounded"] = escaped_runs(model, decoder, z0, low, high, horizon)
    spectra, n_finite = average_finite(
        lyapunov_spectra(
            model, z0=z0[:, :lyap_initial], n_steps=lyap_steps, transient=lyap_transient
        )
    )
    table |= _lyapunov_columns(spectra, n_finite, tr_s, fs_hz)
    segment = "test" if np.isfinite(table["dstsp_test"]).any() else "train"
    frame = select_models(
        pd.DataFrame(table), pe_key="pe1_train", segment=segment, keep_fraction=select_fraction
    )
    summary = summarise(frame)
    for sid, s in zip(fitted.subject_ids, subj, strict=True):
        summary[sid]["data_floor"] = _data_floor(s, gmm_scaling, smoothing, seed)
        summary[sid]["n_train"] = len(s.x)  # the split: samples [n_train:] are held out
    return Evaluation(frame, summary, spectra)


def _data_floor(s: SubjectData, gmm_scaling, smoothing, seed) -> dict:
    """The scores of the data itself: its training part taken as the "model" of its test part.

    A model whose held-out D_stsp / D_H come near these is as close to the held-out data as the
    subject's own earlier recording; None without a test part."""
    if s.x_test is None:
        return {"dstsp": None, "dh": None}
    train = s.x[:, None, :]
    n = min(len(s.x), len(s.x_test))  # D_H compares equal lengths: the last n training samples
    dstsp = state_space_divergence(s.x_test, train, gmm_scaling=gmm_scaling, seed=seed)
    dh = power_spectrum_error(s.x_test[:n], train[-n:], smoothing)
    return {"dstsp": float(dstsp[0]), "dh": float(dh[0])}


def _model_file(run_dir: Path) -> Path:
    for candidate in (run_dir / "fit" / "model.pt", run_dir / "model.pt", run_dir):
        if candidate.is_file():
            return candidate
    raise DsrInputError(f"no model.pt in {run_dir} or {run_dir / 'fit'}; run 'dsr fit' first")


def evaluate_run(run_dir, data: Mapping, out_dir=None, **kwargs) -> Evaluation:
    """Evaluate ``<run_dir>/fit/model.pt`` (or ``<run_dir>/model.pt``) and write, atomically,
    ``metrics.tsv``, ``summary.json`` and ``lyapunov.npy`` (E, M) to ``out_dir`` (default
    ``<run_dir>/evaluate``). ``kwargs`` go to :func:`evaluate_ensemble`."""
    run_dir = Path(run_dir)
    fitted = load_ensemble(_model_file(run_dir))
    result = evaluate_ensemble(fitted, data, **kwargs)
    out = Path(out_dir) if out_dir is not None else run_dir / "evaluate"
    write_text(out / "metrics.tsv", result.table.to_csv(sep="\t", index=False, na_rep="nan"))
    write_json(out / "summary.json", result.summary)
    write_npy(out / "lyapunov.npy", result.spectra)
    return result
