"""Snakemake script: one subject's self-contained HTML report (dsr.pipeline.run_subject_report)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_subject_report  # noqa: E402

inp, out = snakemake.input, snakemake.output
run_subject_report(
    snakemake.wildcards.subject,
    Path(inp.meta).parent,
    Path(inp.fit).parent,
    Path(inp.metrics).parent,
    out.html,
    {name: out[name] for name in snakemake.params.figures},
    truth=inp.truth or None,
    n_show=snakemake.params.n_show,
)
