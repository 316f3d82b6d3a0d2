"""Snakemake script: extract one subject's (T, N) series (dsr.pipeline.run_extract)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_extract  # noqa: E402

p = snakemake.params
run_extract(
    p.kind,
    p.input_dir,
    snakemake.wildcards.subject,
    Path(snakemake.output.meta).parent,
    **dict(p.options),
)
