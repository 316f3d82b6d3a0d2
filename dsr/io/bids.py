"""Find fMRIPrep runs in a BIDS-derivative folder and read their repetition time."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from dsr.errors import DsrInputError

BOLD_SUFFIX = "_desc-preproc_bold.nii.gz"
_ENTITY = re.compile(r"(?P<key>[a-zA-Z]+)-(?P<value>[a-zA-Z0-9]+)")


@dataclass(frozen=True)
class FmriprepRun:
    """One preprocessed BOLD run and its companion files (paths may not exist: checked on use)."""

    subject: str
    session: str | None
    task: str
    run: str | None
    space: str
    bold: Path
    sidecar: Path
    confounds: Path

    @property
    def name(self) -> str:
        """``sub-01[_ses-1]_task-rest[_run-1]``, unique within a cohort."""
        parts = [f"sub-{self.subject}"]
        parts += [f"ses-{self.session}"] if self.session else []
        parts += [f"task-{self.task}"] + ([f"run-{self.run}"] if self.run else [])
        return "_".join(parts)


def parse_entities(filename: str) -> dict[str, str]:
    """BIDS ``key-value`` entities of a file name, e.g. ``{"sub": "01", "task": "rest"}``."""
    stem = filename.split(".")[0]
    return {m["key"]: m["value"] for m in _ENTITY.finditer(stem)}


def _confounds_path(bold: Path, ent: dict[str, str]) -> Path:
    keep = [f"{k}-{ent[k]}" for k in ("sub", "ses", "task", "acq", "run") if k in ent]
    return bold.parent / ("_".join(keep) + "_desc-confounds_timeseries.tsv")


def find_fmriprep_runs(
    root: str | Path,
    *,
    task: str | None = None,
    space: str | None = None,
    subjects: list[str] | None = None,
) -> list[FmriprepRun]:
    """List ``sub-*/[ses-*/]func/*_task-<t>[_run-<r>]_space-<s>_desc-preproc_bold.nii.gz`` runs.

    Parameters
    ----------
    root : path
        The fMRIPrep output folder.
    task, space : str, optional
        Keep only runs with this task / space label.
    subjects : list of str, optional
        Subject labels with or without the ``sub-`` prefix.

    Raises
    ------
    DsrInputError
        No BOLD file matches (the message names the folder and the filters).
    """
    root = Path(root)
    wanted = {s.removeprefix("sub-") for s in subjects} if subjects else None
    paths = sorted(root.glob(f"sub-*/func/*{BOLD_SUFFIX}")) + sorted(
        root.glob(f"sub-*/ses-*/func/*{BOLD_SUFFIX}")
    )
    runs = []
    for bold in paths:
        ent = parse_entities(bold.name)
        if "sub" not in ent or "task" not in ent or "space" not in ent:
            continue
        if (task and ent["task"] != task) or (space and ent["space"] != space):
            continue
        if wanted is not None and ent["sub"] not in wanted:
            continue
        sidecar = bold.with_name(bold.name.replace(".nii.gz", ".json"))
        runs.append(
            FmriprepRun(
                ent["sub"],
                ent.get("ses"),
                ent["task"],
                ent.get("run"),
                ent["space"],
                bold,
                sidecar,
                _confounds_path(bold, ent),
            )
        )
    if not runs:
        raise DsrInputError(
            f"no BOLD file matching sub-*/[ses-*/]func/*_task-{task or '*'}_space-{space or '*'}"
            f"{BOLD_SUFFIX} (subjects: {subjects or 'all'}) under {root}; check the folder and "
            "the task/space/subject filters"
        )
    return runs


def read_tr(sidecar: str | Path, override_s: float | None = None) -> float:
    """Repetition time in seconds: ``override_s`` if given, else the sidecar's ``RepetitionTime``.

    Never falls back to a default TR: a missing value is an error naming the file.
    """
    if override_s is not None:
        if not override_s > 0:
            raise DsrInputError(f"tr_s override must be positive seconds; got {override_s}")
        return float(override_s)
    sidecar = Path(sidecar)
    fix = "add RepetitionTime (seconds) to the sidecar or set tr_s in the config"
    if not sidecar.is_file():
        raise DsrInputError(f"{sidecar}: JSON sidecar not found, so the TR is unknown; {fix}")
    try:
        tr = json.loads(sidecar.read_text(encoding="utf-8")).get("RepetitionTime")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise DsrInputError(f"{sidecar}: not a valid JSON object ({exc}); {fix}") from exc
    if not isinstance(tr, (int, float)) or isinstance(tr, bool) or not tr > 0:
        raise DsrInputError(f"{sidecar}: no positive RepetitionTime (got {tr!r}); {fix}")
    return float(tr)
