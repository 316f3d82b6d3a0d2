"""Transfer of a held-out subject to a trained hierarchical cohort model: does it land next to
its planted neighbours, and is its error one of the transfer or of the readout?

For each seed, the planted cohort and the hierarchical fit of ``hierarchical_cohort.py`` (same
settings, same seed: the same cohort model; cached in ``validation/out`` after the first run) are
made again. Then every subject, the held-out one (ρ 232) included, is fitted to the cohort model
by features and decoder only, exactly as the main script transfers the held-out subject, with two
transfer seeds. The held-out subject's ρ is predicted by the restarts' mean readout
(``restarts_predict``) fitted on (a) the cohort's jointly trained features, as the main script
does, and (b) the cohort subjects' own transferred features, so that the readout is fitted and
applied in one kind of coordinates. Reported: ρ̂, its error, and the fitted subjects' leave-one-out
errors (the issue's criterion: the error within their range).

    python validation/hierarchical_transfer.py --seeds 6 7
"""

from __future__ import annotations

import dataclasses

import _common as C
import hierarchical_cohort as H
import numpy as np
import torch

from dsr.report.feature_space import (
    FeatureSpace,
    parameter_matrix,
    per_restart,
    restarts_predict,
    select_restarts,
)
from dsr.signal.kernels import spm_hrf
from dsr.training.hierarchical import fit_hierarchical, transfer_subjects

TRANSFER_SEEDS = (0, 1)  # offsets to the main script's transfer seed: how much transfer varies


def cohort_fit(a, seed, data, train, sids):
    """The cohort fit of ``hierarchical_cohort.py`` for ``seed`` and the restarts its evaluation
    keeps; cached in ``validation/out`` (the fit is the slow part: 4-9 min per seed)."""
    path = C.OUT / f"hierarchical_transfer_cohort_seed{seed}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    cfg, hcfg = H.training_configs(a)
    hfit = fit_hierarchical(
        [data[i] for i in train], spm_hrf(H.TR), hierarchical=hcfg, subject_ids=sids,
        n_restarts=a.restarts, config=cfg, seed=seed, device="cpu",
    )  # fmt: skip
    table = H.evaluate(hfit.ensemble, [data[i] for i in train], sids, a)
    cached = (hfit, select_restarts(table))
    torch.save(cached, path)
    return cached


def transfer_all(a, hfit, data, cfg, hcfg, seed, offset):
    """Every subject of the planted cohort, the held-out one last, fitted to the cohort model
    by features and decoder only, as the main script transfers the held-out subject (its
    learning rate, seed ``seed + 7 + offset``); parameters (R, S + 1, K)."""
    order = [i for i in range(a.subjects) if i != a.holdout] + [a.holdout]
    tfit = transfer_subjects(
        hfit, [data[i] for i in order], spm_hrf(H.TR),
        config=dataclasses.replace(cfg, lr_start=a.transfer_lr), hierarchical=hcfg,
        seed=seed + 7 + offset, device="cpu", subject_ids=[f"sub-{i + 1:02d}" for i in order],
    )  # fmt: skip
    return per_restart(parameter_matrix(tfit.ensemble.model), a.restarts)


def readouts(restarts, rho_tr, fit_coords, new_coords):
    """The restarts' mean readout fitted on ``fit_coords`` (R, S, k) applied to ``new_coords``
    (R, 1, k): (ρ̂, each restart's prediction, the fitted subjects' leave-one-out errors)."""
    each = [restarts_predict(fit_coords, rho_tr, [r], new_coords)[0] for r in restarts]
    rho_hat, loo = H.transfer_readout(fit_coords, rho_tr, restarts, new_coords)
    return rho_hat, np.array(each), loo


def main() -> None:
    a = H.parse()
    C.setup(a)
    timer = C.Timer()
    rows = []
    for seed in a.seeds:
        data, truth = H.planted_cohort(a, seed)
        rho = np.array([t["rho"] for t in truth])
        train = [i for i in range(a.subjects) if i != a.holdout]
        sids = [f"sub-{i + 1:02d}" for i in train]
        cfg, hcfg = H.training_configs(a)
        hfit, restarts = cohort_fit(a, seed, data, train, sids)
        params = per_restart(parameter_matrix(hfit.ensemble.model), a.restarts)
        space = FeatureSpace.fit(params, a.features, restarts)
        rho_tr = rho[train]
        print(f"[{timer():.0f}s] seed {seed}: cohort fitted", flush=True)
        for offset in TRANSFER_SEEDS:
            coords = space.transform_per_restart(
                transfer_all(a, hfit, data, cfg, hcfg, seed, offset)
            )
            held = coords[:, -1:]
            for name, fit_coords in [("cohort features", space.per_restart),
                                     ("re-transferred cohort", coords[:, :-1])]:  # fmt: skip
                rho_hat, each, loo = readouts(restarts, rho_tr, fit_coords, held)
                err = abs(rho_hat - rho[a.holdout])
                rows.append([str(seed), f"+{offset}", name, f"{rho_hat:.0f} (true {rho[a.holdout]:.0f})",
                             f"{err:.0f}", f"{np.median(loo):.0f} / {loo.max():.0f}",
                             "yes" if err <= loo.max() else "no"])  # fmt: skip
                print(
                    f"[{timer():.0f}s] {rows[-1]} restarts {np.round(each).astype(int)}", flush=True
                )
    print(C.markdown_table(
        ["seed", "transfer seed", "readout fitted on", "ρ̂", "|ρ̂ − ρ|",
         "LOO errors of the fitted subjects, median / max", "within"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
