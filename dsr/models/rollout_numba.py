"""Compiled (numba) time loop of the fused GTF rollout and its adjoint, for CPU tensors.

``dsr.models.rollout.ForcedRollout`` calls ``forward`` / ``backward`` here when the compiled
kernels are available (``dsr.models.compiled``); the arithmetic is the same as its torch loop
(clamp form of the activation, sign folded into W1, adjoint with the analytic Jacobian), but each
batch runs as one compiled call instead of a few dozen tensor operations per time step.

Layout: a model's batch is cut into chunks of ``LANES`` windows; a chunk's states live as
``(features, LANES)`` blocks, so every per-step product is a fixed-width vector operation over
the windows (padding lanes are kept at zero and carry no gradient). ``keep``, ``target``, the
predictions and their gradient are batch-innermost arrays (``dsr.models._layout``), read and
written a vector at a time (moving them one value at a time took ~40 % of the forward at E = 64).
The forward stores only the states entering each step, ``zs (E·C, T, M·LANES)``; the backward
recomputes the hidden layer (cheaper than storing it at E = 64: 53 vs 62 ms) and collects
``TIME_BLOCK`` steps of factors for the per-lane weight-gradient sums, computed in 4 × 6 register
tiles (``tile_products``: 2x the rate of row products here). The (model, chunk) pairs are split over
torch's thread count by a thread pool (the kernels release the GIL); every pair writes its own
gradient slot and the slots are summed in a fixed order, so results do not depend on the threads.
``cache=True`` keeps the compiled code on disk (paid once per machine and dtype).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from dsr._allocator import tune_allocator
from dsr.models._layout import lanes_array, lanes_tensor, padded
from dsr.models._simd import FLAGS, LANES, products, tile_products
from dsr.models._vector import lanes_add, lanes_copy, lanes_fma

TIME_BLOCK = 16  # steps collected before the weight-gradient products
_FLAGS = FLAGS
V = LANES


@njit(**_FLAGS)
def _hidden(W2, h2, z, e, u):
    """``u[l] = h2[l] + Σ_m W2[l, m] z[m]``, rows of ``LANES`` windows."""
    L, M = W2.shape[1], W2.shape[2]
    products(L, u, 0, h2, e * L, z, 0, V, W2, e * L * M, M, 1, M)


@njit(**_FLAGS)
def _forward_chunk(i, C, z0, keep, target, A, W1s, W2, h1, h2, lo, hi, zhat, zs):
    T, D, Bp = keep.shape[1], keep.shape[2], keep.shape[3]
    B, M, L = z0.shape[1], W2.shape[2], W2.shape[1]
    e, b0 = i // C, (i % C) * V
    nb = min(V, B - b0)
    zero = zs.dtype.type(0)
    act, zh, u = np.empty(L * V, zs.dtype), np.empty(M * V, zs.dtype), np.empty(L * V, zs.dtype)
    z = zs[i, 0]
    for m in range(M):
        for j in range(V):
            z[m * V + j] = z0[e, b0 + j, m] if j < nb else zero
    for t in range(T):
        z = zs[i, t]
        _hidden(W2, h2, z, e, u)
        for k in range(L * V):
            v, a, b = u[k], lo[e, k], hi[e, k]
            act[k] = a if v < a else (b if v > b else v)
        products(M, zh, 0, h1, e * M, act, 0, V, W1s, e * M * L, L, 1, L)
        for k in range(M * V):
            zh[k] += A[e, k] * z[k]
        out = zhat[e, t]
        for m in range(M):
            lanes_copy(out, m * Bp + b0, zh, m * V)
            for j in range(nb, V):  # padding windows: zeros
                out[m, b0 + j] = zero
        if t + 1 < T:  # z̃_t = keep ⊙ ẑ_t + target on the forced dims
            nxt, kt, tt = zs[i, t + 1], keep[e, t], target[e, t]
            for m in range(M):
                if m < D:
                    lanes_fma(nxt, m * V, zh, m * V, kt, m * Bp + b0, tt, m * Bp + b0)
                else:
                    lanes_copy(nxt, m * V, zh, m * V)
                for j in range(nb, V):
                    nxt[m * V + j] = zero


@njit(**_FLAGS)
def _backward_chunk(i, C, grad, keep, A, W1s, W2, h2, lo, hi, zs, gz0, gW1, gW2, gA, gh1, gh2):
    T, D, Bp = keep.shape[1], keep.shape[2], keep.shape[3]
    B, M, L = gz0.shape[1], W2.shape[2], W2.shape[1]
    e, b0 = i // C, (i % C) * V
    nb = min(V, B - b0)
    dt = zs.dtype
    zero = dt.type(0)
    MV, LV = M * V, L * V
    u, ga, g_in = np.empty(LV, dt), np.empty(LV, dt), np.empty(MV, dt)
    act_b, gp_b = np.empty((TIME_BLOCK, LV), dt), np.empty((TIME_BLOCK, LV), dt)
    gz_b, zeros = np.zeros((TIME_BLOCK, MV), dt), np.zeros(max(L, M) + 8, dt)
    lanes_W1, lanes_W2 = np.zeros(M * LV, dt), np.zeros(L * MV, dt)
    acc_A, acc_h1, acc_h2 = np.zeros(MV, dt), np.zeros(MV, dt), np.zeros(LV, dt)
    zi = zs[i].reshape(T * MV)
    gz, gt = gz_b[(T - 1) % TIME_BLOCK], grad[e, T - 1]
    for m in range(M):
        lanes_copy(gz, m * V, gt, m * Bp + b0)
        for j in range(nb, V):  # padding windows carry no gradient
            gz[m * V + j] = zero
    for t in range(T - 1, -1, -1):
        s = t % TIME_BLOCK
        z, gz, act, gp = zs[i, t], gz_b[s], act_b[s], gp_b[s]
        _hidden(W2, h2, z, e, u)
        products(L, ga, 0, zeros, 0, gz, 0, V, W1s, e * M * L, 1, L, M)
        for k in range(LV):
            v, a, b, g = u[k], lo[e, k], hi[e, k], ga[k]
            f = a if v < a else (b if v > b else v)
            act[k] = f
            gp[k] = g if f == v else zero
            acc_h2[k] += g if v > zero else zero
        for k in range(MV):
            acc_A[k] += gz[k] * z[k]
            acc_h1[k] += gz[k]
        products(M, g_in, 0, zeros, 0, gp, 0, V, W2, e * L * M, 1, M, L)
        for k in range(MV):
            g_in[k] += A[e, k] * gz[k]
        if s == 0:  # steps [t, t + n) complete: W1[m, l] += gz[m] act[l], W2[l, m] += gp[l] z[m]
            n = min(TIME_BLOCK, T - t)
            tile_products(M, L, lanes_W1, 0, LV, V, gz_b, 0, V, MV, act_b, 0, V, LV, n)
            tile_products(L, M, lanes_W2, 0, MV, V, gp_b, 0, V, LV, zi, t * MV, V, MV, n)
        if t > 0:  # gradient on ẑ_{t-1}: its loss gradient plus keep ⊙ (gradient on z̃_{t-1})
            gz, gt, kt = gz_b[(t - 1) % TIME_BLOCK], grad[e, t - 1], keep[e, t - 1]
            for m in range(M):
                if m < D:
                    lanes_fma(gz, m * V, g_in, m * V, kt, m * Bp + b0, gt, m * Bp + b0)
                else:
                    lanes_add(gz, m * V, g_in, m * V, gt, m * Bp + b0)
                for j in range(nb, V):
                    gz[m * V + j] = zero
    for j in range(nb):
        for m in range(M):
            gz0[e, b0 + j, m] = g_in[m * V + j]
    for m in range(M):
        gA[i, m], gh1[i, m] = acc_A[m * V : (m + 1) * V].sum(), acc_h1[m * V : (m + 1) * V].sum()
        for l in range(L):
            gW1[i, m, l] = lanes_W1[(m * L + l) * V : (m * L + l + 1) * V].sum()
            gW2[i, l, m] = lanes_W2[(l * M + m) * V : (l * M + m + 1) * V].sum()
    for l in range(L):
        gh2[i, l] = acc_h2[l * V : (l + 1) * V].sum()


@njit(**_FLAGS)
def _prepare(A, W1, h1, h2, clipped, AX, W1s, h1s, loX, hiX, sign, lo):
    """The clamp form of the activation (see ``dsr.models.rollout._clamp_bounds``): sign folded
    into ``W1s``, offset into ``h1s``; per-lane copies ``AX``, ``loX``, ``hiX`` of A and the bounds."""
    E, M, L = W1.shape
    for e in range(E):
        for l in range(L):
            c = h2[e, l]
            neg = clipped and not c >= 0
            sign[e, l] = -1.0 if neg else 1.0
            lo[e, l] = c if neg else 0.0
            b = (0.0 if neg else c) if clipped else np.inf
            for j in range(V):
                loX[e, l * V + j], hiX[e, l * V + j] = lo[e, l], b
        for m in range(M):
            acc = h1[e, m]
            for l in range(L):
                W1s[e, m, l] = W1[e, m, l] * sign[e, l]
                acc -= W1s[e, m, l] * lo[e, l]
            h1s[e, m] = acc
            for j in range(V):
                AX[e, m * V + j] = A[e, m]


@njit(**_FLAGS)
def _finish(C, sign, lo, cW1, cW2, cA, ch1, ch2, gW1, gW2, gA, gh1, gh2):
    """Sum the (model, chunk) slots in a fixed order and undo the clamp form (W1, h2)."""
    E, M, L = gW1.shape
    for e in range(E):
        gW1[e] = 0.0
        gW2[e] = 0.0
        gA[e] = 0.0
        gh1[e] = 0.0
        gh2[e] = 0.0
        for c in range(C):
            i = e * C + c
            gW1[e] += cW1[i]
            gW2[e] += cW2[i]
            gA[e] += cA[i]
            gh1[e] += ch1[i]
            gh2[e] += ch2[i]
        for l in range(L):
            gh2[e, l] *= sign[e, l]
            for m in range(M):
                gW1[e, m, l] = (gW1[e, m, l] - gh1[e, m] * lo[e, l]) * sign[e, l]


@njit(**_FLAGS)
def _forward_range(lo_i, hi_i, C, z0, keep, target, AX, W1s, W2, h1s, h2, loX, hiX, zhat, zs):
    for i in range(lo_i, hi_i):
        _forward_chunk(i, C, z0, keep, target, AX, W1s, W2, h1s, h2, loX, hiX, zhat, zs)


@njit(**_FLAGS)
def _backward_range(lo_i, hi_i, C, grad, keep, AX, W1s, W2, h2, loX, hiX, zs, gz0, slots):
    cW1, cW2, cA, ch1, ch2 = slots
    for i in range(lo_i, hi_i):
        _backward_chunk(
            i, C, grad, keep, AX, W1s, W2, h2, loX, hiX, zs, gz0, cW1, cW2, cA, ch1, ch2
        )


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="dsr-rollout")


def _split(kernel, n_items: int, *args) -> None:
    """``kernel(i0, i1, *args)`` over contiguous ranges of the (model, chunk) pairs, one per torch
    thread, the first on the calling thread (the kernels release the GIL; numba's own
    ``parallel=True`` with its OpenMP layer ran 20-40x slower here beside torch's OpenMP threads).
    Each pair writes only its own slots, so the results do not depend on the threads."""
    workers = max(1, min(torch.get_num_threads(), n_items))
    if workers == 1:
        kernel(0, n_items, *args)
        return
    edges = [n_items * w // workers for w in range(workers + 1)]
    ranges = zip(edges[1:-1], edges[2:], strict=True)
    jobs = [_pool(workers - 1).submit(kernel, a, b, *args) for a, b in ranges]
    kernel(edges[0], edges[1], *args)  # the first range on this thread
    for job in jobs:
        job.result()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def forward(z0, keep, target, A, W1, W2, h1, h2, clipped: bool):
    """Forced rollout of ``ForcedRollout`` (same arguments; ``keep``, ``target`` best as views of
    batch-innermost arrays, see ``dsr.models._layout``): ``zhat (T, E, B, M)``, a view of such an
    array, and the tensors ``backward`` needs."""
    tune_allocator()  # the buffers below are large: keep them mapped between batches
    T, E, B, _ = keep.shape
    M, L, Bp = z0.shape[-1], h2.shape[-1], padded(B)
    C = Bp // V
    new = z0.new_empty
    prep = [new((E, M * V)), new((E, M, L)), new((E, M)), new((E, L * V)), new((E, L * V))]
    prep += [new((E, L)), new((E, L))]  # AX, W1s, h1s, loX, hiX, sign, lo
    _prepare(*(_np(p) for p in (A, W1, h1, h2)), clipped, *(p.numpy() for p in prep))
    AX, W1s, h1s, loX, hiX, sign, lo = prep
    keep_a = lanes_array(keep)
    zhat, zs = np.empty((E, T, M, Bp), keep_a.dtype), new((E * C, T, M * V))  # zs: z̃_{t-1}
    W2n, h2n = _np(W2), _np(h2)
    args = [_np(z0), keep_a, lanes_array(target), AX.numpy(), W1s.numpy(), W2n, h1s.numpy(), h2n]
    args += [loX.numpy(), hiX.numpy(), zhat, zs.numpy()]
    _split(_forward_range, E * C, C, *args)
    saved = (zs, torch.from_numpy(keep_a), AX, W1s, torch.from_numpy(W2n), torch.from_numpy(h2n))
    return lanes_tensor(zhat, B), (*saved, loX, hiX, sign, lo)


def backward(grad, saved):
    """Adjoint of ``forward``: gradients on z0, A, W1, W2, h1, h2 (``grad`` (T, E, B, M), best
    a view of a batch-innermost array)."""
    zs, keep, AX, W1s, W2, h2, loX, hiX, sign, lo = (t.numpy() for t in saved)
    (E, M, L), EC, B = W1s.shape, zs.shape[0], grad.shape[2]
    gz0 = torch.empty((E, B, M), dtype=saved[0].dtype)
    slots = tuple(
        np.empty(s, zs.dtype) for s in ((EC, M, L), (EC, L, M), (EC, M), (EC, M), (EC, L))
    )
    args = [lanes_array(grad), keep, AX, W1s, W2, h2, loX, hiX, zs, gz0.numpy(), slots]
    _split(_backward_range, EC, EC // E, *args)
    outs = [torch.empty((E, *s.shape[1:]), dtype=gz0.dtype) for s in slots]
    _finish(EC // E, sign, lo, *slots, *(o.numpy() for o in outs))
    g_W1, g_W2, g_A, g_h1, g_h2 = outs
    return gz0, g_A, g_W1, g_W2, g_h1, g_h2
