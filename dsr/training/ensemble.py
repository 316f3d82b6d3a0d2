"""A fitted ensemble: E trained models with their bookkeeping, saved to and loaded from one file."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch

from dsr.atomic import write_torch
from dsr.errors import DsrInputError
from dsr.models.decoders import decoder_name, make_decoder
from dsr.models.registry import make_model, model_name

FORMAT = "dsr-ensemble/1"


@dataclasses.dataclass
class FittedEnsemble:
    """E trained models; model ``e`` belongs to ``subject_ids[model_subject[e]]``, restart ``model_restart[e]``.

    Attributes
    ----------
    model : dsr.models.LatentMap
        Latent map ensemble (E models).
    decoder : dsr.models.decoders.LinearDecoder
        Observation model ensemble (E models).
    subject_ids : list of str
    model_subject, model_restart : np.ndarray, shape (E,)
    status : list of str, length E
        ``"ok"`` or ``"diverged"`` (parameters are then the last finite ones).
    final_loss : np.ndarray, shape (E,)
    loss_history : np.ndarray, shape (epochs, E)
    config : dict
        The TrainingConfig as a dict, plus ``seed``.
    kernel : np.ndarray, shape (h,)
    wall_time_s : float
    device : str
    """

    model: torch.nn.Module
    decoder: torch.nn.Module
    subject_ids: list[str]
    model_subject: np.ndarray
    model_restart: np.ndarray
    status: list[str]
    final_loss: np.ndarray
    loss_history: np.ndarray
    config: dict
    kernel: np.ndarray
    wall_time_s: float
    device: str

    @property
    def n_models(self) -> int:
        return len(self.model_subject)

    def for_subject(self, subject: str) -> FittedEnsemble:
        """The sub-ensemble of one subject's models (a new object; parameters copied)."""
        keep = np.flatnonzero(np.asarray(self.model_subject) == self.subject_ids.index(subject))
        return dataclasses.replace(
            self,
            model=_take_models(self.model, keep),
            decoder=_take_models(self.decoder, keep),
            subject_ids=[subject],
            model_subject=np.zeros(len(keep), dtype=int),
            model_restart=np.asarray(self.model_restart)[keep],
            status=[self.status[e] for e in keep],
            final_loss=np.asarray(self.final_loss)[keep],
            loss_history=np.asarray(self.loss_history)[:, keep],
            config=dict(self.config),
        )

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> FittedEnsemble:
        """Move (and optionally cast) both modules in place; returns self."""
        self.model.to(device=device, dtype=dtype)
        self.decoder.to(device=device, dtype=dtype)
        return self


def _take_models(module: torch.nn.Module, keep: np.ndarray) -> torch.nn.Module:
    """Copy of an ensemble module with only the models ``keep`` (leading axis E of every tensor
    except the shared kernel)."""
    new = copy.deepcopy(module)
    index = torch.as_tensor(keep)
    for name, t in [*new.named_parameters(), *new.named_buffers()]:
        if name != "kernel":
            t.data = t.data[index].clone()
    if hasattr(new, "n_models"):
        new.n_models = len(keep)
    return new


def save_ensemble(fitted: FittedEnsemble, path: str | Path) -> Path:
    """Write the ensemble atomically to ``path`` (a ``.pt`` loadable with ``weights_only=True``)."""
    dec = fitted.decoder
    blob = {
        "format": FORMAT,
        "model_name": model_name(fitted.model),
        "model_hparams": fitted.model.hyperparameters(),
        "model_state": {k: v.detach().cpu() for k, v in fitted.model.state_dict().items()},
        "decoder_name": decoder_name(dec),
        "decoder_dims": [dec.obs_dim, dec.latent_dim, dec.n_confounds],
        "decoder_state": {k: v.detach().cpu() for k, v in dec.state_dict().items()},
        "kernel": torch.as_tensor(fitted.kernel, dtype=torch.float64),
        "subject_ids": list(fitted.subject_ids),
        "model_subject": torch.as_tensor(fitted.model_subject),
        "model_restart": torch.as_tensor(fitted.model_restart),
        "status": list(fitted.status),
        "final_loss": torch.as_tensor(fitted.final_loss, dtype=torch.float64),
        "loss_history": torch.as_tensor(fitted.loss_history, dtype=torch.float64),
        "config": dict(fitted.config),
        "wall_time_s": float(fitted.wall_time_s),
        "device": str(fitted.device),
    }
    return write_torch(path, blob)


def load_ensemble(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> FittedEnsemble:
    """Load an ensemble written by :func:`save_ensemble`."""
    path = Path(path)
    if not path.is_file():
        raise DsrInputError(f"model file {path} does not exist; run 'dsr fit' first")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DsrInputError(f"{path} is not a dsr ensemble file (format {FORMAT})")
    hp = blob["model_hparams"]
    model = make_model(
        blob["model_name"], hp["n_models"], hp["latent_dim"], hp["hidden_dim"], dtype=dtype
    )
    model.load_state_dict(blob["model_state"])
    n_obs, n_latent, n_conf = blob["decoder_dims"]
    kernel = blob["kernel"].numpy()
    decoder = make_decoder(
        blob["decoder_name"], hp["n_models"], n_obs, n_latent, kernel, n_conf, dtype=dtype
    )
    decoder.load_state_dict(blob["decoder_state"])
    fitted = FittedEnsemble(
        model=model,
        decoder=decoder,
        subject_ids=blob["subject_ids"],
        model_subject=blob["model_subject"].numpy(),
        model_restart=blob["model_restart"].numpy(),
        status=blob["status"],
        final_loss=blob["final_loss"].numpy(),
        loss_history=blob["loss_history"].numpy(),
        config=blob["config"],
        kernel=kernel,
        wall_time_s=blob["wall_time_s"],
        device=blob["device"],
    )
    return fitted.to(device, dtype)
