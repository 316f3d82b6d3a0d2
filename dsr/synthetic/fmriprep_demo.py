"""Synthetic demo data in real file formats, with known ground truth.

``write_demo_cohort`` writes an fMRIPrep-style BIDS-derivative folder whose subjects are Lorenz-63
systems with subject-specific ρ, mixed into N regions, convolved with the SPM HRF, with planted
head-motion effects and noise (``dsr.synthetic.calcium_demo`` writes a suite2p folder). The true largest
Lyapunov exponent is computed by the Benettin/QR method on the ODE's Jacobian.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pandas as pd

from dsr._validation import check_positive
from dsr.atomic import write_json
from dsr.errors import DsrInputError
from dsr.signal.kernels import spm_hrf
from dsr.synthetic.lorenz import BETA, SIGMA, lyapunov_max_lorenz, observe_lorenz

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


class _Settings(NamedTuple):
    """Acquisition and simulation settings shared by every subject of a demo cohort."""

    tr_s: float
    n_volumes: int
    time_unit_s: float
    motion_strength: float
    noise_sd: float
    drift_strength: float
    seed: int
    one_branch: bool


class _Anatomy(NamedTuple):
    """The cohort's 4 mm grid: affine (4, 4), atlas labels (G, G, G) and region names, brain mask,
    voxel coordinates (V, 3) in [-0.5, 0.5], motion loadings (V, 6), baseline intensities (V,)."""

    affine: np.ndarray
    labels: np.ndarray
    names: list[str]
    brain: np.ndarray
    coords: np.ndarray
    gradients: np.ndarray
    base: np.ndarray


def _anatomy(labels: np.ndarray, rng) -> _Anatomy:
    """Grid geometry around ``labels`` (G, G, G); draws the baseline intensities from ``rng``."""
    grid = labels.shape[0]
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -2.0 * (grid - 1)
    names = [f"region{i + 1:02d}" for i in range(labels.max())]
    brain = labels > 0
    coords = np.argwhere(brain) / (grid - 1) - 0.5  # (V, 3) in [-0.5, 0.5]
    gradients = 0.5 + np.concatenate([coords, coords[:, ::-1]], axis=1)  # (V, 6) motion loadings
    base = 800 + 400 * rng.random(brain.sum())
    return _Anatomy(affine, labels, names, brain, coords, gradients, base)


def _subject_signals(rho, mixing, cfg: _Settings, seed):
    """Latent (T, 3) and clean region signals (T, N): Lorenz -> mixing -> causal HRF -> keep the
    band above fMRIPrep's 1/128 Hz cosine high-pass (as every analysis does) -> z-score."""
    dt, hrf = cfg.tr_s / cfg.time_unit_s, spm_hrf(cfg.tr_s)
    latent, regions = observe_lorenz(
        cfg.n_volumes, dt, rho, seed, hrf, lambda z: z @ mixing, cfg.one_branch
    )
    basis = np.column_stack([np.ones(cfg.n_volumes), _cosines(cfg.n_volumes, cfg.tr_s)])
    regions = regions - basis @ np.linalg.lstsq(basis, regions, rcond=None)[0]
    return latent, regions / regions.std(0)


def _voxel_bold(regions, mz, anat: _Anatomy, cfg: _Settings, rng) -> np.ndarray:
    """Voxel BOLD (T, V) from region signals (T, N) and z-scored motion (T, 6): region and voxel
    noise, the motion effect and slow drift in the cosine band, as percent signal change."""
    signal = regions + cfg.noise_sd * rng.normal(0, 1, regions.shape)  # (T, N)
    vox = signal[:, anat.labels[anat.brain] - 1]  # (T, V)
    motion_effect = cfg.motion_strength / np.sqrt(6) * mz @ anat.gradients.T  # (T, V)
    vox += motion_effect + 0.5 * rng.normal(0, 1, vox.shape)
    cos = _cosines(cfg.n_volumes, cfg.tr_s) * np.sqrt(cfg.n_volumes / 2)  # unit amplitude (T, K)
    drift = cos @ rng.normal(0, 1, cos.shape[1]) / np.sqrt(cos.shape[1])  # (T,)
    vox += cfg.drift_strength * drift[:, None] * (1 + anat.coords[:, 0])  # spatially smooth
    return anat.base * (1 + 0.01 * vox)


def _write_atlas(out: Path, anat: _Anatomy) -> None:
    """``atlas/atlas-demo_dseg.{nii.gz,tsv}``: the label image and its index/name table."""
    (out / "atlas").mkdir(parents=True, exist_ok=True)
    labels = nib.Nifti1Image(anat.labels.astype(np.int16), anat.affine)
    nib.save(labels, out / "atlas/atlas-demo_dseg.nii.gz")
    pd.DataFrame({"index": range(1, len(anat.names) + 1), "name": anat.names}).to_csv(
        out / "atlas/atlas-demo_dseg.tsv", sep="\t", index=False
    )


