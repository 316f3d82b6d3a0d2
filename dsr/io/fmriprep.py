"""Region time series from fMRIPrep derivatives with nilearn maskers and ``load_confounds``.

Confounds either are regressed out by the masker (``confounds_mode="regress"``) or are kept as
z-scored nuisance regressors ``r_t`` of shape ``(T, P)`` for the observation model
(``"nuisance"``). Scrubbing is off by default: deleting volumes breaks the fixed time step.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.interfaces.fmriprep import load_confounds
from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker

from dsr._validation import check_choice
from dsr.errors import DsrInputError
from dsr.io.atlas import atlas_region_ids, check_atlas_space, load_atlas, read_label_names
from dsr.io.bids import BOLD_SUFFIX, FmriprepRun, parse_entities, read_tr
from dsr.io.result import ExtractionResult
from dsr.io.screening import screen_nonstationarity

DEFAULT_STRATEGY = ("motion", "wm_csf", "high_pass")
MASKERS = {"labels": NiftiLabelsMasker, "maps": NiftiMapsMasker}
CONFOUNDS_MODES = {
    "regress": "regressed out of the signals by the masker",
    "nuisance": "kept as z-scored regressors r_t (T, P) for the model",
}


def run_from_path(bold: str | Path) -> FmriprepRun:
    """Build an :class:`FmriprepRun` from a ``*_desc-preproc_bold.nii.gz`` path."""
    bold = Path(bold)
    ent = parse_entities(bold.name)
    if not bold.name.endswith(BOLD_SUFFIX) or "sub" not in ent:
        raise DsrInputError(f"{bold}: not an fMRIPrep 'sub-*_..{BOLD_SUFFIX}' file name")
    keep = [f"{k}-{ent[k]}" for k in ("sub", "ses", "task", "acq", "run") if k in ent]
    return FmriprepRun(
        ent["sub"],
        ent.get("ses"),
        ent.get("task", ""),
        ent.get("run"),
        ent.get("space", ""),
        bold,
        bold.with_name(bold.name.replace(".nii.gz", ".json")),
        bold.parent / ("_".join(keep) + "_desc-confounds_timeseries.tsv"),
    )


def _load_run_confounds(run: FmriprepRun, n_vol: int, strategy, confound_kwargs: dict):
    """``load_confounds`` for one run, with the length checked against the BOLD image."""
    try:
        conf, sample_mask = load_confounds(
            str(run.bold), strategy=tuple(strategy), **confound_kwargs
        )
    except (ValueError, FileNotFoundError) as exc:
        raise DsrInputError(
            f"confounds for {run.bold} (expected {run.confounds}) could not be loaded with "
            f"strategy {list(strategy)}: {exc}"
        ) from exc
    if len(conf) != n_vol:
        raise DsrInputError(
            f"confounds {run.confounds} have {len(conf)} rows but BOLD {run.bold} has {n_vol} "
            "volumes; they must come from the same fMRIPrep run"
        )
    excluded = [] if sample_mask is None else sorted(set(range(n_vol)) - set(map(int, sample_mask)))
    return conf, excluded


def _nuisance(conf) -> tuple[np.ndarray, list[str]]:
    """z-score confound columns (ddof=1), dropping constant ones; ``(T, P)`` float32 + names."""
    values = np.nan_to_num(conf.to_numpy(dtype=np.float64))
    sd = values.std(axis=0, ddof=1)
    keep = sd > 1e-12
    z = (values[:, keep] - values[:, keep].mean(axis=0)) / sd[keep]
    return z.astype(np.float32), [c for c, k in zip(conf.columns, keep, strict=True) if k]


def _place_columns(signals, masker, kind, ids, nonfinite, run) -> tuple[np.ndarray, list[int]]:
    """Put the masker's columns under the atlas ids; empty regions become NaN columns."""
    if kind == "labels":
        got = [int(v) for k, v in masker.region_ids_.items() if k != "background"]
    else:
        got = list(ids)
    out = np.full((signals.shape[0], len(ids)), np.nan)
    out[:, [ids.index(g) for g in got]] = signals
    flat = np.nanstd(out, axis=0) < 1e-8
    if nonfinite and flat.any():
        bad = [ids[i] for i in np.flatnonzero(flat)]
        raise DsrInputError(
            f"BOLD {run.bold}: region(s) {bad} contain only NaN/Inf voxels; fix the image "
            "(e.g. re-run fMRIPrep) or use an atlas without these regions"
        )
    out[:, flat] = np.nan
    empty = [ids[i] for i in range(len(ids)) if flat[i] or ids[i] not in got]
    return out, empty


