"""Convolution kernels of the observation model: SPM canonical HRF, calcium, from file, and the
one a subject's extraction calls for (``subject_kernel``).

All kernels are 1-D float64 arrays ``(h,)`` with ``k[0]`` the zero-lag weight, normalised to sum 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import gamma

from dsr._validation import check_choice, check_positive
from dsr.errors import DsrInputError

HRF_DURATION_S = 32.0


def spm_hrf(tr_s: float) -> np.ndarray:
    """SPM canonical HRF sampled every ``tr_s`` seconds over 0..32 s.

    ``h(u) = gamma.pdf(u, 6) - gamma.pdf(u, 16) / 6`` at ``u = k * tr_s``, ``k = 0..floor(32 / tr_s)``,
    normalised to sum 1 (lengths: TR 0.2 -> 161, 0.5 -> 65, 1.2 -> 27, 1.4 -> 23, 2.0 -> 17).

    Returns
    -------
    np.ndarray, shape (h,)
    """
    check_positive("tr_s", tr_s)
    n_lags = int(np.floor(HRF_DURATION_S / tr_s + 1e-9))
    u = np.arange(n_lags + 1, dtype=np.float64) * tr_s
    h = gamma.pdf(u, 6) - gamma.pdf(u, 16) / 6.0
    return h / h.sum()


def calcium_kernel(tau_s: float, fs_hz: float) -> np.ndarray:
    """Exponential calcium-indicator kernel ``exp(-u / tau_s)`` at ``u = k / fs_hz``.

    ``k = 0..ceil(5 * tau_s * fs_hz)``, normalised to sum 1 (tau: GCaMP6f 0.7 s, 6m 1.0 s, 6s 1.25 s).

    Returns
    -------
    np.ndarray, shape (h,)
    """
    check_positive("tau_s", tau_s)
    check_positive("fs_hz", fs_hz)
    n_lags = int(np.ceil(5.0 * tau_s * fs_hz - 1e-9))
    k = np.exp(-np.arange(n_lags + 1, dtype=np.float64) / fs_hz / tau_s)
    return k / k.sum()


def kernel_from_file(path: str | Path) -> np.ndarray:
    """Load a 1-D kernel from ``.npy`` or a text file (one value per line), normalised to sum 1."""
    path = Path(path)
    if not path.is_file():
        raise DsrInputError(f"kernel file {path} does not exist; give the path to a .npy or .txt")
    try:
        k = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
    except (ValueError, OSError) as exc:
        raise DsrInputError(f"kernel file {path} could not be read: {exc}") from exc
    k = np.asarray(k, dtype=np.float64).ravel()
    if k.size == 0 or not np.isfinite(k).all() or abs(k.sum()) < 1e-12:
        raise DsrInputError(f"kernel file {path}: needs finite values with a non-zero sum")
    return k / k.sum()


def identity_kernel() -> np.ndarray:
    """The trivial kernel ``[1.0]`` (no convolution)."""
    return np.ones(1)


def causal_convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``y_t = Σ_k kernel[k] x_{t-k}`` along axis 0, zero history; (T, N) -> (T, N)."""
    out = np.zeros_like(x, dtype=np.float64)
    for k, w in enumerate(kernel):
        out[k:] += w * x[: x.shape[0] - k]
    return out


KERNELS = {
    "hrf": spm_hrf,
    "calcium": calcium_kernel,
    "file": kernel_from_file,
    "identity": identity_kernel,
}


def make_kernel(name: str, **params) -> np.ndarray:
    """Build a kernel by registry name, e.g. ``make_kernel("hrf", tr_s=1.4)``."""
    check_choice("kernel", name, KERNELS)
    return KERNELS[name](**params)


def subject_kernel(meta: dict, decoder: str = "convolved", tau_s: float = 0.7) -> np.ndarray:
    """Observation kernel for a subject: HRF at ``meta['tr_s']`` or calcium at ``meta['fs_hz']``
    (the standard decoder on calcium data: none)."""
    if meta.get("tr_s"):
        return make_kernel("hrf", tr_s=meta["tr_s"])
    if decoder == "standard":  # no HRF: the forcing is the data themselves
        return make_kernel("identity")
    if meta.get("fs_hz"):
        return make_kernel("calcium", tau_s=tau_s, fs_hz=meta["fs_hz"])
    raise DsrInputError("meta.json holds neither 'tr_s' nor 'fs_hz'; cannot build the kernel")
