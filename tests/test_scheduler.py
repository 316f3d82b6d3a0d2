"""Snakemake never runs more jobs at once than ``--cores`` allows: the guard against
snakemake/snakemake#3913 in workflow/rules/scheduler.smk (a lone ready job was started without
booking its cores, which were then freed twice)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT / "workflow" / "rules" / "scheduler.smk"

# one job that six 1-thread jobs wait for: the shape of demo -> extract
WORKFLOW = """
{include}

rule all:
    input:
        expand("out/{{i}}.txt", i=range(6)),

rule prepare:
    output:
        "common.txt",
    shell:
        "sleep 1; touch {{output}}"

rule work:
    input:
        "common.txt",
    output:
        "out/{{i}}.txt",
    threads: 1
    shell:
        "{stamp} > {{output}}.start; sleep 2; {stamp} > {{output}}.end; touch {{output}}"
"""


def _max_concurrent(workdir: Path, guard: bool, cores: int = 2) -> int:
    workdir.mkdir()
    stamp = f"{sys.executable} -c 'import time; print(time.time())'"
    include = f'include: "{GUARD}"' if guard else ""
    (workdir / "Snakefile").write_text(WORKFLOW.format(include=include, stamp=stamp))
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = []
    for start in (workdir / "out").glob("*.start"):
        events.append((float(start.read_text()), 1))
        events.append((float(start.with_suffix(".end").read_text()), -1))
    running = peak = 0
    for _, change in sorted(events):
        running += change
        peak = max(peak, running)
    return peak


def _snakemake_has_the_bug() -> bool:
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    source = inspect.getsource(JobScheduler.job_selector)
    return bool(re.search(r"if len\(jobs\) == 1:\s*return self\.job_selector_greedy\(", source))


@pytest.mark.workflow
def test_jobs_never_exceed_the_cores(tmp_path):
    assert _max_concurrent(tmp_path / "guarded", guard=True) <= 2


@pytest.mark.workflow
def test_the_check_sees_the_oversubscription(tmp_path):
    if not _snakemake_has_the_bug():
        pytest.skip("this snakemake starts no job outside the core budget")
    assert _max_concurrent(tmp_path / "bare", guard=False) > 2


def test_the_workflow_includes_the_guard():
    snakefile = (ROOT / "Snakefile").read_text()
    assert 'include: "workflow/rules/scheduler.smk"' in snakefile
