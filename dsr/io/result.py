"""The common output of every reader: a ``(T, N)`` series, optional confounds, JSON metadata.

``save_extraction`` writes ``timeseries.npy``, ``confounds.npy`` and ``meta.json``
atomically; ``load_extraction`` reads them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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

    No regressors are written as a (T, 0) ``confounds.npy``, so the set of files is fixed (the
    workflow's outputs). Each file is written to a temporary file in ``out_dir`` and renamed, so a
    crash never leaves a half-written output. Returns the written paths by name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"timeseries": out_dir / "timeseries.npy", "confounds": out_dir / "confounds.npy"}
    write_npy(paths["timeseries"], result.timeseries.astype(np.float32))
    conf = np.zeros((len(result.timeseries), 0)) if result.confounds is None else result.confounds
    write_npy(paths["confounds"], conf.astype(np.float32))
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
