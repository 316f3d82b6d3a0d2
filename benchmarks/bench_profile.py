"""Issue 15: where one training batch goes (this thread's CPU time per part, 1 thread).

Usage: python bench_profile.py [--sizes lemon64 demo] [--batches 20]

Times the parts of ``_harness.make_step`` by wrapping them: window sampling, augmentation noise,
the compiled forcing, rollout and decoder kernels, the rest of ``gtf_rollout`` (pseudo-inverse)
and the RAdam step; "other" is the batch minus the parts (autograd, Python).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _harness import DEMO, make_step

import dsr.models.decoder_numba as decoder_numba
import dsr.models.forcing_numba as forcing_numba
import dsr.models.rollout_numba as rollout_numba
import dsr.training.gtf as gtf

SIZES = {"demo": DEMO, "lemon1": dict(n_models=1), "lemon64": dict(n_models=64)}
CLOCK = time.thread_time


def _wrap(owner, name: str, label: str, spent: dict) -> None:
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        t0 = CLOCK()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + CLOCK() - t0

    setattr(owner, name, timed)


def profile(name: str, batches: int) -> None:
    kwargs = dict(SIZES[name])
    step = make_step(kwargs.pop("n_models"), **kwargs)
    spent: dict = {}
    cells = dict(zip(step.__code__.co_freevars, step.__closure__, strict=True))
    harness = type("Cells", (), {})()  # the closure's sampler and optimiser, timed in place
    harness.sample, harness.step = (
        cells["sample_windows"].cell_contents,
        cells["opt"].cell_contents.step,
    )
    _wrap(harness, "sample", "window sampling", spent)
    _wrap(harness, "step", "RAdam step", spent)
    cells["sample_windows"].cell_contents = harness.sample
    cells["opt"].cell_contents.step = harness.step
    for owner, attr, label in [
        (gtf, "_add_noise", "noise (2 draws)"),
        (gtf, "gtf_rollout", "gtf_rollout (forcing + rollout forward + pinv)"),
        (forcing_numba, "forcing", "  forcing kernel"),
        (rollout_numba, "forward", "  rollout forward kernel"),
        (rollout_numba, "backward", "rollout backward kernel"),
        (decoder_numba, "forward", "decoder + loss forward kernel"),
        (decoder_numba, "backward", "decoder + loss backward kernel"),
    ]:
        _wrap(owner, attr, label, spent)
    for _ in range(3):
        step()
    spent.clear()
    totals = []
    for _ in range(batches):
        t0 = CLOCK()
        step()
        totals.append(CLOCK() - t0)
    total = sum(totals) / batches
    print(f"\n{name}: {1e3 * statistics.median(totals):.2f} ms per batch (median of {batches})")
    top = [k for k in spent if not k.startswith("  ")]
    for label, t in spent.items():
        print(f"  {label:48s} {1e3 * t / batches:7.2f} ms")
    print(f"  {'other':48s} {1e3 * (total - sum(spent[k] for k in top) / batches):7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["lemon64", "demo"], choices=list(SIZES))
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.sizes:
        profile(name, args.batches)


if __name__ == "__main__":
    main()
