"""Plain ``(T, N)`` arrays from ``.npy`` or delimited text (``.csv``, ``.tsv``, ``.txt``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from dsr._validation import check_positive, check_timeseries
from dsr.errors import DsrInputError
from dsr.io.result import ExtractionResult
from dsr.io.screening import screen_nonstationarity

TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": None}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_table(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Read a ``.npy`` or text table; return the raw numeric array and column names (or None).

    A first text row with any non-numeric field is taken as a header of column names.
    """
    path = Path(path)
    if not path.is_file():
        raise DsrInputError(f"{path}: file not found; give the path to a (T, N) .npy or .csv")
    if path.stat().st_size == 0:
        raise DsrInputError(f"{path}: the file is empty; expected a (T, N) array")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except ValueError as exc:
            raise DsrInputError(f"{path}: not a plain numeric .npy array ({exc})") from exc
    if path.suffix not in TEXT_SEPARATORS:
        raise DsrInputError(
            f"{path}: unknown extension {path.suffix!r}; use one of "
            f"{sorted(['.npy', *TEXT_SEPARATORS])}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DsrInputError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8 CSV"
        ) from exc
    sep = TEXT_SEPARATORS[path.suffix]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DsrInputError(f"{path}: the file has no data rows; expected a (T, N) table")
    names = None
    first = lines[0].split(sep) if sep else lines[0].split()
    if not all(_is_number(tok.strip()) for tok in first):
        names, lines = [tok.strip() for tok in first], lines[1:]
    if not lines:
        raise DsrInputError(f"{path}: only a header row, no data; expected a (T, N) table")
    frame = pd.read_csv(
        io.StringIO("\n".join(lines)), sep=sep if sep else r"\s+", header=None, dtype=str
    )
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & frame.notna() & ~frame.isin(["nan", "NaN", "n/a", "NA"])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DsrInputError(
            f"{path}: non-numeric value {frame.iat[row, col]!r} at data row {row + 1}, column "
            f"{col + 1}; the table must hold numbers only (one optional header row)"
        )
    return values.to_numpy(dtype=np.float64), names


def load_array(path: str | Path, *, min_length: int = 2, allow_nan: bool = False) -> np.ndarray:
    """Load and validate a ``(T, N)`` array (time along axis 0).

    Parameters
    ----------
    path : str or Path
        ``.npy`` or ``.csv``/``.tsv``/``.txt`` (optional header row of region names).

    Returns
    -------
    np.ndarray, shape (T, N), float64

    Raises
    ------
    DsrInputError
        Empty or non-UTF-8 file, non-numeric values, (N, T) orientation, NaN/Inf values.
    """
    arr, _ = read_table(path)
    return check_timeseries(arr, name=str(path), min_length=min_length, allow_nan=allow_nan)


def extract_array(
    path: str | Path, *, fs_hz: float | None = None, tr_s: float | None = None, subject: str = ""
) -> ExtractionResult:
    """Wrap a plain array file as an :class:`ExtractionResult`; give exactly one of fs_hz, tr_s.

    Every column is z-scored (``ddof=1``, as nilearn's ``zscore_sample`` does for fMRIPrep and
    calcium extraction): the model's defaults (augmentation noise, D_stsp bins) assume unit
    variance. The original means and SDs are kept in ``meta["column_mean"]`` / ``["column_sd"]``
    (constant columns are refused by the boundary check)."""
    if (fs_hz is None) == (tr_s is None):
        raise DsrInputError(f"{path}: give exactly one of fs_hz (Ca2+) or tr_s (fMRI)")
    if fs_hz is not None:
        rate = {"fs_hz": float(check_positive("fs_hz", fs_hz))}
    else:
        rate = {"tr_s": float(check_positive("tr_s", tr_s))}
    arr, names = read_table(path)
    x = check_timeseries(arr, name=str(path))
    n = x.shape[1]
    if names is None or len(names) != n:
        names = [f"col{i}" for i in range(n)]
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    x = (x - mean) / sd
    meta = {
        "subject": subject or Path(path).stem,
        "source": "array",
        "files": {"data": str(path)},
        **rate,
        "region_ids": list(range(n)),
        "region_names": names,
        "standardize": "zscore_sample",
        "column_mean": mean.tolist(),
        "column_sd": sd.tolist(),
        "empty_regions": [],
        "nonstationarity": screen_nonstationarity(x) if x.shape[0] > 42 else None,
        "warnings": [],
    }
    return ExtractionResult(x.astype(np.float32), None, meta)
