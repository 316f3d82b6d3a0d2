"""Compiled (numba) time loop of the fused GTF rollout and its adjoint, for CPU tensors.

``dsr.models.rollout.ForcedRollout`` calls ``forward`` / ``backward`` here when numba imports;
the arithmetic is the same as its torch loop (clamp form of the activation, sign folded into W1,
adjoint with the analytic Jacobian), but each batch runs as one compiled call instead of a few
dozen tensor operations per time step.

Layout: a model's batch is cut into chunks of ``LANES`` windows; a chunk's states live as
``(features, LANES)`` blocks, so every per-step product is a fixed-width vector operation over
the windows (padding lanes are kept at zero and carry no gradient). The forward stores only the
states entering each step, ``zs (E·C, T, M·LANES)``; the backward recomputes the hidden layer
(cheaper than storing it at E = 64: 53 vs 62 ms) and collects ``TIME_BLOCK`` steps of factors
before adding them to per-lane weight-gradient sums. The (model, chunk) pairs are split over
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
from dsr.models._simd import FLAGS, LANES, lane_products, products

TIME_BLOCK = 8  # steps collected before the weight-gradient products
_FLAGS = FLAGS
V = LANES


@njit(**_FLAGS)
def _hidden(W2, h2, z, e, u):
    """``u[l] = h2[l] + Σ_m W2[l, m] z[m]``, rows of ``LANES`` windows."""
    L, M = W2.shape[1], W2.shape[2]
    products(L, u, 0, h2, e * L, z, 0, V, W2, e * L * M, M, 1, M)


@njit(**_FLAGS)
def _forward_chunk(i, C, z0, keep, target, A, W1s, W2, h1, h2, lo, hi, zhat, zs):
    T, B, D = keep.shape[1], keep.shape[2], keep.shape[3]
    M, L = W2.shape[2], W2.shape[1]
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
        for j in range(nb):
            for m in range(M):
                zhat[t, e, b0 + j, m] = zh[m * V + j]
        if t + 1 < T:
            nxt = zs[i, t + 1]
            for k in range(M * V):
                nxt[k] = zh[k]
            for j in range(nb):
                for m in range(D):
                    nxt[m * V + j] = zh[m * V + j] * keep[e, t, b0 + j, m] + target[e, t, b0 + j, m]
            for m in range(M):
                for j in range(nb, V):
                    nxt[m * V + j] = zero


@njit(**_FLAGS)
def _backward_chunk(i, C, grad, keep, A, W1s, W2, h2, lo, hi, zs, gz0, gW1, gW2, gA, gh1, gh2):
    T, B, D = keep.shape[1], keep.shape[2], keep.shape[3]
    M, L = W2.shape[2], W2.shape[1]
    e, b0 = i // C, (i % C) * V
    nb = min(V, B - b0)
    dt = zs.dtype
    zero = dt.type(0)
    u, ga, g_in = np.empty(L * V, dt), np.empty(L * V, dt), np.empty(M * V, dt)
    act_b, gp_b = np.empty((TIME_BLOCK, L * V), dt), np.empty((TIME_BLOCK, L * V), dt)
    gz_b, zeros = np.zeros((TIME_BLOCK, M * V), dt), np.zeros(max(L, M) + 8, dt)
    lanes_W1, lanes_W2 = np.zeros(M * L * V, dt), np.zeros(L * M * V, dt)
    acc_A, acc_h1, acc_h2 = np.zeros(M * V, dt), np.zeros(M * V, dt), np.zeros(L * V, dt)
    zi = zs[i].reshape(T * M * V)
    s = (T - 1) % TIME_BLOCK
    for j in range(nb):
        for m in range(M):
            gz_b[s, m * V + j] = grad[T - 1, e, b0 + j, m]
    for t in range(T - 1, -1, -1):
        s = t % TIME_BLOCK
        z, gz, act, gp = zs[i, t], gz_b[s], act_b[s], gp_b[s]
        _hidden(W2, h2, z, e, u)
        products(L, ga, 0, zeros, 0, gz, 0, V, W1s, e * M * L, 1, L, M)
        for k in range(L * V):
            v, a, b, g = u[k], lo[e, k], hi[e, k], ga[k]
            f = a if v < a else (b if v > b else v)
            act[k] = f
            gp[k] = g if f == v else zero
            acc_h2[k] += g if v > zero else zero
        for k in range(M * V):
            acc_A[k] += gz[k] * z[k]
            acc_h1[k] += gz[k]
        products(M, g_in, 0, zeros, 0, gp, 0, V, W2, e * L * M, 1, M, L)
        for k in range(M * V):
            g_in[k] += A[e, k] * gz[k]
        if s == 0:  # steps [t, t + n) complete: add their weight-gradient products per lane
            n = min(TIME_BLOCK, T - t)
            MV, LV = M * V, L * V
            for m in range(M):  # W1[m, l] += gz[m] act[l]; W2[l, m] += gp[l] z[m]  (rows: l)
                o = m * V
                lane_products(L, lanes_W1, m * LV, V, zeros, gz_b, o, MV, act_b, 0, V, LV, n)
                lane_products(L, lanes_W2, o, MV, zeros, zi, t * MV + o, MV, gp_b, 0, V, LV, n)
        if t > 0:
            s = (t - 1) % TIME_BLOCK
            for j in range(nb):
                for m in range(M):
                    g = g_in[m * V + j] * keep[e, t - 1, b0 + j, m] if m < D else g_in[m * V + j]
                    gz_b[s, m * V + j] = grad[t - 1, e, b0 + j, m] + g
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


def _model_major(t: torch.Tensor) -> np.ndarray:
    """``(T, E, ·)`` as a C-contiguous ``(E, T, ·)`` array; no copy when ``t`` is laid out
    model-major, as the decoder's forcing is (a copy to time-major cost ~8 ms per batch at E = 64)."""
    return _np(t.transpose(0, 1))


