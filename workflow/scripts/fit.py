"""Snakemake script: fit one subject's ensemble, or all subjects as one ensemble
(fit.batch_subjects), with dsr.pipeline.run_fit."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_fit  # noqa: E402

p = snakemake.params
subjects = list(p.subjects)
batched = "cohort" in snakemake.output.keys()
run_fit(
    [Path(f).parent for f in snakemake.input],
    # per-subject fit folders, in subject order (dict keeps first-seen order)
    list(dict.fromkeys(Path(f).parent for f in snakemake.output.subjects))
    if batched
    else [Path(snakemake.output[0]).parent],
    subjects,
    dict(p.training),
    n_restarts=p.n_restarts,
    seed=p.seed,
    device=p.device,
    threads=snakemake.threads,
    tau_s=p.tau_s,
    checkpoint_dir=p.checkpoint_dir,
    cohort_dir=Path(snakemake.output.cohort[0]).parent if batched else None,
    hierarchical=dict(p.hierarchical) if batched else None,
)
