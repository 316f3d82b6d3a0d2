"""Matplotlib figures of the subject and cohort reports (Agg backend; each returns a Figure).

Time is axis 0 of every series ``(T, N)``; generated runs are ``(K, T, N)``; exponents are shown per
second.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DATA_COLOR, MODEL_COLORS = "black", plt.get_cmap("tab10").colors


def _time(n: int, dt_s: float) -> np.ndarray:
    return np.arange(n) * dt_s


def plot_timeseries(x: np.ndarray, dt_s: float, names: list[str] | None = None) -> Figure:
    """Region time series ``(T, N)``, offset vertically, time in seconds."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * x.shape[1] + 1.5))
    t = _time(len(x), dt_s)
    for i in range(x.shape[1]):
        ax.plot(t, x[:, i] - 4 * i, lw=0.7, color=MODEL_COLORS[i % 10])
    ax.set_yticks(-4 * np.arange(x.shape[1]), names or [f"r{i + 1}" for i in range(x.shape[1])])
    ax.set_xlabel("time (s)")
    ax.set_title("Region time series (z-scored)")
    fig.tight_layout()
    return fig


def plot_connectivity(x: np.ndarray, names: list[str] | None = None) -> Figure:
    """Functional connectivity: Pearson correlation matrix of the regions."""
    fig, ax = plt.subplots(figsize=(5, 4.3))
    c = np.ma.masked_invalid(np.corrcoef(x, rowvar=False))
    im = ax.imshow(c, cmap="RdBu_r", vmin=-1, vmax=1)
    labels = names or [f"r{i + 1}" for i in range(x.shape[1])]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    fig.colorbar(im, ax=ax, label="Pearson r")
    ax.set_title("Functional connectivity")
    fig.tight_layout()
    return fig


def plot_loss(loss: np.ndarray, status: list[str]) -> Figure:
    """Training loss ``(epochs, E)`` of every restart; diverged models dashed red."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    epochs = np.arange(1, len(loss) + 1)
    for e in range(loss.shape[1]):
        bad = status[e] != "ok"
        ax.plot(epochs, loss[:, e], lw=1, ls="--" if bad else "-", color="red" if bad else None)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("GTF loss (MSE)")
    ax.set_title(f"Training curves of {loss.shape[1]} restarts")
    fig.tight_layout()
    return fig


def plot_trajectories(x, x_gen, models, dt_s: float, n_regions: int = 3) -> Figure:
    """Data vs free runs of the shown models, first ``n_regions`` regions."""
    n = min(n_regions, x.shape[1])
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 * n + 0.6), sharex=True, squeeze=False)
    t = _time(len(x), dt_s)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, x[:, i], color=DATA_COLOR, lw=1.2, label="data")
        for j, (m, g) in enumerate(zip(models, x_gen, strict=True)):
            ax.plot(t, g[:, i], lw=0.9, color=MODEL_COLORS[j % 10], label=f"model {m}")
        ax.set_ylabel(f"region {i + 1}")
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=len(models) + 1)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle("Free-running model trajectories vs data")
    fig.tight_layout()
    return fig


def _pca(x: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(x, 0)
    _, _, vt = np.linalg.svd(np.nan_to_num(x - mean), full_matrices=False)
    return mean, vt[:k].T


def plot_state_space(x, x_gen, models) -> Figure:
    """2-D and 3-D projections onto the data's first principal components."""
    mean, pcs = _pca(x, min(3, x.shape[1]))
    fig = plt.figure(figsize=(10, 4.2))
    ax2 = fig.add_subplot(1, 2, 1)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d") if pcs.shape[1] == 3 else None
    sets = [("data", x, DATA_COLOR)] + [
        (f"model {m}", g, MODEL_COLORS[j % 10])
        for j, (m, g) in enumerate(zip(models, x_gen, strict=True))
    ]
    for label, s, col in sets:
        p = (s - mean) @ pcs
        ax2.plot(p[:, 0], p[:, 1], lw=0.6, color=col, label=label, alpha=0.9)
        if ax3 is not None:
            ax3.plot(p[:, 0], p[:, 1], p[:, 2], lw=0.5, color=col)
    ax2.set_xlabel("PC 1")
    ax2.set_ylabel("PC 2")
    ax2.legend(fontsize=7)
    ax2.set_title("State space (PC 1-2)")
    if ax3 is not None:
        ax3.set_title("State space (PC 1-3)")
    fig.tight_layout()
    return fig


def power_spectrum(x: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz, zero excluded) and region-averaged normalised power of z-scored ``(T, N)``."""
    z = (x - np.nanmean(x, 0)) / (np.nanstd(x, 0) + 1e-12)
    p = np.abs(np.fft.rfft(np.nan_to_num(z), axis=0)) ** 2
    f, p = np.fft.rfftfreq(len(x), dt_s)[1:], p[1:].mean(1)  # without the (zero) mean bin
    return f, p / max(p.sum(), 1e-12)


def plot_spectra(x, x_gen, models, dt_s: float) -> Figure:
    """Region-averaged normalised power spectra of data and generated runs."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    f, p = power_spectrum(x, dt_s)
    ax.plot(f, p, color=DATA_COLOR, lw=1.5, label="data")
    for j, (m, g) in enumerate(zip(models, x_gen, strict=True)):
        ax.plot(*power_spectrum(g, dt_s), lw=1, color=MODEL_COLORS[j % 10], label=f"model {m}")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("normalised power")
    ax.legend(fontsize=7)
    ax.set_title("Power spectra")
    fig.tight_layout()
    return fig


