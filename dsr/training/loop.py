"""Generalized-teacher-forcing (GTF) training of an ensemble of convSSMs, spec section 4.

One call trains E = subjects × restarts independent models as one batched tensor program: every
model sees its own subject's data, keeps its own loss, and is flagged (not fatal) if it diverges.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

import numpy as np
import torch

from dsr._validation import (
    check_choice,
    check_kernel,
    check_positive,
)
from dsr.errors import DsrInputError
from dsr.models.decoders import DECODERS
from dsr.models.registry import MODELS
from dsr.progress import Progress
from dsr.training.ensemble import FittedEnsemble
from dsr.training.state import TrainState, checkpoint_due
from dsr.training.windows import prepare_cohort

log = logging.getLogger(__name__)


GTF_MODES = {"fixed": "alpha as configured", "adaptive": "aGTF, Hess et al. 2023"}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of GTF training (defaults: spec section 4, paper LEMON settings)."""

    model: str = "cshPLRNN"
    decoder: str = "convolved"
    latent_dim: int | None = None  # M; None -> N (M = N)
    hidden_dim: int = 50  # L
    alpha: float = 0.1  # GTF strength; 0 = no forcing
    gtf: str = "fixed"  # "fixed" alpha, or "adaptive" (aGTF: alpha from the Jacobians, per model)
    epochs: int = 1000
    batches_per_epoch: int = 50
    batch_size: int = 16
    seq_len: int = 200  # T~, must exceed the kernel length
    lr_start: float = 1e-3
    lr_end: float = 1e-6
    noise_sd: float = 0.05  # augmentation noise on x and x^deconv
    deconv_weight: float = 0.0  # weight of the neural-level loss B z vs x^deconv (0: paper's loss)
    grad_clip: float | None = None  # per-model gradient-norm clip
    noise_floor: float = 1e-5  # Wiener deconvolution noise floor
    cut_left: float = 0.25  # deconvolution edge cut (fraction of kernel length or count)
    cut_right: float = 0.5
    checkpoint_every: int = 25  # epochs between checkpoints (0: never)
    test_fraction: float = 0.25  # last part of each series held out for evaluation (0: none)

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("decoder", self.decoder, DECODERS)
        check_choice("gtf", self.gtf, GTF_MODES)
        for name in ("hidden_dim", "epochs", "batches_per_epoch", "batch_size", "seq_len"):
            check_positive(name, getattr(self, name), integer=True)
        if self.latent_dim is not None:
            check_positive("latent_dim", self.latent_dim, integer=True)
        if not 0.0 <= self.alpha <= 1.0:
            raise DsrInputError(f"'alpha' must be in [0, 1]; got {self.alpha}")
        for name in ("lr_start", "lr_end", "noise_floor"):
            check_positive(name, getattr(self, name))
        if min(self.noise_sd, self.cut_left, self.cut_right, self.deconv_weight) < 0:
            raise DsrInputError(
                "'noise_sd', 'deconv_weight', 'cut_left' and 'cut_right' must be >= 0"
            )
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int):
            raise DsrInputError(
                f"'checkpoint_every' must be an integer; got {self.checkpoint_every!r}"
            )
        if self.checkpoint_every < 0:
            raise DsrInputError(f"'checkpoint_every' must be >= 0; got {self.checkpoint_every}")
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if not 0.0 <= self.test_fraction <= 0.5:
            raise DsrInputError(f"'test_fraction' must be in [0, 0.5]; got {self.test_fraction}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise DsrInputError(
            f"'device' must be 'auto', 'cpu' or 'cuda[:i]'; got {device!r}"
        ) from exc


def fit_fingerprint(config: TrainingConfig, seed: int, subject_ids, data) -> dict:
    """What a checkpoint must match to be resumed (config, seed, subjects, data checksum)."""
    checksum = float(sum(np.nansum(np.asarray(x, dtype=np.float64)) for x in data))
    return {
        "config": dataclasses.asdict(config),
        "seed": seed,
        "subjects": list(subject_ids),
        "checksum": round(checksum, 6),
    }


