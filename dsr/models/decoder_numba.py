"""Compiled (numba) observation and loss of a GTF batch on CPU: ``x̂ = B (k * ẑ)`` scored by the
masked MSE against the data, forward and backward in one call each.

Same values as ``LinearDecoder.decode`` followed by ``dsr.training.gtf.masked_mse`` (no
confounds): a non-finite target sample is left out of its model's sum and count, a non-finite
prediction makes its model's loss non-finite. Layout as in ``dsr.models.rollout_numba``: each
(model, chunk of ``LANES`` windows) pair works on ``(time, features · LANES)`` blocks; per time the
projection ``p = B ẑ`` is one vector product, the convolution over time a sum of ``h`` lane
products (the kernel repeated per lane). The torch path took 1.4 ms of a 6 ms demo batch.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from dsr.models._simd import FLAGS, LANES, lane_products, products

V = LANES


@njit(**FLAGS)
def _gather(z, e, b0, nb, zl):
    """``zl[t, m·LANES + j] = z[t, e, b0 + j, m]`` (0 in padding lanes)."""
    T, M = z.shape[0], z.shape[3]
    zl[:] = 0.0
    for t in range(T):
        for j in range(nb):
            for m in range(M):
                zl[t, m * V + j] = z[t, e, b0 + j, m]


@njit(**FLAGS)
def _forward_chunk(i, C, z, B, kX, target, diff, sums, counts):
    T, Bt, M = z.shape[0], z.shape[2], z.shape[3]
    N, h, T_out = B.shape[1], kX.shape[0] // V, target.shape[0]
    e, b0 = i // C, (i % C) * V
    nb = min(V, Bt - b0)
    dt = diff.dtype
    zl, p, zeros = np.empty((T, M * V), dt), np.empty((T, N * V), dt), np.zeros(N + 8, dt)
    _gather(z, e, b0, nb, zl)
    for t in range(T):  # p[t, n] = Σ_m B[n, m] ẑ[t, m]
        products(N, p[t], 0, zeros, 0, zl[t], 0, V, B, e * N * M, M, 1, M)
    xh = diff[i]
    xh[:] = 0.0
    for n in range(N):  # x̂[t, n] = Σ_u k[h-1-u] p[t + u, n]  (kX holds k reversed, per lane)
        lane_products(T_out, xh, n * V, N * V, zeros, kX, 0, V, p, n * V, N * V, N * V, h)
    tl = np.full((T_out, N * V), np.nan, dt)  # the targets in lanes; NaN: not scored
    for t in range(T_out):
        for j in range(nb):
            for n in range(N):
                tl[t, n * V + j] = target[t, e, b0 + j, n]
    flat, tflat = xh.reshape(T_out * N * V), tl.reshape(T_out * N * V)
    total, count, zero, one = dt.type(0), dt.type(0), dt.type(0), dt.type(1)
    for k in range(T_out * N * V):
        y = tflat[k]
        ok = y - y == zero  # finite
        d = (flat[k] - (y if ok else zero)) * (one if ok else zero)
        flat[k] = d
        total += d * d
        count += one if ok else zero
    sums[i], counts[i] = total, count


@njit(**FLAGS)
def _backward_chunk(i, C, z, B, kX, diff, scale, gz, lanes_B):
    T, Bt, M = z.shape[0], z.shape[2], z.shape[3]
    N, h, T_out = B.shape[1], kX.shape[0] // V, diff.shape[1]
    e, b0 = i // C, (i % C) * V
    nb = min(V, Bt - b0)
    dt = diff.dtype
    zl, gp, zeros = np.empty((T, M * V), dt), np.zeros((T, N * V), dt), np.zeros(N + M + 8, dt)
    G = np.zeros((T_out + 2 * (h - 1), N * V), dt)  # dL/dx̂ with h - 1 zero rows either side
    c = scale[e]
    zero = dt.type(0)
    for t in range(T_out):  # as the torch path: no gradient through a non-finite output
        for k in range(N * V):
            d = diff[i, t, k]
            G[t + h - 1, k] = c * d if d - d == zero else zero
    for n in range(N):  # dL/dp[t] = Σ_v k[v] G[t + v]  (k[v] = kX[(h-1-v)·LANES])
        lane_products(T, gp, n * V, N * V, zeros, kX, (h - 1) * V, -V, G, n * V, N * V, N * V, h)
    _gather(z, e, b0, nb, zl)
    gzl = np.empty(M * V, dt)
    lanes_B[i] = 0.0
    for t in range(T):  # dL/dẑ[t, m] = Σ_n B[n, m] dL/dp[t, n]
        products(M, gzl, 0, zeros, 0, gp[t], 0, V, B, e * N * M, 1, M, N)
        for j in range(nb):
            for m in range(M):
                gz[t, e, b0 + j, m] = gzl[m * V + j]
    for n in range(N):  # dL/dB[n, m] = Σ_t dL/dp[t, n] ẑ[t, m], per lane
        lane_products(M, lanes_B[i], n * M * V, V, zeros, gp, n * V, N * V, zl, 0, V, M * V, T)


@njit(**FLAGS)
def _forward(C, z, B, kernel, target, kX, diff, loss, count):
    h = kernel.shape[0]
    for u in range(h):  # the kernel reversed, each value once per lane
        kX[u * V : (u + 1) * V] = kernel[h - 1 - u]
    sums, counts = np.empty(diff.shape[0], diff.dtype), np.empty(diff.shape[0], diff.dtype)
    for i in range(diff.shape[0]):
        _forward_chunk(i, C, z, B, kX, target, diff, sums, counts)
    for e in range(loss.shape[0]):  # chunks summed in a fixed order
        total, n = sums[e * C : (e + 1) * C].sum(), counts[e * C : (e + 1) * C].sum()
        count[e] = max(n, 1.0)
        loss[e] = total / count[e]


@njit(**FLAGS)
def _backward(C, z, B, kX, diff, grad, count, gz, lanes_B, gB):
    scale = 2.0 * grad / count
    for i in range(diff.shape[0]):
        _backward_chunk(i, C, z, B, kX, diff, scale, gz, lanes_B)
    E, N, M = gB.shape
    for e in range(E):
        for n in range(N):
            for m in range(M):
                acc = gB.dtype.type(0)
                for c in range(C):
                    acc += lanes_B[e * C + c, (n * M + m) * V : (n * M + m + 1) * V].sum()
                gB[e, n, m] = acc


class DecodeMSE(torch.autograd.Function):
    """Per-model masked MSE ``(E,)`` of ``B (k * z)`` against ``target`` (see module docstring)."""

    @staticmethod
    def forward(ctx, z, B, kernel, target):
        T, E, Bt, M = z.shape
        h, N, C = kernel.shape[0], B.shape[1], -(-Bt // V)
        zn, Bn = z.detach().contiguous().numpy(), B.detach().contiguous().numpy()
        kX, loss, count = np.empty(h * V, zn.dtype), np.empty(E, zn.dtype), np.empty(E, zn.dtype)
        diff = np.empty((E * C, T - h + 1, N * V), zn.dtype)
        args = (kernel.detach().to(z.dtype).numpy(), target.detach().contiguous().numpy())
        _forward(C, zn, Bn, *args, kX, diff, loss, count)
        ctx.zn, ctx.Bn, ctx.kX, ctx.diff, ctx.count, ctx.C = zn, Bn, kX, diff, count, C
        return torch.from_numpy(loss)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        zn, Bn = ctx.zn, ctx.Bn
        gz, gB = np.empty_like(zn), np.empty_like(Bn)
        lanes_B = np.empty((ctx.diff.shape[0], Bn.shape[1] * Bn.shape[2] * V), zn.dtype)
        g = grad.detach().to(torch.from_numpy(zn).dtype).contiguous().numpy()
        _backward(ctx.C, zn, Bn, ctx.kX, ctx.diff, g, ctx.count, gz, lanes_B, gB)
        return torch.from_numpy(gz), torch.from_numpy(gB), None, None
