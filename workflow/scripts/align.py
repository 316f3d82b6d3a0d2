"""Snakemake script: give every subject the regions all subjects have (dsr.pipeline.run_align)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_align  # noqa: E402

out_dirs = list(dict.fromkeys(Path(f).parent for f in snakemake.output.series))
run_align([Path(f).parent for f in snakemake.input], out_dirs, snakemake.output.table)
