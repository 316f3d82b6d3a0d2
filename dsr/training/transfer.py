"""Transfer to a trained hierarchical cohort model: new subjects start where the cohort explains
them best, then train their features and decoders only (``fit_hierarchical(transfer_from=...)``).
"""

from __future__ import annotations

import copy

import torch

from dsr.errors import DsrInputError
from dsr.training.gtf import gtf_loss
from dsr.training.windows import sample_windows

WARM_START_BATCHES = 4  # batches of windows that score each cohort subject as a starting point


@torch.no_grad()
def adopt_cohort(model, decoder, cohort_fit, data, config, rng) -> torch.Tensor:
    """Copy the cohort model's group tensors into ``model`` and warm-start every new subject.

    Per new subject and restart, each cohort subject's features and decoder are scored by the GTF
    loss (no augmentation noise) on ``WARM_START_BATCHES`` batches of the new subject's windows
    (``data``: its prepared cohort, ``dsr.training.windows.prepare_cohort``); the best one starts
    the new subject's features and decoder. Returns the chosen cohort subjects ``(S_new, R)``.
    """
    group = cohort_fit.model
    same = ("latent_dim", "hidden_dim", "base", "n_features", "n_restarts")
    if any(getattr(model, k) != getattr(group, k) for k in same):
        raise DsrInputError(
            "the new subjects need the cohort model's latent_dim, hidden_dim and model; cohort "
            f"model: {group.hyperparameters()}"
        )
    device = model.features.device
    for mine, theirs in zip(model.group_parameters(), group.group_parameters(), strict=True):
        mine.copy_(theirs)
    old_view = copy.deepcopy(group).to(device).view()
    old_dec = copy.deepcopy(cohort_fit.ensemble.decoder).to(device)
    n_old, R = group.n_subjects, group.n_restarts
    restarts = torch.arange(R, device=device)
    chosen = []
    for n in range(model.n_subjects):
        subject = torch.full((n_old * R,), n, device=device)
        loss = torch.zeros(n_old * R, device=device, dtype=torch.float64)
        for _ in range(WARM_START_BATCHES):
            window = sample_windows(data, subject, config.batch_size, config.seq_len, rng)
            loss += gtf_loss(
                old_view, old_dec, window, config.alpha, 0.0, rng, config.deconv_weight
            ).double()
        best = loss.nan_to_num(torch.inf).view(n_old, R).argmin(0)  # (R,)
        model.features[:, n] = group.features.to(device)[restarts, best]
        for name, p in _decoder_tensors(decoder):
            theirs = getattr(old_dec, name)
            rows = (best * R + restarts).to(theirs.device)
            p.view(model.n_subjects, R, *p.shape[1:])[n] = theirs.index_select(0, rows)
        chosen.append(best)
    return torch.stack(chosen)


def _decoder_tensors(decoder):
    return [
        (name, t)
        for name, t in [*decoder.named_parameters(), *decoder.named_buffers()]
        if name != "kernel"
    ]


@torch.no_grad()
def share_initial_decoder(decoder, n_subjects: int) -> None:
    """Give every subject of a restart the decoder of the restart's first subject (subject-major
    ``(S·R, ...)`` tensors), so the subjects start in one latent coordinate system."""
    for _, p in _decoder_tensors(decoder):
        per = p.view(n_subjects, p.shape[0] // n_subjects, *p.shape[1:])
        per.copy_(per[:1].expand_as(per))
