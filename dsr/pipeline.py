"""Per-stage functions behind the Snakemake workflow (``workflow/scripts/*.py`` call one each).

Every function takes plain paths and values (the workflow's ``params:``), writes its outputs
atomically and returns what it wrote. Nothing here imports snakemake.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from dsr._validation import check_choice
from dsr.atomic import write_json, write_npz, write_text
from dsr.errors import DsrInputError

log = logging.getLogger(__name__)

# torch, nilearn (dsr.io), matplotlib (dsr.report) and scipy (kernels) are imported by the stages
# that use them: every job and every Snakemake start-up imports this module (5-8 s with them).


def run_cohort(*args, **kwargs):
    """The cohort stage: ``dsr.report.cohort.run_cohort``."""
    from dsr.report.cohort import run_cohort as run

    return run(*args, **kwargs)


def run_demo(out_dir, subjects: list[str], **kwargs) -> Path:
    """Write the synthetic demo cohort (``dsr.synthetic.fmriprep_demo.write_demo_cohort``) for ``subjects``."""
    from dsr.synthetic.fmriprep_demo import write_demo_cohort

    expected = [f"sub-{i + 1:02d}" for i in range(len(subjects))]
    if list(subjects) != expected:
        raise DsrInputError(f"demo subjects must be {expected}; got {subjects}")
    return write_demo_cohort(out_dir, n_subjects=len(subjects), **kwargs)


def _fmriprep_subjects(root: Path, task=None, space=None) -> list[str]:
    from dsr.io import find_fmriprep_runs

    return [_subject_label(r.subject) for r in find_fmriprep_runs(root, task=task, space=space)]


def _folder_subjects(root: Path, **_) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _file_subjects(suffix: str):
    return lambda root, **_: [p.stem for p in root.glob(f"*.{suffix}")]


SUBJECT_FINDERS = {
    "fmriprep": _fmriprep_subjects,  # sub-* with a matching preprocessed BOLD run
    "suite2p": _folder_subjects,  # one suite2p output folder per subject
    "nwb": _file_subjects("nwb"),  # <subject>.nwb
    "npy": _file_subjects("npy"),  # <subject>.npy, (T, N)
}


def discover_subjects(kind: str, input_dir, *, task=None, space=None) -> list[str]:
    """Subject ids found in an input folder of kind ``kind`` (see ``SUBJECT_FINDERS``), sorted."""
    check_choice("input.kind", kind, SUBJECT_FINDERS)
    root = Path(input_dir)
    if not root.is_dir():
        raise DsrInputError(f"input folder {root} does not exist")
    return sorted(set(SUBJECT_FINDERS[kind](root, task=task, space=space)))


def _subject_label(subject: str) -> str:
    return subject if subject.startswith("sub-") else f"sub-{subject}"


def _extract_fmriprep(root: Path, subject: str, options: dict):
    from dsr.io import extract_fmriprep_subject, find_fmriprep_runs

    runs = find_fmriprep_runs(
        root, task=options.get("task"), space=options.get("space"), subjects=[subject]
    )
    if len(runs) > 1:
        log.warning("%s: %d runs found; using the first, %s", subject, len(runs), runs[0])
    strategy = options.get("confounds_strategy")
    return extract_fmriprep_subject(
        runs[0],
        options["atlas"],
        options.get("labels"),
        tr_s=options.get("tr_s"),
        confounds_strategy=tuple(strategy) if strategy else None,
        confounds_mode=options.get("confounds_mode", "regress"),
        high_pass=options.get("high_pass_hz"),
        low_pass=options.get("low_pass_hz"),
    )


def _extract_calcium(fmt: str, path_of):
    def extract(root: Path, subject: str, options: dict):
        from dsr.io import extract_calcium

        return extract_calcium(
            path_of(root, subject),
            fs_hz=options.get("fs_hz"),
            fmt=fmt,
            n_groups=options.get("n_groups"),
            subject=subject,
        )

    return extract


def _extract_npy(root: Path, subject: str, options: dict):
    from dsr.io import extract_array

    fs_hz = options.get("fs_hz")
    tr_s = None if fs_hz else options.get("tr_s")
    return extract_array(root / f"{subject}.npy", fs_hz=fs_hz, tr_s=tr_s, subject=subject)


EXTRACTORS = {
    "demo": _extract_fmriprep,  # the generated cohort is read as fMRIPrep derivatives
    "fmriprep": _extract_fmriprep,
    "suite2p": _extract_calcium("suite2p", lambda root, subject: root / subject),
    "nwb": _extract_calcium("nwb", lambda root, subject: root / f"{subject}.nwb"),
    "npy": _extract_npy,
}
INPUT_KINDS = tuple(EXTRACTORS)


def run_extract(kind: str, input_dir, subject: str, out_dir, **options) -> Path:
    """Extract one subject's ``(T, N)`` series into ``out_dir`` (timeseries, confounds, meta).

    Parameters
    ----------
    kind : {"demo", "fmriprep", "suite2p", "nwb", "npy"}
        Input kind, see ``EXTRACTORS``.
    input_dir : path
        Input folder (``sub-*/func`` tree, one suite2p folder or file per subject).
    subject : str
    out_dir : path
    **options
        ``atlas``, ``labels``, ``task``, ``space``, ``tr_s``, ``fs_hz``, ``confounds_strategy``,
        ``confounds_mode``, ``high_pass_hz``, ``low_pass_hz``, ``n_groups``.
    """
    from dsr.io import save_extraction

    check_choice("input.kind", kind, EXTRACTORS)
    save_extraction(EXTRACTORS[kind](Path(input_dir), subject, options), out_dir)
    return Path(out_dir)


def run_align(extract_dirs: list, out_dirs: list, table_path) -> list[Path]:
    """Give every subject the regions all subjects have (``extract.align_regions``).

    Regions are matched by atlas id (``dsr.io.align_regions``); one that is empty in any subject
    (outside its brain mask or field of view) is dropped from all. Writes each subject's aligned
    series to ``out_dirs[s]`` and ``dsr.io.region_table`` to ``table_path`` (TSV).
    """
    from dsr.io import align_regions, load_extraction, region_table, save_extraction

    aligned, report = align_regions([load_extraction(d) for d in extract_dirs])
    table = region_table(report)
    write_text(table_path, table.to_csv(sep="\t", index=False))
    log.info("regions (kept: in every subject; missing_in: who lacks them):\n%s", table)
    for res, out in zip(aligned, out_dirs, strict=True):
        save_extraction(res, out)
    return [Path(o) for o in out_dirs]


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
    hierarchical: dict | None = None,
) -> list[Path]:
    """Fit ``n_restarts`` models per subject as ONE ensemble and write each subject's fit folder.

    With several subjects (``fit.batch_subjects``) the joint ensemble is also saved to
    ``cohort_dir/model.pt`` and then split: ``out_dirs[s]`` gets subject s's models only
    (``model.pt``, ``fit.json``, ``loss.tsv``). All subjects need the same N and sampling unit.
    ``hierarchical`` (``fit.hierarchical``, when ``enabled``): one hierarchical cohort model
    instead (``dsr.training.hierarchical``); ``cohort_dir`` also gets ``features.npy`` and
    ``hierarchical.pt``, each subject's ``fit.json`` its features per restart.
    """
    import torch

    from dsr.cli import write_fit_outputs
    from dsr.io import check_no_empty_regions, load_extraction
    from dsr.signal.kernels import subject_kernel
    from dsr.training.ensemble import save_ensemble
    from dsr.training.loop import TrainingConfig, fit_ensemble

    torch.set_num_threads(max(1, int(threads)))
    loaded = [load_extraction(d) for d in extract_dirs]
    for extracted, d, subject in zip(loaded, extract_dirs, subjects, strict=True):
        check_no_empty_regions(extracted, d, subject)
    metas = [e.meta for e in loaded]
    units = {(m.get("tr_s"), m.get("fs_hz")) for m in metas}
    if len(units) > 1:
        raise DsrInputError(f"batched subjects differ in TR / sampling rate: {sorted(units)}")
    confounds = [e.confounds for e in loaded]
    has_r = [r is not None for r in confounds]
    if any(has_r) and not all(has_r):
        raise DsrInputError("some subjects have nuisance regressors and some do not")
    fit, hfit = fit_ensemble, None
    if hierarchical and hierarchical.get("enabled"):
        from dsr.training.hierarchical import HierarchicalConfig, fit_hierarchical

        options = {k: v for k, v in hierarchical.items() if k != "enabled"}
        fit = functools.partial(fit_hierarchical, hierarchical=HierarchicalConfig(**options))
    fitted = fit(
        [e.timeseries for e in loaded],
        subject_kernel(metas[0], training.get("decoder", "convolved"), tau_s),
        confounds=confounds if all(has_r) else None,
        subject_ids=subjects,
        n_restarts=n_restarts,
        config=TrainingConfig(**training),
        seed=seed,
        device=device,
        checkpoint_dir=checkpoint_dir,
    )
    if fit is not fit_ensemble:
        hfit, fitted = fitted, fitted.ensemble
    if cohort_dir is not None:
        save_ensemble(fitted, Path(cohort_dir) / "model.pt")
        write_fit_outputs(fitted, Path(cohort_dir))
        if hfit is not None:
            from dsr.training.hierarchical import save_hierarchical

            save_hierarchical(hfit, cohort_dir)
    for s, out in enumerate(out_dirs):
        part = fitted.for_subject(subjects[s]) if len(subjects) > 1 else fitted
        save_ensemble(part, Path(out) / "model.pt")
        rate = {"tr_s": metas[s].get("tr_s"), "fs_hz": metas[s].get("fs_hz")}
        extra = {"data": str(extract_dirs[s]), **rate}
        if hfit is not None:  # this subject's features, one row per restart
            extra["features"] = hfit.features[:, s].tolist()
        write_fit_outputs(part, Path(out), extra=extra)
    return [Path(o) for o in out_dirs]


def run_evaluate(fit_dir, extract_dir, out_dir, *, max_order: int = 2, threads: int = 1, **kwargs):
    """Evaluate one subject's ensemble and write metrics, spectra, fixed points and free runs.

    Writes ``metrics.tsv`` (one row per model), ``summary.json``, ``lyapunov.npy`` (E, M) via
    :func:`dsr.analysis.evaluation.evaluate_run`, plus ``fixed_points.json`` (cycles up to ``max_order``
    with eigenvalues and stability) and ``trajectories.npz`` (``x_gen`` (E, T, N), ``z_gen``).
    ``kwargs`` go to :func:`dsr.analysis.evaluation.evaluate_ensemble` (``n_trajectories``, ``pe_steps``,
    ``lyap_steps``, ...).
    """
    import torch

    from dsr.analysis.evaluation import SubjectData, evaluate_run
    from dsr.analysis.fixed_points import fixed_points_and_cycles, search_method
    from dsr.analysis.free_runs import free_runs
    from dsr.io import load_extraction
    from dsr.training.ensemble import load_ensemble

    torch.set_num_threads(max(1, int(threads)))
    extracted = load_extraction(extract_dir)
    x, r, meta = extracted.timeseries, extracted.confounds, extracted.meta
    fitted = load_ensemble(Path(fit_dir) / "model.pt")
    subject = fitted.subject_ids[0]
    rate = {"tr_s": meta.get("tr_s")} if meta.get("tr_s") else {"fs_hz": meta.get("fs_hz")}
    result = evaluate_run(fit_dir, {subject: SubjectData(x, r)}, out_dir, **rate, **kwargs)
    cycles = fixed_points_and_cycles(fitted.model, max_order=max_order, seed=kwargs.get("seed", 0))
    write_json(
        Path(out_dir) / "fixed_points.json",
        {
            "subject": subject,
            "max_order": max_order,
            "method": search_method(fitted.model),  # "not searched": no exact solver for the map
            "cycles": [c.to_dict() for c in cycles],
        },
    )
    x_gen, z_gen = free_runs(fitted, x, r)
    write_npz(Path(out_dir) / "trajectories.npz", x_gen=x_gen, z_gen=z_gen)
    return result


def run_subject_report(subject, extract_dir, fit_dir, eval_dir, html_path, figure_paths, **kw):
    """Subject HTML report; see :func:`dsr.report.write_subject_report`."""
    from dsr.report import write_subject_report

    return write_subject_report(
        subject, extract_dir, fit_dir, eval_dir, html_path, figure_paths, **kw
    )
