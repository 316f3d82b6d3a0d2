"""Synthetic demo data in real file formats, with known ground truth.

``write_demo_cohort`` writes an fMRIPrep-style BIDS-derivative folder whose subjects are Lorenz-63
systems with subject-specific ρ, mixed into N regions, convolved with the SPM HRF, with planted
head-motion effects and noise. ``write_calcium_demo`` writes a suite2p folder. The true largest
Lyapunov exponent is computed by the Benettin/QR method on the ODE's Jacobian.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from dsr._validation import check_positive
from dsr.atomic import write_json
from dsr.errors import DsrInputError
from dsr.kernels import calcium_kernel, causal_convolve, spm_hrf
from dsr.lorenz import BETA, SIGMA, lyapunov_max_lorenz, simulate_lorenz

SPACE = "MNI152NLin2009cAsym"
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def _demo_atlas(n_regions: int, grid: int, rng) -> np.ndarray:
    """Labels 1..N: Voronoi cells of seeded centres inside a cube one voxel inside the grid."""
    idx = np.stack(np.meshgrid(*[np.arange(grid)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.all((idx >= 1) & (idx <= grid - 2), axis=1)
    centres = idx[inside][rng.choice(inside.sum(), n_regions, replace=False)]
    dist = ((idx[:, None, :] - centres[None]) ** 2).sum(-1)
    labels = np.where(inside, dist.argmin(axis=1) + 1, 0)
    if len(np.unique(labels)) != n_regions + 1:
        raise DsrInputError(f"n_regions={n_regions} is too many for a {grid}^3 grid")
    return labels.reshape(grid, grid, grid)


def _motion(n: int, rng) -> np.ndarray:
    """Six head-motion traces (mm, rad): AR(1) jitter plus two decaying jerks; (T, 6)."""
    drift = np.zeros((n, 6))
    eps = rng.normal(0, 1, (n, 6))
    for t in range(1, n):
        drift[t] = 0.8 * drift[t - 1] + eps[t]
    for t0 in rng.choice(np.arange(n // 5, n - n // 5), 2, replace=False):
        drift[t0:] += rng.normal(0, 3.0, 6)[None] * np.exp(-np.arange(n - t0) / 5.0)[:, None]
    scale = np.array([0.05, 0.05, 0.05, 0.001, 0.001, 0.001])
    return drift * scale


def _cosines(n: int, tr_s: float, cutoff_s: float = 128.0) -> np.ndarray:
    """fMRIPrep's discrete-cosine high-pass basis (``cosine00``...) for a ``cutoff_s`` period."""
    n_basis = int(np.floor(2 * n * tr_s / cutoff_s))
    t = np.arange(n)
    k = np.arange(1, n_basis + 1)
    return np.sqrt(2.0 / n) * np.cos(np.pi * (2 * t[:, None] + 1) * k[None] / (2 * n))


