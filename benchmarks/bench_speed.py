"""Issue 15: speed of one training batch, compiled rollout vs the torch loop vs an older revision.

Usage: python bench_speed.py [--sizes demo lemon1 lemon64] [--baseline REV] [--repeats 5]
       [--clock cpu|wall] [--compile]

For each size, the same training step (window sampling, noise, GTF loss, backward, RAdam; see
``_harness.make_step``) runs as
  numba     this checkout, the compiled rollout (``dsr.models.rollout_numba``),
  torch     this checkout with ``DSR_ROLLOUT=torch`` (the per-step tensor loop),
  baseline  revision REV of dsr (``git archive`` into a temporary folder, renamed ``dsr_base``),
in one process, interleaved (numba, torch, baseline, numba, ...), ``--repeats`` rounds, each the
median of several batches; medians of the rounds are reported. ``--clock cpu`` (default) counts
this thread's CPU time (steadier on shared cores; 1 thread), ``wall`` the elapsed time.
The FLOP limit is this core's measured float32 GEMM rate (2048^3 ``torch.mm``, best of 5; shared
cores lower it).
``--compile`` also times the first call of the compiled rollout with an empty numba cache and
with a filled one, in fresh processes.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from _harness import DEMO, LEMON, make_step, time_calls

import dsr.models.rollout as rollout

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"demo": DEMO, "lemon1": dict(n_models=1), "lemon64": dict(n_models=64)}
# the issue's figures on this machine: sequences/s of dsr before this work over the dendPLRNN peer
ISSUE_RATIO_TO_PEER = {"lemon1": 771 / 232, "lemon64": 3589 / 232}


def baseline_package(rev: str) -> str:
    """Revision ``rev`` of the package, importable as ``dsr_base`` beside this checkout's ``dsr``."""
    tmp = Path(tempfile.mkdtemp(prefix="dsr_base_"))
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "dsr"], capture_output=True)
    if tar.returncode:
        sys.exit(f"git archive {rev} failed: {tar.stderr.decode()}")
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(tmp, filter="data")
    (tmp / "dsr").rename(tmp / "dsr_base")
    pattern = re.compile(r"\b(from|import) dsr(?=[. ])")
    for path in (tmp / "dsr_base").rglob("*.py"):
        path.write_text(pattern.sub(r"\1 dsr_base", path.read_text()))
    sys.path.insert(0, str(tmp))
    return "dsr_base"


def flop_limit() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(time_calls(lambda: a @ b, 1, warmup=0) for _ in range(5))
    return 2 * 2048**3 / best


def _with_backend(step, backend):
    def run():
        rollout.BACKEND = backend
        return step()

    return run


def bench_size(name: str, args, limit: float) -> None:
    kwargs = {**SIZES[name]}
    n_models = kwargs.pop("n_models")
    variants = {
        "numba": _with_backend(make_step(n_models, **kwargs), "auto"),
        "torch": _with_backend(make_step(n_models, **kwargs), "torch"),
    }
    if args.baseline:
        variants["baseline"] = make_step(n_models, package=args.package, **kwargs)
    flop = make_step(n_models, **kwargs).flop
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    n = max(3, int(0.3 / (1e-3 * n_models + 2e-3)))  # batches per round: ~0.3 s of numba work
    times = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v, step in variants.items():
            times[v].append(time_calls(step, n, warmup=1, clock=clock))
    rollout.BACKEND = "auto"
    med = {v: statistics.median(t) for v, t in times.items()}
    sequences = n_models * kwargs.get("batch_size", LEMON["batch_size"])
    print(f"\n{name}: E = {n_models}, {kwargs or 'LEMON'}; {flop / 1e6:.1f} MFLOP per batch")
    for v, t in med.items():
        rounds = ", ".join(f"{1e3 * x:.2f}" for x in times[v])
        print(
            f"  {v:9s} {1e3 * t:8.2f} ms/batch ({rounds})  {sequences / t:9.0f} seq/s  "
            f"{flop / t / 1e9:5.1f} GFLOP/s = {100 * flop / t / limit:4.1f} % of the limit"
        )
    for v in variants:
        if v != "numba":
            ratios = [a / b for a, b in zip(times[v], times["numba"], strict=True)]
            print(
                f"  {v} / numba: {statistics.median(ratios):.2f}x (per round {ratios_str(ratios)})"
            )
    if args.baseline and name in ISSUE_RATIO_TO_PEER:
        gain = statistics.median(
            [a / b for a, b in zip(times["baseline"], times["numba"], strict=True)]
        )
        print(
            f"  vs the dendPLRNN peer (issue: baseline = {ISSUE_RATIO_TO_PEER[name]:.1f}x peer): "
            f"{gain * ISSUE_RATIO_TO_PEER[name]:.1f}x"
        )


def ratios_str(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


COMPILE_PROBE = """
import time, torch
t0 = time.perf_counter()
from dsr.models import make_model
m = make_model("cshPLRNN", 2, 6, 10)
z0 = torch.zeros(2, 16, 6, requires_grad=True)
keep = torch.zeros(5, 2, 16, 6)
t1 = time.perf_counter()
m.forced_rollout(z0, keep, keep).sum().backward()
print(f"{time.perf_counter() - t1:.2f}")
"""


def compile_times() -> None:
    cache = tempfile.mkdtemp(prefix="numba_cache_")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
    for label in ("empty cache (compile)", "filled cache (load)"):
        out = subprocess.run(
            [sys.executable, "-c", COMPILE_PROBE], env=env, capture_output=True, text=True
        )
        print(f"first forward + backward of the compiled rollout, {label}: {out.stdout.strip()} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--baseline", help="git revision to compare with (e.g. e66c20c~1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.package = baseline_package(args.baseline) if args.baseline else None
    limit = flop_limit()
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread, "
        f"clock {args.clock}; FLOP limit (float32 GEMM) {limit / 1e9:.0f} GFLOP/s"
    )
    if args.compile:
        compile_times()
    for name in args.sizes:
        bench_size(name, args, limit)


if __name__ == "__main__":
    main()
