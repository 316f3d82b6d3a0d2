"""Forcing-signal preparation: wavelet noise estimate, wavelet denoising, Wiener deconvolution.

Implements spec section 3. Every function works column-wise on ``(T, N)`` arrays (time on axis 0);
a 1-D input is treated as one column.
"""

from __future__ import annotations

import warnings

import numpy as np
import pywt

WAVELET = "sym5"
MODE = "periodization"
MAX_LEVEL = 6


def _as_columns(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x, dtype=np.float64)
    return (x[:, None], True) if x.ndim == 1 else (x, False)


def _mad_sd(detail: np.ndarray) -> np.ndarray:
    """VisuShrink noise SD from level-1 detail coefficients ``(K, N)``."""
    med = np.median(detail, axis=0)
    return np.median(np.abs(detail - med), axis=0) / 0.6745


def wavelet_noise_sd(x: np.ndarray) -> np.ndarray | float:
    """Noise SD per column from the level-1 ``sym5`` detail coefficients (odd T: last sample dropped).

    Parameters
    ----------
    x : np.ndarray, shape (T, N) or (T,)

    Returns
    -------
    np.ndarray, shape (N,), or a float for 1-D input
    """
    cols, was_1d = _as_columns(x)
    cols = cols[: cols.shape[0] - cols.shape[0] % 2]
    sd = _mad_sd(pywt.dwt(cols, WAVELET, mode=MODE, axis=0)[1])
    return float(sd[0]) if was_1d else sd


def _two_adic_valuation(n: int) -> int:
    return (n & -n).bit_length() - 1


def wavelet_denoise(x: np.ndarray) -> np.ndarray:
    """Hard-threshold wavelet denoising (VisuShrink, all coefficients), spec section 3 step 2.

    Odd T is padded with one zero; level = min(number of factors 2 in the length, 6);
    threshold ``sqrt(2 ln n) * sd`` with ``sd`` estimated on the padded series.

    Parameters
    ----------
    x : np.ndarray, shape (T, N) or (T,)

    Returns
    -------
    np.ndarray, same shape as ``x``
    """
    cols, was_1d = _as_columns(x)
    n_time = cols.shape[0]
    if n_time % 2:
        cols = np.vstack([cols, np.zeros((1, cols.shape[1]))])
    n = cols.shape[0]
    level = min(_two_adic_valuation(n), MAX_LEVEL)
    with warnings.catch_warnings():  # the spec's level rule may exceed pywt's recommended level
        warnings.filterwarnings("ignore", "Level value of .* is too high", UserWarning)
        coeffs = pywt.wavedec(cols, WAVELET, mode=MODE, level=level, axis=0)
    threshold = np.sqrt(2.0 * np.log(n)) * _mad_sd(coeffs[-1])
    kept = [np.where(np.abs(c) > threshold, c, 0.0) for c in coeffs]
    out = pywt.waverec(kept, WAVELET, mode=MODE, axis=0)[:n_time]
    return out[:, 0] if was_1d else out


def edge_samples(cut: float, kernel_length: int) -> int:
    """Number of edge samples to cut: a fraction of the kernel length if ``cut <= 1``, else a count."""
    if cut < 0:
        raise ValueError(f"'cut' must be >= 0; got {cut}")
    return int(np.floor(cut * kernel_length)) if cut <= 1 else int(cut)


