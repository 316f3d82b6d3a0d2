"""The counter-based augmentation noise (dsr.models.noise): Philox4x32-10 known answers, the compiled
kernel gives the NumPy reference's bits for any size and thread count, and the draws are i.i.d.
N(0, 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dsr.models import noise

pytest.importorskip("numba")
from dsr.models import noise_numba  # noqa: E402

# Random123's known-answer tests for Philox4x32-10: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((2**32 - 1,) * 4, (2**32 - 1,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_known_answers(counter, key, expected):
    words = noise.philox(*(np.uint64(c) for c in counter), *(np.uint64(k) for k in key))
    assert [int(w) for w in words] == list(expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 3, 4, 7, 1001, 65_539])
def test_compiled_noise_has_the_reference_bits(dtype, size):
    a = np.random.default_rng(size).standard_normal(size).astype(dtype)
    key = (0x12345678, 0x9ABCDEF0)
    expected, got = np.empty_like(a), np.empty_like(a)
    noise.add_noise(a, 0.3, key, expected)
    noise_numba.add_noise(a, 0.3, key, got)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("T", "E", "R"), [(7, 3, 5), (50, 4, 96), (3, 2, 256)])
def test_rows_are_written_model_major_for_any_thread_count(T, E, R):
    """``add_noise_rows``: the draw of an ``(T, E, R)`` array in its C order, written per model
    (``out[e, t]``), the same bits as the reference for 1 and 2 threads."""
    a = np.random.default_rng(T).standard_normal((T, E, R)).astype(np.float32)
    expected = np.empty_like(a)
    noise.add_noise(a.reshape(-1), 0.5, (5, 6), expected.reshape(-1))
    before, draws = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = np.empty((E, T, R), np.float32)
            src = a.transpose(1, 0, 2).copy()  # read model-major too: strides R and T·R
            noise_numba.add_noise_rows(
                src.reshape(-1), R, T * R, T, E, R, 0.5, (5, 6), out.reshape(-1), R, T * R
            )
            draws.append(out)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], expected.transpose(1, 0, 2))


def test_a_draw_is_iid_standard_normal():
    z = noise.normals((2024, 11), 0, 1 << 20).astype(np.float64)
    assert abs(z.mean()) < 5 / 1024 and abs(z.std() - 1) < 5 / 1024 / np.sqrt(2)  # ~5 SE
    assert stats.kstest(z, "norm").pvalue > 1e-4
    assert abs(stats.kurtosis(z)) < 0.03 and abs(stats.skew(z)) < 0.015  # tails: ~6 SE
    for lag in (1, 2, 3, 4):  # neighbours, the two normals of a pair, the words of a counter
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 5 / 1024
    blocks = z.reshape(-1, 4)  # the radius words: squared pairs are independent too
    r2 = blocks[:, 0] ** 2 + blocks[:, 1] ** 2
    assert abs(np.corrcoef(r2, blocks[:, 2] ** 2 + blocks[:, 3] ** 2)[0, 1]) < 0.01
    assert np.abs(z).max() < 6.7  # the largest radius of a 32-bit word


def test_keys_and_offsets_select_independent_parts_of_one_stream():
    first = noise.normals((1, 2), 0, 4000)
    np.testing.assert_array_equal(noise.normals((1, 2), 1234, 100), first[1234:1334])
    other = noise.normals((1, 3), 0, 4000)
    assert abs(np.corrcoef(first, other)[0, 1]) < 0.06