class _Atlas(NamedTuple):
    """An atlas ready for one run: image, kind, region ids and names, notes of the space check."""

    img: nib.Nifti1Image
    kind: str
    ids: list[int]
    names: list[str]
    notes: list[str]


class _Confounds(NamedTuple):
    """One run's confounds: table (T, C), censored volumes, nuisance regressors (T, P) + names."""

    table: pd.DataFrame | None
    censored: list[int]
    nuisance: np.ndarray | None
    nuisance_names: list[str]


def _open_bold(run: FmriprepRun, tr_s: float | None) -> tuple[float, nib.Nifti1Image]:
    """TR (s) and the 4-D BOLD image of a run, with missing files and wrong shapes as errors."""
    if not run.bold.is_file():
        raise DsrInputError(f"BOLD file {run.bold} not found")
    tr = read_tr(run.sidecar, tr_s)
    bold_img = nib.load(run.bold)
    if bold_img.ndim != 4:
        raise DsrInputError(f"BOLD {run.bold}: {bold_img.ndim}-D image; expected 4-D (x, y, z, T)")
    return tr, bold_img


def _open_atlas(atlas, labels, bold_img, run: FmriprepRun) -> _Atlas:
    """Load the atlas and its names and check it against the BOLD grid, warning if resampled."""
    atlas_img, kind = load_atlas(atlas)
    ids = atlas_region_ids(atlas_img, kind)
    names = read_label_names(labels, ids, kind)
    notes = check_atlas_space(atlas_img, bold_img, atlas, run.bold)
    for note in notes:
        # stacklevel 3: the warning points at the caller of extract_fmriprep_subject
        warnings.warn(note, UserWarning, stacklevel=3)
    return _Atlas(atlas_img, kind, ids, names, notes)


def _run_confounds(run: FmriprepRun, n_vol: int, strategy, mode: str, kwargs: dict) -> _Confounds:
    """Confounds of one run by ``strategy``, with nuisance regressors in ``"nuisance"`` mode."""
    table, censored = _load_run_confounds(run, n_vol, strategy, kwargs)
    nuisance, nuisance_names = _nuisance(table) if mode == "nuisance" else (None, [])
    return _Confounds(table, censored, nuisance, nuisance_names)


