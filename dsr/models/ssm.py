"""Latent maps from the state-space literature: an S4D diagonal linear SSM and a selective SSM.

Both fulfil the ``LatentMap`` contract (autonomous map, analytic Jacobian, every parameter with a
leading ensemble axis E, states ``(E, B, M)``) and train through the generic autograd forced
rollout, with the parameter transforms hoisted out of the time loop (``_rollout_step``).

- ``DiagonalSSM`` (registry name ``S4D``) is linear: it cannot be chaotic, and its Lyapunov
  spectrum is exactly ``log|λ_k|``. It is the "previous generation" baseline that shows what the
  nonlinearity of the PLRNNs buys.
- ``SelectiveSSM`` (``selectiveSSM``) has a state-dependent (gated) diagonal decay, the
  multiplicative interaction that selectivity theory credits with its expressive power.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsr.models.latent import LatentMap, check_sizes


def _swap_pairs(z: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """``z`` (..., M) with the entries of each pair (2k, 2k+1), k < n_pairs, swapped."""
    pairs = z[..., : 2 * n_pairs].unflatten(-1, (n_pairs, 2)).flip(-1).flatten(-2)
    return torch.cat([pairs, z[..., 2 * n_pairs :]], -1)


class DiagonalSSM(LatentMap):
    """Ensemble of E diagonal linear SSMs with complex parameterisation (S4D; Gu et al. 2022).

    ``z_t = Λ z_{t-1} + h``, Λ block-diagonal: ``P = M // 2`` complex modes
    ``λ_k = exp(Δ_k (−a_k + i b_k))``, each stored as the real 2 × 2 rotation-scaling block
    ``|λ_k| [[cos θ_k, −sin θ_k], [sin θ_k, cos θ_k]]`` (θ_k = Δ_k b_k) acting on latents
    (2k, 2k+1); when M is odd the last latent is one real mode ``λ = exp(−Δ a)``. ``a_k = exp(log_a)
    > 0`` keeps every |λ_k| < 1, so orbits converge to the one fixed point ``(I − Λ)⁻¹ h``; the
    map is linear and cannot be chaotic. Lyapunov spectrum: ``log|λ_k| = −Δ_k a_k`` (each pair
    twice).

    S4D-Lin initialisation: ``a = ½``, ``b_k = π k``, Δ log-uniform in [0.001, 0.1], ``h = 0``.

    Parameters (all with leading axis E): ``log_dt`` (E, Q) and ``log_a`` (E, Q) with
    ``Q = ceil(M / 2)`` modes, ``b`` (E, P), ``h`` (E, M). 3Q + P + M ≈ 3M numbers per model.

    Parameters
    ----------
    n_models, latent_dim : int
        E, M.
    hidden_dim : int
        Not used by this map (kept so that every registry entry is built the same way and the
        ensemble file format stays the same).
    generator : torch.Generator, optional
        Source of the random initialisation of Δ (CPU generator).
    dtype : torch.dtype
        float32 for training, float64 for analysis and tests.
    """

    map_kind = "affine"
    dt_min, dt_max = 1e-3, 1e-1

    def __init__(
        self,
        n_models: int,
        latent_dim: int,
        hidden_dim: int = 1,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        check_sizes(n_models, latent_dim, hidden_dim)
        E, M = n_models, latent_dim
        self.n_models, self.latent_dim, self.hidden_dim = E, M, hidden_dim
        P, Q = M // 2, (M + 1) // 2
        u = torch.rand(E, Q, generator=generator, dtype=torch.float64)
        log_dt = math.log(self.dt_min) + u * (math.log(self.dt_max) - math.log(self.dt_min))
        b = math.pi * torch.arange(P, dtype=torch.float64).expand(E, P)
        self.log_dt = nn.Parameter(log_dt.to(dtype))
        self.log_a = nn.Parameter(torch.full((E, Q), math.log(0.5), dtype=dtype))
        self.b = nn.Parameter(b.to(dtype))
        self.h = nn.Parameter(torch.zeros(E, M, dtype=dtype))

    @property
    def n_pairs(self) -> int:
        return self.latent_dim // 2

    def _coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(diag, off)`` (E, M): ``F(z) = diag ⊙ z + off ⊙ swap_pairs(z) + h``."""
        P = self.n_pairs
        dt = self.log_dt.exp()
        r = torch.exp(-dt * self.log_a.exp())  # |λ| (E, Q)
        theta = dt[:, :P] * self.b
        re, im = r[:, :P] * torch.cos(theta), r[:, :P] * torch.sin(theta)
        diag = torch.cat([re.repeat_interleave(2, -1), r[:, P:]], -1)
        off = torch.cat([torch.stack([-im, im], -1).flatten(1), torch.zeros_like(r[:, P:])], -1)
        return diag, off

    def _rollout_step(self):
        diag, off = (c[:, None] for c in self._coefficients())
        h, P = self.h[:, None], self.n_pairs
        return lambda z: torch.addcmul(torch.addcmul(h, diag, z), off, _swap_pairs(z, P))

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """One step of the map, ``(E, B, M) -> (E, B, M)``."""
        return self._rollout_step()(z)

    def transition_matrix(self) -> torch.Tensor:
        """Λ as a real block-diagonal matrix ``(E, M, M)``."""
        diag, off = self._coefficients()
        M = self.latent_dim
        up, low = torch.zeros_like(off[:, : M - 1]), torch.zeros_like(off[:, : M - 1])
        up[:, 0::2] = off[:, 0 : 2 * self.n_pairs : 2]  # J[2k, 2k+1] = −Im λ_k
        low[:, 0::2] = off[:, 1 : 2 * self.n_pairs : 2]  # J[2k+1, 2k] = +Im λ_k
        return (
            torch.diag_embed(diag)
            + torch.diag_embed(up, offset=1)
            + torch.diag_embed(low, offset=-1)
        )

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """``dF/dz = Λ`` at every ``z`` ``(E, B, M)`` -> ``(E, B, M, M)``."""
        E, B, M = z.shape
        return self.transition_matrix()[:, None].expand(E, B, M, M).contiguous()

    def eigenvalues(self) -> torch.Tensor:
        """``λ`` of every mode, complex ``(E, M)``: each pair as ``λ_k, conj(λ_k)``, then the real
        mode when M is odd."""
        P = self.n_pairs
        dt = self.log_dt.exp()
        angle = torch.cat([dt[:, :P] * self.b, torch.zeros_like(dt[:, P:])], -1)
        lam = torch.exp(torch.complex(-dt * self.log_a.exp(), angle))  # (E, Q)
        pairs = torch.stack([lam[:, :P], lam[:, :P].conj()], -1).flatten(1)
        return torch.cat([pairs, lam[:, P:]], -1)

    def hyperparameters(self) -> dict:
        return {
            "n_models": self.n_models,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
        }


