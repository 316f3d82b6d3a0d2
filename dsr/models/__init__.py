"""Model layer: latent maps, their fused forced rollout, and decoders.

Latent maps are ensembles (every parameter has a leading model axis E) with analytic Jacobians,
fulfilling the ``LatentMap`` contract and chosen by name from ``MODELS`` (``registry``): the PLRNNs
(``plrnn``) and, from the state-space literature (``ssm``), the linear S4D baseline and a selective
(gated) SSM; ``ForcedRollout`` steps a whole ensemble under teacher forcing with a
hand-written adjoint; decoders (``DECODERS``: convolved, standard, identity) map latent trajectories
to observations. ``examples`` holds small known-answer systems for tests and validation.

Exports: ``LatentMap``, ``MODELS``, ``make_model``, ``model_name``, ``analysis_copy``,
``ShallowPLRNN``, ``ClippedShallowPLRNN``, ``DiagonalSSM``, ``SelectiveSSM``, ``ForcedRollout``;
``DECODERS``, ``make_decoder``, ``decoder_name``, ``LinearDecoder``, ``causal_valid_convolution``.
"""

from dsr.models.decoders import (
    DECODERS,
    LinearDecoder,
    causal_valid_convolution,
    decoder_name,
    make_decoder,
)
from dsr.models.latent import LatentMap
from dsr.models.plrnn import ClippedShallowPLRNN, ShallowPLRNN
from dsr.models.registry import MODELS, analysis_copy, make_model, model_name
from dsr.models.rollout import ForcedRollout
from dsr.models.ssm import DiagonalSSM, SelectiveSSM

__all__ = [
    "DECODERS",
    "MODELS",
    "ClippedShallowPLRNN",
    "DiagonalSSM",
    "ForcedRollout",
    "LatentMap",
    "LinearDecoder",
    "SelectiveSSM",
    "ShallowPLRNN",
    "analysis_copy",
    "causal_valid_convolution",
    "decoder_name",
    "make_decoder",
    "make_model",
    "model_name",
]
