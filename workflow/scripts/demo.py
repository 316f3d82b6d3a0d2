"""Snakemake script: write the synthetic demo cohort (dsr.pipeline.run_demo)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_demo  # noqa: E402

p = snakemake.params
run_demo(
    Path(snakemake.output.atlas).parent.parent,
    list(p.subjects),
    n_volumes=p.n_volumes,
    n_regions=p.n_regions,
    tr_s=p.tr_s,
    rho_range=tuple(p.rho_range),
    seed=p.seed,
)
