import numpy as np
import pytest

from dsr.signal.deconvolution import (
    edge_samples,
    wavelet_denoise,
    wavelet_noise_sd,
    wiener_deconvolve,
)
from dsr.signal.kernels import calcium_kernel, spm_hrf


def _smooth_signal(n_time, n_dim, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n_time)
    freqs = rng.uniform(0.005, 0.04, size=(3, n_dim))
    phases = rng.uniform(0, 2 * np.pi, size=(3, n_dim))
    return np.sin(2 * np.pi * freqs[:, None] * t[None, :, None] + phases[:, None]).sum(0)


def _convolve(z, kernel):
    return np.stack([np.convolve(col, kernel)[: len(col)] for col in z.T], axis=1)


@pytest.mark.parametrize(("tr_s", "n_time"), [(0.5, 1000), (1.4, 652), (2.0, 489)])
def test_noiseless_deconvolution_recovers_signal(tr_s, n_time):
    kernel = spm_hrf(tr_s)
    z = _smooth_signal(n_time, 4)
    d = wiener_deconvolve(
        _convolve(z, kernel), kernel, noise_floor=1e-3, cut_left=0.25, cut_right=0.5
    )
    assert d.shape == z.shape
    valid = ~np.isnan(d[:, 0])
    start = len(kernel)  # the causal convolution's start-up transient is not circular
    valid[:start] = False
    for i in range(z.shape[1]):
        assert np.corrcoef(d[valid, i], z[valid, i])[0, 1] > 0.95


def test_calcium_deconvolution_recovers_signal():
    kernel = calcium_kernel(0.7, 10.0)
    z = _smooth_signal(800, 2, seed=3)
    d = wiener_deconvolve(_convolve(z, kernel), kernel, noise_floor=1e-3)[len(kernel) :]
    assert np.corrcoef(d[:, 0], z[len(kernel) :, 0])[0, 1] > 0.95


def test_edge_cut_is_nan():
    kernel = spm_hrf(2.0)  # 17 samples
    d = wiener_deconvolve(_smooth_signal(200, 2), kernel, cut_left=0.25, cut_right=0.5)
    assert np.isnan(d[:4]).all() and not np.isnan(d[4]).any()
    assert np.isnan(d[-8:]).all() and not np.isnan(d[-9]).any()
    assert edge_samples(10, 17) == 10 and edge_samples(1.0, 17) == 17


@pytest.mark.parametrize("n_time", [1000, 1001])
def test_noise_sd_recovers_white_noise(n_time):
    rng = np.random.default_rng(1)
    sd = np.array([0.1, 1.0, 3.0])
    estimate = wavelet_noise_sd(rng.standard_normal((n_time, 3)) * sd)
    np.testing.assert_allclose(estimate, sd, rtol=0.1)


def test_noise_sd_ignores_smooth_signal():
    rng = np.random.default_rng(2)
    x = 10 * _smooth_signal(1024, 1)[:, 0] + 0.2 * rng.standard_normal(1024)
    assert wavelet_noise_sd(x) == pytest.approx(0.2, rel=0.15)


@pytest.mark.parametrize(("n_time", "max_ratio"), [(1024, 0.7), (1000, 0.75)])
def test_denoise_removes_noise_and_keeps_shape(n_time, max_ratio):
    # the level rule min(v2(n), 6) gives 6 levels at 1024 but only 3 at 1000: less denoising
    rng = np.random.default_rng(3)
    clean = 5 * _smooth_signal(n_time, 2)
    noisy = clean + 0.3 * rng.standard_normal(clean.shape)
    den = wavelet_denoise(noisy)
    assert den.shape == noisy.shape
    assert np.mean((den - clean) ** 2) < max_ratio * np.mean((noisy - clean) ** 2)
    assert wavelet_denoise(noisy[:-1]).shape == (n_time - 1, 2)  # odd length padded and trimmed


def test_columns_are_independent():
    kernel = spm_hrf(1.4)
    x = _convolve(_smooth_signal(300, 3), kernel)
    both = wiener_deconvolve(x, kernel)
    np.testing.assert_allclose(both[:, 1], wiener_deconvolve(x[:, 1], kernel), atol=1e-12)


def test_kernel_longer_than_series_fails():
    with pytest.raises(ValueError, match="longer than the series"):
        wiener_deconvolve(np.ones((10, 1)), spm_hrf(0.5))
