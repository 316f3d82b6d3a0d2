"""The fused GTF rollout of a (c)shPLRNN ensemble: one autograd node with a hand-written adjoint.

Used by ``ShallowPLRNN.forced_rollout``; checked against the autograd loop through
``ShallowPLRNN.step`` and by ``gradcheck`` (tests/test_reliability.py).

On CPU the time loop runs compiled (``dsr.models.rollout_numba``, one call per batch forward and
backward) when the compiled kernels are available (``dsr.models.compiled``: numba imports and they
compile, else warned once); otherwise, on CUDA, and with ``DSR_ROLLOUT=torch`` (or
``BACKEND = "torch"``) it runs as a few tensor operations per step (the torch loop below). Both
compute the same recurrence (tests/test_rollout_numba.py: 1e-10 in float64).
"""

from __future__ import annotations

import math
import os

import torch

from dsr.models import compiled

#: "auto": the compiled loop for CPU tensors when the kernels are available; "torch": tensor ops
BACKEND = os.environ.get("DSR_ROLLOUT", "auto")


def compiled_kernels(dtype: torch.dtype = torch.float32):
    """The compiled kernel modules for ``dtype`` (``dsr.models.compiled.kernels``), or None."""
    return compiled.kernels(dtype)


def _use_compiled(*tensors: torch.Tensor) -> bool:
    if BACKEND == "torch" or any(t.device.type != "cpu" for t in tensors):
        return False
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64) or any(t.dtype != dtype for t in tensors):
        return False
    return compiled_kernels(dtype) is not None


def _clamp_bounds(h2: torch.Tensor, clipped: bool):
    """Write the activation ``f(p)`` as ``s ⊙ (clamp(p + h2, lo, hi) − lo)`` (one clamp per step).

    cshPLRNN: ``relu(u) − relu(u − h2)`` with ``u = p + h2`` is ``clamp(u, 0, h2)`` for h2 ≥ 0 and
    ``−(clamp(u, h2, 0) − h2)`` for h2 < 0; shPLRNN: ``relu(u)`` (lo = 0, hi = ∞, s = 1).
    Returns ``(sign, lo, hi)``, each ``(E, L)``.
    """
    if not clipped:
        zero = torch.zeros_like(h2)
        return torch.ones_like(h2), zero, torch.full_like(h2, math.inf)
    pos = h2 >= 0
    zero = torch.zeros_like(h2)
    return torch.where(pos, 1.0, -1.0).to(h2.dtype), torch.where(pos, zero, h2), h2.clamp(min=0)


