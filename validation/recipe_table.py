"""Quality against gradient steps, every recorded ``lorenz_recipe.py`` run in one table.

Reads the per-model tables ``validation/out/recipe-*.tsv`` (one per run and milestone) and writes
one row each: held-out D_stsp of all restarts and of the best quarter chosen by training-half
D_stsp (blind to the test half), λ_max per time unit of that quarter, faithful restarts (held-out
D_stsp < 0.30, λ_max within 10 % of 0.906, not escaped), how many of the chosen quarter are
faithful, and whether the issue's Lorenz target is met by the chosen models (median D_stsp < 0.30,
median λ_max within ±10 %).

    python validation/recipe_table.py --tr 0.5
"""

from __future__ import annotations

import re

import _common as C
import numpy as np
import pandas as pd
from lorenz_recipe import FAITHFUL_DSTSP, FAITHFUL_LAMBDA, best_by_train, restarts_for_95


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--tr", type=float, default=0.5)
    return p.parse_args()


def best_quarter(t: pd.DataFrame) -> np.ndarray:
    """The table's ``best_by_train`` column; recomputed for tables written before it existed."""
    return t["best_by_train"].astype(bool).to_numpy() if "best_by_train" in t else best_by_train(t)


def row(name: str, t: pd.DataFrame) -> list:
    steps = int(re.search(r"steps(\d+)$", name).group(1))
    recipe = re.sub(rf"^recipe-|-steps{steps}$", "", name)  # seed ≠ 0 stays in the name
    best = best_quarter(t)
    d, lam, faithful = t["dstsp_test"].to_numpy(), t["lambda_per_tu"].to_numpy(), t["faithful"]
    d_best, lam_best = float(np.median(d[best])), float(np.median(lam[best]))
    met = d_best < FAITHFUL_DSTSP and abs(lam_best / C.LORENZ_LAMBDA_MAX - 1) < FAITHFUL_LAMBDA
    return [
        recipe, steps, C.med_iqr(d), C.fmt(d_best), C.fmt(lam_best),
        f"{int(faithful.sum())}/{len(t)}", f"{int(faithful[best].sum())}/{int(best.sum())}",
        restarts_for_95(float(faithful.mean())), "yes" if met else "no",
    ]  # fmt: skip


def main() -> None:
    args = parse()
    timer = C.Timer()
    rows = []
    for path in sorted(C.OUT.glob(f"recipe-*-tr{args.tr}-*steps*.tsv")):
        t = pd.read_csv(path, sep="\t")
        if {"lambda_per_tu", "faithful", "dstsp_train"} <= set(t.columns):
            rows.append(row(path.stem, t))
    rows.sort(key=lambda r: (r[1], r[0]))
    body = (
        "Held-out D_stsp (observation space, 30 bins, test half of 10⁵ samples; floor 0.087) per "
        "recipe and budget; \"best ¼\" = the quarter of the restarts with the lowest D_stsp on the "
        "training half (the selection never sees the test half). Target: median D_stsp of the "
        "chosen models < 0.30 and median λ_max within ±10 % of 0.906.\n\n"
        + C.markdown_table(
            ["recipe", "steps", "D_stsp all [IQR]", "D_stsp best ¼", "λ_max best ¼", "faithful",
             "best ¼ faithful", "restarts for 95 %", "target met (best ¼)"], rows)
    )  # fmt: skip
    print(body)
    if not args.no_write:
        C.write_section(f"recipe-table-tr{args.tr}", f"Quality vs gradient steps, TR {args.tr} s "
                        "(all recorded recipes)", body, "cpu", {"tr": args.tr}, timer())  # fmt: skip


if __name__ == "__main__":
    main()