class SelectiveSSM(LatentMap):
    """Ensemble of E selective (gated) SSMs: a diagonal decay that depends on the state.

    ``z_t = a(z_{t-1}) ⊙ z_{t-1} + W tanh(V z_{t-1} + c) + h``, ``a(z) = σ(G z + g)`` elementwise
    (Mamba-style input-dependent gating, here driven by the state; Cirone et al. 2024).
    ``σ(x) = exp(−softplus(−x))``, so this is the ``exp(−softplus(·) Δ)`` form with Δ = 1.
    Every decay lies in (0, 1) and the hidden layer is bounded, so an orbit can at worst drift
    linearly, never blow up exponentially.

    Jacobian: ``J(z) = diag(a) + diag(a (1 − a) ⊙ z) G + W diag(1 − tanh²(V z + c)) V``.

    Parameters (all with leading axis E): ``G`` (E, M, M), ``g`` (E, M), ``W`` (E, M, L),
    ``V`` (E, L, M), ``c`` (E, L), ``h`` (E, M): M² + 2ML + 2M + L numbers per model (the cshPLRNN:
    2ML + 2M + L).

    Initialisation: ``σ(g)`` = the PLRNN's A (diagonal of RᵀR/M + I over its largest eigenvalue,
    clamped to [0.05, 0.95]), G and V uniform ±1/√M, W and c uniform ±1/√L, h = 0.

    Parameters
    ----------
    n_models, latent_dim, hidden_dim : int
        E, M, L (L = width of V).
    generator : torch.Generator, optional
        Source of the random initialisation (CPU generator).
    dtype : torch.dtype
        float32 for training, float64 for analysis and tests.
    """

    map_kind = None  # neither affine nor piecewise linear: no exact fixed-point search

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
        check_sizes(n_models, latent_dim, hidden_dim)
        E, M, L = n_models, latent_dim, hidden_dim
        self.n_models, self.latent_dim, self.hidden_dim = E, M, L
        g = generator

        def uniform(shape, bound):
            return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound

        R = torch.randn(E, M, M, generator=g, dtype=torch.float64)
        Q = R.transpose(1, 2) @ R / M + torch.eye(M, dtype=torch.float64)
        A = torch.diagonal(Q, dim1=1, dim2=2) / torch.linalg.eigvalsh(Q)[:, -1:]
        self.G = nn.Parameter(uniform((E, M, M), 1 / math.sqrt(M)).to(dtype))
        self.g = nn.Parameter(torch.logit(A.clamp(0.05, 0.95)).to(dtype))
        self.W = nn.Parameter(uniform((E, M, L), 1 / math.sqrt(L)).to(dtype))
        self.V = nn.Parameter(uniform((E, L, M), 1 / math.sqrt(M)).to(dtype))
        self.c = nn.Parameter(uniform((E, L), 1 / math.sqrt(L)).to(dtype))
        self.h = nn.Parameter(torch.zeros(E, M, dtype=dtype))

    def _preactivations(self, z: torch.Tensor, U=None, u=None):
        """``(G z + g, V z + c)``, ``(E, B, M)`` and ``(E, B, L)``, as one batched matmul."""
        if U is None:
            U, u = torch.cat([self.G, self.V], 1), torch.cat([self.g, self.c], 1)[:, None]
        pre = torch.baddbmm(u, z, U.transpose(1, 2))
        return pre[..., : self.latent_dim], pre[..., self.latent_dim :]

    def _rollout_step(self):
        U, u = torch.cat([self.G, self.V], 1), torch.cat([self.g, self.c], 1)[:, None]
        Wt, h = self.W.transpose(1, 2), self.h[:, None]

        def step(z):
            gate, hidden = self._preactivations(z, U, u)
            return torch.baddbmm(torch.addcmul(h, torch.sigmoid(gate), z), torch.tanh(hidden), Wt)

        return step

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """One step of the map, ``(E, B, M) -> (E, B, M)``."""
        return self._rollout_step()(z)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Analytic Jacobian ``dF/dz`` at ``z`` ``(E, B, M)`` -> ``(E, B, M, M)``."""
        E, B, M = z.shape
        gate, hidden = self._preactivations(z)
        a = torch.sigmoid(gate)
        slope = 1 - torch.tanh(hidden).square()  # (E, B, L)
        scaled = self.W[:, None] * slope[:, :, None, :]  # (E, B, M, L)
        jac = torch.bmm(scaled.reshape(E, B * M, -1), self.V).view(E, B, M, M)
        jac = jac + (a * (1 - a) * z)[..., None] * self.G[:, None]
        jac.diagonal(dim1=-2, dim2=-1).add_(a)
        return jac

    def hyperparameters(self) -> dict:
        return {
            "n_models": self.n_models,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
        }
