"""The Snakemake workflow end to end on a tiny demo config (2 subjects, few epochs, short series)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
TINY = {
    "demo": {"n_subjects": 2, "n_volumes": 200, "n_regions": 4},
    "fit": {
        "n_restarts": 3,
        "epochs": 3,
        "batches_per_epoch": 2,
        "batch_size": 4,
        "seq_len": 40,
        "hidden_dim": 10,
        "checkpoint_every": 0,
    },
    "evaluate": {"n_trajectories": 3, "lyap_steps": 200, "lyap_transient": 50, "max_order": 1},
    "report": {"n_show": 2},
}
SUBJECTS = ["sub-01", "sub-02"]
STAGE_FILES = {
    "extract": ["timeseries.npy", "confounds.npy", "meta.json"],
    "fit": ["model.pt", "fit.json", "loss.tsv"],
    "evaluate": [
        "metrics.tsv",
        "summary.json",
        "lyapunov.npy",
        "fixed_points.json",
        "trajectories.npz",
    ],
}
COHORT_FILES = ["summary.tsv", "dissimilarity.tsv", "embedding.tsv", "report.html"]


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake`` on the repo's Snakefile in ``workdir`` with ``config``."""
    cfg = workdir / "test-config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir)]
    cmd += ["--configfile", str(cfg), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "a":
            self.links.append(attrs.get("href", ""))


def parse_html(path: Path) -> _Images:
    parser = _Images()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("workflow")
    proc = snakemake(work, TINY, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


def test_every_output_exists(run_dir):
    for subject in SUBJECTS:
        for stage, files in STAGE_FILES.items():
            for name in files:
                assert (run_dir / "results" / subject / stage / name).is_file(), (subject, name)
        assert (run_dir / "logs" / "fit" / f"{subject}.log").is_file()
    for name in COHORT_FILES:
        assert (run_dir / "results" / "cohort" / name).is_file()
    metrics = pd.read_csv(run_dir / "results/sub-01/evaluate/metrics.tsv", sep="\t")
    assert len(metrics) == TINY["fit"]["n_restarts"]  # one row per model
    assert {"dstsp_train", "dh_train", "lambda_max_per_s", "selected"} <= set(metrics.columns)
    ok = metrics["status"] == "ok"  # the default scores on a held-out part: finite for every model
    for col in ("dstsp_test", "dh_test", "pe10_test"):
        assert np.isfinite(metrics.loc[ok, col]).all(), col
    assert (metrics["selected_on"] == "test").all() and "escaped" in metrics
    report = (run_dir / "results/sub-01/report.html").read_text()
    assert "held-out D_stsp" in report and "Floor" in report
    assert "non-stationarity screen" in report and "r(moving variance, time)" in report
    summary = pd.read_csv(run_dir / "results/cohort/summary.tsv", sep="\t")
    assert summary["nonstationarity_p"].between(0, 1).all()
    emb = pd.read_csv(run_dir / "results/cohort/embedding.tsv", sep="\t")
    assert list(emb["subject"]) == SUBJECTS


@pytest.mark.parametrize("page", ["sub-01/report.html", "sub-02/report.html", "cohort/report.html"])
def test_html_reports_embed_figures(run_dir, page):
    parsed = parse_html(run_dir / "results" / page)
    embedded = [s for s in parsed.images if s.startswith("data:image/png;base64,")]
    assert len(embedded) == len(parsed.images) >= 3
    assert all(len(s) > 1000 for s in embedded)
    if page.startswith("cohort"):
        assert parsed.links == ["../sub-01/report.html", "../sub-02/report.html"]


def test_second_run_has_nothing_to_do(run_dir):
    proc = snakemake(run_dir, TINY, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_snakemake_report(run_dir):
    proc = snakemake(run_dir, TINY, "--report", str(run_dir / "report.zip"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "report.zip").stat().st_size > 10_000


def test_batched_fit_plans_one_fit_job(tmp_path):
    proc = snakemake(tmp_path, {**TINY, "fit": {**TINY["fit"], "batch_subjects": True}}, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"fit_cohort\s+1", proc.stdout)


@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="optional extra 'slurm' (snakemake-executor-plugin-slurm) not installed",
)
def test_slurm_profile_dry_run(tmp_path):
    profile = REPO / "workflow" / "profiles" / "slurm"
    proc = snakemake(tmp_path, TINY, "--profile", str(profile), "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"fit\s+2", proc.stdout)


@pytest.mark.parametrize(
    ("config", "messages"),
    [
        ({"fit": {"decoder": "foo"}}, ["'foo' is not one of", "['fit']['properties']['decoder']"]),
        ({"input": {"tr_s": -1.0}}, ["minimum of 0", "['input']['properties']['tr_s']"]),
        ({"demo": {"tr_s": 0}}, ["['demo']['properties']['tr_s']"]),
        (
            {"input": {"kind": "fmriprep", "dir": "/no/such/folder"}},
            ["'input.dir' must be an existing folder"],
        ),
        ({"input": {"kind": "npy", "dir": "."}}, ["'input.tr_s' / 'input.fs_hz'"]),
        ({"fit": {"unknown_key": 1}}, ["Additional properties are not allowed", "unknown_key"]),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, config, messages):
    proc = snakemake(tmp_path, config, "--cores", "1")
    assert proc.returncode != 0
    for message in messages:
        assert message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()


def test_lint_and_format_are_clean():
    lint = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(SNAKEFILE)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert fmt.returncode == 0, fmt.stderr


def test_real_data_inputs_are_discovered(tmp_path):
    """npy input: one (T, N) file per subject in input.dir; the plan has one job per stage each."""
    data = tmp_path / "input"
    data.mkdir()
    for name in ("ratA", "ratB", "ratC"):
        np.save(data / f"{name}.npy", np.zeros((50, 3), np.float32))
    config = {"input": {"kind": "npy", "dir": str(data), "fs_hz": 10.0}}
    proc = snakemake(tmp_path, config, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"extract\s+3", proc.stdout) and "demo" not in proc.stdout
    assert "results/ratB/report.html" in proc.stdout


def test_subject_sheet_selects_subjects(tmp_path):
    data = tmp_path / "input"
    data.mkdir()
    for name in ("ratA", "ratB", "ratC"):
        np.save(data / f"{name}.npy", np.zeros((50, 3), np.float32))
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("subject\nratA\nratC\n")
    config = {"input": {"kind": "npy", "dir": str(data), "tr_s": 2.0, "subject_sheet": str(sheet)}}
    proc = snakemake(tmp_path, config, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"extract\s+2", proc.stdout) and "ratB" not in proc.stdout


@pytest.mark.parametrize("model", ["S4D", "selectiveSSM"])
def test_state_space_models_run_through_the_workflow(tmp_path, model):
    """A short fit of each state-space latent map, evaluated and reported for one subject:
    S4D's fixed point comes from one exact solve, the selective SSM's are reported not searched."""
    config = {**TINY, "fit": {**TINY["fit"], "model": model, "n_restarts": 2}}
    proc = snakemake(tmp_path, config, "--cores", "2", "results/sub-01/report.html")
    assert proc.returncode == 0, proc.stderr[-4000:]
    fp = yaml.safe_load((tmp_path / "results/sub-01/evaluate/fixed_points.json").read_text())
    html = (tmp_path / "results/sub-01/report.html").read_text(encoding="utf-8")
    metrics = pd.read_csv(tmp_path / "results/sub-01/evaluate/metrics.tsv", sep="\t")
    assert len(metrics) == 2 and np.isfinite(metrics["lambda_max"]).all()
    if model == "S4D":
        assert fp["method"] == "linear solve" and metrics["lambda_max"].lt(0).all()
        assert [(c["model"], c["period"], c["stable"]) for c in fp["cycles"]] == [
            (0, 1, True),
            (1, 1, True),
        ]
    else:
        assert fp["method"] == "not searched" and fp["cycles"] == []
        assert "were not searched: the selectiveSSM map" in html


def test_align_regions_drops_a_region_one_subject_lacks(tmp_path):
    """fMRIPrep input where sub-01's region 3 lies outside its brain mask: without
    extract.align_regions its fit stops naming the region and the fix; with it both subjects are
    fitted on the five regions they share, listed in results/cohort/regions.tsv."""
    import nibabel as nib

    from dsr.synthetic.fmriprep_demo import write_demo_cohort

    data = write_demo_cohort(
        tmp_path / "input", n_subjects=2, n_volumes=200, n_regions=6, grid=10,
        lyapunov_steps=500,
    )  # fmt: skip
    bold = next((data / "sub-01/func").glob("*desc-preproc_bold.nii.gz"))
    img = nib.load(bold)
    labels = np.asarray(nib.load(data / "atlas/atlas-demo_dseg.nii.gz").dataobj)
    values = np.asarray(img.dataobj).copy()
    values[labels == 3] = 0.0
    nib.save(nib.Nifti1Image(values, img.affine, img.header), bold)
    config = {
        **TINY,
        "input": {
            "kind": "fmriprep", "dir": str(data),
            "atlas": str(data / "atlas/atlas-demo_dseg.nii.gz"),
            "labels": str(data / "atlas/atlas-demo_dseg.tsv"),
        },
    }  # fmt: skip
    fits = [f"results/{s}/fit/fit.json" for s in SUBJECTS]
    proc = snakemake(tmp_path, config, "--cores", "2", *fits)
    assert proc.returncode != 0
    log = (tmp_path / "logs/fit/sub-01.log").read_text()
    assert "region(s) 3 (region03) are empty" in log and "extract.align_regions: true" in log
    config["extract"] = {"align_regions": True}
    proc = snakemake(tmp_path, config, "--cores", "2", *fits)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = pd.read_csv(tmp_path / "results/cohort/regions.tsv", sep="\t")
    assert table.loc[~table["kept"], "region_id"].tolist() == [3]
    for s in SUBJECTS:
        x = np.load(tmp_path / f"results/{s}/aligned/timeseries.npy")
        assert x.shape == (200, 5) and np.isfinite(x).all()
        assert np.load(tmp_path / f"results/{s}/extract/timeseries.npy").shape == (200, 6)
        fit = yaml.safe_load((tmp_path / f"results/{s}/fit/fit.json").read_text())
        assert fit["data"] == f"results/{s}/aligned"
