"""Regions across a cohort: the same columns for every subject, and the check before a fit.

``align_regions`` keeps the regions present in every subject, matched by region id;
``region_table`` lists what it kept and dropped; ``check_no_empty_regions`` refuses a series with
an empty (all-NaN) region and names the fix.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsr.errors import DsrInputError
from dsr.io.result import ExtractionResult


def align_regions(
    results: list[ExtractionResult],
) -> tuple[list[ExtractionResult], dict[str, Any]]:
    """Keep the regions present (not all-NaN) in every subject, in one column order.

    Regions are matched by ``meta["region_ids"]``. A region missing or empty in any subject is
    dropped from all of them.

    Returns
    -------
    aligned : list of ExtractionResult
        Same subjects, each with the common columns ``(T_s, N_common)`` and updated meta
        (``region_ids``, ``region_names``, no ``empty_regions``, ``cohort_dropped_regions``).
    report : dict
        ``kept_ids``, ``kept_names``, ``dropped`` (list of ``{"region_id", "region_name",
        "missing_in"}``).
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
    aligned, kept_names = [], [names[r] for r in kept]
    for res in results:
        cols = [res.meta["region_ids"].index(rid) for rid in kept]
        meta = dict(res.meta, region_ids=kept, region_names=kept_names)
        meta["empty_regions"] = []
        if screen := res.meta.get("nonstationarity"):  # per-region lists follow the columns
            meta["nonstationarity"] = screen | {
                k: [screen[k][c] for c in cols] for k in ("region_corr", "region_flag")
            }
        meta["cohort_dropped_regions"] = dropped
        aligned.append(replace(res, timeseries=res.timeseries[:, cols], meta=meta))
    return aligned, {"kept_ids": kept, "kept_names": kept_names, "dropped": dropped}


def region_table(report: dict[str, Any]) -> pd.DataFrame:
    """``align_regions``'s report as a table: ``region_id``, ``region_name``, ``kept``,
    ``missing_in`` (comma-separated subjects without the region; empty for kept ones)."""
    kept = [
        {"region_id": r, "region_name": n, "kept": True, "missing_in": ""}
        for r, n in zip(report["kept_ids"], report["kept_names"], strict=True)
    ]
    dropped = [
        {"region_id": d["region_id"], "region_name": d["region_name"], "kept": False,
         "missing_in": ",".join(map(str, d["missing_in"]))}
        for d in report["dropped"]
    ]  # fmt: skip
    return pd.DataFrame(kept + dropped)


def check_no_empty_regions(extracted: ExtractionResult, extract_dir, subject: str) -> None:
    """Refuse a series with an empty (all-NaN) region, naming the region and the fix."""
    empty = np.isnan(extracted.timeseries).all(axis=0)
    if not empty.any():
        return
    meta = extracted.meta
    ids, names = meta.get("region_ids", []), meta.get("region_names", [])
    which = [f"{ids[i]} ({names[i]})" for i in np.flatnonzero(empty)] if names else []
    raise DsrInputError(
        f"subject {subject}: region(s) {', '.join(which) or np.flatnonzero(empty).tolist()} are "
        f"empty in {Path(extract_dir) / 'timeseries.npy'} (e.g. outside the subject's brain mask); "
        "set extract.align_regions: true in config.yaml to keep the regions every subject has, "
        "or use an atlas without them"
    )
