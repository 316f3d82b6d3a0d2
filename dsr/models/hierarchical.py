"""Hierarchical (cohort) shallow PLRNN: one model for a whole cohort, subjects differ by features.

Brenner, Weber, Koppe & Durstewitz (ICLR 2025), with dsr's decoders and restarts. Subject s has a
feature vector ``p_s`` (P entries); each of its latent parameters is a linear map of it through
group tensors shared by the cohort (no bias)::

    A_s = p_s · P_A   (P, M)        W1_s = p_s · P_W1  (P, M, L)     W2_s = p_s · P_W2  (P, L, M)
    h1_s = p_s · P_h1 (P, M)        h2_s = p_s · P_h2  (P, L)

and the map is the (clipped) shallow PLRNN of ``dsr.models.plrnn`` with those parameters. R
independent restarts of the whole model are the leading axis of every tensor (group tensors
``(R, P, ...)``, features ``(R, S, P)``). Materialised, the module is an ordinary ensemble of
E = S·R models, **subject-major** (model ``e = s·R + r``, as ``fit_ensemble`` numbers them), so
the fused GTF rollout, Jacobians, free runs, Lyapunov spectra and fixed points run unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsr._validation import check_choice, check_positive
from dsr.models.latent import LatentMap
from dsr.models.plrnn import ClippedShallowPLRNN, ShallowPLRNN

BASES = {"cshPLRNN": ClippedShallowPLRNN, "shPLRNN": ShallowPLRNN}
GROUP_TENSORS = ("P_A", "P_W1", "P_W2", "P_h1", "P_h2")  # -> A, W1, W2, h1, h2
_EINSUM = {
    "P_A": "rsp,rpm->srm",
    "P_W1": "rsp,rpml->srml",
    "P_W2": "rsp,rplm->srlm",
    "P_h1": "rsp,rpm->srm",
    "P_h2": "rsp,rpl->srl",
}


def _xavier(shape: tuple[int, ...], gain: float, generator, dtype) -> torch.Tensor:
    """Xavier-uniform per restart (``shape[0]``), with torch's fan convention for the remaining
    ``(P, d1, ...)`` tensor: fan_in = d1·rest, fan_out = P·rest (rest = product of dims after d1)."""
    rest = math.prod(shape[3:]) if len(shape) > 3 else 1
    fan_in, fan_out = shape[2] * rest, shape[1] * rest
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return ((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound).to(dtype)


class HierarchicalPLRNN(LatentMap):
    """R restarts of a hierarchical (c)shPLRNN for S subjects with P features each.

    As a :class:`LatentMap` it is the ensemble of its E = S·R materialised models (subject-major);
    ``view(subjects)`` is the differentiable ensemble of some subjects' models (training),
    ``to_ensemble()`` a detached ordinary ``ClippedShallowPLRNN`` / ``ShallowPLRNN`` (analysis).

    Parameters
    ----------
    n_restarts, n_subjects, n_features, latent_dim, hidden_dim : int
        R, S, P, M, L.
    base : {"cshPLRNN", "shPLRNN"}
        The map the subject parameters define.
    init_gain : float
        Gain of the Xavier-uniform group tensors (0.1, as the reference code).
    generator : torch.Generator, optional
        Source of the initialisation (CPU generator). Each restart draws one uniform(−1, 1)
        feature vector, copied to every subject.
    dtype : torch.dtype
    """

    map_kind = "piecewise_linear"

    def __init__(
        self,
        n_restarts: int,
        n_subjects: int,
        n_features: int,
        latent_dim: int,
        hidden_dim: int,
        *,
        base: str = "cshPLRNN",
        init_gain: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        check_choice("model", base, BASES)
        dims = dict(
            n_restarts=n_restarts,
            n_subjects=n_subjects,
            n_features=n_features,
            latent_dim=latent_dim,
            hidden_dim=hidden_dim,
        )
        for name, value in dims.items():
            check_positive(name, value, integer=True)
        R, S, P, M, L = dims.values()
        self.n_restarts, self.n_subjects, self.n_features = R, S, P
        self.latent_dim, self.hidden_dim, self.base = M, L, base
        self.n_models = S * R
        shapes = {
            "P_A": (R, P, M),
            "P_W1": (R, P, M, L),
            "P_W2": (R, P, L, M),
            "P_h1": (R, P, M),
            "P_h2": (R, P, L),
        }
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(_xavier(shape, init_gain, generator, dtype)))
        p0 = torch.rand((R, 1, P), generator=generator, dtype=torch.float64) * 2 - 1
        self.features = nn.Parameter(p0.expand(R, S, P).clone().to(dtype))

    @property
    def clipped(self) -> bool:
        return BASES[self.base].clipped

    def group_parameters(self) -> list[nn.Parameter]:
        """The group tensors shared by the cohort (``P_A``, ``P_W1``, ``P_W2``, ``P_h1``, ``P_h2``)."""
        return [getattr(self, name) for name in GROUP_TENSORS]

    def materialise(self, subjects: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-(subject, restart) parameters ``A, W1, W2, h1, h2`` with leading axis
        E' = len(subjects)·R, subject-major (row ``i·R + r``: ``subjects[i]``, restart r);
        differentiable in the group tensors and features. ``subjects=None``: all subjects."""
        p = self.features if subjects is None else self.features[:, subjects]  # (R, S_b, P)
        out = {}
        for name in GROUP_TENSORS:
            value = torch.einsum(_EINSUM[name], p, getattr(self, name))  # (S_b, R, ...)
            out[name[2:]] = value.reshape(-1, *value.shape[2:])
        return out

    def view(self, subjects: torch.Tensor | None = None) -> ShallowPLRNN:
        """The ensemble of ``subjects``' models (all by default) as a (c)shPLRNN whose parameters
        are the materialised tensors: its fused ``forced_rollout``, ``step`` and ``jacobian`` carry
        gradients back to the group tensors and features."""
        params = self.materialise(subjects)
        cls = BASES[self.base]
        ref = self.P_A
        view = cls(
            1, self.latent_dim, self.hidden_dim, generator=torch.Generator(), dtype=ref.dtype
        )
        view._parameters.clear()  # plain tensor attributes instead (they keep their graph)
        for name, value in params.items():
            setattr(view, name, value)
        view.n_models = params["A"].shape[0]
        return view

    @torch.no_grad()
    def to_ensemble(self) -> ShallowPLRNN:
        """An ordinary, independent (c)shPLRNN ensemble of the E = S·R materialised models
        (subject-major; detached copies, same dtype and device)."""
        params = self.materialise()
        ref = self.P_A
        out = BASES[self.base](
            self.n_models,
            self.latent_dim,
            self.hidden_dim,
            generator=torch.Generator(),
            dtype=ref.dtype,
        ).to(ref.device)
        for name, value in params.items():
            getattr(out, name).copy_(value)
        return out

    def step(self, z: torch.Tensor) -> torch.Tensor:
        return self.view().step(z)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        return self.view().jacobian(z)

    def forced_rollout(self, z0, keep, target) -> torch.Tensor:
        return self.view().forced_rollout(z0, keep, target)

    def hyperparameters(self) -> dict:
        return {
            "n_restarts": self.n_restarts,
            "n_subjects": self.n_subjects,
            "n_features": self.n_features,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
            "base": self.base,
        }

    def n_parameters(self) -> dict:
        """Trained latent-model parameters of one restart: ``group`` (shared) and ``per_subject``."""
        return {
            "group": sum(p[0].numel() for p in self.group_parameters()),
            "per_subject": self.n_features,
        }
