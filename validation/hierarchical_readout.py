"""Re-read the planted ρ from saved hierarchical cohort fits, several ways, without refitting.

``hierarchical_cohort.py`` saves each seed's materialised parameters, features and metrics
(``validation/out/hierarchical_cohort_seed{S}.npz``, ``hierarchical_metrics_seed{S}.tsv``). This
script reads them back and prints, per seed, the leave-one-out R² of ρ from

* the consensus feature space (``FeatureSpace``): its leading axis, 3 axes, all P axes;
* the mean of the consensus restarts' own readouts (``restarts_loo_r2``): every restart fits an
  OLS readout of all its P raw features, which no invertible change of its feature basis alters,
  and the held-out subject's predictions are averaged over restarts;
* each restart alone (median over restarts).

``--transfer`` adds, per seed, the held-out subject's transfer as the main script scores it (ρ̂
by the restarts' mean readout, the cohort's leave-one-out errors) beside its reference without a
model: ρ̂ from the held-out subject's spectral centroid (``centroid_transfer``; the planted
cohort is simulated again for this, ~1 min per seed).

    python validation/hierarchical_readout.py --seeds 4 5 6 7
    python validation/hierarchical_readout.py --seeds 6 7 8 9 --transfer
"""

from __future__ import annotations

import argparse

import _common as C
import hierarchical_cohort as H
import numpy as np
import pandas as pd

from dsr.report.feature_space import (
    FeatureSpace,
    loo_r2,
    restarts_loo_r2,
    select_restarts,
)
from dsr.training.loop import TrainingConfig
from dsr.training.windows import train_length


def readouts(seed: int) -> dict:
    saved = np.load(C.OUT / f"hierarchical_cohort_seed{seed}.npz")
    params, features = saved["params"], saved["features"]  # (R, S, K), (R, S, P)
    rho = saved["rho"][saved["train"]]
    table = pd.read_csv(C.OUT / f"hierarchical_metrics_seed{seed}.tsv", sep="\t")
    restarts = select_restarts(table)
    n_features = features.shape[2]
    space = FeatureSpace.fit(params, n_features, restarts)
    return {
        "seed": seed,
        "subjects": len(rho),
        "consensus, leading axis": loo_r2(space.coords[:, :1], rho),
        "consensus, 3 axes": loo_r2(space.coords[:, :3], rho),
        f"consensus, all {n_features} axes": loo_r2(space.coords, rho),
        f"restarts' mean readout ({n_features} features each)": restarts_loo_r2(
            features, rho, restarts
        ),
        "single restart (median)": float(np.median([loo_r2(f, rho) for f in features])),
    }


def transfer(seed: int) -> list[str]:
    """The held-out subject's transfer (saved) and its spectral-centroid reference (recomputed)."""
    saved = np.load(C.OUT / f"hierarchical_cohort_seed{seed}.npz")
    train, rho = saved["train"], saved["rho"]
    holdout = int(np.setdiff1d(np.arange(len(rho)), train)[0])
    table = pd.read_csv(C.OUT / f"hierarchical_metrics_seed{seed}.tsv", sep="\t")
    restarts = select_restarts(table)
    space = FeatureSpace.fit(saved["params"], saved["features"].shape[2], restarts)
    new = space.transform_per_restart(saved["new_params"])
    rho_hat, loo = H.transfer_readout(space.per_restart, rho[train], restarts, new)
    a = H.parse([])  # the main script's defaults: the planted cohort of the recorded runs
    data, _ = H.planted_cohort(a, seed)
    n_train = train_length(a.volumes, TrainingConfig.test_fraction)  # the main script's split
    centroids = [C.spectral_centroid(x[:n_train], 1 / H.TR) for x in data]
    rho_c, loo_c = H.centroid_transfer(centroids, rho, list(train), holdout)
    true = rho[holdout]
    return [str(seed), f"{rho_hat:.0f} (true {true:.0f})", f"{abs(rho_hat - true):.0f}",
            f"{np.median(loo):.0f} / {loo.max():.0f}", f"{rho_c:.0f}", f"{abs(rho_c - true):.0f}",
            f"{np.median(loo_c):.0f} / {loo_c.max():.0f}"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--transfer", action="store_true", help="also the transfer and its reference")
    args = p.parse_args()
    if args.transfer:
        print(C.markdown_table(
            ["seed", "transfer ρ̂", "|ρ̂ − ρ|", "cohort LOO errors median / max",
             "centroid ρ̂", "centroid |ρ̂ − ρ|", "centroid LOO errors median / max"],
            [transfer(s) for s in args.seeds]))  # fmt: skip
    rows = [readouts(s) for s in args.seeds]
    header = list(rows[0])
    print(C.markdown_table(header, [[C.fmt(r[k]) if k != "seed" else str(r[k]) for k in header]
                                    for r in rows]))  # fmt: skip
    for k in header[2:]:
        print(f"median over seeds, {k}: {np.median([r[k] for r in rows]):.3g}")


if __name__ == "__main__":
    main()
