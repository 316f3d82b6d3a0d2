"""Per-stage functions behind the Snakemake workflow (``workflow/scripts/*.py`` call one each).

Every function takes plain paths and values (the workflow's ``params:``), writes its outputs
atomically and returns what it wrote. Nothing here imports snakemake.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from dsr.atomic import atomic_path, write_json, write_npy
from dsr.cohort import run_cohort
from dsr.errors import DsrInputError
from dsr.kernels import make_kernel

log = logging.getLogger(__name__)

INPUT_KINDS = ("demo", "fmriprep", "suite2p", "nwb", "npy")


def run_demo(out_dir, subjects: list[str], **kwargs) -> Path:
    """Write the synthetic demo cohort (``dsr.synthetic.write_demo_cohort``) for ``subjects``."""
    from dsr.synthetic import write_demo_cohort

    expected = [f"sub-{i + 1:02d}" for i in range(len(subjects))]
    if list(subjects) != expected:
        raise DsrInputError(f"demo subjects must be {expected}; got {subjects}")
    return write_demo_cohort(out_dir, n_subjects=len(subjects), **kwargs)


def discover_subjects(kind: str, input_dir, *, task=None, space=None) -> list[str]:
    """Subject ids found in an input folder, sorted.

    ``fmriprep``: ``sub-*`` with a matching preprocessed BOLD run; ``suite2p``: sub-folders;
    ``nwb``/``npy``: file stems of ``*.nwb`` / ``*.npy`` files.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise DsrInputError(f"input folder {root} does not exist")
    if kind == "fmriprep":
        from dsr.io import find_fmriprep_runs

        runs = find_fmriprep_runs(root, task=task, space=space)
        return sorted({_subject_label(r.subject) for r in runs})
    if kind == "suite2p":
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if kind in ("nwb", "npy"):
        return sorted(p.stem for p in root.glob(f"*.{kind}"))
    raise DsrInputError(f"'input.kind' must be one of {list(INPUT_KINDS)}; got {kind!r}")


def _subject_label(subject: str) -> str:
    return subject if subject.startswith("sub-") else f"sub-{subject}"


def run_extract(kind: str, input_dir, subject: str, out_dir, **options) -> Path:
    """Extract one subject's ``(T, N)`` series into ``out_dir`` (timeseries, confounds, meta).

    Parameters
    ----------
    kind : {"demo", "fmriprep", "suite2p", "nwb", "npy"}
        ``demo`` reads the generated cohort as fMRIPrep derivatives.
    input_dir : path
        Input folder (``sub-*/func`` tree, one suite2p folder or file per subject).
    subject : str
    out_dir : path
    **options
        ``atlas``, ``labels``, ``task``, ``space``, ``tr_s``, ``fs_hz``, ``confounds_strategy``,
        ``confounds_mode``, ``high_pass_hz``, ``low_pass_hz``, ``n_groups``.
    """
    from dsr import io

    root = Path(input_dir)
    if kind in ("demo", "fmriprep"):
        runs = io.find_fmriprep_runs(
            root, task=options.get("task"), space=options.get("space"), subjects=[subject]
        )
        if len(runs) > 1:
            log.warning("%s: %d runs found; using the first, %s", subject, len(runs), runs[0])
        strategy = options.get("confounds_strategy")
        result = io.extract_fmriprep_subject(
            runs[0],
            options["atlas"],
            options.get("labels"),
            tr_s=options.get("tr_s"),
            confounds_strategy=tuple(strategy) if strategy else None,
            confounds_mode=options.get("confounds_mode", "regress"),
            high_pass=options.get("high_pass_hz"),
            low_pass=options.get("low_pass_hz"),
        )
    elif kind in ("suite2p", "nwb"):
        path = root / subject if kind == "suite2p" else root / f"{subject}.nwb"
        result = io.extract_calcium(
            path,
            fs_hz=options.get("fs_hz"),
            fmt=kind,
            n_groups=options.get("n_groups"),
            subject=subject,
        )
    elif kind == "npy":
        result = io.extract_array(
            root / f"{subject}.npy",
            fs_hz=options.get("fs_hz"),
            tr_s=None if options.get("fs_hz") else options.get("tr_s"),
            subject=subject,
        )
    else:
        raise DsrInputError(f"'input.kind' must be one of {list(INPUT_KINDS)}; got {kind!r}")
    out = Path(out_dir)
    io.save_extraction(result, out)
    if result.confounds is None:  # a fixed output set: no regressors is a (T, 0) array
        write_npy(out / "confounds.npy", np.zeros((len(result.timeseries), 0), np.float32))
    return out


