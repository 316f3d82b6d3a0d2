"""Shared bits of the validation scripts: Lorenz BOLD data, latent-space scores, statistics and the
``validation/RESULTS.md`` table writer.

Not part of the package and not run in CI. Every script writes its own section of RESULTS.md
(between ``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers) with the date, machine, settings
and the exact command that produced it.

Time mapping for Lorenz-63 (the paper does not state one): **one sample = one RK/ODE step of
dt = 0.01 Lorenz time units = one TR**. So at TR 0.2 s one Lorenz time unit lasts 20 s, at TR 1.2 s
120 s; the HRF (32 s) spans 1.6 time units at TR 0.2 and 0.27 at TR 1.2, which is why the
convolution matters more at short TR. Exponents per step convert to per time unit by ``/ 0.01``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import fcntl
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from scipy.signal import welch

from dsr.analysis.metrics import state_space_divergence
from dsr.models.examples import simulate_convolved
from dsr.signal.deconvolution import edge_samples, wiener_deconvolve
from dsr.synthetic.lorenz import simulate_lorenz
from dsr.training.loop import TrainingConfig, fit_ensemble

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
OUT = HERE / "out"  # fitted ensembles and raw tables (git-ignored)
LORENZ_DT = 0.01
LORENZ_LAMBDA_MAX = 0.906  # per time unit (spec section 6)


# --------------------------------------------------------------------------- command line / machine
def base_parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="paper scale (use a GPU)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared machine: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument(
        "--lr-end",
        type=float,
        default=None,
        help="final learning rate (spec 1e-6 over 1000 epochs; reduced runs use 1e-4 so "
        "that a short run does not spend most steps at lr < 1e-5)",
    )
    return p


def fill_scaled(args, scales: dict[str, tuple]) -> argparse.Namespace:
    """Give every option left at ``None`` its paper-scale value (``--full``) or reduced value:
    ``scales`` maps option name -> (full, reduced)."""
    for key, (full, reduced) in scales.items():
        if getattr(args, key) is None:
            setattr(args, key, full if args.full else reduced)
    return args


def setup(args) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.lr_end is None:
        args.lr_end = 1e-6 if args.full else 1e-4
    OUT.mkdir(exist_ok=True)


def fit(args, data, kernel, subject_ids, device, **config):
    """``fit_ensemble`` with the settings every validation run shares: epochs, batches, restarts,
    final learning rate and seed from the command line, per-model gradient clip 10 (see
    RESULTS.md: without it one exploding model crashes the ensemble), no checkpoints; ``config``
    holds the script's own ``TrainingConfig`` fields."""
    cfg = TrainingConfig(
        epochs=args.epochs,
        batches_per_epoch=args.batches,
        grad_clip=10.0,
        lr_end=args.lr_end,
        checkpoint_every=0,
        **config,
    )
    return fit_ensemble(
        data,
        kernel,
        subject_ids=subject_ids,
        n_restarts=args.restarts,
        config=cfg,
        seed=args.seed,
        device=device,
    )


def config_overrides(pairs: list[str]) -> dict:
    """``--set`` pairs such as ``["epochs=1500", "lr_end=1e-4", "grad_clip=null"]`` -> typed
    TrainingConfig fields (``null``: None where the field allows it); an unknown field stops the
    script with its name."""
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainingConfig)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"--set {pair}: {key!r} is not a TrainingConfig field")
        kind = types[key]
        if value.lower() in ("null", "none") and "None" in kind:
            out[key] = None
        else:
            out[key] = (int if "int" in kind else float if "float" in kind else str)(value)
    return out


def machine(device: str) -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device "
        f"`{device}`" + (f" ({torch.cuda.get_device_name(0)})" if "cuda" in str(device) else "")
    )


def command() -> str:
    """The command line as run from the repository root, wherever it was started."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(HERE.parent):
        script = script.relative_to(HERE.parent)
    return "python " + " ".join(shlex.quote(str(a)) for a in [script, *sys.argv[1:]])


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


# --------------------------------------------------------------------------- data
def lorenz_bold(
    kernel: np.ndarray, n_samples: int, noise_sd: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz-63 (σ 10, ρ 28, β 8/3) sampled every dt = 0.01, standardised, HRF-convolved, z-scored,
    plus white noise ``noise_sd``. Returns ``(x, latent)``, both (n_samples, 3), time-aligned
    (``x[t]`` depends on ``latent[t - h + 1 .. t]``)."""
    h = len(kernel)
    latent = simulate_lorenz(n_samples + h - 1, LORENZ_DT, 28.0, seed=seed)
    x = simulate_convolved(latent, kernel, noise_sd=noise_sd, seed=seed + 10_000)
    return x.astype(np.float64), latent[h - 1 :]


def spectral_centroid(x: np.ndarray, fs: float) -> float:
    """Power-weighted mean frequency (Hz) of ``x`` (T, ...) sampled at ``fs``: Welch spectra
    (segments of up to 128 samples) of every column, averaged over all axes but time. The most
    direct summary of how fast a series moves."""
    x = np.asarray(x, float).reshape(len(x), -1)
    freq, power = welch(x, fs=fs, nperseg=min(128, len(x)), axis=0)
    power = power.mean(1)
    return float((freq * power).sum() / power.sum())


