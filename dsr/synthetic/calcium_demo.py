"""Synthetic two-photon calcium data in suite2p's file format, with known ground truth.

``write_calcium_demo`` writes ``plane0/{F,Fneu,iscell,ops}.npy`` whose cells are driven by one
Lorenz-63 system through the calcium kernel (``dsr.synthetic.fmriprep_demo`` writes the fMRIPrep demo cohort).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsr.atomic import write_json
from dsr.signal.kernels import calcium_kernel, causal_convolve
from dsr.synthetic.lorenz import observe_lorenz


def _suite2p_traces(dff: np.ndarray, n_noncells: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Raw fluorescence F and neuropil Fneu (T, R) for cells with ΔF/F ``dff`` (T, C) followed by
    ``n_noncells`` ROIs of neuropil and noise only (R = C + n_noncells)."""
    n_frames, n_cells = dff.shape
    n_rois = n_cells + n_noncells
    neuropil = causal_convolve(rng.normal(0, 1, (n_frames, 1)), np.ones(50) / 50)[:, 0]
    fneu = 300 + 30 * neuropil[:, None] + 5 * rng.normal(0, 1, (n_frames, n_rois))
    f0 = rng.uniform(200, 600, n_rois)
    act = np.concatenate([dff, np.zeros((n_frames, n_noncells))], axis=1)
    f = f0 * (1 + act) + 0.7 * fneu + 3 * rng.normal(0, 1, (n_frames, n_rois))
    return f, fneu


def _write_suite2p(plane: Path, f, fneu, order: np.ndarray, n_cells: int, ops: dict) -> None:
    """``F``, ``Fneu`` (ROIs x T, ROIs in ``order``), ``iscell`` and ``ops`` of one plane."""
    iscell = np.zeros((len(order), 2))
    iscell[:, 0] = (order < n_cells).astype(float)
    iscell[:, 1] = np.where(order < n_cells, 0.9, 0.1)
    np.save(plane / "F.npy", f[:, order].T.astype(np.float32))  # suite2p: ROIs x T
    np.save(plane / "Fneu.npy", fneu[:, order].T.astype(np.float32))
    np.save(plane / "iscell.npy", iscell)
    np.save(plane / "ops.npy", np.array(ops))


def write_calcium_demo(
    out_dir: str | Path,
    *,
    n_frames: int = 1200,
    n_cells: int = 30,
    n_noncells: int = 8,
    fs_hz: float = 10.0,
    tau_s: float = 0.7,
    rho: float = 28.0,
    time_unit_s: float = 2.0,
    seed: int = 0,
) -> Path:
    """Write a suite2p folder ``plane0/{F,Fneu,iscell,ops}.npy`` driven by Lorenz-63.

    Cells: ``F = F0 (1 + ΔF/F) + 0.7 Fneu + noise`` with ΔF/F the calcium-kernel convolution of
    ``softplus(latent @ W)``; non-cells hold neuropil and noise only. Ground truth goes to
    ``ground_truth/{latent,dff}.npy`` (T, 3) and (T, n_cells), dff columns in suite2p ROI order.
    """
    out = Path(out_dir)
    plane = out / "plane0"
    plane.mkdir(parents=True, exist_ok=True)
    (out / "ground_truth").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 1.5, (3, n_cells))
    dt, kernel = 1.0 / (fs_hz * time_unit_s), calcium_kernel(tau_s, fs_hz)
    latent, conv = observe_lorenz(
        n_frames, dt, rho, seed, kernel, lambda z: np.logaddexp(0.0, z @ weights - 1.0)
    )
    dff = 0.5 * conv  # ΔF/F of the cells (T, n_cells)
    f, fneu = _suite2p_traces(dff, n_noncells, rng)
    # cells and non-cells interleaved as in real output
    order = rng.permutation(n_cells + n_noncells)
    _write_suite2p(plane, f, fneu, order, n_cells, {"fs": fs_hz, "nframes": n_frames, "tau": tau_s})
    np.save(out / "ground_truth" / "latent.npy", latent.astype(np.float32))
    # columns in the order a reader returns the cells (file ROI order, cells only)
    np.save(out / "ground_truth" / "dff.npy", dff[:, order[order < n_cells]].astype(np.float32))
    write_json(
        out / "ground_truth" / "calcium.json",
        {
            "system": "lorenz63",
            "rho": rho,
            "fs_hz": fs_hz,
            "tau_s": tau_s,
            "time_unit_s": time_unit_s,
            "n_cells": n_cells,
            "n_noncells": n_noncells,
            "cell_rois": np.flatnonzero(order < n_cells).tolist(),
        },
    )
    return out
