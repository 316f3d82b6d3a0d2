"""How fast the ALN benchmark's convSSM free runs move, and what D_stsp on 125 samples rewards.

A small convSSM fit (``--datasets`` sets × ``--restarts``, ``aln_benchmark``'s settings, ``--set``
overrides) is scored on samples 375–499 as ``aln_benchmark.py`` scores it. Printed per cut-off of a
low-pass applied to the TRUE rates (none, 0.15 Hz, 0.1 Hz; 4th-order Butterworth, forwards and
backwards): the median D_stsp of the models' free runs, of the BOLD taken as the latent (in step
with the truth) and of the same run's preceding 125 samples (not in step), plus the spectral
centroids of the rates, the BOLD and the free runs. If the in-step BOLD gains as the truth gets
slower while the unaligned references lose, the score rewards alignment, which no free run has.

    python validation/aln_timescales.py                 # 4 sets x 2 restarts, 10^4 steps
    python validation/aln_timescales.py --set alpha=0.3
"""

from __future__ import annotations

import _common as C
import numpy as np
from aln import aln_datasets
from aln_benchmark import N_SERIES, N_TRAIN, TR, dstsp, readouts
from scipy.signal import butter, filtfilt

from dsr.signal.kernels import spm_hrf

CUTOFFS_HZ = (None, 0.15, 0.1)


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--datasets", type=int, default=4)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    return p.parse_args()


def low_pass(x: np.ndarray, cutoff_hz: float | None) -> np.ndarray:
    if cutoff_hz is None:
        return x
    b, a = butter(4, cutoff_hz, fs=1 / TR)
    return filtfilt(b, a, x, axis=0)


def main() -> None:
    a = parse()
    C.setup(a)
    kernel = spm_hrf(TR)
    sets = aln_datasets(a.datasets, seed=a.seed)
    training = {"alpha": 0.1, "seq_len": len(kernel) + 50} | C.config_overrides(a.set)
    x = [d["bold"][:N_SERIES] for d in sets]
    fitted = C.fit(a, x, kernel, [f"set{s:03d}" for s in range(a.datasets)], "cpu",
                   decoder="convolved", **training)  # fmt: skip
    gen = readouts(fitted, [d["bold"][:N_TRAIN] for d in sets], [(N_TRAIN, N_SERIES)], 10, a.seed)[
        0
    ]
    subject = np.asarray(fitted.model_subject)
    n = N_SERIES - N_TRAIN
    rows = []
    for cut in CUTOFFS_HZ:
        scores = {"free runs": [], "BOLD (in step)": [], "own preceding samples": []}
        for s, d in enumerate(sets):
            truth = low_pass(d["latent"][:N_SERIES], cut)
            test = truth[N_TRAIN:]
            scores["BOLD (in step)"].append(dstsp(test, d["bold"][N_TRAIN:N_SERIES], a.seed)[0])
            scores["own preceding samples"].append(
                dstsp(test, truth[N_TRAIN - n : N_TRAIN], a.seed)[0]
            )
            scores["free runs"] += [
                dstsp(test, gen[:, e], a.seed)[0] for e in np.where(subject == s)[0]
            ]
        rows.append(
            [
                "none" if cut is None else f"{cut} Hz",
                *(C.fmt(np.median(v)) for v in scores.values()),
            ]
        )
    print(f"convSSM with {training}, {a.epochs} x {a.batches} steps, {len(subject)} models\n")
    print(C.markdown_table(["low-pass of the true rates", *scores], rows))
    centroid = {
        "true rates": [C.spectral_centroid(d["latent"][N_TRAIN:N_SERIES], 1 / TR) for d in sets],
        "BOLD": [C.spectral_centroid(d["bold"][N_TRAIN:N_SERIES], 1 / TR) for d in sets],
        "free runs": [C.spectral_centroid(gen[:, e], 1 / TR) for e in range(len(subject))],
    }
    print("\nspectral centroid (Hz), samples 375-499: "
          + ", ".join(f"{k} {C.med_iqr(v)}" for k, v in centroid.items()))  # fmt: skip


if __name__ == "__main__":
    main()
