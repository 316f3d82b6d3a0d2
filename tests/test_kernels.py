import numpy as np
import pytest

from dsr.errors import DsrInputError
from dsr.signal.kernels import KERNELS, calcium_kernel, kernel_from_file, make_kernel, spm_hrf


@pytest.mark.parametrize(
    ("tr_s", "length"), [(0.2, 161), (0.5, 65), (1.2, 27), (1.4, 23), (2.0, 17)]
)
def test_hrf_length_matches_spm_grid(tr_s, length):
    assert len(spm_hrf(tr_s)) == length


@pytest.mark.parametrize("tr_s", [0.2, 0.5, 1.4, 2.0])
def test_hrf_sums_to_one_and_peaks_near_5s(tr_s):
    h = spm_hrf(tr_s)
    assert h.sum() == pytest.approx(1.0)
    assert 4.0 <= np.argmax(h) * tr_s <= 6.0
    assert h.min() < 0  # undershoot


def test_hrf_matches_closed_form():
    from scipy.stats import gamma

    u = np.arange(65) * 0.5
    ref = gamma.pdf(u, 6) - gamma.pdf(u, 16) / 6
    np.testing.assert_allclose(spm_hrf(0.5), ref / ref.sum(), rtol=1e-12)


def test_calcium_kernel_decays_with_tau():
    fast, slow = calcium_kernel(0.7, 30.0), calcium_kernel(1.25, 30.0)
    assert len(fast) == int(np.ceil(5 * 0.7 * 30)) + 1
    assert fast.sum() == pytest.approx(1.0) and slow.sum() == pytest.approx(1.0)
    assert np.all(np.diff(fast) < 0)
    assert fast[1] / fast[0] == pytest.approx(np.exp(-1 / (30 * 0.7)))
    assert len(slow) > len(fast) and slow[1] / slow[0] > fast[1] / fast[0]


def test_kernel_from_file_roundtrip(tmp_path):
    np.save(tmp_path / "k.npy", np.array([2.0, 1.0, 1.0]))
    np.testing.assert_allclose(kernel_from_file(tmp_path / "k.npy"), [0.5, 0.25, 0.25])
    (tmp_path / "k.txt").write_text("1\n3\n")
    np.testing.assert_allclose(kernel_from_file(tmp_path / "k.txt"), [0.25, 0.75])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: spm_hrf(-1.0), "tr_s"),
        (lambda: calcium_kernel(0.7, 0), "fs_hz"),
        (lambda: make_kernel("boxcar"), r"'kernel' must be one of \["),
        (lambda: kernel_from_file("/nonexistent/k.npy"), "does not exist"),
    ],
)
def test_kernel_errors(call, match):
    with pytest.raises(DsrInputError, match=match):
        call()


def test_registry_names():
    assert {"hrf", "calcium", "file"} <= set(KERNELS)
    np.testing.assert_allclose(make_kernel("hrf", tr_s=2.0), spm_hrf(2.0))


def test_causal_convolve_matches_numpy():
    from dsr.signal.kernels import causal_convolve

    x = np.random.default_rng(0).normal(size=(40, 3))
    kernel = spm_hrf(2.0)
    y = causal_convolve(x, kernel)
    assert y.shape == x.shape
    for i in range(3):
        np.testing.assert_allclose(y[:, i], np.convolve(x[:, i], kernel)[:40], atol=1e-12)
