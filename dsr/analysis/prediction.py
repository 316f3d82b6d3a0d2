"""n-step prediction error PE_n of spec section 5: the model's n-step-ahead forecasts from
deconvolved data, decoded and compared with the data, batched over models and start times."""

from __future__ import annotations

import numpy as np
import torch

from dsr._validation import check_positive
from dsr.errors import DsrInputError


def _per_model(a: np.ndarray | None, n_time: int, n_models: int, name: str) -> torch.Tensor | None:
    """(T, F) or (T, E, F) array -> float64 tensor (T, E, F)."""
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        a = np.broadcast_to(a[:, None], (a.shape[0], n_models, a.shape[1]))
    if a.ndim != 3 or a.shape[:2] != (n_time, n_models):
        raise DsrInputError(
            f"'{name}' must be (T, F) or (T, E, F) with T = {n_time}, E = {n_models}; got {a.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(a))


def _on_model(a: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``a`` on the device and in the dtype of the model parameter ``like``."""
    return None if a is None else a.to(device=like.device, dtype=like.dtype)


def _prediction_starts(n_time, n_steps, cut_left, cut_right, h) -> np.ndarray:
    """Start indices ``[cut_left, T - max(cut_right, n))``; at least h of them, else an error."""
    starts = np.arange(cut_left, n_time - max(cut_right, n_steps))
    if starts.size < h:
        raise DsrInputError(
            f"only {starts.size} prediction starts for a kernel of length {h}; "
            f"T = {n_time} is too short for n = {n_steps} and the edge cuts"
        )
    return starts


def _iterate_from_starts(model, decoder, xd, rd, starts, n_steps, like) -> torch.Tensor:
    """States ``d_u`` (E, S, M) from ``xd``, ``rd`` (T, E, F) at every start u, iterated n steps."""
    sel = torch.as_tensor(starts)
    z = decoder.initial_state(
        _on_model(xd[sel].transpose(0, 1), like),
        None if rd is None else _on_model(rd[sel].transpose(0, 1), like),
    )
    for _ in range(n_steps):
        z = model.step(z)
    return z


def _decode_series(decoder, z, r_t, t0, like) -> torch.Tensor:
    """Decode predictions (E, S, M) for times ``t0, t0 + 1, ...`` as one series through the
    kernel with raw ``r_t`` (T, E, P); float64 (S - h + 1, E, N) on the CPU, from ``t0 + h - 1``."""
    z_series = z.transpose(0, 1)[:, :, None]  # (S, E, 1, M)
    r_win = None if r_t is None else _on_model(r_t[t0 : t0 + z.shape[1]], like)[:, :, None]
    return decoder.decode(z_series, r_win)[:, :, 0].double().cpu()


def _fed_by_forcing(xd: torch.Tensor, starts: np.ndarray, h: int) -> torch.Tensor:
    """(S - h + 1, E, 1) bool: decoded time i has a finite forcing at all h starts it draws on.

    Starts without a forcing signal (NaN-padded subjects, the unrevealed test samples of the
    sliding deconvolution) give no prediction; those times are not scored, unlike predictions that
    go non-finite from a finite start."""
    fed = torch.isfinite(xd[torch.as_tensor(starts)]).all(dim=-1).double()  # (S, E)
    run = fed.unfold(0, h, 1).sum(-1) if h > 1 else fed  # (S - h + 1, E)
    return (run == h)[..., None]


def _mse(x_hat: torch.Tensor, target: torch.Tensor, scored: torch.Tensor) -> np.ndarray:
    """MSE per model over the ``scored`` finite targets of (T, E, N) tensors; (E,).

    Never drops a prediction: one non-finite prediction at a scored target makes the model's error
    infinite (an exploding forecast is not a small one). NaN for a model without scored targets.
    """
    scored = scored & torch.isfinite(target)
    count = scored.sum(dim=(0, 2))
    sq = torch.where(scored, (x_hat - torch.nan_to_num(target)) ** 2, 0.0)
    mse = torch.nan_to_num(sq, nan=torch.inf).sum(dim=(0, 2)) / count.clamp(min=1)
    return torch.where(count > 0, mse, torch.nan).numpy()


@torch.no_grad()
def prediction_error(
    model,
    decoder,
    x: np.ndarray,
    x_deconv: np.ndarray,
    r: np.ndarray | None = None,
    r_deconv: np.ndarray | None = None,
    n_steps: int = 10,
    cut_left: int = 0,
    cut_right: int = 0,
) -> np.ndarray:
    """n-step prediction error PE_n of every model of an ensemble (spec section 5), shape (E,).

    From every start u (0-based) in ``[cut_left, T - max(cut_right, n))`` the state
    ``d_u = decoder.initial_state(x_deconv_u, r_deconv_u)`` is iterated n steps; the predictions
    ``z^(n)_{u+n}`` of successive starts form a series that is decoded through the kernel (with raw
    ``r``); the MSE against ``x_t`` runs over ``t`` in
    ``[cut_left + n + h - 1, T - max(cut_right - n, 0))``, skipping NaN targets (padding of
    shorter subjects, scrubbed volumes) and times whose kernel history includes a start without a
    forcing signal (NaN deconvolution). A non-finite prediction at a scored target makes the
    model's PE infinite: forecasts that blow up are never dropped. All models
    and starts run as one batch of shape (E, starts, M).

    Parameters
    ----------
    model : dsr.models.LatentMap
        Ensemble of E latent maps.
    decoder
        Observation model with ``initial_state`` and ``decode`` (``dsr.models.decoders``); kernel
        length h.
    x, x_deconv : np.ndarray, shape (T, N) or (T, E, N)
        Observations and their deconvolution; per-model data on axis 1 (pad shorter series with
        NaN).
    r, r_deconv : np.ndarray, shape (T, P) or (T, E, P), optional
        Nuisance regressors (raw for decoding, deconvolved for the initial state).
    n_steps : int
        Prediction horizon n (10 for fMRI, 20 for Lorenz).
    cut_left, cut_right : int
        Edge samples cut from the deconvolution (sample counts, see ``edge_samples``).

    Returns
    -------
    np.ndarray, shape (E,); inf for a model with a non-finite prediction at a scored target, NaN
    for a model without any scored target.
    """
    check_positive("n_steps", n_steps, integer=True)
    if cut_left < 0 or cut_right < 0:
        raise DsrInputError(f"cut_left/cut_right must be >= 0; got {cut_left}, {cut_right}")
    n_models = model.n_models
    n_time = np.shape(x)[0]
    if (r is None) != (r_deconv is None):
        raise DsrInputError("pass both 'r' and 'r_deconv' or neither")
    x_t, xd, r_t, rd = (
        _per_model(a, n_time, n_models, name)
        for a, name in [(x, "x"), (x_deconv, "x_deconv"), (r, "r"), (r_deconv, "r_deconv")]
    )
    h = int(decoder.kernel_length)
    starts = _prediction_starts(n_time, n_steps, cut_left, cut_right, h)
    like = next(model.parameters())
    z = _iterate_from_starts(model, decoder, xd, rd, starts, n_steps, like)  # at starts + n
    t0 = int(starts[0]) + n_steps
    x_hat = _decode_series(decoder, z, r_t, t0, like)  # times t0 + h - 1 ...
    target = x_t[t0 + h - 1 : t0 + starts.size]  # ends at T - max(cut_right - n, 0)
    return _mse(x_hat, target, _fed_by_forcing(xd, starts, h))
