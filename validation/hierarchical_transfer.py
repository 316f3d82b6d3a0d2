"""Transfer of a held-out subject to a trained hierarchical cohort model: which fit lands it right?

For each seed, the planted cohort and the hierarchical fit of ``hierarchical_cohort.py`` (same
settings, same seed: the same cohort model) are made again; then the held-out subject (ρ 232) is
fitted by features and decoder only under several transfer settings, and its ρ is predicted by
the restarts' mean readout of the cohort (``restarts_predict``). Reported per setting: ρ̂, its
error, and the cohort subjects' own leave-one-out errors (the issue's criterion: the error within
their range).

    python validation/hierarchical_transfer.py --seeds 6 7
"""

from __future__ import annotations

import dataclasses

import _common as C
import hierarchical_cohort as H
import numpy as np

from dsr.report.feature_space import (
    FeatureSpace,
    parameter_matrix,
    per_restart,
    restarts_loo_predictions,
    restarts_predict,
    select_restarts,
)
from dsr.signal.kernels import spm_hrf
from dsr.training.hierarchical import fit_hierarchical

SETTINGS = {  # transfer epochs (x the cohort's batches per epoch) and initial learning rate
    "as hierarchical_cohort.py (400 epochs, 1e-3)": (1.0, 1e-3),
    "3x the epochs (1e-3)": (3.0, 1e-3),
    "learning rate 2e-3": (1.0, 2e-3),
}


def main() -> None:
    a = H.parse()
    C.setup(a)
    timer = C.Timer()
    kernel = spm_hrf(H.TR)
    rows = []
    for seed in a.seeds:
        data, truth = H.planted_cohort(a, seed)
        rho = np.array([t["rho"] for t in truth])
        train = [i for i in range(a.subjects) if i != a.holdout]
        sids = [f"sub-{i + 1:02d}" for i in train]
        cfg, hcfg = H.training_configs(a)
        hfit = fit_hierarchical(
            [data[i] for i in train], kernel, hierarchical=hcfg, subject_ids=sids,
            n_restarts=a.restarts, config=cfg, seed=seed, device="cpu",
        )  # fmt: skip
        table = H.evaluate(hfit.ensemble, [data[i] for i in train], sids, a)
        restarts = select_restarts(table)
        params = per_restart(parameter_matrix(hfit.ensemble.model), a.restarts)
        space = FeatureSpace.fit(params, a.features, restarts)
        rho_tr = rho[train]
        loo = np.abs(rho_tr - restarts_loo_predictions(space.per_restart, rho_tr, restarts))
        print(f"[{timer():.0f}s] seed {seed}: cohort fitted", flush=True)
        for name, (factor, lr) in SETTINGS.items():
            tcfg = dataclasses.replace(cfg, lr_start=lr, epochs=int(round(a.epochs * factor)))
            _, new_params = H.transfer_holdout(a, hfit, data[a.holdout], tcfg, hcfg, seed, "cpu")
            new = space.transform_per_restart(new_params)
            rho_hat = float(restarts_predict(space.per_restart, rho_tr, restarts, new)[0])
            err = abs(rho_hat - rho[a.holdout])
            rows.append([str(seed), name, f"{rho_hat:.0f} (true {rho[a.holdout]:.0f})",
                         f"{err:.0f}", f"{np.median(loo):.0f} / {loo.max():.0f}",
                         "yes" if err <= loo.max() else "no"])  # fmt: skip
            print(f"[{timer():.0f}s] {rows[-1]}", flush=True)
    print(C.markdown_table(
        ["seed", "transfer", "ρ̂", "|ρ̂ − ρ|", "cohort LOO errors median / max", "within"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
