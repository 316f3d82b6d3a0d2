"""Hierarchical cohort fits: one hierarchical (c)shPLRNN for all subjects, trained with GTF.

``fit_hierarchical`` trains R restarts of a :class:`dsr.models.hierarchical.HierarchicalPLRNN`
(group tensors shared by the cohort, one feature vector per subject) with per-(subject, restart)
decoders; windows are pooled across ``subjects_per_batch`` subjects per batch. The result holds a
:class:`FittedEnsemble` of the E = S·R materialised models (subject-major, as ``fit_ensemble``
numbers them), so evaluation, Lyapunov spectra, fixed points and reports run per subject
unchanged, plus the features ``(R, S, P)``. ``transfer_subjects`` fits new subjects to a trained
cohort model by their features and decoders only (group tensors frozen).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time

import numpy as np
import torch

from dsr._validation import check_positive
from dsr.atomic import write_npy, write_torch
from dsr.errors import DsrInputError
from dsr.models.decoders import make_decoder
from dsr.models.hierarchical import HierarchicalPLRNN
from dsr.models.registry import make_hierarchical
from dsr.progress import Progress
from dsr.training.ensemble import FittedEnsemble
from dsr.training.hierarchical_state import HierarchicalState
from dsr.training.loop import (
    TrainingConfig,
    check_fit_inputs,
    fit_fingerprint,
    last_finite,
    loss_summary,
    resolve_device,
)
from dsr.training.state import checkpoint_due
from dsr.training.transfer import adopt_cohort, share_initial_decoder
from dsr.training.windows import prepare_cohort

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HierarchicalConfig:
    """What a hierarchical fit adds to :class:`TrainingConfig` (``fit.hierarchical``).

    ``n_features``: P, entries of each subject's feature vector; ``subjects_per_batch``: subjects
    whose windows make one batch (None: all); ``subject_lr_factor``: learning rate of the subject
    features and decoders relative to the group tensors' (``lr_start`` -> ``lr_end``).
    """

    n_features: int = 4
    subjects_per_batch: int | None = None
    subject_lr_factor: float = 1.0

    def __post_init__(self) -> None:
        check_positive("n_features", self.n_features, integer=True)
        if self.subjects_per_batch is not None:
            check_positive("subjects_per_batch", self.subjects_per_batch, integer=True)
        check_positive("subject_lr_factor", self.subject_lr_factor)


@dataclasses.dataclass
class HierarchicalFit:
    """A trained cohort model: ``ensemble`` (its S·R materialised models) and ``model`` itself."""

    ensemble: FittedEnsemble
    model: HierarchicalPLRNN

    @property
    def features(self) -> np.ndarray:
        """Subject features ``(R, S, P)``: restart, subject, feature."""
        return self.model.features.detach().cpu().double().numpy()


def fit_hierarchical(
    data,
    kernel,
    *,
    confounds=None,
    subject_ids=None,
    n_restarts: int = 1,
    config: TrainingConfig | None = None,
    hierarchical: HierarchicalConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_dir=None,
    transfer_from: HierarchicalFit | None = None,
) -> HierarchicalFit:
    """Train ``n_restarts`` hierarchical cohort models on ``data`` (one (T_s, N) series per
    subject, as :func:`dsr.training.fit_ensemble`; the last ``config.test_fraction`` is held out).

    Every restart starts its subjects alike: one feature vector and one decoder, copied to each
    subject (so the subjects share one latent coordinate system from the start).
    ``transfer_from``: a trained cohort fit whose group tensors are kept fixed (transfer: only
    features and decoders train; its restarts set R; each new subject starts, per restart, from
    the cohort subject whose features and decoder explain its data best: ``adopt_cohort``).
    """
    config = config or TrainingConfig()
    hierarchical = hierarchical or HierarchicalConfig()
    group = None if transfer_from is None else transfer_from.model
    if group is not None:  # the cohort model fixes P
        hierarchical = dataclasses.replace(hierarchical, n_features=group.n_features)
    kernel, subject_ids = check_fit_inputs(data, kernel, confounds, subject_ids, n_restarts, config)
    device = resolve_device(device)
    t_start = time.perf_counter()
    n_obs = np.asarray(data[0]).shape[-1]
    n_latent = config.latent_dim or n_obs
    n_conf = 0 if confounds is None else np.asarray(confounds[0]).reshape(len(data[0]), -1).shape[1]
    S = len(data)
    R = n_restarts if group is None else group.n_restarts
    init = torch.Generator().manual_seed(seed)
    model = make_hierarchical(
        config.model, R, S, hierarchical.n_features, n_latent, config.hidden_dim, generator=init
    )
    decoder = make_decoder(config.decoder, S * R, n_obs, n_latent, kernel, n_conf, generator=init)
    share_initial_decoder(decoder, S)
    state = HierarchicalState.new(
        model, decoder, config, hierarchical.subject_lr_factor, group is None, seed, device
    )
    eff_kernel = np.asarray(kernel, dtype=np.float64) if decoder.kernel_length > 1 else np.ones(1)
    cohort = prepare_cohort(data, confounds, eff_kernel, config, subject_ids, device, torch.float32)
    if group is not None:
        adopt_cohort(model, decoder, transfer_from, cohort, config, state.rng)
        state.snapshot = [p.detach().clone() for p in state.params]
    fingerprint = {
        **fit_fingerprint(config, seed, subject_ids, data),
        "hierarchical": dataclasses.asdict(hierarchical),
        "transfer": group is not None,
    }
    state.resume(checkpoint_dir, device, fingerprint)
    per_batch = min(hierarchical.subjects_per_batch or S, S)
    progress = Progress(log, "epoch", config.epochs, state.epoch)
    while state.epoch < config.epochs:
        loss = state.train_epoch(cohort, config, per_batch)
        failed = state.failed[state.model_restart()]
        progress.update(state.epoch, functools.partial(loss_summary, loss, failed))
        if checkpoint_due(state.epoch, config, checkpoint_dir):
            state.save(checkpoint_dir, fingerprint)
    hist = state.history.numpy()
    failed = state.failed.cpu().numpy()
    ensemble = FittedEnsemble(
        model=model.to_ensemble(),
        decoder=decoder,
        subject_ids=subject_ids,
        model_subject=np.repeat(np.arange(S), R),
        model_restart=np.tile(np.arange(R), S),
        status=["diverged" if failed[r] else "ok" for r in np.tile(np.arange(R), S)],
        final_loss=last_finite(hist),
        loss_history=hist,
        config={
            **dataclasses.asdict(config),
            "seed": seed,
            "hierarchical": {**dataclasses.asdict(hierarchical), "transfer": group is not None},
        },
        kernel=eff_kernel,
        wall_time_s=time.perf_counter() - t_start,
        device=str(device),
    )
    return HierarchicalFit(ensemble, model)


def transfer_subjects(cohort_fit: HierarchicalFit, data, kernel, **kwargs) -> HierarchicalFit:
    """Fit new subjects to a trained cohort model: only their features and decoders train,
    from the cohort subject that explains each best (``dsr.training.transfer.adopt_cohort``).

    ``kwargs`` as :func:`fit_hierarchical` (``config`` must describe the same model; the features'
    learning rate is ``config.lr_start · subject_lr_factor``). Returns the new subjects' fit.
    """
    return fit_hierarchical(data, kernel, transfer_from=cohort_fit, **kwargs)


def save_hierarchical(fit: HierarchicalFit, out_dir) -> list:
    """Write ``hierarchical.pt`` (the cohort model: group tensors, features, hyperparameters,
    subjects, status) and ``features.npy`` ``(R, S, P)`` into ``out_dir``."""
    from pathlib import Path

    out = Path(out_dir)
    model = fit.model
    blob = {
        "format": "dsr-hierarchical/1",
        "hparams": model.hyperparameters(),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "subject_ids": list(fit.ensemble.subject_ids),
        "restart_status": [
            fit.ensemble.status[r] for r in range(model.n_restarts)
        ],  # subject 0's models are restarts 0..R-1
    }
    return [
        write_torch(out / "hierarchical.pt", blob),
        write_npy(out / "features.npy", fit.features),
    ]


def load_hierarchical(path, device="cpu", dtype=torch.float32) -> tuple[HierarchicalPLRNN, dict]:
    """The cohort model of a ``hierarchical.pt`` and its bookkeeping (subjects, status)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != "dsr-hierarchical/1":
        raise DsrInputError(f"{path} is not a dsr hierarchical model file")
    hp = dict(blob["hparams"])
    base = hp.pop("base")
    model = make_hierarchical(
        base,
        hp["n_restarts"],
        hp["n_subjects"],
        hp["n_features"],
        hp["latent_dim"],
        hp["hidden_dim"],
        dtype=dtype,
    )
    model.load_state_dict(blob["state"])
    info = {"subject_ids": blob["subject_ids"], "restart_status": blob["restart_status"]}
    return model.to(device), info