def _fit_masker(atl: _Atlas, bold_img, regress, tr: float, filters: dict):
    """Masker fitted on the run; returns it, the signals (T, n) and nilearn's warning messages."""
    masker = MASKERS[atl.kind](atl.img, t_r=tr, **filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signals = masker.fit_transform(bold_img, confounds=regress)
    return masker, signals, [str(w.message) for w in caught]


def _extraction_meta(
    run, atlas, labels, tr, n_vol, atl: _Atlas, conf: _Confounds, *, empty, cleaning, messages
) -> dict:
    """JSON metadata of one extraction (everything but the non-stationarity screen)."""
    cleaning = {
        **cleaning,
        "confound_columns": list(conf.table.columns) if conf.table is not None else [],
        "nuisance_columns": conf.nuisance_names,
        "censored_volumes": conf.censored,
    }
    return {
        "subject": run.subject,
        "run": run.name,
        "source": "fmriprep",
        "files": {
            "bold": str(run.bold),
            "sidecar": str(run.sidecar),
            "confounds": str(run.confounds) if conf.table is not None else None,
            "atlas": str(atlas),
            "labels": str(labels) if labels else None,
        },
        "tr_s": tr,
        "n_volumes": int(n_vol),
        "atlas_kind": atl.kind,
        "region_ids": atl.ids,
        "region_names": atl.names,
        "empty_regions": empty,
        "cleaning": cleaning,
        "atlas_resampled": bool(atl.notes),
        "warnings": atl.notes + messages,
    }


def extract_fmriprep_subject(
    run: FmriprepRun | str | Path,
    atlas: str | Path,
    labels: str | Path | None = None,
    *,
    tr_s: float | None = None,
    confounds_strategy: tuple[str, ...] | None = DEFAULT_STRATEGY,
    confounds_mode: str = "regress",
    motion: str = "basic",
    wm_csf: str = "basic",
    confound_kwargs: dict[str, Any] | None = None,
    detrend: bool = False,
    low_pass: float | None = None,
    high_pass: float | None = None,
    screen: bool = True,
) -> ExtractionResult:
    """Extract ``(T, N)`` region signals of one fMRIPrep run.

    Parameters
    ----------
    run : FmriprepRun or path
        A run from :func:`find_fmriprep_runs` or a ``*_desc-preproc_bold.nii.gz`` path.
    atlas : path
        3-D labels NIfTI (``NiftiLabelsMasker``) or 4-D maps NIfTI (``NiftiMapsMasker``).
    labels : path, optional
        TSV with columns ``index``, ``name``.
    tr_s : float, optional
        Overrides the sidecar's ``RepetitionTime`` (s). Without either: error.
    confounds_strategy : tuple of str or None
        ``load_confounds`` strategy; None uses no confounds.
    confounds_mode : {"regress", "nuisance"}
    motion, wm_csf : str
        ``load_confounds`` models ("basic", "derivatives", "power2", "full").
    confound_kwargs : dict, optional
        Further ``load_confounds`` arguments (e.g. ``scrub``, ``fd_threshold``).
    detrend, low_pass, high_pass : masker cleaning options (Hz for the filters).
    screen : bool
        Run the non-stationarity screen (window 40, |r| > 0.16).

    Returns
    -------
    ExtractionResult
        ``timeseries`` (T, N) float32 with one column per atlas region (NaN if empty here),
        ``confounds`` (T, P) in nuisance mode else None, and ``meta``.
    """
    run = run if isinstance(run, FmriprepRun) else run_from_path(run)
    check_choice("confounds_mode", confounds_mode, CONFOUNDS_MODES)
    tr, bold_img = _open_bold(run, tr_s)
    n_vol = bold_img.shape[3]
    atl = _open_atlas(atlas, labels, bold_img, run)
    conf = _Confounds(None, [], None, [])
    if confounds_strategy:
        kwargs = {"motion": motion, "wm_csf": wm_csf, **(confound_kwargs or {})}
        conf = _run_confounds(run, n_vol, confounds_strategy, confounds_mode, kwargs)
    filters = {
        "standardize": "zscore_sample",
        "detrend": detrend,
        "low_pass": low_pass,
        "high_pass": high_pass,
    }
    regress = conf.table if confounds_mode == "regress" else None
    masker, signals, messages = _fit_masker(atl, bold_img, regress, tr, filters)
    nonfinite = any("Non-finite" in m for m in messages)
    ts, empty = _place_columns(signals, masker, atl.kind, atl.ids, nonfinite, run)
    if len(empty) == len(atl.ids):
        raise DsrInputError(f"BOLD {run.bold}: every atlas region is empty; check atlas {atlas}")
    cleaning = {
        **filters,
        "confounds_strategy": list(confounds_strategy or []),
        "confounds_mode": confounds_mode,
        "motion": motion,
        "wm_csf": wm_csf,
    }
    meta = _extraction_meta(
        run, atlas, labels, tr, n_vol, atl, conf, empty=empty, cleaning=cleaning, messages=messages
    )
    meta["nonstationarity"] = screen_nonstationarity(ts) if screen else None
    return ExtractionResult(ts.astype(np.float32), conf.nuisance, meta)
