"""Compiled (numba) GTF forcing of a training batch on CPU: the teacher signal ``d_t = P x_t`` of the
deconvolved window and the rollout's ``keep = 1 − w`` and ``target = w d`` in one pass.

Same values as ``LinearDecoder.forcing`` followed by ``dsr.training.gtf`` (``_forcing_weights`` and
the products in ``gtf_rollout``): ``w`` is α (per model) where ``d_t`` is finite and 0 where it is
not, and with sparse forcing only at times ``t ≡ 0 (mod SPARSE_FORCING_INTERVAL)``; a non-finite
``d_t`` gives ``target`` 0. ``keep`` and ``target`` come out in the batch-innermost layout the
compiled rollout reads without a copy (``dsr.models._layout``); ``d_0`` (the initial state's
source) in the ordinary ``(E, B, M)`` layout. Per (model, chunk of ``LANES`` windows) and time, the
window's samples are moved into lanes once and projected by one vector product. The torch path
took ~15 ms of a 122 ms batch at E = 64 (LEMON size): pinv product, masks, weights, two products.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from dsr.models._layout import lanes_tensor, padded, rows_of
from dsr.models._simd import FLAGS, LANES, products
from dsr.models._vector import lanes_copy, lanes_transpose
from dsr.models.rollout_numba import _split

V = LANES
SPARSE_FORCING_INTERVAL = 16  # = dsr.training.gtf.SPARSE_FORCING_INTERVAL (checked by a test)


@njit(**FLAGS)
def _chunk(i, C, x, st, se, shape, P, alpha, sparse, d0, keep, target):
    T, Bt, N = shape
    Dall, D, Bp = P.shape[1], keep.shape[2], keep.shape[3]
    e, b0 = i // C, (i % C) * V
    nb = min(V, Bt - b0)
    dt = keep.dtype
    zero, one, a = dt.type(0), dt.type(1), dt.type(alpha[e])
    xl, d, zeros = np.empty(N * V, dt), np.empty(Dall * V, dt), np.zeros(Dall + 8, dt)
    kl, tl = np.empty(D * V, dt), np.empty(D * V, dt)
    for t in range(T):
        base = t * st + e * se + b0 * N
        for n0 in range(0, N, V):  # the windows' samples into lanes (padding lanes 0)
            lanes_transpose(xl, n0 * V, V, x, base + n0, N, nb, min(V, N - n0))
        rows = Dall if t == 0 else D
        products(rows, d, 0, zeros, 0, xl, 0, V, P, e * Dall * N, N, 1, N)  # d = P x
        if t == 0:
            for j in range(nb):
                for m in range(Dall):
                    d0[e, b0 + j, m] = d[m * V + j]
            continue
        w = a if not sparse or t % SPARSE_FORCING_INTERVAL == 0 else zero
        for k in range(D * V):
            v = d[k]
            ok = v - v == zero  # finite
            kl[k] = one - (w if ok else zero)
            tl[k] = v * w if ok else zero
        kt, tt = keep[e, t - 1], target[e, t - 1]
        for m in range(D):
            lanes_copy(kt, m * Bp + b0, kl, m * V)
            lanes_copy(tt, m * Bp + b0, tl, m * V)


@njit(**FLAGS)
def _range(lo_i, hi_i, C, x, st, se, shape, P, alpha, sparse, d0, keep, target):
    for i in range(lo_i, hi_i):
        _chunk(i, C, x, st, se, shape, P, alpha, sparse, d0, keep, target)


def forcing(x, P, alpha, forced_dims: int, sparse: bool):
    """GTF forcing of a window ``x`` ``(T, E, B, N)`` with projection ``P`` ``(E, M, N)``.

    ``alpha``: a float or one value per model (E,). Returns ``d0`` ``(E, B, M)`` (``P x_0``) and
    ``keep``, ``target`` ``(T − 1, E, B, forced_dims)`` (views of batch-innermost arrays).
    """
    T, E, B, _ = x.shape
    Bp, dtype = padded(B), x.dtype
    alpha = torch.as_tensor(alpha, dtype=dtype).expand(E).contiguous().numpy()
    d0 = torch.empty((E, B, P.shape[1]), dtype=dtype)
    keep, target = (np.empty((E, T - 1, forced_dims, Bp), d0.numpy().dtype) for _ in range(2))
    (xf, st, se), Pn = rows_of(x), P.detach().to(dtype).contiguous().numpy()
    C, shape = Bp // V, (T, B, x.shape[3])
    _split(_range, E * C, C, xf, st, se, shape, Pn, alpha, bool(sparse), d0.numpy(), keep, target)
    return d0, lanes_tensor(keep, B), lanes_tensor(target, B)
