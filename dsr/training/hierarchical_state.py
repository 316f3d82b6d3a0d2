"""Training state of a hierarchical cohort fit: one GTF epoch over subject batches, two optimisers,
per-restart divergence flags, checkpoints.

The cohort model has R restarts (``dsr.models.hierarchical``); its decoders and losses are per
model, E = S·R, subject-major (model ``e = s·R + r``). A batch draws ``subjects_per_batch``
subjects; windows are cut for their S_b·R models only and the materialised parameters of those
models run through the fused GTF rollout (``gtf_loss``). The loss of a restart is the mean over the
batch's subjects; restarts share nothing, so their sum gives each restart its own gradient. A
restart whose loss or parameters go non-finite is flagged as a whole (its subjects share its
group tensors) and keeps its last finite parameters while the others train on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from dsr.training.gtf import AGTF_EVERY, adaptive_alpha, gtf_loss
from dsr.training.state import read_checkpoint, restore_shared, shared_state, write_checkpoint
from dsr.training.windows import sample_windows

log = logging.getLogger(__name__)


def batch_view(module: torch.nn.Module, index: torch.Tensor) -> torch.nn.Module:
    """A shallow copy of an ensemble decoder holding only the models ``index`` (leading axis E of
    every parameter and buffer but the shared ``kernel``); differentiable: gradients reach the
    full parameters."""
    view = object.__new__(type(module))
    view.__dict__.update(module.__dict__)
    view._parameters, view._buffers = {}, {}
    for name, p in module.named_parameters(recurse=False):
        view.__dict__[name] = p.index_select(0, index)
    for name, b in module.named_buffers(recurse=False):
        view.__dict__[name] = b if name == "kernel" else b.index_select(0, index)
    return view


@dataclasses.dataclass
class HierarchicalState:
    """Everything a hierarchical fit changes; checkpointed as one dict and restored from it.

    ``history`` (epochs, E): per-model mean epoch loss over the batches that drew the subject
    (NaN once its restart failed); ``failed`` (R,): divergence flag per restart.
    """

    model: torch.nn.Module  # HierarchicalPLRNN
    decoder: torch.nn.Module  # E = S·R models
    optimizers: dict  # "group" (absent in a transfer fit) and "subject"
    schedulers: dict
    rng: torch.Generator
    history: torch.Tensor
    failed: torch.Tensor
    snapshot: list[torch.Tensor]
    alpha: torch.Tensor  # GTF strength per model (E,)
    epoch: int = 0

    @classmethod
    def new(cls, model, decoder, config, subject_lr_factor, train_group, seed, device):
        """RAdam for the group tensors (``config.lr_start`` -> ``lr_end``) and for the subject
        features + decoders (the same times ``subject_lr_factor``), exponential decay per epoch."""
        model.to(device)
        decoder.to(device)
        groups = {"subject": [model.features, *decoder.parameters()]}
        if train_group:
            groups["group"] = model.group_parameters()
        else:
            model.requires_grad_(False)
            model.features.requires_grad_(True)
        gamma = (config.lr_end / config.lr_start) ** (1.0 / config.epochs)
        lr = {"group": config.lr_start, "subject": config.lr_start * subject_lr_factor}
        opts = {k: torch.optim.RAdam(v, lr=lr[k]) for k, v in groups.items()}
        n_models = model.n_models
        return cls(
            model=model,
            decoder=decoder,
            optimizers=opts,
            schedulers={
                k: torch.optim.lr_scheduler.ExponentialLR(o, gamma) for k, o in opts.items()
            },
            rng=torch.Generator(device).manual_seed(seed + 1),
            history=torch.full((config.epochs, n_models), float("nan"), dtype=torch.float64),
            failed=torch.zeros(model.n_restarts, dtype=torch.bool, device=device),
            snapshot=[p.detach().clone() for p in (*model.parameters(), *decoder.parameters())],
            alpha=torch.full(
                (n_models,), 1.0 if config.gtf == "adaptive" else config.alpha, device=device
            ),
        )

    @property
    def params(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.decoder.parameters()]

    def model_restart(self) -> torch.Tensor:
        R, S = self.model.n_restarts, self.model.n_subjects
        return torch.arange(R, device=self.failed.device).repeat(S)

    def train_epoch(self, cohort, config, subjects_per_batch: int) -> torch.Tensor:
        """One epoch; returns the per-model mean losses (E,), NaN for subjects never drawn."""
        R, S = self.model.n_restarts, self.model.n_subjects
        device = self.failed.device
        total = torch.zeros(S * R, device=device, dtype=torch.float64)
        count = torch.zeros(S * R, device=device, dtype=torch.float64)
        adaptive = config.gtf == "adaptive"
        for b in range(config.batches_per_epoch):
            subjects = torch.arange(S, device=device)
            if subjects_per_batch < S:
                perm = torch.randperm(S, generator=self.rng, device=device)
                subjects = perm[:subjects_per_batch].sort().values
            index = (subjects[:, None] * R + torch.arange(R, device=device)).flatten()
            window = sample_windows(
                cohort, subjects.repeat_interleave(R), config.batch_size, config.seq_len, self.rng
            )
            every = subjects_per_batch == S
            model = self.model.view(None if every else subjects)
            decoder = self.decoder if every else batch_view(self.decoder, index)
            if adaptive and (self.epoch * config.batches_per_epoch + b) % AGTF_EVERY == 0:
                self.alpha[index] = adaptive_alpha(model, decoder, window, self.alpha[index])
            alpha = self.alpha[index] if adaptive else config.alpha
            loss = gtf_loss(
                model, decoder, window, alpha, config.noise_sd, self.rng, config.deconv_weight
            )
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss.view(len(subjects), R).mean(0).sum().backward()
            if config.grad_clip:
                self._clip_per_restart(config.grad_clip)
            for opt in self.optimizers.values():
                opt.step()
            total.index_add_(0, index, loss.detach().double())
            count.index_add_(0, index, torch.ones_like(total[index]))
        for sched in self.schedulers.values():
            sched.step()
        epoch_loss = total / count  # NaN (0/0) where a subject was not drawn
        self._flag_and_restore(epoch_loss, count > 0)
        lost = self.failed[self.model_restart()]
        self.history[self.epoch] = torch.where(lost, torch.nan, epoch_loss).cpu()
        self.epoch += 1
        return epoch_loss

    def _split(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(per-restart tensors: group tensors and features; per-model tensors: decoders)."""
        return list(self.model.parameters()), list(self.decoder.parameters())

    def _per_restart(self, per_model: torch.Tensor) -> torch.Tensor:
        """Sum of a per-model quantity (E,) over each restart's models -> (R,)."""
        out = per_model.new_zeros(self.model.n_restarts)
        return out.index_add_(0, self.model_restart(), per_model)

    @torch.no_grad()
    def _clip_per_restart(self, max_norm: float) -> None:
        """Scale each restart's gradient (group tensors, features, its decoders) to norm <= max_norm."""
        per_restart, per_model = self._split()
        sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in per_restart if p.grad is not None)
        sq = sq + self._per_restart(
            sum(p.grad.pow(2).flatten(1).sum(1) for p in per_model if p.grad is not None)
        )
        scale = (max_norm / (sq.sqrt() + 1e-12)).clamp(max=1.0)
        for params, s in ((per_restart, scale), (per_model, scale[self.model_restart()])):
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(s.view(-1, *([1] * (p.grad.dim() - 1))))

    @torch.no_grad()
    def _flag_and_restore(self, epoch_loss: torch.Tensor, seen: torch.Tensor) -> None:
        """Flag restarts with a non-finite loss (of a drawn subject) or parameter; reset flagged
        restarts to their snapshot, refresh the snapshot of the others."""
        per_restart, per_model = self._split()
        restart = self.model_restart()
        bad_model = (seen & ~torch.isfinite(epoch_loss)).double()
        for p in per_model:
            bad_model += (~torch.isfinite(p).flatten(1).all(1)).double()
        bad = self._per_restart(bad_model) > 0
        for p in per_restart:
            bad |= ~torch.isfinite(p).flatten(1).all(1)
        newly = bad & ~self.failed
        if newly.any():
            log.warning(
                "epoch %d: restart(s) %s diverged (non-finite loss or parameters); they keep "
                "their last finite parameters and the others train on",
                self.epoch + 1,
                torch.nonzero(newly).flatten().tolist(),
            )
            self.failed |= newly
        lost_model = self.failed[restart]
        snaps = iter(self.snapshot)
        for params, lost in ((per_restart, self.failed), (per_model, lost_model)):
            for p in params:
                s = next(snaps)
                p[lost] = s[lost]
                s[~lost] = p[~lost]

    def state_dict(self) -> dict:
        return shared_state(self) | {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def save(self, checkpoint_dir, fingerprint: dict) -> Path:
        """Write the state atomically with ``fingerprint`` (see ``write_checkpoint``)."""
        return write_checkpoint(checkpoint_dir, fingerprint, self.state_dict())

    def resume(self, checkpoint_dir, device, fingerprint: dict) -> None:
        """Restore from ``checkpoint_dir`` when it holds a checkpoint of this very fit."""
        saved = read_checkpoint(checkpoint_dir, device, fingerprint)
        if saved is None:
            return
        for k, opt in self.optimizers.items():
            opt.load_state_dict(saved["optimizers"][k])
        for k, sched in self.schedulers.items():
            sched.load_state_dict(saved["schedulers"][k])
        restore_shared(self, saved, device, checkpoint_dir)
