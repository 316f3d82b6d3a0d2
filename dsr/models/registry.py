"""The registry of latent maps: a config name -> class, and helpers that work for every entry."""

from __future__ import annotations

import copy

import torch
from torch import nn

from dsr._validation import check_choice
from dsr.models.hierarchical import HierarchicalPLRNN
from dsr.models.latent import LatentMap
from dsr.models.plrnn import ClippedShallowPLRNN, ShallowPLRNN
from dsr.models.ssm import DiagonalSSM, SelectiveSSM

MODELS = {
    "cshPLRNN": ClippedShallowPLRNN,
    "shPLRNN": ShallowPLRNN,
    "S4D": DiagonalSSM,
    "selectiveSSM": SelectiveSSM,
}


#: latent maps with a hierarchical (cohort) form, by the name of the map they materialise
HIERARCHICAL = {"cshPLRNN": HierarchicalPLRNN, "shPLRNN": HierarchicalPLRNN}


def make_hierarchical(
    name: str,
    n_restarts: int,
    n_subjects: int,
    n_features: int,
    latent_dim: int,
    hidden_dim: int,
    **kwargs,
) -> HierarchicalPLRNN:
    """Build a hierarchical cohort model (``dsr.models.hierarchical``) of map ``name``."""
    check_choice("model (hierarchical fit)", name, HIERARCHICAL)
    return HIERARCHICAL[name](
        n_restarts, n_subjects, n_features, latent_dim, hidden_dim, base=name, **kwargs
    )


def make_model(name: str, n_models: int, latent_dim: int, hidden_dim: int, **kwargs) -> LatentMap:
    """Build a latent model ensemble by registry name (see ``MODELS``)."""
    check_choice("model", name, MODELS)
    return MODELS[name](n_models, latent_dim, hidden_dim, **kwargs)


def model_name(model: LatentMap) -> str:
    """Registry name of a model instance."""
    return next(k for k, v in MODELS.items() if type(model) is v)


def analysis_copy(
    module: nn.Module, dtype: torch.dtype = torch.float64, device: str | torch.device | None = None
) -> nn.Module:
    """A detached copy of an ensemble module (model or decoder) in ``dtype`` on ``device``
    (default: where it is) for analysis; the fitted module is left untouched."""
    return copy.deepcopy(module).to(device=device, dtype=dtype).requires_grad_(False)