# --------------------------------------------------------------------------- latent-space scores
@torch.no_grad()
def latent_free_runs(fitted, data_train, n_steps, n_traj=10, sd=0.01, seed=0):
    """Free-running latent trajectories ``(n_steps, E, K, M)`` from ``d`` at index cut_left
    (the evaluation protocol's start), plus the forcing states ``d_t`` of the training data
    ``(T_train, E, M)`` (``B⁺ x^deconv``, NaN in the cut edges)."""
    model = fitted.model.double().cpu()
    dec = fitted.decoder.double().cpu()
    cfg, kernel = fitted.config, np.asarray(fitted.kernel)
    h = dec.kernel_length
    cl, cr = edge_samples(cfg["cut_left"], h), edge_samples(cfg["cut_right"], h)
    idx = np.asarray(fitted.model_subject)
    xd = np.stack(
        [wiener_deconvolve(x, kernel, cfg["noise_floor"], cl, cr) for x in data_train], 1
    )[:, idx]  # (T, E, N)
    d = dec.forcing(torch.from_numpy(xd)[:, :, None])[:, :, 0]  # (T, E, M)
    g = torch.Generator().manual_seed(seed)
    z0 = d[cl][:, None] + sd * torch.randn(
        len(idx), n_traj, d.shape[-1], generator=g, dtype=d.dtype
    )
    z = model.generate(z0, n_steps)
    fitted.model.float()
    fitted.decoder.float()
    return z.numpy(), d.numpy()


def affine_map(states: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares affine map ``[states, 1] @ W ≈ target`` over finite rows; W (M+1, D)."""
    ok = np.isfinite(states).all(1) & np.isfinite(target).all(1)
    a = np.c_[states[ok], np.ones(ok.sum())]
    return np.linalg.lstsq(a, target[ok], rcond=None)[0]


def latent_dstsp(fitted, data_train, latents_train, references, n_traj=10, seed=0, **kw):
    """Latent-space D_stsp per model ``(E,)``.

    The model's latent space is mapped to the true latent space by the affine least-squares map
    from the decoder-free states ``d_t = B⁺ x^deconv_t`` to the true latent ``z_t`` (training part,
    time-aligned). The model's free run starts at cut_left (evaluation protocol), runs through the
    training part and ``len(reference)`` steps beyond it; that beyond-training segment, mapped, is
    compared with the subject's ``reference`` true latent of the same length (the test half, or a
    longer independent orbit of the same system); binned for D < 6, else GMM σ² = 1.
    """
    n_train = len(latents_train[0])
    n_ref = max(len(r) for r in references)
    z, d = latent_free_runs(fitted, data_train, n_train + n_ref, n_traj, seed=seed)
    idx = np.asarray(fitted.model_subject)
    out = np.full(len(idx), np.nan)
    for e, s in enumerate(idx):
        w = affine_map(d[:, e], latents_train[s])
        gen = z[n_train : n_train + len(references[s]), e]  # (T_ref, K, M)
        mapped = np.c_[gen.reshape(-1, gen.shape[-1]), np.ones(gen.shape[0] * gen.shape[1])] @ w
        mapped = mapped.reshape(gen.shape[0], gen.shape[1], -1)
        mapped = np.where(np.isfinite(mapped), mapped, 1e6)
        with np.errstate(all="ignore"):
            out[e] = np.nanmean(state_space_divergence(references[s], mapped, seed=seed, **kw))
    return out


# --------------------------------------------------------------------------- statistics
def iqr_keep(v) -> np.ndarray:
    v = np.asarray(v, float)
    ok = np.isfinite(v)
    if ok.sum() < 4:
        return ok
    q1, q3 = np.percentile(v[ok], [25, 75])
    return ok & (v >= q1 - 1.5 * (q3 - q1)) & (v <= q3 + 1.5 * (q3 - q1))


def mannwhitney(a, b) -> tuple[float, float]:
    """Two-sided Mann–Whitney U on the values that are not NaN (+inf, e.g. an escaped model's
    score, ranks worst); (U, p), NaN when a side is empty."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    r = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(r.statistic), float(r.pvalue)


def fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "nan"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def med_iqr(v) -> str:
    """``median [q1, q3]`` of the values that are not NaN (+inf counts: it is the worst score)."""
    v = np.asarray(v, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return "nan"
    q1, m, q3 = np.percentile(v, [25, 50, 75])
    return f"{m:.3g} [{q1:.3g}, {q3:.3g}]"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- RESULTS.md
HEADER = """# dsr validation results (reduced scale)

Produced by the scripts in `validation/` (not run in CI). Each section below is rewritten by its
script on every run, with the date, machine, settings and the command that produced it.
Reduced-scale runs on a shared CPU are far from the paper's 1000 epochs; `--full` runs the
paper's scale (GPU).
Scaling benchmarks: see `benchmarks/README.md`.

"""


def write_section(name: str, title: str, body: str, device: str, settings: dict, runtime_s: float):
    """Replace (or append) section ``name`` of RESULTS.md (file-locked: scripts run at once)."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    settings_txt = ", ".join(f"{k}={v}" for k, v in settings.items())
    block = (
        f"<!-- BEGIN {name} -->\n## {title}\n\n"
        f"- date: {stamp}; runtime: {runtime_s / 60:.1f} min\n"
        f"- machine: {machine(device)}\n"
        f"- settings: {settings_txt}\n"
        f"- command: `{command()}`\n\n{body.strip()}\n<!-- END {name} -->\n"
    )
    lock = HERE / ".results.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = RESULTS.read_text() if RESULTS.exists() else HEADER
        begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->\n"
        if begin in text and end in text:
            i, j = text.index(begin), text.index(end) + len(end)
            text = text[:i] + block + text[j:]
        else:
            text = text.rstrip("\n") + "\n\n" + block
        RESULTS.write_text(text)
    print(block)
