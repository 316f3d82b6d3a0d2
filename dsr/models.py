"""Latent maps: ensembles of (clipped) shallow PLRNNs with analytic Jacobians.

Every parameter carries a leading ensemble axis E, so one module holds E independent models and one
batched tensor program steps them all. Latent states are ``(E, B, M)``: model, batch, latent dim.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys

import torch
from torch import nn

from dsr._validation import check_choice, check_positive


class ShallowPLRNN(nn.Module):
    """Ensemble of E shallow PLRNNs (shPLRNN), spec section 1.

    ``z_t = A z_{t-1} + W1 relu(W2 z_{t-1} + h2) + h1``

    Parameters (all with leading axis E): ``A`` (E, M) diagonal, ``W1`` (E, M, L), ``W2`` (E, L, M),
    ``h1`` (E, M), ``h2`` (E, L).

    Parameters
    ----------
    n_models, latent_dim, hidden_dim : int
        E, M, L.
    generator : torch.Generator, optional
        Source of the random initialisation (CPU generator).
    dtype : torch.dtype
        float32 for training, float64 for analysis and tests.
    """

    clipped = False

    def __init__(
        self,
        n_models: int,
        latent_dim: int,
        hidden_dim: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        for name, value in [
            ("n_models", n_models),
            ("latent_dim", latent_dim),
            ("hidden_dim", hidden_dim),
        ]:
            check_positive(name, value, integer=True)
        E, M, L = n_models, latent_dim, hidden_dim
        self.n_models, self.latent_dim, self.hidden_dim = E, M, L
        g = generator

        def uniform(shape, bound):
            return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound

        R = torch.randn(E, M, M, generator=g, dtype=torch.float64)
        Q = R.transpose(1, 2) @ R / M + torch.eye(M, dtype=torch.float64)
        A = torch.diagonal(Q, dim1=1, dim2=2) / torch.linalg.eigvalsh(Q)[:, -1:]
        h2 = (
            uniform((E, L), 1 / math.sqrt(L))
            if self.clipped
            else torch.zeros(E, L, dtype=torch.float64)
        )
        self.A = nn.Parameter(A.to(dtype))
        self.W1 = nn.Parameter(uniform((E, M, L), 1 / math.sqrt(L)).to(dtype))
        self.W2 = nn.Parameter(uniform((E, L, M), 1 / math.sqrt(M)).to(dtype))
        self.h1 = nn.Parameter(torch.zeros(E, M, dtype=dtype))
        self.h2 = nn.Parameter(h2.to(dtype))

    def _activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Hidden-layer nonlinearity of ``pre = W2 z`` ``(E, B, L)``."""
        return torch.relu(pre + self.h2[:, None])

    def _activation_slope(self, pre: torch.Tensor) -> torch.Tensor:
        """d activation / d pre, elementwise ``(E, B, L)``."""
        return (pre + self.h2[:, None] > 0).to(pre.dtype)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """One step of the map, ``(E, B, M) -> (E, B, M)``."""
        pre = torch.bmm(z, self.W2.transpose(1, 2))
        return torch.baddbmm(
            self.A[:, None] * z + self.h1[:, None], self._activation(pre), self.W1.transpose(1, 2)
        )

    forward = step

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Analytic Jacobian ``dF/dz`` at ``z`` ``(E, B, M)`` -> ``(E, B, M, M)``."""
        slope = self._activation_slope(torch.bmm(z, self.W2.transpose(1, 2)))
        # (W1 ⊙ f') W2 as one bmm over E with (B·M) rows; the scaling broadcasts over outer dims
        # only (inner L contiguous): measured 1.7x faster than the 3-operand einsum on CPU
        E, B, M = z.shape
        scaled = self.W1[:, None] * slope[:, :, None, :]  # (E, B, M, L)
        jac = torch.bmm(scaled.view(E, B * M, -1), self.W2).view(E, B, M, M)
        jac.diagonal(dim1=-2, dim2=-1).add_(self.A[:, None])
        return jac

    def generate(self, z0: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Free-running trajectory from ``z0`` ``(E, B, M)``.

        Returns
        -------
        torch.Tensor, shape (n_steps, E, B, M)
            ``z0`` followed by ``n_steps - 1`` iterates (time on axis 0).
        """
        out = z0.new_empty((n_steps, *z0.shape))
        out[0] = z0
        for t in range(1, n_steps):
            out[t] = self.step(out[t - 1])
        return out

    def forced_rollout(
        self, z0: torch.Tensor, keep: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced rollout; returns the un-forced predictions ``ẑ_1..ẑ_T`` ``(T, E, B, M)``.

        ``ẑ_t = F(z̃_{t-1})``, ``z̃_t = ẑ_t ⊙ keep_t + target_t`` on the first D latents (the rest
        stay un-forced), ``z̃_0 = z0`` ``(E, B, M)``; ``keep``, ``target`` ``(T, E, B, D)`` carry no
        gradient. The (c)shPLRNN runs one fused forward/backward recurrence with the analytic
        Jacobian (``_ForcedRollout``); other subclasses fall back to autograd through ``step``.
        """
        if type(self).step is ShallowPLRNN.step and type(self)._activation in _FUSED:
            return _ForcedRollout.apply(
                z0, keep, target, self.A, self.W1, self.W2, self.h1, self.h2, self.clipped
            )
        n_forced, preds, z = keep.shape[-1], [], z0
        for t in range(keep.shape[0]):
            z_hat = self.step(z)
            preds.append(z_hat)
            forced = z_hat[..., :n_forced] * keep[t] + target[t]
            z = torch.cat([forced, z_hat[..., n_forced:]], -1)
        return torch.stack(preds)

    def hyperparameters(self) -> dict:
        return {
            "n_models": self.n_models,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
        }


class ClippedShallowPLRNN(ShallowPLRNN):
    """Ensemble of clipped shallow PLRNNs (cshPLRNN, the default), spec section 1.

    ``z_t = A z_{t-1} + W1 [relu(W2 z_{t-1} + h2) - relu(W2 z_{t-1})] + h1``; bounded when |A_ii| < 1.
    """

    clipped = True

    def _activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre + self.h2[:, None]) - torch.relu(pre)

    def _activation_slope(self, pre: torch.Tensor) -> torch.Tensor:
        return (pre + self.h2[:, None] > 0).to(pre.dtype) - (pre > 0).to(pre.dtype)


MODELS = {"cshPLRNN": ClippedShallowPLRNN, "shPLRNN": ShallowPLRNN}


def make_model(
    name: str, n_models: int, latent_dim: int, hidden_dim: int, **kwargs
) -> ShallowPLRNN:
    """Build a latent model ensemble by registry name (see ``MODELS``)."""
    check_choice("model", name, MODELS)
    return MODELS[name](n_models, latent_dim, hidden_dim, **kwargs)


def model_name(model: ShallowPLRNN) -> str:
    """Registry name of a model instance."""
    return next(k for k, v in MODELS.items() if type(model) is v)


_FUSED = (ShallowPLRNN._activation, ClippedShallowPLRNN._activation)


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


class _ForcedRollout(torch.autograd.Function):
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
        sign, lo, hi = _clamp_bounds(h2, clipped)
        W2t = W2.transpose(1, 2).contiguous()  # (E, M, L)
        W1s = W1 * sign[:, None, :]  # activation sign folded into W1, its offset into h1
        W1st = W1s.transpose(1, 2).contiguous()  # (E, L, M)
        h1E = _full(h1 - torch.einsum("eml,el->em", W1s, lo), B)
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
        ctx.clipped = clipped
        ctx.save_for_backward(zin, u, keep, A, W1s, W2, sign, lo, hi)
        return zhat

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
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


_ALLOCATOR_TUNED = False


def _tune_allocator() -> None:
    """glibc only, once per process: serve large CPU tensors from the heap and keep freed memory
    for reuse (``mallopt``: no ``mmap`` for big blocks, no trimming).

    By default glibc maps every block above a few MB fresh with ``mmap`` and unmaps it on free, so
    each training batch page-faults all of its (T, E, B, ·) tensors in again on first touch; at
    E = 64 (LEMON size) that was ~45 % of the step (485 -> 259 ms/batch measured, see
    benchmarks/README.md). Peak memory is unchanged; freed memory stays with the process.
    Set ``DSR_NO_MALLOC_TUNING=1`` to skip.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    if not sys.platform.startswith("linux") or os.environ.get("DSR_NO_MALLOC_TUNING"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc malloc.h
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        libc.mallopt(M_MMAP_MAX, 0)
    except (OSError, AttributeError):  # not glibc (musl, ...): keep the defaults
        pass
