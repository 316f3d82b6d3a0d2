"""Which selection rule finds each demo subject's faithful models? Re-reads saved demo fits.

Every recipe folder that ``demo_recipe.py`` left under ``validation/out/demo_recipe*/`` holds each
subject's ``evaluate/metrics.tsv`` (every restart's held-out D_stsp, D_H and λ_max). For each
folder this script selects each subject's models again by two rules and counts the subjects whose
selected models' median λ_max per second is positive and within ±25 % of the planted value:

* ``D_stsp``: the best quarter of the eligible models by held-out D_stsp (the workflow's rule
  before 2026-11-30, session 5);
* ``D_stsp, then D_H``: :func:`dsr.analysis.selection.select_models` with ``keep_fraction=0.25``,
  the best half by held-out D_stsp and then the better half of those by held-out D_H.

    python validation/demo_selection.py
"""

from __future__ import annotations

import json

import _common as C
import numpy as np
import pandas as pd

from dsr.analysis.selection import select_models

TOLERANCE = 0.25


def quarter_by_dstsp(table: pd.DataFrame) -> pd.Series:
    eligible = table[table["eligible"]]
    n = max(2, int(np.ceil(0.25 * len(eligible))))
    return table.index.isin(eligible.nsmallest(n, "dstsp_test").index)


def two_stage(table: pd.DataFrame) -> pd.Series:
    raw = table.drop(columns=["pe_ok", "eligible", "top_dstsp", "selected", "selected_on"])
    return select_models(raw, segment="test", keep_fraction=0.25)["selected"].to_numpy()


RULES = {"D_stsp": quarter_by_dstsp, "D_stsp, then D_H": two_stage}


def main() -> None:
    C.base_parser(__doc__).parse_args()
    rows, totals = [], dict.fromkeys(RULES, 0)
    for run in sorted(C.OUT.glob("demo_recipe*/*/sub-01/evaluate/metrics.tsv")):
        run = run.parents[2]
        subjects = sorted(
            p.name for p in run.glob("sub-*") if (p / "evaluate/metrics.tsv").exists()
        )
        counts = {}
        for name, rule in RULES.items():
            ratios = []
            for s in subjects:
                table = pd.read_csv(run / s / "evaluate/metrics.tsv", sep="\t")
                truth = json.loads((run.parent / "demo/ground_truth" / f"{s}.json").read_text())
                lam = np.median(table.loc[rule(table), "lambda_max_per_s"])
                ratios.append(lam / truth["lambda_max_per_second"])
            ok = [r > 0 and abs(r - 1) <= TOLERANCE for r in ratios]
            counts[name] = f"{sum(ok)}/{len(ok)} ({' '.join(f'{r:.2f}' for r in ratios)})"
            totals[name] += sum(ok)
        rows.append([f"{run.parent.name}/{run.name}", *counts.values()])
    print(C.markdown_table(
        ["fit", *(f"{k}: subjects within ±25 % (median λ / planted)" for k in RULES)], rows))  # fmt: skip
    print("totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