class ForcedRollout(torch.autograd.Function):
    """Whole GTF rollout of a (c)shPLRNN ensemble as one autograd node.

    Forward, per step: ``bmm`` + ``clamp`` (hidden layer), ``bmm`` + ``addcmul`` (map), ``addcmul``
    (forcing) into preallocated buffers; weights are transposed/contiguous once, per-model constants
    are expanded to full ``(E, B, ·)`` (broadcast elementwise ops were measured 3-5x slower on CPU).
    Only the states and pre-activations are stored. Backward: the adjoint recurrence with the
    analytic Jacobian ``diag(A) + W1 diag(f') W2``; activation, slopes and weight gradients are
    recomputed/accumulated per step on cache-sized ``(E, B, ·)`` tensors (streaming extra
    ``(T, E, B, L)`` buffers through memory was the main cost at E = 64).
    """

    @staticmethod
    def forward(ctx, z0, keep, target, A, W1, W2, h1, h2, clipped):
        n_steps, E, B, D = keep.shape
        M, L = z0.shape[-1], h2.shape[-1]
        ctx.clipped = clipped
        ctx.compiled = _use_compiled(z0, keep, target, A, W1, W2, h1, h2)
        if ctx.compiled:
            kernels = compiled_kernels(z0.dtype).rollout
            zhat, saved = kernels.forward(z0, keep, target, A, W1, W2, h1, h2, clipped)
            ctx.save_for_backward(*saved)
            return zhat
        sign, lo, hi = _clamp_bounds(h2, clipped)
        W1s = W1 * sign[:, None, :]  # activation sign folded into W1, its offset into h1
        h1s = h1 - torch.einsum("eml,el->em", W1s, lo)
        W2t = W2.transpose(1, 2).contiguous()  # (E, M, L)
        W1st = W1s.transpose(1, 2).contiguous()  # (E, L, M)
        h1E = _full(h1s, B)
        h2E, loE, hiE, AE = _full(h2, B), _full(lo, B), _full(hi, B), _full(A, B)
        zin = z0.new_empty((n_steps, E, B, M))  # state entering step t (z̃_{t-1})
        u = z0.new_empty((n_steps, E, B, L))  # W2 z̃_{t-1} + h2
        zhat = z0.new_empty((n_steps, E, B, M))
        act = z0.new_empty((E, B, L))
        zin[0] = z0
        # per-step views made once (Python indexing costs ~2 µs per call, 4 calls per step)
        zin_t, u_t, zhat_t = zin.unbind(0), u.unbind(0), zhat.unbind(0)
        keep_t, target_t = keep.unbind(0), target.unbind(0)
        for t in range(n_steps):
            ut = torch.bmm(zin_t[t], W2t, out=u_t[t]).add_(h2E)
            if clipped:
                torch.clamp(ut, loE, hiE, out=act)
            else:
                torch.clamp_min(ut, 0.0, out=act)
            zh = torch.bmm(act, W1st, out=zhat_t[t])
            zh.add_(h1E).addcmul_(AE, zin_t[t])
            if t + 1 < n_steps:
                if D == M:
                    torch.addcmul(target_t[t], zh, keep_t[t], out=zin_t[t + 1])
                else:
                    nxt = zin_t[t + 1]
                    nxt.copy_(zh)
                    nxt[..., :D].mul_(keep_t[t]).add_(target_t[t])
        ctx.save_for_backward(zin, u, keep, A, W1s, W2, sign, lo, hi)
        return zhat

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        if ctx.compiled:
            saved = ctx.saved_tensors
            kernels = compiled_kernels(saved[0].dtype).rollout
            g_in, g_A, g_W1, g_W2, g_h1, g_h2 = kernels.backward(grad, saved)
            return g_in, None, None, g_A, g_W1, g_W2, g_h1, g_h2, None
        zin, u, keep, A, W1s, W2, sign, lo, hi = ctx.saved_tensors
        n_steps, E, B, M = zin.shape
        L, D = u.shape[-1], keep.shape[-1]
        loE, hiE, AE = _full(lo, B), _full(hi, B), _full(A, B)
        grad = grad.contiguous()
        new, zeros = zin.new_empty, zin.new_zeros
        act, mask, pos, ga, gp = (new((E, B, L)) for _ in range(5))
        gz, g_in = grad[-1].clone(), new((E, B, M))  # gz: total gradient on ẑ_t
        g_W1, g_W2, g_h2 = zeros((E, M, L)), zeros((E, L, M)), zeros((E, B, L))
        g_A, g_h1 = zeros((E, B, M)), zeros((E, B, M))
        zin_t, u_t, keep_t, grad_t = zin.unbind(0), u.unbind(0), keep.unbind(0), grad.unbind(0)
        for t in range(n_steps - 1, -1, -1):
            ut = u_t[t]
            if ctx.clipped:
                torch.clamp(ut, loE, hiE, out=act)
                torch.eq(ut, act, out=mask)  # interior of the clamp (slope ±1)
                torch.gt(ut, 0.0, out=pos)
            else:
                torch.clamp_min(ut, 0.0, out=act)
                torch.gt(ut, 0.0, out=mask)
                pos = mask
            torch.bmm(gz, W1s, out=ga)  # = sign * dL/df
            torch.mul(ga, mask, out=gp)
            g_h2.addcmul_(ga, pos)
            g_W1.baddbmm_(gz.transpose(1, 2), act)
            g_W2.baddbmm_(gp.transpose(1, 2), zin_t[t])
            g_A.addcmul_(gz, zin_t[t])
            g_h1.add_(gz)
            torch.bmm(gp, W2, out=g_in).addcmul_(AE, gz)  # gradient on z̃_{t-1}
            if t > 0:
                if D == M:
                    torch.addcmul(grad_t[t - 1], g_in, keep_t[t - 1], out=gz)
                else:
                    g_in[..., :D].mul_(keep_t[t - 1])
                    torch.add(grad_t[t - 1], g_in, out=gz)
        g_h1 = g_h1.sum(1)
        g_W1 = (g_W1 - g_h1[:, :, None] * lo[:, None]) * sign[:, None]
        return g_in, None, None, g_A.sum(1), g_W1, g_W2, g_h1, g_h2.sum(1) * sign, None


def _full(v: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-model constant ``(E, K)`` expanded to a contiguous ``(E, batch, K)``."""
    return v[:, None].expand(v.shape[0], batch, v.shape[-1]).contiguous()
