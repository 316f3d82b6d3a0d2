"""Ca2+ imaging inputs: suite2p folders, NWB ``RoiResponseSeries``, plain arrays; ΔF/F; grouping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import percentile_filter

from dsr._validation import check_positive, check_timeseries
from dsr.errors import DsrInputError
from dsr.io.arrays import read_table
from dsr.io.result import ExtractionResult
from dsr.io.screening import screen_nonstationarity

NEUROPIL_COEF = 0.7


def _load_dict(path: Path) -> dict:
    obj = np.load(path, allow_pickle=True)
    return obj.item() if obj.dtype == object and obj.shape == () else {}


def _plane_fs(plane: Path) -> float | None:
    for name in ("ops.npy", "settings.npy"):
        if (plane / name).is_file():
            fs = _load_dict(plane / name).get("fs")
            if fs:
                return float(fs)
    return None


def read_suite2p(folder: str | Path, *, fs_hz: float | None = None) -> tuple[np.ndarray, dict]:
    """Neuropil-corrected cell traces ``F - 0.7 Fneu`` of a suite2p output folder.

    Reads every ``plane*/`` (or the folder itself if it holds ``F.npy``); keeps ROIs with
    ``iscell[:, 0] > 0.5``; transposes ROIs x T to ``(T, N)``; concatenates planes along ROIs.

    Returns
    -------
    traces : np.ndarray, shape (T, N)
    info : dict
        ``fs_hz``, ``rois`` (per plane: the kept suite2p ROI indices).
    """
    folder = Path(folder)
    planes = sorted(folder.glob("plane*")) or [folder]
    planes = [p for p in planes if (p / "F.npy").is_file()]
    if not planes:
        raise DsrInputError(f"{folder}: no suite2p output (plane*/F.npy); give the suite2p folder")
    traces, rois, rates = [], {}, set()
    for plane in planes:
        for name in ("Fneu.npy", "iscell.npy"):
            if not (plane / name).is_file():
                raise DsrInputError(
                    f"suite2p folder {plane}: {name} is missing; re-run suite2p or copy it "
                    "next to F.npy"
                )
        f, fneu = np.load(plane / "F.npy"), np.load(plane / "Fneu.npy")
        iscell = np.atleast_2d(np.load(plane / "iscell.npy"))
        if f.shape != fneu.shape or iscell.shape[0] != f.shape[0]:
            raise DsrInputError(
                f"suite2p folder {plane}: F {f.shape}, Fneu {fneu.shape}, iscell {iscell.shape} "
                "disagree on the number of ROIs"
            )
        keep = iscell[:, 0] > 0.5
        traces.append((f[keep] - NEUROPIL_COEF * fneu[keep]).T)
        rois[plane.name] = np.flatnonzero(keep).tolist()
        rates.add(_plane_fs(plane))
    lengths = {t.shape[0] for t in traces}
    if len(lengths) > 1:
        raise DsrInputError(f"suite2p folder {folder}: planes differ in length {sorted(lengths)}")
    fs = fs_hz or next((r for r in rates if r), None)
    if fs is None:
        raise DsrInputError(f"suite2p folder {folder}: no 'fs' in ops.npy/settings.npy; give fs_hz")
    x = np.concatenate(traces, axis=1)
    if x.shape[1] == 0:
        raise DsrInputError(f"suite2p folder {folder}: no ROI is classified as a cell (iscell)")
    return x, {"fs_hz": float(fs), "rois": rois}


def read_nwb(path: str | Path, *, series: str | None = None) -> tuple[np.ndarray, dict]:
    """A ``RoiResponseSeries`` (T x ROIs) of an NWB file and its sampling rate."""
    try:
        from pynwb import NWBHDF5IO
        from pynwb.ophys import RoiResponseSeries
    except ImportError as exc:
        raise DsrInputError(
            f"{path}: reading NWB needs pynwb; install it with `pip install dsr[nwb]`"
        ) from exc
    path = Path(path)
    if not path.is_file():
        raise DsrInputError(f"NWB file {path} not found")
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        found = {o.name: o for o in nwb.objects.values() if isinstance(o, RoiResponseSeries)}
        if not found or (series is not None and series not in found):
            raise DsrInputError(
                f"NWB file {path}: no RoiResponseSeries {series or ''!s}; found {sorted(found)}"
            )
        rrs = found[series] if series else found[sorted(found)[0]]
        x = np.asarray(rrs.data[:], dtype=np.float64)
        if rrs.rate is not None:
            fs = float(rrs.rate)
        else:
            fs = float(1.0 / np.median(np.diff(np.asarray(rrs.timestamps[:]))))
        return x, {"fs_hz": fs, "series": rrs.name}


def delta_f_over_f(
    f: np.ndarray, fs_hz: float, window_s: float = 60.0, percentile: float = 8.0
) -> np.ndarray:
    """ΔF/F with a running-percentile baseline ``F0`` over ``window_s`` seconds; ``(T, N)``."""
    check_positive("window_s", window_s)
    size = max(3, min(int(round(window_s * fs_hz)) | 1, f.shape[0]))
    f0 = percentile_filter(f, percentile, size=(size, 1), mode="nearest")
    if (f0 <= 0).any():
        cols = np.flatnonzero((f0 <= 0).any(axis=0)).tolist()
        raise DsrInputError(
            f"ΔF/F: baseline F0 <= 0 in ROI column(s) {cols[:10]}; use dff=False or check the "
            "neuropil correction"
        )
    return (f - f0) / f0


def group_rois(x: np.ndarray, n_groups: int) -> tuple[np.ndarray, list[list[int]]]:
    """Average consecutive ROIs into ``n_groups`` groups; ``(T, N) -> (T, n_groups)``."""
    check_positive("n_groups", n_groups, integer=True)
    if n_groups > x.shape[1]:
        raise DsrInputError(f"n_groups={n_groups} exceeds the {x.shape[1]} ROIs; use fewer groups")
    groups = [g.tolist() for g in np.array_split(np.arange(x.shape[1]), n_groups)]
    return np.stack([x[:, g].mean(axis=1) for g in groups], axis=1), groups


def _read_array(path: Path, fs_hz: float | None) -> tuple[np.ndarray, dict]:
    if fs_hz is None:
        raise DsrInputError(f"{path}: a plain array carries no frame rate; give fs_hz")
    return read_table(path)[0], {"fs_hz": float(fs_hz)}


READERS = {
    "suite2p": lambda p, fs_hz: read_suite2p(p, fs_hz=fs_hz),
    "nwb": lambda p, fs_hz: read_nwb(p),
    "array": _read_array,
}


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "suite2p"
    return "nwb" if path.suffix == ".nwb" else "array"


def extract_calcium(
    path: str | Path,
    *,
    fs_hz: float | None = None,
    fmt: str | None = None,
    dff: bool = True,
    dff_window_s: float = 60.0,
    dff_percentile: float = 8.0,
    n_groups: int | None = None,
    subject: str = "",
    screen: bool = True,
) -> ExtractionResult:
    """Ca2+ traces as an :class:`ExtractionResult` (z-scored ``(T, N)`` float32, ``fs_hz`` in meta).

    ``fmt`` is ``"suite2p"`` (folder), ``"nwb"`` or ``"array"`` (``.npy``/``.csv``); detected from
    the path when None. ``fs_hz`` overrides the file's rate (required for plain arrays).
    """
    path = Path(path)
    fmt = fmt or _detect_format(path)
    if fmt not in READERS:
        raise DsrInputError(f"'fmt' must be one of {sorted(READERS)}; got {fmt!r}")
    raw, info = READERS[fmt](path, fs_hz)
    x = check_timeseries(raw, name=str(path))
    fs = float(fs_hz or info["fs_hz"])
    if dff:
        x = delta_f_over_f(x, fs, dff_window_s, dff_percentile)
    groups = None
    if n_groups:
        x, groups = group_rois(x, n_groups)
    x = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
    n = x.shape[1]
    meta: dict[str, Any] = {
        "subject": subject or path.stem,
        "source": fmt,
        "files": {"data": str(path)},
        "fs_hz": fs,
        "region_ids": list(range(n)),
        "region_names": [f"group{i}" if groups else f"roi{i}" for i in range(n)],
        "empty_regions": [],
        "cleaning": {
            "neuropil_coef": NEUROPIL_COEF if fmt == "suite2p" else None,
            "dff": dff,
            "dff_window_s": dff_window_s,
            "dff_percentile": dff_percentile,
            "standardize": "zscore_sample",
            "groups": groups,
        },
        "reader": {k: v for k, v in info.items() if k != "fs_hz"},
        "warnings": [],
        "nonstationarity": screen_nonstationarity(x) if screen and x.shape[0] > 42 else None,
    }
    return ExtractionResult(x.astype(np.float32), None, meta)
