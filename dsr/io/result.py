"""The common output of every reader: a ``(T, N)`` series, optional confounds, JSON metadata.

``save_extraction`` writes ``timeseries.npy``, ``confounds.npy`` (when present) and ``meta.json``
atomically; ``align_regions`` gives a cohort the same columns everywhere, matched by region id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dsr.atomic import write_json, write_npy
from dsr.errors import DsrInputError


@dataclass
class ExtractionResult:
    """One subject's extracted data.

    Attributes
    ----------
    timeseries : np.ndarray, shape (T, N), float32
        Region/ROI signals; time is axis 0. A region empty in this subject is a NaN column.
    confounds : np.ndarray, shape (T, P), float32, or None
        Nuisance regressors ``r_t`` for the model (``confounds_mode="nuisance"``), z-scored.
    meta : dict
        JSON-serialisable: ``subject``, source files, ``tr_s`` or ``fs_hz``, ``region_ids``,
        ``region_names``, cleaning settings, ``empty_regions``, ``nonstationarity``, ``warnings``.
    """

    timeseries: np.ndarray
    confounds: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_extraction(result: ExtractionResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``timeseries.npy`` (T, N) float32, ``confounds.npy`` (T, P) and ``meta.json``.

    Each file is written to a temporary file in ``out_dir`` and renamed, so a crash never leaves a
    half-written output. Returns the written paths by name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"timeseries": out_dir / "timeseries.npy"}
    write_npy(paths["timeseries"], result.timeseries.astype(np.float32))
    if result.confounds is not None:
        paths["confounds"] = out_dir / "confounds.npy"
        conf = result.confounds.astype(np.float32)
        write_npy(paths["confounds"], conf)
    paths["meta"] = out_dir / "meta.json"
    write_json(paths["meta"], result.meta)
    return paths


def load_extraction(out_dir: str | Path) -> ExtractionResult:
    """Read back what :func:`save_extraction` wrote; a (T, 0) ``confounds.npy`` reads as None."""
    out_dir = Path(out_dir)
    if not (out_dir / "timeseries.npy").is_file():
        raise DsrInputError(f"{out_dir}: no timeseries.npy; run the extract step first")
    path = out_dir / "confounds.npy"
    conf = np.load(path) if path.is_file() else None
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    return ExtractionResult(
        np.load(out_dir / "timeseries.npy"), None if conf is None or conf.size == 0 else conf, meta
    )


def align_regions(
    results: list[ExtractionResult],
) -> tuple[list[ExtractionResult], dict[str, Any]]:
    """Keep the regions present (not all-NaN) in every subject, in one column order.

    Regions are matched by ``meta["region_ids"]``. A region missing or empty in any subject is
    dropped from all of them.

    Returns
    -------
    aligned : list of ExtractionResult
        Same subjects, each with the common columns ``(T_s, N_common)`` and updated meta.
    report : dict
        ``kept_ids``, ``dropped`` (list of ``{"region_id", "region_name", "missing_in"}``).
    """
    if not results:
        raise DsrInputError("align_regions: got no extraction results; extract subjects first")
    present, names = [], {}
    for res in results:
        ids = res.meta["region_ids"]
        names.update(zip(ids, res.meta["region_names"], strict=True))
        ok = ~np.isnan(res.timeseries).all(axis=0)
        present.append({rid for rid, keep in zip(ids, ok, strict=True) if keep})
    first_ids = results[0].meta["region_ids"]
    all_ids = list(dict.fromkeys(first_ids + sorted(set().union(*present) - set(first_ids))))
    kept = [rid for rid in all_ids if all(rid in p for p in present)]
    if not kept:
        raise DsrInputError("align_regions: no region is present in every subject; check the atlas")
    subjects = [r.meta.get("subject") for r in results]
    dropped = [
        {
            "region_id": rid,
            "region_name": names.get(rid, str(rid)),
            "missing_in": [s for s, p in zip(subjects, present, strict=True) if rid not in p],
        }
        for rid in all_ids
        if rid not in kept
    ]
    aligned = []
    for res in results:
        cols = [res.meta["region_ids"].index(rid) for rid in kept]
        meta = dict(res.meta, region_ids=kept, region_names=[names[r] for r in kept])
        meta["cohort_dropped_regions"] = dropped
        aligned.append(replace(res, timeseries=res.timeseries[:, cols], meta=meta))
    return aligned, {"kept_ids": kept, "dropped": dropped}