def wiener_deconvolve(
    x: np.ndarray,
    kernel: np.ndarray,
    noise_floor: float = 1e-5,
    cut_left: float = 0.0,
    cut_right: float = 0.0,
) -> np.ndarray:
    """Circular Wiener deconvolution with a wavelet-denoised signal spectrum (spec section 3).

    ``W_f = conj(K_f) S_f / (|K_f|^2 S_f + T sd^2)`` with ``S_f = |FFT(denoised x)|^2`` and
    ``sd = max(wavelet_noise_sd(x), noise_floor)``, applied to the raw ``x``.

    Parameters
    ----------
    x : np.ndarray, shape (T, N) or (T,)
        Observed (convolved) series; time on axis 0.
    kernel : np.ndarray, shape (h,)
        Convolution kernel, ``h <= T``.
    noise_floor : float
        Lower bound of the noise SD (1e-3 removes artefacts on noise-free data).
    cut_left, cut_right : float
        Samples set to NaN at each edge (<= 1: fraction of ``h``; > 1: a count).

    Returns
    -------
    np.ndarray, same shape as ``x``, NaN in the cut edges.
    """
    cols, was_1d = _as_columns(x)
    n_time = cols.shape[0]
    kernel = np.asarray(kernel, dtype=np.float64).ravel()
    if kernel.size > n_time:
        raise ValueError(f"kernel of length {kernel.size} is longer than the series ({n_time})")
    sd = np.maximum(wavelet_noise_sd(cols), noise_floor)
    signal_power = np.abs(np.fft.fft(wavelet_denoise(cols), axis=0)) ** 2
    k_f = np.fft.fft(kernel, n=n_time)[:, None]
    gain = np.conj(k_f) * signal_power / (np.abs(k_f) ** 2 * signal_power + n_time * sd**2)
    out = np.real(np.fft.ifft(gain * np.fft.fft(cols, axis=0), axis=0))
    n_left = edge_samples(cut_left, kernel.size)
    n_right = edge_samples(cut_right, kernel.size)
    out[:n_left] = np.nan
    out[n_time - n_right :] = np.nan
    return out[:, 0] if was_1d else out


def sliding_deconvolve(
    x_full: np.ndarray,
    start: int,
    horizon: int,
    cut_right: int,
    kernel: np.ndarray,
    noise_floor: float,
    window: int | None = None,
) -> np.ndarray:
    """Leak-free deconvolution of the test part (spec section 3), linear in its length.

    The sample at ``u >= start`` is taken from the Wiener deconvolution of the ``window`` samples
    ending at ``u + min(cut_right, horizon)``: no later data leaks into it. Windows are
    deconvolved together as the columns of one array (each column is treated on its own), so the
    cost is one batched FFT per chunk of windows.

    Parameters
    ----------
    x_full : np.ndarray, shape (T, F)
        Training part followed by the test part.
    start : int
        First sample to deconvolve (the training length).
    horizon, cut_right : int
        Prediction horizon n and right edge cut (samples): the window ends ``min(cut_right, n)``
        samples after the sample it yields.
    kernel : np.ndarray, shape (h,)
    noise_floor : float
    window : int, optional
        Window length in samples; default ``sliding_window(start)`` (the training length, capped).
        Shortened to the samples that exist before the first window's end.

    Returns
    -------
    np.ndarray, shape (T, F); NaN before ``start`` and in the last ``min(cut_right, n)`` samples.
    """
    x_full = np.asarray(x_full, dtype=np.float64)
    n_time, n_cols = x_full.shape
    out = np.full(x_full.shape, np.nan)
    lag = min(cut_right, horizon)
    ends = np.arange(start + lag + 1, n_time + 1)  # exclusive window ends; sample u = end - lag - 1
    if ends.size == 0:
        return out
    length = min(window or sliding_window(start), start + lag + 1)
    per_chunk = max(1, SLIDING_CHUNK_VALUES // (length * n_cols))
    for i in range(0, ends.size, per_chunk):
        e = ends[i : i + per_chunk]
        windows = x_full[e[:, None] - length + np.arange(length)]  # (c, length, F)
        columns = windows.transpose(1, 0, 2).reshape(length, -1)
        deconv = wiener_deconvolve(columns, kernel, noise_floor)[length - lag - 1]
        out[e - lag - 1] = deconv.reshape(len(e), n_cols)
    return out


SLIDING_CHUNK_VALUES = 2**22  # samples deconvolved per batched call (~32 MB of float64)
SLIDING_WINDOW_MAX = 4096


def sliding_window(n_train: int) -> int:
    """Default window of the sliding deconvolution: the training length (the authors' choice),
    at most ``SLIDING_WINDOW_MAX`` samples so that long test parts stay cheap (~2 ms per test
    sample at 4096 and N = 3 on one CPU core).

    Measured (validation/RESULTS.md, "Sliding deconvolution window"): at TR 1.4 s any window of
    4 or more kernel lengths gives PE within 1 % of the training-length window; at TR 0.5 and
    0.2 s (Lorenz, slow against the sampling) PE moves by 5-40 % between windows of any two
    lengths, half the training length included, so no shorter window is "converged" and the
    training length is kept where it is affordable."""
    return min(n_train, SLIDING_WINDOW_MAX)