def load_subject(extract_dir) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """``(x (T, N), r (T, P) or None, meta)`` of an extract folder; an empty r becomes None."""
    from dsr.io import load_extraction

    res = load_extraction(extract_dir)
    r = res.confounds
    return res.timeseries, (None if r is None or r.shape[1] == 0 else r), res.meta


def subject_kernel(meta: dict, kernel: str = "auto", tau_s: float = 0.7, path=None) -> np.ndarray:
    """Observation kernel for a subject: HRF at ``meta['tr_s']`` or calcium at ``meta['fs_hz']``."""
    if kernel == "file":
        return make_kernel("file", path=path)
    if kernel == "standard":
        return make_kernel("hrf", tr_s=meta["tr_s"]) if "tr_s" in meta else np.ones(1)
    if "tr_s" in meta and meta["tr_s"]:
        return make_kernel("hrf", tr_s=meta["tr_s"])
    if "fs_hz" in meta and meta["fs_hz"]:
        return make_kernel("calcium", tau_s=tau_s, fs_hz=meta["fs_hz"])
    raise DsrInputError("meta.json holds neither 'tr_s' nor 'fs_hz'; cannot build the kernel")


def run_fit(
    extract_dirs: list,
    out_dirs: list,
    subjects: list[str],
    training: dict,
    *,
    n_restarts: int = 8,
    seed: int = 0,
    device: str = "auto",
    threads: int = 1,
    tau_s: float = 0.7,
    checkpoint_dir=None,
    cohort_dir=None,
) -> list[Path]:
    """Fit ``n_restarts`` models per subject as ONE ensemble and write each subject's fit folder.

    With several subjects (``fit.batch_subjects``) the joint ensemble is also saved to
    ``cohort_dir/model.pt`` and then split: ``out_dirs[s]`` gets subject s's models only
    (``model.pt``, ``fit.json``, ``loss.tsv``). All subjects need the same N and sampling unit.
    """
    from dsr.cli import write_fit_outputs
    from dsr.training import TrainingConfig, fit_ensemble, save_ensemble

    torch.set_num_threads(max(1, int(threads)))
    loaded = [load_subject(d) for d in extract_dirs]
    metas = [m for _, _, m in loaded]
    units = {(m.get("tr_s"), m.get("fs_hz")) for m in metas}
    if len(units) > 1:
        raise DsrInputError(f"batched subjects differ in TR / sampling rate: {sorted(units)}")
    confounds = [r for _, r, _ in loaded]
    has_r = [r is not None for r in confounds]
    if any(has_r) and not all(has_r):
        raise DsrInputError("some subjects have nuisance regressors and some do not")
    fitted = fit_ensemble(
        [x for x, _, _ in loaded],
        subject_kernel(metas[0], training.get("decoder", "convolved"), tau_s),
        confounds=confounds if all(has_r) else None,
        subject_ids=subjects,
        n_restarts=n_restarts,
        config=TrainingConfig(**training),
        seed=seed,
        device=device,
        checkpoint_dir=checkpoint_dir,
    )
    if cohort_dir is not None:
        save_ensemble(fitted, Path(cohort_dir) / "model.pt")
        write_fit_outputs(fitted, Path(cohort_dir))
    for s, out in enumerate(out_dirs):
        part = split_ensemble(fitted, subjects[s]) if len(subjects) > 1 else fitted
        save_ensemble(part, Path(out) / "model.pt")
        rate = {"tr_s": metas[s].get("tr_s"), "fs_hz": metas[s].get("fs_hz")}
        write_fit_outputs(part, Path(out), extra={"data": str(extract_dirs[s]), **rate})
    return [Path(o) for o in out_dirs]


def split_ensemble(fitted, subject: str):
    """The sub-ensemble of one subject's models (a new FittedEnsemble; parameters copied)."""
    import copy

    from dsr.ensemble import FittedEnsemble

    s = fitted.subject_ids.index(subject)
    keep = np.flatnonzero(np.asarray(fitted.model_subject) == s)
    n_all = fitted.n_models

    def sliced(module):
        new = copy.deepcopy(module)
        for name, t in list(new.named_parameters()) + list(new.named_buffers()):
            if t.ndim and t.shape[0] == n_all and name != "kernel":
                t.data = t.data[torch.as_tensor(keep)].clone()
        if hasattr(new, "n_models"):
            new.n_models = len(keep)
        return new

    return FittedEnsemble(
        model=sliced(fitted.model),
        decoder=sliced(fitted.decoder),
        subject_ids=[subject],
        model_subject=np.zeros(len(keep), dtype=np.asarray(fitted.model_subject).dtype),
        model_restart=np.asarray(fitted.model_restart)[keep],
        status=[fitted.status[e] for e in keep],
        final_loss=np.asarray(fitted.final_loss)[keep],
        loss_history=np.asarray(fitted.loss_history)[:, keep],
        config=dict(fitted.config),
        kernel=fitted.kernel,
        wall_time_s=fitted.wall_time_s,
        device=fitted.device,
    )


