"""Which selection rule finds each demo subject's faithful models? Re-reads saved demo fits.

Every recipe folder that ``demo_recipe.py`` left under ``validation/out/demo_recipe*/`` holds each
subject's ``evaluate/metrics.tsv`` (every restart's held-out D_stsp, D_H and λ_max). For each
folder this script selects each subject's models again by three rules and counts the subjects whose
selected models' median λ_max per second is positive and within ±25 % of the planted value:

* ``D_stsp``: the best quarter of the eligible models by held-out D_stsp (the workflow's rule
  before 2026-11-30, session 5);
* ``D_stsp, then D_H``: :func:`dsr.analysis.selection.select_models` with ``keep_fraction=0.25``,
  the best half by held-out D_stsp and then the better half of those by held-out D_H;
* ``λ consensus``: the best half by held-out D_stsp, then the quarter whose λ_max lie nearest the
  half's median (tried in session 9: does agreement on λ mark the faithful models?).

    python validation/demo_selection.py

``--pool DIR ...`` (results folders of several fits of the same demo cohort, e.g. workflow runs'
``results/``) pools each subject's restarts over the fits and estimates by resampling how often
*every* subject meets the λ target when a user trains n restarts per subject and the workflow
selects with ``select_fraction`` f: the chance per subject and for all of them.

    python validation/demo_selection.py --pool /tmp/run1/results /tmp/run2/results
"""

from __future__ import annotations

import json
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd

from dsr.analysis.selection import select_models

TOLERANCE = 0.25
SELECTION_COLUMNS = ["pe_ok", "eligible", "top_dstsp", "selected", "selected_on"]  # re-derived


def scores(table: pd.DataFrame) -> pd.DataFrame:
    """An evaluation table without the columns its own selection wrote."""
    return table.drop(columns=SELECTION_COLUMNS)


def quarter_by_dstsp(table: pd.DataFrame) -> pd.Series:
    eligible = table[table["eligible"]]
    n = max(2, int(np.ceil(0.25 * len(eligible))))
    return table.index.isin(eligible.nsmallest(n, "dstsp_test").index)


def two_stage(table: pd.DataFrame) -> pd.Series:
    return select_models(scores(table), segment="test", keep_fraction=0.25)["selected"].to_numpy()


def lambda_consensus(table: pd.DataFrame) -> pd.Series:
    """The best half by held-out D_stsp, then the quarter whose λ_max lie nearest that half's
    median (faithful models should agree on λ; the others scatter)."""
    eligible = table[table["eligible"]]
    half = eligible.nsmallest(max(2, int(np.ceil(0.5 * len(eligible)))), "dstsp_test")
    gap = (half["lambda_max_per_s"] - half["lambda_max_per_s"].median()).abs()
    return table.index.isin(gap.nsmallest(max(2, int(np.ceil(0.25 * len(eligible))))).index)


RULES = {"D_stsp": quarter_by_dstsp, "D_stsp, then D_H": two_stage, "λ consensus": lambda_consensus}


def pooled(folders: list[str]) -> dict[str, pd.DataFrame]:
    """Per subject, the ok restarts of every fit in ``folders`` with ``ratio`` = λ_max / planted."""
    pool: dict[str, list] = {}
    for folder in map(Path, folders):
        truths = next(p for p in (folder / "demo", folder.parent / "demo") if p.exists())
        for ev in sorted(folder.glob("sub-*/evaluate/metrics.tsv")):
            s = ev.parents[1].name
            table = pd.read_csv(ev, sep="\t")
            truth = json.loads((truths / "ground_truth" / f"{s}.json").read_text())
            table = scores(table[table["status"] == "ok"])
            table["ratio"] = table["lambda_max_per_s"] / truth["lambda_max_per_second"]
            pool.setdefault(s, []).append(table)
    return {s: pd.concat(t, ignore_index=True) for s, t in sorted(pool.items())}


def resample(pool: dict[str, pd.DataFrame], draws: int = 400, seed: int = 0) -> list[list[str]]:
    """Chance that the selected models' median λ_max is within ±25 %, per subject and for all."""
    rng, rows = np.random.default_rng(seed), []
    for n, keep in [(16, 0.25), (16, 0.125), (32, 0.125), (48, 1 / 12)]:
        chance = []
        for table in pool.values():
            hits = 0
            for _ in range(draws):
                sub = table.iloc[rng.choice(len(table), n, replace=False)].reset_index(drop=True)
                sub["model"] = np.arange(n)
                sel = select_models(sub, segment="test", keep_fraction=keep)["selected"]
                ratio = np.median(sub.loc[sel.to_numpy(), "ratio"])
                hits += 0 < ratio and abs(ratio - 1) <= TOLERANCE
            chance.append(hits / draws)
        rows.append([str(n), f"{keep:.3g} ({max(2, round(keep * n))} kept)",
                     " ".join(f"{c:.2f}" for c in chance), f"{np.prod(chance):.2f}"])  # fmt: skip
    return rows


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--pool", nargs="+", default=None, metavar="DIR",
                   help="results folders of fits of one demo cohort: resample their restarts")  # fmt: skip
    args = p.parse_args()
    if args.pool:
        pool = pooled(args.pool)
        print(f"{', '.join(f'{s}: {len(t)}' for s, t in pool.items())} restarts pooled")
        print(C.markdown_table(
            ["restarts per subject", "select_fraction", f"chance per subject ({', '.join(pool)})",
             "chance for all subjects"], resample(pool)))  # fmt: skip
        return
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
