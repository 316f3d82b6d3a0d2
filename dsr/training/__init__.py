"""Training layer: generalized teacher forcing for whole ensembles.

``windows`` deconvolves each subject once and samples training windows; ``gtf`` runs the forced
rollout and the masked loss; ``state`` holds models, decoders and optimisers with per-model
divergence flags, checkpointed and resumed; ``loop`` has ``TrainingConfig`` and
``fit_ensemble``; ``ensemble`` is the fitted-ensemble file format; ``hierarchical`` (with
``hierarchical_state``) fits one hierarchical cohort model (subject features through shared group
tensors) and transfers new subjects to it.

Exports: ``TrainingConfig``, ``fit_ensemble``, ``resolve_device``, ``FittedEnsemble``,
``save_ensemble``, ``load_ensemble``, ``gtf_loss``, ``prepare_cohort``, ``sample_windows``,
``HierarchicalConfig``, ``fit_hierarchical``, ``transfer_subjects``.
"""

from dsr.training.ensemble import FittedEnsemble, load_ensemble, save_ensemble
from dsr.training.gtf import gtf_loss
from dsr.training.hierarchical import HierarchicalConfig, fit_hierarchical, transfer_subjects
from dsr.training.loop import TrainingConfig, fit_ensemble, resolve_device
from dsr.training.windows import prepare_cohort, sample_windows

__all__ = [
    "FittedEnsemble",
    "HierarchicalConfig",
    "TrainingConfig",
    "fit_ensemble",
    "fit_hierarchical",
    "gtf_loss",
    "load_ensemble",
    "prepare_cohort",
    "resolve_device",
    "sample_windows",
    "save_ensemble",
    "transfer_subjects",
]
