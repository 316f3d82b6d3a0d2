"""Generalized-teacher-forcing (GTF) training of an ensemble of convSSMs, spec section 4.

One call trains E = subjects × restarts independent models as one batched tensor program: every
model sees its own subject's data, keeps its own loss, and is flagged (not fatal) if it diverges.
"""

from __future__ import annotations

import dataclasses
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
from dsr.checkpoint import load_checkpoint, save_checkpoint
from dsr.ensemble import FittedEnsemble
from dsr.errors import DsrInputError
from dsr.gtf import gtf_loss
from dsr.models import MODELS, make_model
from dsr.observation import DECODERS, make_decoder
from dsr.windows import prepare_cohort, sample_windows

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of GTF training (defaults: spec section 4, paper LEMON settings)."""

    model: str = "cshPLRNN"
    decoder: str = "convolved"
    latent_dim: int | None = None  # M; None -> N (M = N)
    hidden_dim: int = 50  # L
    alpha: float = 0.1  # GTF strength; 0 = no forcing
    epochs: int = 1000
    batches_per_epoch: int = 50
    batch_size: int = 16
    seq_len: int = 200  # T~, must exceed the kernel length
    lr_start: float = 1e-3
    lr_end: float = 1e-6
    noise_sd: float = 0.05  # augmentation noise on x and x^deconv
    grad_clip: float | None = None  # per-model gradient-norm clip
    noise_floor: float = 1e-5  # Wiener deconvolution noise floor
    cut_left: float = 0.25  # deconvolution edge cut (fraction of kernel length or count)
    cut_right: float = 0.5
    checkpoint_every: int = 25  # epochs between checkpoints (0: never)

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("decoder", self.decoder, DECODERS)
        for name in ("hidden_dim", "epochs", "batches_per_epoch", "batch_size", "seq_len"):
            check_positive(name, getattr(self, name), integer=True)
        if self.latent_dim is not None:
            check_positive("latent_dim", self.latent_dim, integer=True)
        if not 0.0 <= self.alpha <= 1.0:
            raise DsrInputError(f"'alpha' must be in [0, 1]; got {self.alpha}")
        for name in ("lr_start", "lr_end", "noise_floor"):
            check_positive(name, getattr(self, name))
        if self.noise_sd < 0 or self.cut_left < 0 or self.cut_right < 0:
            raise DsrInputError("'noise_sd', 'cut_left' and 'cut_right' must be >= 0")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int):
            raise DsrInputError(
                f"'checkpoint_every' must be an integer; got {self.checkpoint_every!r}"
            )
        if self.checkpoint_every < 0:
            raise DsrInputError(f"'checkpoint_every' must be >= 0; got {self.checkpoint_every}")
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)


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


def _clip_per_model(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale each model's gradient (leading axis E) to norm at most ``max_norm``."""
    grads = [p.grad for p in params if p.grad is not None]
    sq = sum(g.pow(2).flatten(1).sum(1) for g in grads)
    scale = (max_norm / (sq.sqrt() + 1e-12)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))


def _finite_per_model(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.isfinite(p).flatten(1).all(1) for p in params]).all(0)


def _fingerprint(config: TrainingConfig, seed: int, subject_ids, data) -> dict:
    """What a checkpoint must match to be resumed (config, seed, subjects, data checksum)."""
    checksum = float(sum(np.nansum(np.asarray(x, dtype=np.float64)) for x in data))
    return {
        "config": dataclasses.asdict(config),
        "seed": seed,
        "subjects": list(subject_ids),
        "checksum": round(checksum, 6),
    }


class _Progress:
    """Logs epoch, loss and ETA at most every ``interval_s`` seconds (and at the last epoch)."""

    def __init__(self, total: int, start_epoch: int, interval_s: float = 10.0) -> None:
        self.total, self.start_epoch, self.interval_s = total, start_epoch, interval_s
        self.t0 = self.last = time.perf_counter()

    def update(self, epoch: int, loss: torch.Tensor, failed: torch.Tensor) -> None:
        now = time.perf_counter()
        if now - self.last < self.interval_s and epoch + 1 < self.total:
            return
        self.last = now
        done = epoch + 1 - self.start_epoch
        eta = (now - self.t0) / max(done, 1) * (self.total - epoch - 1)
        ok = loss[~failed]
        med = float(ok.median()) if ok.numel() else float("nan")
        log.info(
            "epoch %d/%d  median loss %.4g  failed %d/%d  ETA %s",
            epoch + 1,
            self.total,
            med,
            int(failed.sum()),
            len(failed),
            time.strftime("%H:%M:%S", time.gmtime(eta)),
        )


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
    kernel, subject_ids = _check_fit_inputs(
        data, kernel, confounds, subject_ids, n_restarts, config
    )
    device = resolve_device(device)
    t_start = time.perf_counter()
    state = _TrainState.new(config, data, kernel, confounds, n_restarts, seed, device)
    decoder = state.decoder
    eff_kernel = np.asarray(kernel, dtype=np.float64) if decoder.kernel_length > 1 else np.ones(1)
    cohort = prepare_cohort(data, confounds, eff_kernel, config, subject_ids, device, torch.float32)
    model_subject = torch.arange(len(data), device=device).repeat_interleave(n_restarts)
    fingerprint = _fingerprint(config, seed, subject_ids, data)
    state.resume(checkpoint_dir, device, fingerprint)
    progress = _Progress(config.epochs, state.epoch)
    while state.epoch < config.epochs:
        epoch_loss = state.train_epoch(cohort, model_subject, config)
        progress.update(state.epoch - 1, epoch_loss, state.failed)
        every = config.checkpoint_every
        if (
            checkpoint_dir is not None
            and every
            and (state.epoch % every == 0 or state.epoch == config.epochs)
        ):
            save_checkpoint(checkpoint_dir, {"fingerprint": fingerprint, **state.state_dict()})
    hist = state.history.numpy()
    final = np.array([h[np.isfinite(h)][-1] if np.isfinite(h).any() else np.nan for h in hist.T])
    return FittedEnsemble(
        model=state.model,
        decoder=decoder,
        subject_ids=subject_ids,
        model_subject=model_subject.cpu().numpy(),
        model_restart=np.tile(np.arange(n_restarts), len(data)),
        status=["diverged" if f else "ok" for f in state.failed.cpu().numpy()],
        final_loss=final,
        loss_history=hist,
        config={**dataclasses.asdict(config), "seed": seed},
        kernel=eff_kernel,  # the kernel the decoder really uses ([1] for "standard")
        wall_time_s=time.perf_counter() - t_start,
        device=str(device),
    )


