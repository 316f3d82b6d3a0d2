"""Snakemake script: cohort comparison and report (dsr.pipeline.run_cohort)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)
import _log  # noqa: E402

_log.setup(snakemake.log[0])

from dsr.pipeline import run_cohort  # noqa: E402

inp, out, p = snakemake.input, snakemake.output, snakemake.params
html_dir = Path(out.html).parent
figures = {"lambda": out.lam, "dissimilarity": out.dissimilarity_png, "embedding": out.embedding_png}
hierarchical = len(inp.features) > 0  # fit.hierarchical: features.tsv + the feature-space figure
if hierarchical:
    figures["features"] = out.features[1]
run_cohort(
    list(p.subjects),
    [Path(f).parent for f in inp.meta],
    [Path(f).parent for f in inp.metrics],
    {s: os.path.relpath(r, html_dir) for s, r in zip(p.subjects, inp.reports, strict=True)},
    html_dir,
    figures,
    truths=list(inp.truths) or None,
    n_clusters=p.n_clusters,
    n_show=p.n_show,
    hierarchical_fit=Path(inp.features[0]).parent if hierarchical else None,
    subject_sheet=p.subject_sheet or None,
)