def plot_lyapunov(spectra_per_s, selected, truth_per_s: float | None = None) -> Figure:
    """Lyapunov spectra ``(E, M)`` per second and the λ_max distribution across restarts."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for e, lam in enumerate(spectra_per_s):
        a.plot(np.arange(1, len(lam) + 1), lam, "o-", ms=3, lw=0.8, alpha=1 if selected[e] else 0.3)
    a.axhline(0, color="grey", lw=0.8)
    a.set_xlabel("exponent index")
    a.set_ylabel("λ (1/s)")
    a.set_title("Lyapunov spectra (faded: not selected)")
    lmax = spectra_per_s[:, 0]
    finite = np.isfinite(lmax)
    bins = np.histogram_bin_edges(lmax[finite], bins=10) if finite.any() else 10
    b.hist(lmax[finite], bins=bins, color="lightgrey", label="all restarts")
    b.hist(lmax[finite & selected], bins=bins, color="tab:blue", label="selected")
    if truth_per_s is not None:
        b.axvline(truth_per_s, color="red", lw=2, label="ground truth")
    b.axvline(0, color="grey", lw=0.8)
    b.set_xlabel("λ_max (1/s)")
    b.set_ylabel("models")
    b.legend(fontsize=7)
    b.set_title("λ_max across restarts")
    fig.tight_layout()
    return fig


def plot_fixed_points(cycles: list[dict], model: int, z_gen: np.ndarray | None = None) -> Figure:
    """Eigenvalues of every fixed point / cycle (unit circle); orbit ``(T, M)`` of ``model`` with
    its fixed points and cycles."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    th = np.linspace(0, 2 * np.pi, 200)
    a.plot(np.cos(th), np.sin(th), color="grey", lw=0.8)
    for c in cycles:
        ev = np.asarray(c["eigenvalues"])
        col = "tab:green" if c["stable"] else "tab:red"
        a.scatter(ev[:, 0], ev[:, 1], s=10, color=col, marker="o" if c["period"] == 1 else "^")
    a.set_aspect("equal")
    a.set_xlabel("Re")
    a.set_ylabel("Im")
    a.set_title("Eigenvalues (green stable, red unstable; ▲ cycles)")
    if z_gen is not None:
        b.plot(z_gen[:, 0], z_gen[:, 1], lw=0.5, color="grey", label="orbit")
    for c in [c for c in cycles if c["model"] == model]:
        pts = np.asarray(c["points"])
        b.scatter(pts[:, 0], pts[:, 1], color="tab:green" if c["stable"] else "tab:red", zorder=3)
    b.set_xlabel("z1")
    b.set_ylabel("z2")
    b.set_title(f"Latent orbit and fixed points of model {model}")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path) -> None:
    """Write ``fig`` as PNG (atomically) and close it."""
    from dsr.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_lambda_by_subject(lam: dict, truth: dict | None = None) -> Figure:
    """λ_max (1/s) of each subject's models as points over a box; red bars: ground truth."""
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(lam) + 2), 3.8))
    subjects = list(lam)
    vals = [np.asarray(v, float)[np.isfinite(v)] for v in lam.values()]
    ax.boxplot(vals, tick_labels=subjects, showfliers=False)
    rng = np.random.default_rng(0)
    for i, v in enumerate(vals):
        ax.scatter(i + 1 + 0.08 * rng.standard_normal(len(v)), v, s=12, alpha=0.7)
        if truth and subjects[i] in truth:
            ax.plot([i + 0.7, i + 1.3], [truth[subjects[i]]] * 2, color="red", lw=2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("λ_max (1/s)")
    ax.set_title("λ_max per subject (red: ground truth)" if truth else "λ_max per subject")
    fig.tight_layout()
    return fig


def plot_dissimilarity(dstsp, dh) -> Figure:
    """Heat maps of the cross-subject D_stsp and D_H matrices (rows: models, columns: data)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    for ax, frame, name in zip(axes, (dstsp, dh), ("D_stsp", "D_H"), strict=True):
        im = ax.imshow(frame.to_numpy(), cmap="viridis")
        ax.set_xticks(range(len(frame)), frame.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(frame)), frame.index, fontsize=7)
        ax.set_xlabel("data of subject")
        ax.set_ylabel("models of subject")
        ax.set_title(name)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def plot_embedding(coords, subjects, labels, linkage_matrix) -> Figure:
    """2-D MDS embedding coloured by cluster, and the dendrogram."""
    from scipy.cluster.hierarchy import dendrogram

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter(coords[:, 0], coords[:, 1], c=[MODEL_COLORS[(k - 1) % 10] for k in labels], s=40)
    for (u, v), s in zip(coords, subjects, strict=True):
        a.annotate(s, (u, v), fontsize=8, xytext=(3, 3), textcoords="offset points")
    a.set_xlabel("MDS 1")
    a.set_ylabel("MDS 2")
    a.set_title("Classical MDS of symmetrised D_stsp")
    if len(linkage_matrix):
        dendrogram(linkage_matrix, labels=list(subjects), ax=b)
    b.set_title("Average-linkage clustering")
    fig.tight_layout()
    return fig
