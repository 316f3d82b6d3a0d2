"""Atlas loading: labels (3-D integer) or probabilistic maps (4-D), region names, space checks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from dsr.errors import DsrInputError


def load_atlas(atlas: str | Path) -> tuple[nib.Nifti1Image, str]:
    """Load an atlas NIfTI and tell its kind: ``"labels"`` (3-D) or ``"maps"`` (4-D)."""
    path = Path(atlas)
    if not path.is_file():
        raise DsrInputError(f"atlas {path} not found; give a local labels or maps NIfTI")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise DsrInputError(f"atlas {path} could not be read as NIfTI ({exc})") from exc
    if img.ndim == 3 or (img.ndim == 4 and img.shape[3] == 1):
        return nib.Nifti1Image(np.asarray(img.dataobj).reshape(img.shape[:3]), img.affine), "labels"
    if img.ndim == 4:
        return img, "maps"
    raise DsrInputError(f"atlas {path}: {img.ndim}-D image; expected 3-D labels or 4-D maps")


def atlas_region_ids(img: nib.Nifti1Image, kind: str, background: int = 0) -> list[int]:
    """Region ids of an atlas: the non-background labels, or the map positions ``0..K-1``."""
    if kind == "maps":
        return list(range(img.shape[3]))
    data = np.asarray(img.dataobj)
    if not np.allclose(data, np.round(data)):
        raise DsrInputError("labels atlas holds non-integer values; use a 4-D maps atlas instead")
    return [int(v) for v in np.unique(np.round(data).astype(np.int64)) if v != background]


def read_label_names(labels: str | Path | None, ids: list[int], kind: str) -> list[str]:
    """Region names from a TSV with columns ``index`` and ``name`` (BIDS dseg style).

    For a labels atlas the ``index`` column matches the label values; for a maps atlas the rows are
    taken in volume order. Without a TSV the names are the ids as text.
    """
    if labels is None:
        return [str(i) for i in ids]
    path = Path(labels)
    if not path.is_file():
        raise DsrInputError(f"label table {path} not found; give a TSV with columns index, name")
    table = pd.read_csv(path, sep="\t")
    if not {"index", "name"} <= set(table.columns):
        raise DsrInputError(
            f"label table {path}: columns {list(table.columns)}; expected 'index' and 'name'"
        )
    if kind == "maps":
        if len(table) != len(ids):
            raise DsrInputError(f"label table {path}: {len(table)} rows for {len(ids)} maps")
        return [str(n) for n in table["name"]]
    names = dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True))
    missing = [i for i in ids if i not in names]
    if missing:
        raise DsrInputError(f"label table {path}: no name for label(s) {missing}; add rows")
    return [names[i] for i in ids]


def _world_box(shape: tuple[int, ...], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in shape[:3]], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:4]
    return world.min(axis=1), world.max(axis=1)


def check_atlas_space(
    atlas_img: nib.Nifti1Image, bold_img: nib.Nifti1Image, atlas_path, bold_path
) -> list[str]:
    """Compare grids; return warnings for a resampled atlas, raise if they share no space at all."""
    same_grid = atlas_img.shape[:3] == bold_img.shape[:3] and np.allclose(
        atlas_img.affine, bold_img.affine, atol=1e-3
    )
    if same_grid:
        return []
    lo_a, hi_a = _world_box(atlas_img.shape, atlas_img.affine)
    lo_b, hi_b = _world_box(bold_img.shape, bold_img.affine)
    if np.any(hi_a < lo_b) or np.any(hi_b < lo_a):
        raise DsrInputError(
            f"atlas {atlas_path} does not overlap BOLD {bold_path} in world coordinates "
            f"(atlas box {lo_a.round(1).tolist()}..{hi_a.round(1).tolist()} mm, image box "
            f"{lo_b.round(1).tolist()}..{hi_b.round(1).tolist()} mm); the atlas is not in the "
            "image's space: use an atlas in the fMRIPrep output space"
        )
    return [
        f"atlas {atlas_path} (shape {atlas_img.shape[:3]}) is on another grid than BOLD "
        f"{bold_path} (shape {bold_img.shape[:3]}); nilearn resampled the atlas to the image "
        "(nearest neighbour for labels); check that both are in the same template space"
    ]