def _check_fit_inputs(data, kernel, confounds, subject_ids, n_restarts, config):
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


@dataclasses.dataclass
class _TrainState:
    """Everything training changes: checkpointed as one dict and restored from it.

    ``history`` (epochs, E) holds per-model epoch losses (NaN once failed), ``failed`` (E,) the
    divergence flags, ``snapshot`` the last finite parameters of every model.
    """

    model: torch.nn.Module
    decoder: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: torch.Generator
    history: torch.Tensor
    failed: torch.Tensor
    snapshot: list[torch.Tensor]
    epoch: int = 0

    @classmethod
    def new(cls, config, data, kernel, confounds, n_restarts, seed, device) -> _TrainState:
        """Fresh models (seeded on the CPU), RAdam with exponential decay, device generator."""
        n_obs = np.asarray(data[0]).shape[-1] if np.asarray(data[0]).ndim == 2 else 1
        n_latent = config.latent_dim or n_obs
        n_conf = 0 if confounds is None else np.atleast_2d(np.asarray(confounds[0]).T).shape[0]
        n_models = len(data) * n_restarts
        init = torch.Generator().manual_seed(seed)
        model = make_model(config.model, n_models, n_latent, config.hidden_dim, generator=init)
        decoder = make_decoder(
            config.decoder, n_models, n_obs, n_latent, kernel, n_conf, generator=init
        )
        model.to(device)
        decoder.to(device)
        params = [*model.parameters(), *decoder.parameters()]
        optimizer = torch.optim.RAdam(params, lr=config.lr_start)
        gamma = (config.lr_end / config.lr_start) ** (1.0 / config.epochs)
        return cls(
            model=model,
            decoder=decoder,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma),
            rng=torch.Generator(device).manual_seed(seed + 1),
            history=torch.full((config.epochs, n_models), float("nan"), dtype=torch.float64),
            failed=torch.zeros(n_models, dtype=torch.bool, device=device),
            snapshot=[p.detach().clone() for p in params],
        )

    @property
    def params(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.decoder.parameters()]

    def train_epoch(self, cohort, model_subject, config) -> torch.Tensor:
        """One epoch of GTF batches; flags diverged models; returns the mean losses (E,)."""
        params = self.params
        epoch_loss = torch.zeros(len(self.failed), device=self.failed.device, dtype=torch.float64)
        for _ in range(config.batches_per_epoch):
            window = sample_windows(
                cohort, model_subject, config.batch_size, config.seq_len, self.rng
            )
            loss = gtf_loss(
                self.model, self.decoder, window, config.alpha, config.noise_sd, self.rng
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # models are independent: each gets its own gradient
            if config.grad_clip:
                _clip_per_model(params, config.grad_clip)
            self.optimizer.step()
            epoch_loss += loss.detach()
        self.scheduler.step()
        epoch_loss /= config.batches_per_epoch
        _flag_and_restore(params, self.snapshot, self.failed, epoch_loss, self.epoch)
        self.history[self.epoch] = torch.where(self.failed, torch.nan, epoch_loss).cpu()
        self.epoch += 1
        return epoch_loss

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "decoder": self.decoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self.rng.get_state(),
            "history": self.history,
            "failed": self.failed,
            "snapshot": self.snapshot,
        }

    def resume(self, checkpoint_dir, device, fingerprint) -> None:
        """Restore from ``checkpoint_dir`` if it holds a checkpoint of this very fit."""
        saved = load_checkpoint(checkpoint_dir, device)
        if saved is None:
            return
        if saved["fingerprint"] != fingerprint:
            log.warning(
                "checkpoint in %s belongs to another configuration or data; starting afresh",
                checkpoint_dir,
            )
            return
        self.model.load_state_dict(saved["model"])
        self.decoder.load_state_dict(saved["decoder"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.rng.set_state(saved["rng"].cpu())
        self.history.copy_(saved["history"])
        self.failed.copy_(saved["failed"])
        for s, value in zip(self.snapshot, saved["snapshot"], strict=True):
            s.copy_(value)
        self.epoch = saved["epoch"]
        log.info("resumed from %s at epoch %d", checkpoint_dir, self.epoch)


@torch.no_grad()
def _flag_and_restore(params, snapshot, failed, epoch_loss, epoch) -> None:
    """Flag models whose loss/parameters went non-finite; reset flagged models to their last good
    parameters and refresh the snapshot of the others (all in place)."""
    newly = ~failed & ~(torch.isfinite(epoch_loss) & _finite_per_model(params))
    if newly.any():
        log.warning(
            "epoch %d: model(s) %s diverged (non-finite loss or parameters); they keep "
            "their last finite parameters and the others train on",
            epoch + 1,
            torch.nonzero(newly).flatten().tolist(),
        )
        failed |= newly
    for p, s in zip(params, snapshot, strict=True):
        p[failed] = s[failed]
        s[~failed] = p[~failed]