def _write_bold(bold: Path, bold_vox: np.ndarray, anat: _Anatomy, tr_s: float) -> None:
    """The 4-D BOLD NIfTI from voxel series (T, V) and its ``RepetitionTime`` sidecar."""
    data = np.zeros((*anat.labels.shape, len(bold_vox)), np.float32)
    data[anat.brain] = bold_vox.T
    img = nib.Nifti1Image(data, anat.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr_s
    nib.save(img, bold)
    write_json(
        bold.with_name(bold.name.replace(".nii.gz", ".json")),
        {"RepetitionTime": tr_s, "TaskName": "rest", "SkullStripped": False},
    )


def _write_confounds(prefix: Path, motion, mz, bold_vox, tr_s: float, rng) -> None:
    """``{prefix}_desc-confounds_timeseries.{tsv,json}``; WM/CSF follow the motion (T, 6)."""
    n_volumes = len(motion)
    wm = 0.5 * mz[:, :3].mean(1) + rng.normal(0, 1, n_volumes)
    csf = 0.5 * mz[:, 3:].mean(1) + rng.normal(0, 1, n_volumes)
    dvars = np.sqrt((np.diff(bold_vox, axis=0) ** 2).mean(1))
    table = _confounds_table(motion, wm, csf, bold_vox.mean(1), dvars, tr_s)
    name = f"{prefix}_desc-confounds_timeseries"
    table.to_csv(f"{name}.tsv", sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    write_json(f"{name}.json", {})


def _write_subject(out: Path, s: int, rho, lam, mixing, anat: _Anatomy, cfg: _Settings, rng):
    """Simulate subject ``s`` (``lam``: its λ_max per Lorenz time unit) and write its BOLD,
    confounds and ground truth; return its row of ``participants.tsv``."""
    sub = f"sub-{s + 1:02d}"
    latent, regions = _subject_signals(rho, mixing, cfg, cfg.seed + s)
    motion = _motion(cfg.n_volumes, rng)
    mz = (motion - motion.mean(0)) / motion.std(0)
    bold_vox = _voxel_bold(regions, mz, anat, cfg, rng)
    func = out / sub / "func"
    func.mkdir(parents=True, exist_ok=True)
    _write_bold(
        func / f"{sub}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz", bold_vox, anat, cfg.tr_s
    )
    _write_confounds(func / f"{sub}_task-rest", motion, mz, bold_vox, cfg.tr_s, rng)
    np.save(out / "ground_truth" / f"{sub}_latent.npy", latent.astype(np.float32))
    np.save(out / "ground_truth" / f"{sub}_regions.npy", regions.astype(np.float32))
    truth = {
        "system": "lorenz63",
        "sigma": SIGMA,
        "rho": float(rho),
        "beta": BETA,
        "time_unit_s": cfg.time_unit_s,
        "tr_s": cfg.tr_s,
        "dt_per_volume": cfg.tr_s / cfg.time_unit_s,
        "lambda_max_per_time_unit": float(lam),
        "lambda_max_per_second": float(lam / cfg.time_unit_s),
        "lambda_max_per_volume": float(lam * cfg.tr_s / cfg.time_unit_s),
        "mixing": mixing.tolist(),
        "noise_sd": cfg.noise_sd,
        "motion_strength": cfg.motion_strength,
        "region_names": anat.names,
        "n_volumes": cfg.n_volumes,
        "seed": cfg.seed,
    }
    write_json(out / "ground_truth" / f"{sub}.json", truth)
    lam_s = truth["lambda_max_per_second"]
    return {"participant_id": sub, "rho": float(rho), "lambda_max_per_s": lam_s}


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
    one_branch: bool = False,
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
    ``one_branch``: put every subject on the same branch of the Lorenz symmetry (see
    :func:`dsr.synthetic.lorenz.observe_lorenz`), so that ρ is the only planted difference even where the orbits are
    mirror-image cycles (ρ above ~214).
    """
    check_positive("n_subjects", n_subjects, integer=True)
    check_positive("n_volumes", n_volumes, integer=True)
    cfg = _Settings(
        tr_s, n_volumes, time_unit_s, motion_strength, noise_sd, drift_strength, seed, one_branch
    )
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    labels = _demo_atlas(n_regions, grid, rng)
    mixing = rng.normal(0, 1, (3, n_regions))
    anat = _anatomy(labels, rng)
    _write_atlas(out, anat)
    (out / "ground_truth").mkdir(exist_ok=True)
    write_json(
        out / "dataset_description.json",
        {
            "Name": "dsr synthetic demo cohort",
            "BIDSVersion": "1.8.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "dsr.synthetic.write_demo_cohort", "Version": "0.1.0"}],
        },
    )
    rhos = np.linspace(*rho_range, n_subjects)
    lam = lyapunov_max_lorenz(rhos, n_steps=lyapunov_steps, seed=seed)
    rows = [
        _write_subject(out, s, rho, lam[s], mixing, anat, cfg, rng) for s, rho in enumerate(rhos)
    ]
    pd.DataFrame(rows).to_csv(out / "participants.tsv", sep="\t", index=False)
    return out