def forward(z0, keep, target, A, W1, W2, h1, h2, clipped: bool):
    """Forced rollout of ``ForcedRollout`` (same arguments): ``zhat (T, E, B, M)`` and the
    tensors ``backward`` needs."""
    tune_allocator()  # the buffers below are large: keep them mapped between batches
    T, E, B, _ = keep.shape
    M, L, C = z0.shape[-1], h2.shape[-1], -(-B // LANES)
    new = z0.new_empty
    prep = [new((E, M * V)), new((E, M, L)), new((E, M)), new((E, L * V)), new((E, L * V))]
    prep += [new((E, L)), new((E, L))]  # AX, W1s, h1s, loX, hiX, sign, lo
    _prepare(*(_np(p) for p in (A, W1, h1, h2)), clipped, *(p.numpy() for p in prep))
    AX, W1s, h1s, loX, hiX, sign, lo = prep
    zhat, zs = new((T, E, B, M)), new((E * C, T, M * V))  # zs: states entering each step
    W2n, h2n = _np(W2), _np(h2)
    args = [_np(z0), _model_major(keep), _model_major(target), AX.numpy(), W1s.numpy(), W2n]
    args += [h1s.numpy(), h2n, loX.numpy(), hiX.numpy(), zhat.numpy(), zs.numpy()]
    _split(_forward_range, E * C, C, *args)
    return zhat, (zs, AX, W1s, torch.from_numpy(W2n), torch.from_numpy(h2n), loX, hiX, sign, lo)


def backward(grad, keep, saved):
    """Adjoint of ``forward``: gradients on z0, A, W1, W2, h1, h2."""
    zs, AX, W1s, W2, h2, loX, hiX, sign, lo = (t.numpy() for t in saved)
    (E, M, L), EC, B = W1s.shape, zs.shape[0], keep.shape[2]
    gz0 = torch.empty((E, B, M), dtype=saved[0].dtype)
    slots = tuple(
        np.empty(s, zs.dtype) for s in ((EC, M, L), (EC, L, M), (EC, M), (EC, M), (EC, L))
    )
    args = [_np(grad), _model_major(keep), AX, W1s, W2, h2, loX, hiX, zs, gz0.numpy(), slots]
    _split(_backward_range, EC, EC // E, *args)
    outs = [torch.empty((E, *s.shape[1:]), dtype=gz0.dtype) for s in slots]
    _finish(EC // E, sign, lo, *slots, *(o.numpy() for o in outs))
    g_W1, g_W2, g_A, g_h1, g_h2 = outs
    return gz0, g_A, g_W1, g_W2, g_h1, g_h2
