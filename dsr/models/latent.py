"""The contract every latent map of dsr fulfils, with the parts that do not depend on the map.

A latent map is an ensemble of E autonomous maps ``z_t = F(z_{t-1})`` (every parameter with a
leading model axis E) that can be iterated freely (free runs, prediction), differentiated
(``jacobian``: Lyapunov spectra, fixed points) and teacher-forced (``forced_rollout``: training).
"""

from __future__ import annotations

import torch
from torch import nn

from dsr._validation import check_positive


def check_sizes(n_models: int, latent_dim: int, hidden_dim: int) -> None:
    """The sizes every latent map is built from: E, M, L, each a positive integer."""
    for name, value in [
        ("n_models", n_models),
        ("latent_dim", latent_dim),
        ("hidden_dim", hidden_dim),
    ]:
        check_positive(name, value, integer=True)


class LatentMap(nn.Module):
    """Base class of the ensemble latent maps; states are ``(E, B, M)``: model, batch, latent dim.

    Subclasses set ``n_models``, ``latent_dim`` and implement ``step`` (one application of F,
    ``(E, B, M) -> (E, B, M)``), ``jacobian`` (``(E, B, M) -> (E, B, M, M)``) and
    ``hyperparameters`` (the constructor's keyword arguments, stored with a fitted ensemble).
    """

    n_models: int
    latent_dim: int
    #: what the map's form allows an exact fixed-point search (``dsr.analysis.fixed_points``) to
    #: use: "piecewise_linear" (region iteration), "affine" (one linear solve), None (not searched)
    map_kind: str | None = None

    def step(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.step(z)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        raise NotImplementedError

    def _rollout_step(self):
        """The step function used by ``forced_rollout``; subclasses may return one that reuses
        parameter transforms computed once per rollout instead of once per step."""
        return self.step

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
        gradient. This generic version runs autograd through ``step`` (``_rollout_step``).
        """
        n_forced, preds, z = keep.shape[-1], [], z0
        step = self._rollout_step()
        for t in range(keep.shape[0]):
            z_hat = step(z)
            preds.append(z_hat)
            forced = z_hat[..., :n_forced] * keep[t] + target[t]
            z = torch.cat([forced, z_hat[..., n_forced:]], -1)
        return torch.stack(preds)
