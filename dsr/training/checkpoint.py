"""Training checkpoints: written atomically, resumed from after a crash or kill."""

from __future__ import annotations

from pathlib import Path

import torch

from dsr.atomic import remove_stale_temporaries, write_torch

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(directory: str | Path, state: dict) -> Path:
    """Write a training checkpoint atomically to ``directory/checkpoint.pt``."""
    return write_torch(Path(directory) / CHECKPOINT_NAME, state)


def load_checkpoint(
    directory: str | Path | None, device: torch.device | str = "cpu"
) -> dict | None:
    """Load the checkpoint in ``directory``, or ``None`` when there is none."""
    if directory is None:
        return None
    path = Path(directory) / CHECKPOINT_NAME
    remove_stale_temporaries(directory)
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=False)
