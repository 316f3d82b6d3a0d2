"""Augmentation noise for training batches: i.i.d. N(0, 1) from a counter-based generator.

Element ``i`` of a draw (flat C order) is a function of the draw's 64-bit key and ``i`` only:
counter ``i // 4`` of **Philox4x32-10** (Salmon et al., SC 2011; the generator of cuRAND, JAX and
``numpy.random.Philox``'s family) gives four 32-bit words, and each pair of words becomes two
normals by the **Box–Muller** transform, ``r = sqrt(-2 log u)`` with ``u = (a + 1/2) / 2³²`` and the
angle from the other word (three bits pick the octant, 29 bits the angle within it). Polynomial
``log``, ``sin`` and ``cos`` (Cephes, float32, ~1 ulp) keep the arithmetic vectorisable; radii
reach 6.7 (``u ≥ 2⁻³³``), so the distribution is N(0, 1) to float32 resolution.

Because nothing depends on order, the compiled kernel (``noise_numba``) splits a draw over threads
freely, and this module's NumPy code (the specification the tests hold the kernel to) gives the
same bits: both use the same float32 operations in the same order, without fused multiply-adds,
so a draw is the same on any machine. Torch's CPU sampler took ~3.7 ns per value, the compiled
kernel takes ~1.0 plus ~0.4 to add it to the data (benchmarks/README.md). Without the compiled
kernels training keeps torch's sampler (``dsr.training.gtf._add_noise``): this NumPy code is ~20 ns
per value.
"""

from __future__ import annotations

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # Philox4x32 multipliers
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)  # key increments (Weyl sequence)
_S32 = np.uint64(32)
_F = np.float32
_HALF, _ONE, _TWO = _F(0.5), _F(1.0), _F(2.0)
_TO_UNIT, _TO_ANGLE = _F(2.0**-32), _F(2.0**-29 * np.pi / 4)  # word -> (0, 1]; 29 bits -> [0, π/4)
_SQRT_HALF, _LN2_HI, _LN2_LO = _F(0.70710678118654752), _F(0.693359375), _F(-2.12194440e-4)
_LOG = tuple(
    _F(c)
    for c in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)
_SIN = (_F(-1.6666654611e-1), _F(8.3321608736e-3), _F(-1.9515295891e-4))
_COS = (_F(4.166664568298827e-2), _F(-1.388731625493765e-3), _F(2.443315711809948e-5))


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter ``(c0, c1, c2, c3)`` and key ``(k0, k1)``: four 32-bit words.

    Words are held in uint64 (scalars for numba, arrays for NumPy) so the 32 × 32-bit products
    are exact; Random123's known answer: counter 0, key 0 -> 0x6627e8d5, 0xe169c58d, ...
    """
    for _ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c2 = (p1 >> _S32) ^ c1 ^ k0, (p0 >> _S32) ^ c3 ^ k1
        c1, c3 = p1 & MASK32, p0 & MASK32
        k0, k1 = (k0 + _W0) & MASK32, (k1 + _W1) & MASK32
    return c0, c1, c2, c3


def log_reduced(m, e):
    """``log(x)`` from ``x = (m + 1) 2^e`` with ``m`` in [√½ − 1, √2 − 1) (Cephes ``logf``)."""
    z = m * m
    c = _LOG
    y = (
        ((((((c[0] * m + c[1]) * m + c[2]) * m + c[3]) * m + c[4]) * m + c[5]) * m + c[6]) * m
        + c[7]
    ) * m + c[8]
    y = y * m * z
    y = y + _LN2_LO * e - _HALF * z
    return m + y + _LN2_HI * e


def sin_cos(phi):
    """``(sin φ, cos φ)`` for φ in [0, π/4] (Cephes ``sinf`` / ``cosf`` polynomials)."""
    p2 = phi * phi
    s = phi + phi * p2 * (_SIN[0] + p2 * (_SIN[1] + p2 * _SIN[2]))
    c = _ONE - _HALF * p2 + p2 * p2 * (_COS[0] + p2 * (_COS[1] + p2 * _COS[2]))
    return s, c


def _philox_arrays(counter: np.ndarray, k0, k1):
    """``philox`` of counters ``(counter, 0, 0, 0)`` with in-place array operations (NumPy)."""
    c0 = counter & MASK32
    c1, c2, c3 = counter >> _S32, np.zeros_like(counter), np.zeros_like(counter)
    p0, p1 = np.empty_like(counter), np.empty_like(counter)
    for _ in range(10):
        np.multiply(c0, _M0, out=p0)
        np.multiply(c2, _M1, out=p1)
        np.bitwise_xor(np.right_shift(p1, _S32, out=c0), c1, out=c0)
        np.bitwise_xor(c0, k0, out=c0)
        np.bitwise_xor(np.right_shift(p0, _S32, out=c2), c3, out=c2)
        np.bitwise_xor(c2, k1, out=c2)
        np.bitwise_and(p1, MASK32, out=c1)
        np.bitwise_and(p0, MASK32, out=c3)
        k0, k1 = (k0 + _W0) & MASK32, (k1 + _W1) & MASK32
    return c0, c1, c2, c3


def _log(x: np.ndarray) -> np.ndarray:
    """``log`` of positive normal float32 values (``frexp``: the exponent and mantissa bits)."""
    m, e = np.frexp(x)  # m in [1/2, 1)
    small = m < _SQRT_HALF
    e -= small
    m = np.where(small, m + m, m)  # exact doubling, then m − 1 as in ``noise_numba._log``
    return log_reduced(np.subtract(m, _ONE, out=m), e.astype(_F))


def box_muller(a: np.ndarray, b: np.ndarray):
    """Two float32 normals from two words ``a`` (radius) and ``b`` (angle) (uint64 arrays)."""
    u = (a.astype(_F) + _HALF) * _TO_UNIT
    r = np.sqrt(-_TWO * _log(u))
    s, c = sin_cos((b & np.uint64(0x1FFFFFFF)).astype(_F) * _TO_ANGLE)
    octant = b >> np.uint64(29)
    swap = (octant & np.uint64(1)) != 0
    x, y = np.where(swap, s, c), np.where(swap, c, s)
    x = np.where((octant & np.uint64(2)) != 0, -x, x)
    y = np.where((octant & np.uint64(4)) != 0, -y, y)
    return r * x, r * y


def normals(key: tuple[int, int], start: int, n: int) -> np.ndarray:
    """Elements ``start … start + n − 1`` of the draw with ``key`` (float32, NumPy reference)."""
    g0, g1 = start // 4, -(-(start + n) // 4)
    w = _philox_arrays(np.arange(g0, g1, dtype=np.uint64), np.uint64(key[0]), np.uint64(key[1]))
    z = np.empty((g1 - g0, 4), _F)
    z[:, 0], z[:, 1] = box_muller(w[0], w[1])
    z[:, 2], z[:, 3] = box_muller(w[2], w[3])
    return z.reshape(-1)[start - 4 * g0 : start - 4 * g0 + n]


def add_noise(a: np.ndarray, sd: float, key: tuple[int, int], out: np.ndarray) -> None:
    """``out = a + sd · z`` for flat arrays, ``z`` the draw with ``key``, in ``a``'s dtype: the
    product ``z · sd`` rounded to that dtype, then the sum (NumPy; chunks of 2¹⁶ values)."""
    scale, chunk = a.dtype.type(sd), 1 << 16
    for i in range(0, a.size, chunk):
        j = min(i + chunk, a.size)
        np.add(a[i:j], normals(key, i, j - i).astype(a.dtype) * scale, out=out[i:j])
