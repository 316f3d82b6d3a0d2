"""Free runs of a fitted ensemble and their scores: the model's long-term behaviour from the
evaluation start states, decoded, compared with each model's subject (D_stsp, D_H).

Latent trajectories are ``(T, E, K, M)`` (K runs per model); per-model data are NaN-padded
``(T, E, F)``.
"""

from __future__ import annotations

import numpy as np
import torch

from dsr.analysis.metrics import power_spectrum_error, state_space_divergence
from dsr.models.registry import analysis_copy
from dsr.signal.deconvolution import edge_samples, wiener_deconvolve
from dsr.training.windows import pad_stack


def stack_per_model(
    arrays: list[np.ndarray | None], n_time: int, index: np.ndarray
) -> np.ndarray | None:
    """Per-subject (T_s, F) arrays -> NaN-padded per-model array (n_time, E, F)."""
    return None if arrays[0] is None else pad_stack(arrays, n_time)[:, index]


@torch.no_grad()
def iterate_free_runs(model, decoder, z0, n_time, r, chunk):
    """Yield ``(k, x_gen, z)`` for chunks of the K initial states ``z0`` (E, K, M): decoded runs
    ``x_gen`` (n_time, E, k, N) and their latent states ``z`` (n_time + h - 1, E, k, M)."""
    h = decoder.kernel_length
    for k in range(0, z0.shape[1], chunk):
        z = model.generate(z0[:, k : k + chunk], n_time + h - 1)
        rr = None if r is None else torch.cat([torch.zeros_like(r[:1]).expand(h - 1, -1, -1), r])
        rr = None if rr is None else rr[:, :, None].expand(-1, -1, z.shape[2], -1)
        yield k, decoder.decode(z, rr).cpu().numpy(), z


def analysis_setup(fitted):
    """float64 CPU copies of the model and decoder, the kernel, noise floor and edge cuts."""
    kernel, cfg = np.asarray(fitted.kernel), fitted.config
    h = len(kernel)
    cuts = edge_samples(cfg.get("cut_left", 0.25), h), edge_samples(cfg.get("cut_right", 0.5), h)
    model = analysis_copy(fitted.model, torch.float64, "cpu")
    decoder = analysis_copy(fitted.decoder, torch.float64, "cpu")
    return model, decoder, kernel, cfg.get("noise_floor", 1e-5), *cuts


def free_runs(fitted, x: np.ndarray, r: np.ndarray | None = None):
    """One noise-free free run per model of a one-subject ensemble over the length of ``x``,
    started from ``d`` at index ``cut_left`` (the evaluation protocol).

    Parameters
    ----------
    fitted : FittedEnsemble
    x : np.ndarray, shape (T, N)
    r : np.ndarray, shape (T, P), optional

    Returns
    -------
    x_gen : np.ndarray, shape (E, T, N)
        Decoded trajectories (with the subject's own ``r``).
    z_gen : np.ndarray, shape (E, T, M)
        Latent states aligned with ``x_gen``.
    """
    model, decoder, kernel, floor, cl, cr = analysis_setup(fitted)
    n_models = fitted.n_models

    def per_model(a):
        return (
            None
            if a is None
            else torch.from_numpy(np.asarray(a, np.float64))[:, None].expand(-1, n_models, -1)
        )

    def start(a):
        return (
            None
            if a is None
            else per_model(wiener_deconvolve(a, kernel, floor, cl, cr)[cl][None])[0, :, None]
        )

    with torch.no_grad():
        z0 = decoder.initial_state(start(x), start(r))
    _, x_gen, z = next(iterate_free_runs(model, decoder, z0, len(x), per_model(r), chunk=1))
    z_gen = z[decoder.kernel_length - 1 :, :, 0].numpy()
    return np.transpose(x_gen[:, :, 0], (1, 0, 2)), np.transpose(z_gen, (1, 0, 2))


def initial_states(decoder, xd0, rd0, n_runs, perturbation_sd, seed) -> torch.Tensor:
    """Start states ``d + perturbation_sd * N(0, 1)`` (E, K, M) of the free runs, from the
    deconvolved sample at ``cut_left`` ``xd0`` (E, N) and ``rd0`` (E, P) (or None)."""
    d0 = decoder.initial_state(
        torch.from_numpy(xd0)[:, None], None if rd0 is None else torch.from_numpy(rd0)[:, None]
    )
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(d0), n_runs, d0.shape[-1], generator=gen, dtype=d0.dtype)
    return d0 + perturbation_sd * noise