def _expand(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``_derivative1``, ``_power2``, ``_derivative1_power2`` columns (first row n/a)."""
    out = {}
    for col in frame.columns:
        d = frame[col].diff()
        out |= {
            col: frame[col],
            f"{col}_derivative1": d,
            f"{col}_power2": frame[col] ** 2,
            f"{col}_derivative1_power2": d**2,
        }
    return pd.DataFrame(out)


def _confounds_table(motion, wm, csf, gs, dvars, tr_s) -> pd.DataFrame:
    """An fMRIPrep-like ``desc-confounds_timeseries.tsv`` table."""
    mot = pd.DataFrame(motion, columns=MOTION)
    tissue = pd.DataFrame({"global_signal": gs, "csf": csf, "white_matter": wm})
    fd = np.abs(np.diff(motion[:, :3], axis=0)).sum(1) + 50 * np.abs(
        np.diff(motion[:, 3:], axis=0)
    ).sum(1)
    qc = pd.DataFrame(
        {
            "framewise_displacement": np.r_[np.nan, fd],
            "dvars": np.r_[np.nan, dvars],
            "std_dvars": np.r_[np.nan, dvars / np.median(dvars)],
        }
    )
    cos = _cosines(len(motion), tr_s)
    cosine = pd.DataFrame(cos, columns=[f"cosine{i:02d}" for i in range(cos.shape[1])])
    return pd.concat([_expand(tissue), qc, _expand(mot), cosine], axis=1)


def _subject_signals(rho, n_volumes, tr_s, time_unit_s, mixing, noise_sd, seed):
    """Latent (T, 3) and clean region signals (T, N): Lorenz -> mixing -> causal HRF -> keep the
    band above fMRIPrep's 1/128 Hz cosine high-pass (as every analysis does) -> z-score."""
    hrf = spm_hrf(tr_s)
    warm = len(hrf) - 1
    latent = simulate_lorenz(n_volumes + warm, tr_s / time_unit_s, rho, seed=seed)
    regions = causal_convolve(latent @ mixing, hrf)[warm:]
    basis = np.column_stack([np.ones(n_volumes), _cosines(n_volumes, tr_s)])
    regions = regions - basis @ np.linalg.lstsq(basis, regions, rcond=None)[0]
    return latent[warm:], regions / regions.std(0)


def write_demo_cohort(
    out_dir: str | Path,
    n_subjects: int = 4,
    *,
    tr_s: float = 1.4,
    n_volumes: int = 500,
    n_regions: int = 6,
    grid: int = 10,
    rho_range: tuple[float, float] = (28.0, 45.0),
    time_unit_s: float = 20.0,
    motion_strength: float = 0.6,
    noise_sd: float = 0.15,
    drift_strength: float = 1.0,
    seed: int = 0,
    lyapunov_steps: int = 20_000,
) -> Path:
    """Write a small fMRIPrep-style cohort with ground truth; return ``out_dir``.

    Subject s is Lorenz-63 with ρ_s evenly spaced over ``rho_range``, one Lorenz time unit lasting
    ``time_unit_s`` seconds, mixed into ``n_regions`` regions by a seeded (3, N) matrix, convolved
    causally with ``spm_hrf(tr_s)``, restricted to the band above fMRIPrep's 1/128 Hz cosine
    high-pass (the slow part is unrecoverable under any drift correction) and z-scored
    (``ground_truth/sub-XX_regions.npy``), then written voxel-wise as percent signal change on a
    ``grid``^3 4 mm grid with region noise (``noise_sd``), voxel noise, a planted motion effect
    (spatial gradients times the six motion traces, ``motion_strength`` relative to the signal) and
    slow scanner drift in the cosine band (``drift_strength``). The confounds TSV holds those motion
    traces and the cosine regressors, so the default confound strategy removes both.
    """
    check_positive("n_subjects", n_subjects, integer=True)
    check_positive("n_volumes", n_volumes, integer=True)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -2.0 * (grid - 1)
    labels = _demo_atlas(n_regions, grid, rng)
    names = [f"region{i + 1:02d}" for i in range(n_regions)]
    (out / "atlas").mkdir(parents=True, exist_ok=True)
    (out / "ground_truth").mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), out / "atlas/atlas-demo_dseg.nii.gz")
    pd.DataFrame({"index": range(1, n_regions + 1), "name": names}).to_csv(
        out / "atlas/atlas-demo_dseg.tsv", sep="\t", index=False
    )
    write_json(
        out / "dataset_description.json",
        {
            "Name": "dsr synthetic demo cohort",
            "BIDSVersion": "1.8.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "dsr.synthetic.write_demo_cohort", "Version": "0.1.0"}],
        },
    )
    mixing = rng.normal(0, 1, (3, n_regions))
    rhos = np.linspace(*rho_range, n_subjects)
    lam = lyapunov_max_lorenz(rhos, n_steps=lyapunov_steps, seed=seed)
    brain = labels > 0
    coords = np.argwhere(brain) / (grid - 1) - 0.5  # (V, 3) in [-0.5, 0.5]
    gradients = 0.5 + np.concatenate([coords, coords[:, ::-1]], axis=1)  # (V, 6) motion loadings
    base = 800 + 400 * rng.random(brain.sum())
    rows = []
    for s, rho in enumerate(rhos):
        sub = f"sub-{s + 1:02d}"
        latent, regions = _subject_signals(
            rho, n_volumes, tr_s, time_unit_s, mixing, noise_sd, seed + s
        )
        motion = _motion(n_volumes, rng)
        mz = (motion - motion.mean(0)) / motion.std(0)
        signal = regions + noise_sd * rng.normal(0, 1, regions.shape)  # (T, N)
        vox = signal[:, labels[brain] - 1]  # (T, V)
        vox += motion_strength / np.sqrt(6) * mz @ gradients.T + 0.5 * rng.normal(0, 1, vox.shape)
        cos = _cosines(n_volumes, tr_s) * np.sqrt(n_volumes / 2)  # unit-amplitude cosines (T, K)
        drift = cos @ rng.normal(0, 1, cos.shape[1]) / np.sqrt(cos.shape[1])  # (T,)
        vox += drift_strength * drift[:, None] * (1 + coords[:, 0])  # spatially smooth loading
        bold_vox = base * (1 + 0.01 * vox)
        data = np.zeros((grid, grid, grid, n_volumes), np.float32)
        data[brain] = bold_vox.T
        func = out / sub / "func"
        func.mkdir(parents=True, exist_ok=True)
        stem = f"{sub}_task-rest"
        bold = func / f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz"
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header["pixdim"][4] = tr_s
        nib.save(img, bold)
        write_json(
            bold.with_name(bold.name.replace(".nii.gz", ".json")),
            {"RepetitionTime": tr_s, "TaskName": "rest", "SkullStripped": False},
        )
        wm = 0.5 * mz[:, :3].mean(1) + rng.normal(0, 1, n_volumes)
        csf = 0.5 * mz[:, 3:].mean(1) + rng.normal(0, 1, n_volumes)
        dvars = np.sqrt((np.diff(bold_vox, axis=0) ** 2).mean(1))
        table = _confounds_table(motion, wm, csf, bold_vox.mean(1), dvars, tr_s)
        table.to_csv(
            func / f"{stem}_desc-confounds_timeseries.tsv",
            sep="\t",
            index=False,
            na_rep="n/a",
            float_format="%.6g",
        )
        write_json(func / f"{stem}_desc-confounds_timeseries.json", {})
        np.save(out / "ground_truth" / f"{sub}_latent.npy", latent.astype(np.float32))
        np.save(out / "ground_truth" / f"{sub}_regions.npy", regions.astype(np.float32))
        truth = {
            "system": "lorenz63",
            "sigma": SIGMA,
            "rho": float(rho),
            "beta": BETA,
            "time_unit_s": time_unit_s,
            "tr_s": tr_s,
            "dt_per_volume": tr_s / time_unit_s,
            "lambda_max_per_time_unit": float(lam[s]),
            "lambda_max_per_second": float(lam[s] / time_unit_s),
            "lambda_max_per_volume": float(lam[s] * tr_s / time_unit_s),
            "mixing": mixing.tolist(),
            "noise_sd": noise_sd,
            "motion_strength": motion_strength,
            "region_names": names,
            "n_volumes": n_volumes,
            "seed": seed,
        }
        write_json(out / "ground_truth" / f"{sub}.json", truth)
        rows.append(
            {
                "participant_id": sub,
                "rho": float(rho),
                "lambda_max_per_s": truth["lambda_max_per_second"],
            }
        )
    pd.DataFrame(rows).to_csv(out / "participants.tsv", sep="\t", index=False)
    return out


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
    kernel = calcium_kernel(tau_s, fs_hz)
    warm = len(kernel) - 1
    latent = simulate_lorenz(n_frames + warm, 1.0 / (fs_hz * time_unit_s), rho, seed=seed)
    drive = np.logaddexp(0.0, latent @ rng.normal(0, 1.5, (3, n_cells)) - 1.0)
    dff = 0.5 * causal_convolve(drive, kernel)[warm:]
    latent = latent[warm:]
    n_rois = n_cells + n_noncells
    neuropil = causal_convolve(rng.normal(0, 1, (n_frames, 1)), np.ones(50) / 50)[:, 0]
    fneu = 300 + 30 * neuropil[:, None] + 5 * rng.normal(0, 1, (n_frames, n_rois))
    f0 = rng.uniform(200, 600, n_rois)
    act = np.concatenate([dff, np.zeros((n_frames, n_noncells))], axis=1)
    f = f0 * (1 + act) + 0.7 * fneu + 3 * rng.normal(0, 1, (n_frames, n_rois))
    order = rng.permutation(n_rois)  # cells and non-cells interleaved as in real output
    iscell = np.zeros((n_rois, 2))
    iscell[:, 0] = (order < n_cells).astype(float)
    iscell[:, 1] = np.where(order < n_cells, 0.9, 0.1)
    np.save(plane / "F.npy", f[:, order].T.astype(np.float32))  # suite2p: ROIs x T
    np.save(plane / "Fneu.npy", fneu[:, order].T.astype(np.float32))
    np.save(plane / "iscell.npy", iscell)
    np.save(plane / "ops.npy", np.array({"fs": fs_hz, "nframes": n_frames, "tau": tau_s}))
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
