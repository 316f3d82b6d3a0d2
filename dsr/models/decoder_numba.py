"""Compiled (numba) observation and loss of a GTF batch on CPU: ``x̂ = B (k * ẑ)`` scored by the
masked MSE against the data, forward and backward in one call each.

Same values as ``LinearDecoder.decode`` followed by ``dsr.training.gtf.masked_mse`` (no
confounds): a non-finite target sample is left out of its model's sum and count, a non-finite
prediction makes its model's loss non-finite. Layout as in ``dsr.models.rollout_numba``: each
(model, chunk of ``LANES`` windows) pair works on ``(time, features · LANES)`` blocks; ``ẑ`` and its
gradient are batch-innermost arrays (``dsr.models._layout``: the rollout's output, no copy), the
targets are moved into lanes by a vector transpose. Per time the projection ``p = B ẑ`` is one
vector product, the convolution over time a sum of ``h`` lane products (the kernel repeated per
lane), the gradient on ``B`` per-lane tiles. The torch path took 1.4 ms of a 6 ms demo batch.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from dsr.models._layout import lanes_array, lanes_tensor, padded, rows_of
from dsr.models._simd import FLAGS, LANES, lane_products, products, tile_products
from dsr.models._vector import lanes_copy, lanes_transpose

V = LANES


@njit(**FLAGS)
def _gather(z, e, b0, nb, zl):
    """``zl[t, m·LANES + j] = z[e, t, m, b0 + j]`` (0 in padding lanes): vector copies."""
    T, M, Bp = z.shape[1], z.shape[2], z.shape[3]
    zero = zl.dtype.type(0)
    ze = z[e]
    for t in range(T):
        row = zl[t]
        for m in range(M):
            lanes_copy(row, m * V, ze, (t * M + m) * Bp + b0)
            for j in range(nb, V):
                row[m * V + j] = zero


@njit(**FLAGS)
def _forward_chunk(i, C, z, B, kX, target, st, se, Bt, diff, sums, counts):
    T, M = z.shape[1], z.shape[2]
    N, h, T_out = B.shape[1], kX.shape[0] // V, diff.shape[1]
    e, b0 = i // C, (i % C) * V
    nb = min(V, Bt - b0)
    dt = diff.dtype
    zl, p, zeros = np.empty((T, M * V), dt), np.empty((T, N * V), dt), np.zeros(N + 8, dt)
    _gather(z, e, b0, nb, zl)
    for t in range(T):  # p[t, n] = Σ_m B[n, m] ẑ[t, m]
        products(N, p[t], 0, zeros, 0, zl[t], 0, V, B, e * N * M, M, 1, M)
    xh = diff[i]
    for n in range(N):  # x̂[t, n] = Σ_u k[h-1-u] p[t + u, n]  (kX holds k reversed, per lane)
        lane_products(T_out, xh, n * V, N * V, zeros, kX, 0, V, p, n * V, N * V, N * V, h)
    tl = np.empty(T_out * N * V, dt)  # the targets in lanes; NaN: not scored
    for t in range(T_out):
        base = t * st + e * se + b0 * N
        for n0 in range(0, N, V):
            lanes_transpose(tl, (t * N + n0) * V, V, target, base + n0, N, nb, min(V, N - n0))
        for n in range(N):
            for j in range(nb, V):
                tl[(t * N + n) * V + j] = np.nan
    flat = xh.reshape(T_out * N * V)
    total, count, zero, one = dt.type(0), dt.type(0), dt.type(0), dt.type(1)
    for k in range(T_out * N * V):
        y = tl[k]
        ok = y - y == zero  # finite
        d = (flat[k] - (y if ok else zero)) * (one if ok else zero)
        flat[k] = d
        total += d * d
        count += one if ok else zero
    sums[i], counts[i] = total, count


@njit(**FLAGS)
def _backward_chunk(i, C, z, B, kX, diff, scale, gz, lanes_B, n_batch):
    T, M, Bp = z.shape[1], z.shape[2], z.shape[3]
    N, h, T_out = B.shape[1], kX.shape[0] // V, diff.shape[1]
    e, b0 = i // C, (i % C) * V
    nb = min(V, n_batch - b0)
    dt = diff.dtype
    zl, gp, zeros = np.empty((T, M * V), dt), np.empty((T, N * V), dt), np.zeros(N + M + 8, dt)
    G = np.empty((T_out + 2 * (h - 1), N * V), dt)  # dL/dx̂ with h - 1 zero rows either side
    G[: h - 1] = 0.0
    G[T_out + h - 1 :] = 0.0
    c = scale[e]
    zero = dt.type(0)
    for t in range(T_out):  # as the torch path: no gradient through a non-finite output
        for k in range(N * V):
            d = diff[i, t, k]
            G[t + h - 1, k] = c * d if d - d == zero else zero
    for n in range(N):  # dL/dp[t] = Σ_v k[v] G[t + v]  (k[v] = kX[(h-1-v)·LANES])
        lane_products(T, gp, n * V, N * V, zeros, kX, (h - 1) * V, -V, G, n * V, N * V, N * V, h)
    _gather(z, e, b0, nb, zl)
    gzl, ge = np.empty(M * V, dt), gz[e]
    for t in range(T):  # dL/dẑ[t, m] = Σ_n B[n, m] dL/dp[t, n]
        products(M, gzl, 0, zeros, 0, gp[t], 0, V, B, e * N * M, 1, M, N)
        for m in range(M):
            lanes_copy(ge, (t * M + m) * Bp + b0, gzl, m * V)
    lanes_B[i] = 0.0  # dL/dB[n, m] = Σ_t dL/dp[t, n] ẑ[t, m], per lane
    tile_products(N, M, lanes_B[i], 0, M * V, V, gp, 0, V, N * V, zl, 0, V, M * V, T)


@njit(**FLAGS)
def _forward(C, z, B, kernel, target, st, se, Bt, kX, diff, loss, count):
    h = kernel.shape[0]
    for u in range(h):  # the kernel reversed, each value once per lane
        kX[u * V : (u + 1) * V] = kernel[h - 1 - u]
    sums, counts = np.empty(diff.shape[0], diff.dtype), np.empty(diff.shape[0], diff.dtype)
    for i in range(diff.shape[0]):
        _forward_chunk(i, C, z, B, kX, target, st, se, Bt, diff, sums, counts)
    for e in range(loss.shape[0]):  # chunks summed in a fixed order
        total, n = sums[e * C : (e + 1) * C].sum(), counts[e * C : (e + 1) * C].sum()
        count[e] = max(n, 1.0)
        loss[e] = total / count[e]


@njit(**FLAGS)
def _backward(C, z, B, kX, diff, grad, count, gz, lanes_B, gB, n_batch):
    scale = 2.0 * grad / count
    for i in range(diff.shape[0]):
        _backward_chunk(i, C, z, B, kX, diff, scale, gz, lanes_B, n_batch)
    E, N, M = gB.shape
    for e in range(E):
        for n in range(N):
            for m in range(M):
                acc = gB.dtype.type(0)
                for c in range(C):
                    acc += lanes_B[e * C + c, (n * M + m) * V : (n * M + m + 1) * V].sum()
                gB[e, n, m] = acc


def forward(z, B, kernel, target):
    """Per-model masked MSE ``(E,)`` of ``B (k * z)`` against ``target`` and the state
    ``backward`` needs (``z`` (T, E, Bt, M), best a view of a batch-innermost array)."""
    T, E, Bt, M = z.shape
    h, N, C = kernel.shape[0], B.shape[1], padded(Bt) // V
    zn, Bn = lanes_array(z), B.detach().contiguous().numpy()
    kX, loss, count = np.empty(h * V, zn.dtype), np.empty(E, zn.dtype), np.empty(E, zn.dtype)
    diff = np.empty((E * C, T - h + 1, N * V), zn.dtype)
    tf, st, se = rows_of(target)
    _forward(C, zn, Bn, kernel.detach().to(z.dtype).numpy(), tf, st, se, Bt, kX, diff, loss, count)
    return torch.from_numpy(loss), (zn, Bn, kX, diff, count, C, Bt)


def backward(state, grad):
    """Gradients on ``z`` (a view of a batch-innermost array) and ``B`` from the loss gradient."""
    zn, Bn, kX, diff, count, C, Bt = state
    gz, gB = np.empty_like(zn), np.empty_like(Bn)
    lanes_B = np.empty((diff.shape[0], Bn.shape[1] * Bn.shape[2] * V), zn.dtype)
    g = grad.detach().to(torch.from_numpy(zn).dtype).contiguous().numpy()
    _backward(C, zn, Bn, kX, diff, g, count, gz, lanes_B, gB, Bt)
    return lanes_tensor(gz, Bt), torch.from_numpy(gB)


class DecodeMSE(torch.autograd.Function):
    """Per-model masked MSE ``(E,)`` of ``B (k * z)`` against ``target`` (see module docstring)."""

    @staticmethod
    def forward(ctx, z, B, kernel, target):
        loss, ctx.state = forward(z, B, kernel, target)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        gz, gB = backward(ctx.state, grad)
        return gz, gB, None, None
