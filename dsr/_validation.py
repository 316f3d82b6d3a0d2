"""Input checks at the boundary, with uniform messages.

Inner code trusts what passed through here. Messages follow one pattern:
``"<what> <where>: <problem>; <fix>"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dsr.errors import DsrInputError


def check_choice(name: str, value: str, registry: Mapping[str, Any]) -> str:
    """Return ``value`` if it is a key of ``registry``, else raise listing the valid keys."""
    if value not in registry:
        raise DsrInputError(f"'{name}' must be one of {sorted(registry)}; got {value!r}")
    return value


def check_positive(name: str, value: float, *, integer: bool = False) -> float:
    """Return ``value`` if it is a finite number > 0 (an int when ``integer``)."""
    kind = int if integer else (int, float, np.integer, np.floating)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not np.isfinite(value)
        or value <= 0
    ):
        what = "a positive integer" if integer else "a positive finite number"
        raise DsrInputError(f"'{name}' must be {what}; got {value!r}")
    return value


def check_timeseries(
    x: Any, *, name: str = "data", min_length: int = 2, allow_nan: bool = False
) -> np.ndarray:
    """Validate a ``(T, N)`` data array and return it as float64.

    Parameters
    ----------
    x : array-like, shape (T, N) or (T,)
        Time runs along axis 0. A 1-D array is one region.
    name : str
        How the input is named in messages (a subject id or a file path).
    min_length : int
        Smallest acceptable T (e.g. the kernel length).
    allow_nan : bool
        Whether isolated NaN samples are acceptable (masked out of the loss).

    Raises
    ------
    DsrInputError
        Wrong dtype, dimensionality, orientation, length, or non-finite values.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise DsrInputError(f"{name}: expected a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DsrInputError(f"{name}: expected a 2-D array (T, N); got shape {arr.shape}")
    n_time, n_dim = arr.shape
    if n_time == 0 or n_dim == 0:
        raise DsrInputError(
            f"{name}: empty array of shape {arr.shape}; expected (T, N) with T, N > 0"
        )
    if n_time < n_dim:
        raise DsrInputError(
            f"{name}: shape {arr.shape} has fewer time points than regions; time must be axis 0 "
            f"(T, N). If the file stores (N, T), transpose it."
        )
    if n_time < min_length:
        raise DsrInputError(
            f"{name}: only {n_time} time points; at least {min_length} are needed "
            f"(kernel length / training window). Use a longer recording or a shorter window."
        )
    arr = arr.astype(np.float64)
    if np.isinf(arr).any():
        raise DsrInputError(f"{name}: contains infinite values; remove or interpolate them")
    nan = np.isnan(arr)
    if nan.all(axis=0).any():
        cols = np.flatnonzero(nan.all(axis=0)).tolist()
        raise DsrInputError(f"{name}: column(s) {cols} are entirely NaN; drop these regions")
    if nan.any() and not allow_nan:
        cols = np.flatnonzero(nan.any(axis=0)).tolist()
        raise DsrInputError(
            f"{name}: NaN values in column(s) {cols}; interpolate or drop them before fitting"
        )
    constant = np.nanstd(arr, axis=0) == 0
    if constant.any():
        cols = np.flatnonzero(constant).tolist()
        raise DsrInputError(f"{name}: column(s) {cols} are constant; drop these regions")
    return arr


def check_confounds(r: Any, n_time: int, *, name: str = "confounds") -> np.ndarray:
    """Validate nuisance regressors ``(T, P)`` against the data length ``n_time``."""
    arr = np.asarray(r)
    if arr.dtype.kind not in "fiu":
        raise DsrInputError(f"{name}: expected a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n_time:
        raise DsrInputError(
            f"{name}: shape {arr.shape} does not match the data's {n_time} time points; "
            f"confounds must be (T, P) with the same T as the data"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DsrInputError(f"{name}: contains NaN or infinite values; fill them (e.g. with 0)")
    return arr


def check_kernel(kernel: Any, *, name: str = "kernel") -> np.ndarray:
    """Validate an observation kernel: a non-empty 1-D finite array with a non-zero sum."""
    arr = np.asarray(kernel)
    if arr.dtype.kind not in "fiu" or arr.ndim != 1 or arr.size == 0:
        raise DsrInputError(
            f"'{name}' must be a non-empty 1-D numeric array; got dtype {arr.dtype}, "
            f"shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() or abs(arr.sum()) < 1e-12:
        raise DsrInputError(f"'{name}' needs finite values with a non-zero sum; got {arr}")
    return arr