def fit_ensemble(
    data: Sequence[np.ndarray],
    kernel: np.ndarray,
    *,
    confounds: Sequence[np.ndarray] | None = None,
    subject_ids: Sequence[str] | None = None,
    n_restarts: int = 1,
    config: TrainingConfig = TrainingConfig(),
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_dir=None,
) -> FittedEnsemble:
    """Train ``len(data) * n_restarts`` models with GTF as one batched ensemble.

    Parameters
    ----------
    data : sequence of np.ndarray, each (T_s, N)
        One series per subject (equal N; T may differ). NaN samples are left out of the loss.
        Only the first ``train_length(T_s, config.test_fraction)`` samples train; pass the same
        whole series to :func:`dsr.analysis.evaluate_ensemble`, which scores the rest.
    kernel : np.ndarray, shape (h,)
        Observation kernel (ignored by the "standard" decoder).
    confounds : sequence of np.ndarray (T_s, P), optional
        Nuisance regressors r_t per subject.
    subject_ids : sequence of str, optional
        Names used in messages and outputs (default ``sub-01``, ...).
    n_restarts : int
        Models per subject; model ``e`` fits subject ``e // n_restarts``.
    config : TrainingConfig
    seed : int
        Seeds initialisation (CPU generator) and training randomness (device generator).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    checkpoint_dir : path, optional
        Where ``checkpoint.pt`` is written every ``config.checkpoint_every`` epochs and resumed from.

    Returns
    -------
    FittedEnsemble
    """
    kernel, subject_ids = check_fit_inputs(data, kernel, confounds, subject_ids, n_restarts, config)
    device = resolve_device(device)
    t_start = time.perf_counter()
    state = TrainState.new(config, data, kernel, confounds, n_restarts, seed, device)
    decoder = state.decoder
    eff_kernel = np.asarray(kernel, dtype=np.float64) if decoder.kernel_length > 1 else np.ones(1)
    cohort = prepare_cohort(data, confounds, eff_kernel, config, subject_ids, device, torch.float32)
    model_subject = torch.arange(len(data), device=device).repeat_interleave(n_restarts)
    fingerprint = fit_fingerprint(config, seed, subject_ids, data)
    state.resume(checkpoint_dir, device, fingerprint)
    _train(state, cohort, model_subject, config, checkpoint_dir, fingerprint)
    hist = state.history.numpy()
    return FittedEnsemble(
        model=state.model,
        decoder=decoder,
        subject_ids=subject_ids,
        model_subject=model_subject.cpu().numpy(),
        model_restart=np.tile(np.arange(n_restarts), len(data)),
        status=["diverged" if f else "ok" for f in state.failed.cpu().numpy()],
        final_loss=last_finite(hist),
        loss_history=hist,
        config={**dataclasses.asdict(config), "seed": seed},
        kernel=eff_kernel,  # the kernel the decoder really uses ([1] for "standard")
        wall_time_s=time.perf_counter() - t_start,
        device=str(device),
    )


def _train(state: TrainState, cohort, model_subject, config, checkpoint_dir, fingerprint) -> None:
    """Run the remaining epochs with progress logs; checkpoint every ``config.checkpoint_every``
    epochs and after the last one (when ``checkpoint_dir`` is given)."""
    progress = Progress(log, "epoch", config.epochs, state.epoch)
    while state.epoch < config.epochs:
        epoch_loss = state.train_epoch(cohort, model_subject, config)
        progress.update(state.epoch, functools.partial(loss_summary, epoch_loss, state.failed))
        if checkpoint_due(state.epoch, config, checkpoint_dir):
            state.save(checkpoint_dir, fingerprint)


def loss_summary(loss: torch.Tensor, failed: torch.Tensor) -> str:
    """Median loss of the models still training and the count of failed ones."""
    ok = loss[~failed]
    median = float(ok.median()) if ok.numel() else float("nan")
    return f"median loss {median:.4g}  failed {int(failed.sum())}/{len(failed)}"


def last_finite(history: np.ndarray) -> np.ndarray:
    """Last finite loss of every model (E,) in ``history`` (epochs, E); NaN if there is none."""
    return np.array([h[np.isfinite(h)][-1] if np.isfinite(h).any() else np.nan for h in history.T])


def check_fit_inputs(data, kernel, confounds, subject_ids, n_restarts, config):
    """Boundary checks of :func:`fit_ensemble`; returns the checked kernel and subject ids."""
    check_positive("n_restarts", n_restarts, integer=True)
    if isinstance(data, np.ndarray) and data.ndim == 2:
        raise DsrInputError(
            "'data' must be a list of (T, N) arrays, one per subject; wrap it in [ ]"
        )
    if len(data) == 0:
        raise DsrInputError("'data' is empty; give at least one (T, N) series")
    kernel = check_kernel([1.0] if kernel is None and config.decoder == "standard" else kernel)
    if confounds is not None and len(confounds) != len(data):
        raise DsrInputError(
            f"'confounds' must hold one (T, P) array per subject; got {len(confounds)} "
            f"for {len(data)} subjects"
        )
    subject_ids = list(subject_ids or [f"sub-{i + 1:02d}" for i in range(len(data))])
    if len(set(subject_ids)) != len(subject_ids) or len(subject_ids) != len(data):
        raise DsrInputError(f"subject ids must be unique, one per series; got {subject_ids}")
    return kernel, subject_ids
