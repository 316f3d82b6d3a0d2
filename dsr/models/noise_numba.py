"""Compiled (numba) augmentation noise: ``out = a + sd · z``, ``z`` the counter-based N(0, 1) draw of
``dsr.models.noise`` (same bits as its NumPy reference; see there for the generator).

The loop over Philox counters vectorises (uint64 lanes for the words, float32 lanes for the
transform); no fast-math flags, so no operation is fused or reordered and the NumPy reference
gives the same values. ``add_noise_rows`` draws ``ROWS`` rows at a time into a buffer that stays
in cache and adds them to the data row by row, so the result can be written model-major (the
layout the forcing and decoder kernels read per model: 1.4 vs 1.2 ns per value for a flat draw,
~3 ms less in those kernels at E = 64). Rows are split over torch's thread count (values do not
depend on it).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from dsr.models import noise as ref
from dsr.models.rollout_numba import _split

_FLAGS = dict(cache=True, nogil=True, error_model="numpy")  # no fastmath: bit-exact with NumPy
_F = np.float32
_philox = njit(inline="always")(ref.philox)
_log_reduced = njit(inline="always")(ref.log_reduced)
_sin_cos = njit(inline="always")(ref.sin_cos)
_HALF, _ONE, _TWO, _TO_UNIT, _TO_ANGLE = ref._HALF, ref._ONE, ref._TWO, ref._TO_UNIT, ref._TO_ANGLE
_SQRT_HALF, _MASK32, _S32, _ZERO = ref._SQRT_HALF, ref.MASK32, ref._S32, np.uint64(0)


@intrinsic
def _bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(types.float32), codegen


@intrinsic
def _float(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.uint32), codegen


@njit(inline="always")
def _log(x):
    b = _bits(x)
    e = _F(np.int32(b >> np.uint32(23)) - np.int32(126))
    m = _float((b & np.uint32(0x007FFFFF)) | np.uint32(0x3F000000))
    small = m < _SQRT_HALF
    e = e - _ONE if small else e
    m = m + m - _ONE if small else m - _ONE
    return _log_reduced(m, e)


@njit(inline="always")
def _box_muller(a, b):
    u = (_F(a) + _HALF) * _TO_UNIT
    r = np.sqrt(-_TWO * _log(u))
    s, c = _sin_cos(_F(b & np.uint64(0x1FFFFFFF)) * _TO_ANGLE)
    octant = b >> np.uint64(29)
    swap = (octant & np.uint64(1)) != 0
    x = s if swap else c
    y = c if swap else s
    x = -x if (octant & np.uint64(2)) != 0 else x
    y = -y if (octant & np.uint64(4)) != 0 else y
    return r * x, r * y


@njit(inline="always")
def _group(g, k0, k1):
    """The four normals of counter ``g``."""
    w0, w1, w2, w3 = _philox(np.uint64(g) & _MASK32, np.uint64(g) >> _S32, _ZERO, _ZERO, k0, k1)
    z0, z1 = _box_muller(w0, w1)
    z2, z3 = _box_muller(w2, w3)
    return z0, z1, z2, z3


@njit(**_FLAGS)
def _normals(buf, start, n, k0, k1):
    """``buf[i] = z_{start + i}`` for i < n (float32; the whole counters in one vector loop)."""
    g0, g1 = -(-start // 4), (start + n) // 4  # the counters wholly inside the range
    h0 = 4 * g0 - start
    m = 4 * max(g1 - g0, 0)
    dst = buf[h0 : h0 + m]  # (LLVM vectorises a loop from 0)
    for j in range(m // 4):
        z0, z1, z2, z3 = _group(g0 + j, k0, k1)
        dst[4 * j], dst[4 * j + 1], dst[4 * j + 2], dst[4 * j + 3] = z0, z1, z2, z3
    for i in range(min(h0, n)):  # elements of counters shared with the neighbouring ranges
        buf[i] = _group((start + i) // 4, k0, k1)[(start + i) % 4]
    for i in range(max(h0 + m, min(h0, n)), n):
        buf[i] = _group((start + i) // 4, k0, k1)[(start + i) % 4]


ROWS = 64  # rows drawn at once (64 rows of 256 values: a 64 kB buffer, in cache)


@njit(**_FLAGS)
def _add_rows(q_lo, q_hi, E, R, a, sa_t, sa_e, sd, k0, k1, out, so_t, so_e, offset):
    """Rows ``q = t·E + e`` of R elements (elements ``offset + q·R …`` of the draw):
    ``out[t·so_t + e·so_e + r] = a[t·sa_t + e·sa_e + r] + sd · z_{offset + q·R + r}``."""
    dt = a.dtype.type
    s = dt(sd)
    buf = np.empty(min(ROWS, q_hi - q_lo) * R, np.float32)
    for qb in range(q_lo, q_hi, ROWS):
        qe = min(qb + ROWS, q_hi)
        _normals(buf, offset + qb * R, (qe - qb) * R, k0, k1)
        for q in range(qb, qe):
            t, e = q // E, q % E
            src, dst = a[t * sa_t + e * sa_e :], out[t * so_t + e * so_e :]
            z = buf[(q - qb) * R :]
            for r in range(R):
                dst[r] = src[r] + dt(z[r]) * s


def add_noise(a: np.ndarray, sd: float, key: tuple[int, int], out: np.ndarray) -> None:
    """``out = a + sd · z`` for flat contiguous float arrays (``dsr.models.noise.add_noise``)."""
    k0, k1, R = np.uint64(key[0]), np.uint64(key[1]), 1024
    n = a.size // R * R  # rows of R values, then the rest as one row
    _split(_add_rows, n // R, 1, R, a, R, 0, float(sd), k0, k1, out, R, 0, 0)
    if n < a.size:
        _add_rows(0, 1, 1, a.size - n, a[n:], 0, 0, float(sd), k0, k1, out[n:], 0, 0, n)


def add_noise_rows(src, st, se, T, E, R, sd, key, out, so_t, so_e) -> None:
    """``out = a + sd · z`` for ``a`` of shape ``(T, E, R)`` (draw in that C order), read from the
    flat array ``src`` with time and model strides ``st``, ``se`` and written to ``out`` with
    ``so_t``, ``so_e`` (rows split over torch's thread count; values do not depend on it)."""
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    _split(_add_rows, T * E, E, R, src, st, se, float(sd), k0, k1, out, so_t, so_e, 0)