def free_runs(fitted, x: np.ndarray, r: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One noise-free free run per model from ``d`` at index ``cut_left`` (evaluation protocol).

    Returns
    -------
    x_gen : np.ndarray, shape (E, T, N)
        Decoded trajectories (with the subject's own ``r``).
    z_gen : np.ndarray, shape (E, T, M)
        Latent states aligned with ``x_gen``.
    """
    import copy

    from dsr.deconvolution import edge_samples, wiener_deconvolve

    kernel, cfg = np.asarray(fitted.kernel), fitted.config
    h, floor = len(kernel), cfg.get("noise_floor", 1e-5)
    cl = edge_samples(cfg.get("cut_left", 0.25), h)
    cr = edge_samples(cfg.get("cut_right", 0.5), h)
    model = copy.deepcopy(fitted.model).double().cpu().requires_grad_(False)
    decoder = copy.deepcopy(fitted.decoder).double().cpu().requires_grad_(False)
    n_models, n_time = fitted.n_models, len(x)

    def at_start(a):
        d = wiener_deconvolve(a, kernel, floor, cl, cr)[cl]
        return torch.from_numpy(np.asarray(d, np.float64))[None, None].expand(n_models, 1, -1)

    with torch.no_grad():
        z0 = decoder.initial_state(at_start(x), None if r is None else at_start(r))
        z = model.generate(z0, n_time + h - 1)
        rr = None
        if r is not None:
            pad = np.vstack([np.zeros((h - 1, r.shape[1])), r])
            rr = torch.from_numpy(pad)[:, None, None].expand(-1, n_models, 1, -1)
        xg = decoder.decode(z, rr)[:, :, 0].numpy()
    zg = z[h - 1 :, :, 0].numpy()
    return np.transpose(xg, (1, 0, 2)), np.transpose(zg, (1, 0, 2))


def run_evaluate(fit_dir, extract_dir, out_dir, *, max_order: int = 2, threads: int = 1, **kwargs):
    """Evaluate one subject's ensemble and write metrics, spectra, fixed points and free runs.

    Writes ``metrics.tsv`` (one row per model), ``summary.json``, ``lyapunov.npy`` (E, M) via
    :func:`dsr.evaluation.evaluate_run`, plus ``fixed_points.json`` (cycles up to ``max_order``
    with eigenvalues and stability) and ``trajectories.npz`` (``x_gen`` (E, T, N), ``z_gen``).
    ``kwargs`` go to :func:`dsr.evaluation.evaluate_ensemble` (``n_trajectories``, ``pe_steps``,
    ``lyap_steps``, ...).
    """
    from dsr.dynamics import fixed_points_and_cycles
    from dsr.ensemble import load_ensemble
    from dsr.evaluation import SubjectData, evaluate_run

    torch.set_num_threads(max(1, int(threads)))
    x, r, meta = load_subject(extract_dir)
    fitted = load_ensemble(Path(fit_dir) / "model.pt")
    subject = fitted.subject_ids[0]
    rate = {"tr_s": meta.get("tr_s")} if meta.get("tr_s") else {"fs_hz": meta.get("fs_hz")}
    result = evaluate_run(fit_dir, {subject: SubjectData(x, r)}, out_dir, **rate, **kwargs)
    cycles = fixed_points_and_cycles(fitted.model, max_order=max_order, seed=kwargs.get("seed", 0))
    write_json(
        Path(out_dir) / "fixed_points.json",
        {"subject": subject, "max_order": max_order, "cycles": [c.to_dict() for c in cycles]},
    )
    x_gen, z_gen = free_runs(fitted, x, r)
    save_npz(Path(out_dir) / "trajectories.npz", x_gen=x_gen, z_gen=z_gen)
    return result


def run_subject_report(subject, extract_dir, fit_dir, eval_dir, html_path, figure_paths, **kw):
    """Subject HTML report; see :func:`dsr.report.write_subject_report`."""
    from dsr.report import write_subject_report

    return write_subject_report(
        subject, extract_dir, fit_dir, eval_dir, html_path, figure_paths, **kw
    )


def read_json(path) -> dict:
    """Read a JSON file (UTF-8)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_npz(path, **arrays) -> Path:
    """Write ``np.savez_compressed`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


__all__ = [
    "INPUT_KINDS",
    "discover_subjects",
    "free_runs",
    "load_subject",
    "read_json",
    "run_demo",
    "run_extract",
    "run_cohort",
    "run_evaluate",
    "run_fit",
    "run_subject_report",
    "save_npz",
    "split_ensemble",
    "subject_kernel",
    "write_json",
]
