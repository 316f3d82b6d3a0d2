"""Re-read the planted ρ from saved hierarchical cohort fits, several ways, without refitting.

``hierarchical_cohort.py`` saves each seed's materialised parameters, features and metrics
(``validation/out/hierarchical_cohort_seed{S}.npz``, ``hierarchical_metrics_seed{S}.tsv``). This
script reads them back and prints, per seed, the leave-one-out R² of ρ from

* the consensus feature space (``FeatureSpace``): its leading axis, 3 axes, all P axes;
* the mean of the consensus restarts' own readouts (``restarts_loo_r2``): every restart fits an
  OLS readout of all its P raw features, which no invertible change of its feature basis alters,
  and the held-out subject's predictions are averaged over restarts;
* each restart alone (median over restarts).

    python validation/hierarchical_readout.py --seeds 4 5 6 7
"""

from __future__ import annotations

import argparse

import _common as C
import numpy as np
import pandas as pd

from dsr.report.feature_space import FeatureSpace, loo_r2, restarts_loo_r2, select_restarts


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    rows = [readouts(s) for s in p.parse_args().seeds]
    header = list(rows[0])
    print(C.markdown_table(header, [[C.fmt(r[k]) if k != "seed" else str(r[k]) for k in header]
                                    for r in rows]))  # fmt: skip
    for k in header[2:]:
        print(f"median over seeds, {k}: {np.median([r[k] for r in rows]):.3g}")


if __name__ == "__main__":
    main()
