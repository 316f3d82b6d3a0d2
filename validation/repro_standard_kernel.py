"""Reproduces a library bug found while writing the benchmarks (not a benchmark itself).

Status: fixed upstream during this session (commit cffdd29: ``fit_ensemble`` now stores the
kernel the decoder trained with); on a fixed tree both lines below print the same PE values.

``fit_ensemble`` with ``decoder="standard"`` trains with the trivial kernel (training.py uses
``eff_kernel = ones(1)`` when ``decoder.kernel_length == 1``) but stores the kernel it was given
(``FittedEnsemble.kernel = kernel``, the HRF). ``evaluate_ensemble`` then takes ``fitted.kernel``
(evaluation.py ``kernel, cfg = np.asarray(fitted.kernel), ...``): it Wiener-deconvolves the data
with the HRF to build the standard SSM's initial states ``B⁺x^deconv`` and cuts edges by the HRF
length, i.e. evaluates the standard SSM with a forcing signal it was never trained on. The same
fitted model scores a clearly worse PE1 than with the kernel actually used in training.
Workaround in the validation scripts: pass ``np.ones(1)`` as the kernel for the standard SSM.

    python validation/repro_standard_kernel.py
"""

import copy
import sys

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, "validation")
import _common as C  # noqa: E402,F401

from dsr.evaluation import evaluate_ensemble  # noqa: E402
from dsr.kernels import spm_hrf  # noqa: E402
from dsr.training import TrainingConfig, fit_ensemble  # noqa: E402

k = spm_hrf(0.5)
x, z = C.lorenz_bold(k, 1000, 0.01, 0)
cfg = TrainingConfig(
    model="shPLRNN",
    latent_dim=3,
    decoder="standard",
    epochs=10,
    batches_per_epoch=20,
    seq_len=115,
    grad_clip=10.0,
    checkpoint_every=0,
    lr_end=1e-4,
)
f = fit_ensemble([x], k, n_restarts=2, config=cfg, device="cpu")
print("stored kernel length", len(f.kernel), "decoder kernel length", f.decoder.kernel_length)
for name, kern in [("as returned (HRF stored)", f.kernel), ("kernel [1]", np.ones(1))]:
    g = copy.copy(f)
    g.kernel = kern
    ev = evaluate_ensemble(g, {"sub-01": x}, n_trajectories=2, lyap_steps=100, lyap_transient=10)
    t = ev.table
    print(name, "PE1 train", t.pe1_train.round(4).tolist(), "PE10", t.pe10_train.round(3).tolist())
