"""Snakemake script: evaluate one subject's ensemble (dsr.pipeline.run_evaluate)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_evaluate  # noqa: E402

run_evaluate(
    Path(snakemake.input.model).parent,
    Path(snakemake.input.meta).parent,
    Path(snakemake.output.metrics).parent,
    threads=snakemake.threads,
    seed=snakemake.params.seed,
    **dict(snakemake.params.options),
)