def free_run_scores(
    model, decoder, z0, full, rfull, n_train, index, chunk, gmm_scaling, smoothing, seed
) -> dict:
    """D_stsp and D_H of the free runs from ``z0`` (E, K, M) against each model's subject, on the
    training part and the test part (if any), averaged over the runs: ``{score_segment: (E,)}``;
    NaN for a model with any run that could not be scored.

    ``full`` and ``rfull`` are per-subject train+test series (T_s, N) and (T_s, P) (or None),
    ``n_train`` (S,) the training lengths, ``index`` (E,) the subject of each model."""
    n_models, n_runs = z0.shape[:2]
    scores = {
        k: np.full((n_models, n_runs), np.nan)
        for k in ("dstsp_train", "dh_train", "dstsp_test", "dh_test")
    }
    t_max = max(len(f) for f in full)
    r_all = stack_per_model(rfull, t_max, index)
    r_all = None if r_all is None else torch.from_numpy(np.nan_to_num(r_all))
    for k, x_gen, _ in iterate_free_runs(model, decoder, z0, t_max, r_all, chunk):
        kk = x_gen.shape[2]
        for s, f in enumerate(full):
            es, n = np.flatnonzero(index == s), n_train[s]
            parts = [("train", slice(0, n))] + ([("test", slice(n, len(f)))] if len(f) > n else [])
            for name, sl in parts:
                g = x_gen[sl, es].reshape(sl.stop - sl.start, -1, f.shape[1])
                scores[f"dstsp_{name}"][es, k : k + kk] = state_space_divergence(
                    f[sl], g, gmm_scaling=gmm_scaling, seed=seed
                ).reshape(len(es), kk)
                scores[f"dh_{name}"][es, k : k + kk] = power_spectrum_error(
                    f[sl], g, smoothing
                ).reshape(len(es), kk)
    # a run that cannot be scored (e.g. no point inside the data's bins) makes the model's score
    # NaN: averaging the other runs would report a better model than the one that was run
    return {k: v.mean(axis=1) for k, v in scores.items()}


ESCAPE_MARGIN = 1.0  # a run escapes beyond [min - margin · range, max + margin · range] of the data
ESCAPE_CHUNK_VALUES = 2**22  # latent values generated at a time by the boundedness check


@torch.no_grad()
def escaped_runs(model, decoder, z0, low, high, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Long-horizon boundedness check of the free runs from ``z0`` (E, K, M).

    Each run is iterated ``n_steps`` steps (in chunks, nothing long is stored) and read out through
    B without the kernel and the confounds (``B z_t``: the kernel sums to 1, so the convolved
    readout follows ``B z_t`` up to smoothing). A run escapes when a readout goes non-finite or
    leaves ``[low - m·(high - low), high + m·(high - low)]`` (m = ``ESCAPE_MARGIN``) in any dim.

    Parameters
    ----------
    low, high : np.ndarray, shape (E, N)
        Range of each model's data (its subject's train and test parts).

    Returns
    -------
    escaped : np.ndarray of bool, shape (E,)
        Any run of the model escaped.
    n_bounded : np.ndarray of int, shape (E,)
        Runs of the model that stayed bounded.
    """
    low, high = torch.as_tensor(low, dtype=z0.dtype), torch.as_tensor(high, dtype=z0.dtype)
    width = high - low
    lo, hi = (low - ESCAPE_MARGIN * width)[:, None, :], (high + ESCAPE_MARGIN * width)[:, None, :]
    out = torch.zeros(z0.shape[:2], dtype=torch.bool)
    z, chunk = z0, max(16, ESCAPE_CHUNK_VALUES // z0.numel())
    for done in range(0, n_steps, chunk):
        run = model.generate(z, min(chunk, n_steps - done) + 1)  # (1 + c, E, K, M)
        x = torch.einsum("tekm,enm->tekn", run[1:], decoder.B)
        out |= (~torch.isfinite(x) | (x < lo) | (x > hi)).any(dim=-1).any(dim=0)
        z = run[-1]
    return out.any(dim=1).numpy(), (~out).sum(dim=1).numpy()
