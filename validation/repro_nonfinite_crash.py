"""Reproduces a library bug found while writing the benchmarks (not a benchmark itself).

Status: fixed upstream during this session (commit fc9c21c, NaN-safe pinv and divergence
flagging); on a fixed tree the first run finishes with one model flagged "diverged".

Spec §4: "Abort a model (not the ensemble) when its loss or parameters become non-finite".
``fit_ensemble`` checks finiteness only once per epoch (``_flag_and_restore``), but a model whose
parameters become non-finite in the middle of an epoch makes the NEXT batch call
``torch.linalg.pinv(B)`` on a NaN ``B`` (``LinearDecoder.forcing``), which raises
``torch._C._LinAlgError`` and kills the whole ensemble. Seen with the paper's Lorenz settings
(shPLRNN, M = 3, L = 50, α = 0.1, no gradient clipping): RAdam's first steps are un-normalised
(lr × momentum), so one exploding rollout moves A by ~100 in a few batches. With
``grad_clip=10`` (used by the validation scripts) the crash did not occur.

    python validation/repro_nonfinite_crash.py
"""

import torch

from dsr.examples import simulate_convolved
from dsr.kernels import spm_hrf
from dsr.synthetic import simulate_lorenz
from dsr.training import TrainingConfig, fit_ensemble

torch.set_num_threads(1)
k = spm_hrf(0.5)
x = simulate_convolved(simulate_lorenz(1000 + len(k) - 1, 0.01, 28.0), k, noise_sd=0.01)
for clip in (None, 10.0):
    cfg = TrainingConfig(
        model="shPLRNN", latent_dim=3, hidden_dim=50, epochs=2, grad_clip=clip, checkpoint_every=0
    )
    try:
        f = fit_ensemble([x, x], k, n_restarts=2, config=cfg, seed=0, device="cpu")
        print(
            f"grad_clip={clip}: finished, status {f.status}, "
            f"max |A| {float(f.model.A.detach().abs().max()):.3g}"
        )
    except Exception as exc:  # noqa: BLE001 - we want to show the failure
        print(f"grad_clip={clip}: ensemble CRASHED: {type(exc).__name__}: {str(exc)[:120]}")
