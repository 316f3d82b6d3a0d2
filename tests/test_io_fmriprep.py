import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dsr.errors import DsrInputError
from dsr.io import (
    align_regions,
    extract_fmriprep_subject,
    find_fmriprep_runs,
    load_extraction,
    save_extraction,
)
from dsr.io.screening import screen_nonstationarity
from dsr.pipeline import run_align, run_fit
from dsr.report.extraction import extraction_summary

MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def _atlas(root):
    return root / "atlas/atlas-demo_dseg.nii.gz", root / "atlas/atlas-demo_dseg.tsv"


def _corr(a, b):
    return np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])


def _motion_corr(x, conf_path):
    mot = pd.read_csv(conf_path, sep="\t")[MOTION].to_numpy()
    return np.mean([abs(np.corrcoef(x[:, i], mot[:, k])[0, 1]) for i in range(7) for k in range(6)])


def test_discovery_and_filters(demo_cohort):
    runs = find_fmriprep_runs(demo_cohort, task="rest", space="MNI152NLin2009cAsym")
    assert [r.subject for r in runs] == ["01", "02"]
    assert runs[0].confounds.is_file() and runs[0].sidecar.is_file()
    assert [r.subject for r in find_fmriprep_runs(demo_cohort, subjects=["sub-02"])] == ["02"]


def test_no_matching_bold_names_folder_and_filters(demo_cohort):
    with pytest.raises(DsrInputError, match=r"task-nback.*under .*demo"):
        find_fmriprep_runs(demo_cohort, task="nback")


def test_round_trip_recovers_planted_signals(demo_cohort):
    run = find_fmriprep_runs(demo_cohort)[0]
    atlas, labels = _atlas(demo_cohort)
    truth = np.load(demo_cohort / "ground_truth/sub-01_regions.npy")
    raw = extract_fmriprep_subject(run, atlas, labels, confounds_strategy=None)
    res = extract_fmriprep_subject(run, atlas, labels)  # motion + wm_csf + high_pass
    assert res.timeseries.shape == (300, 7) and res.timeseries.dtype == np.float32
    assert res.meta["tr_s"] == 1.4 and res.meta["region_names"][0] == "region01"
    assert res.meta["region_ids"] == list(range(1, 8)) and res.meta["empty_regions"] == []
    assert "cosine00" in res.meta["cleaning"]["confound_columns"]
    assert res.meta["cleaning"]["censored_volumes"] == []
    assert _corr(res.timeseries, truth).min() > 0.9
    # the planted motion effect is regressed out ...
    assert _motion_corr(res.timeseries, run.confounds) < 0.5 * _motion_corr(
        raw.timeseries, run.confounds
    )
    # ... and so is the planted drift: without the cosine high-pass the recovery is worse
    no_hp = extract_fmriprep_subject(run, atlas, labels, confounds_strategy=("motion", "wm_csf"))
    assert _corr(no_hp.timeseries, truth).mean() < _corr(res.timeseries, truth).mean() - 0.02


def test_nuisance_mode_keeps_confounds(demo_cohort):
    run = find_fmriprep_runs(demo_cohort)[0]
    res = extract_fmriprep_subject(run, *_atlas(demo_cohort), confounds_mode="nuisance")
    n_conf = len(res.meta["cleaning"]["nuisance_columns"])
    assert res.confounds.shape == (300, n_conf) and n_conf >= 8
    np.testing.assert_allclose(res.confounds.std(axis=0, ddof=1), 1.0, rtol=1e-4)


def test_save_and_load(demo_cohort, tmp_path):
    run = find_fmriprep_runs(demo_cohort)[0]
    res = extract_fmriprep_subject(run, *_atlas(demo_cohort), confounds_mode="nuisance")
    save_extraction(res, tmp_path / "out")
    meta = json.loads((tmp_path / "out/meta.json").read_text())
    for key in (
        "subject",
        "files",
        "tr_s",
        "region_ids",
        "region_names",
        "cleaning",
        "empty_regions",
        "nonstationarity",
        "warnings",
    ):
        assert key in meta
    back = load_extraction(tmp_path / "out")
    np.testing.assert_array_equal(back.timeseries, res.timeseries)
    assert back.confounds.shape == res.confounds.shape
    assert not list((tmp_path / "out").glob("*.tmp"))


@pytest.fixture
def subject_copy(demo_cohort, tmp_path):
    """A writable copy of sub-01 (plus the atlas) for corrupting."""
    shutil.copytree(demo_cohort / "sub-01", tmp_path / "sub-01")
    shutil.copytree(demo_cohort / "atlas", tmp_path / "atlas")
    return find_fmriprep_runs(tmp_path)[0], tmp_path


def test_missing_tr_is_an_error(subject_copy):
    run, root = subject_copy
    run.sidecar.write_text(json.dumps({"TaskName": "rest"}))
    with pytest.raises(DsrInputError, match=r"preproc_bold\.json: no positive RepetitionTime"):
        extract_fmriprep_subject(run, *_atlas(root))
    res = extract_fmriprep_subject(run, *_atlas(root), tr_s=2.0, confounds_strategy=None)
    assert res.meta["tr_s"] == 2.0


def test_confounds_length_mismatch_names_both_files(subject_copy):
    run, root = subject_copy
    table = pd.read_csv(run.confounds, sep="\t")
    table.iloc[:-5].to_csv(run.confounds, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(
        DsrInputError, match=r"confounds_timeseries\.tsv have 295 rows.*preproc_bold"
    ):
        extract_fmriprep_subject(run, *_atlas(root))


def test_atlas_outside_image_space(subject_copy):
    run, root = subject_copy
    atlas = nib.load(root / "atlas/atlas-demo_dseg.nii.gz")
    far = atlas.affine.copy()
    far[:3, 3] += 500.0
    nib.save(nib.Nifti1Image(np.asarray(atlas.dataobj), far), root / "far.nii.gz")
    with pytest.raises(DsrInputError, match=r"far\.nii\.gz does not overlap BOLD"):
        extract_fmriprep_subject(run, root / "far.nii.gz", confounds_strategy=None)


def test_atlas_on_other_grid_warns_and_records(subject_copy):
    run, root = subject_copy
    atlas = nib.load(root / "atlas/atlas-demo_dseg.nii.gz")
    shifted = atlas.affine.copy()
    shifted[:3, 3] += 4.0  # one voxel: region 7 partly leaves the field of view
    nib.save(nib.Nifti1Image(np.asarray(atlas.dataobj), shifted), root / "shift.nii.gz")
    with pytest.warns(UserWarning, match="nilearn resampled the atlas"):
        res = extract_fmriprep_subject(run, root / "shift.nii.gz", confounds_strategy=None)
    assert res.meta["atlas_resampled"] is True
    assert res.timeseries.shape == (300, 7)


def test_nan_only_region_is_an_error(subject_copy):
    run, root = subject_copy
    img = nib.load(run.bold)
    data = np.asarray(img.dataobj).copy()
    labels = np.asarray(nib.load(root / "atlas/atlas-demo_dseg.nii.gz").dataobj)
    data[labels == 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine, img.header), run.bold)
    with pytest.raises(
        DsrInputError, match=r"preproc_bold\.nii\.gz: region\(s\) \[3\] contain only NaN"
    ):
        extract_fmriprep_subject(run, *_atlas(root), confounds_strategy=None)


@pytest.fixture
def empty_region(subject_copy, demo_cohort):
    """sub-01 with region 5 outside its brain mask (all voxels 0), and sub-02 as written."""
    run, root = subject_copy
    img = nib.load(run.bold)
    data = np.asarray(img.dataobj).copy()
    labels = np.asarray(nib.load(root / "atlas/atlas-demo_dseg.nii.gz").dataobj)
    data[labels == 5] = 0.0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), run.bold)
    bad = extract_fmriprep_subject(run, *_atlas(root), confounds_strategy=None)
    good = extract_fmriprep_subject(
        find_fmriprep_runs(demo_cohort)[1], *_atlas(demo_cohort), confounds_strategy=None
    )
    return bad, good


def test_empty_region_reported_and_aligned(empty_region):
    bad, good = empty_region
    assert bad.meta["empty_regions"] == [5] and np.isnan(bad.timeseries[:, 4]).all()
    aligned, report = align_regions([bad, good])
    assert [r.timeseries.shape for r in aligned] == [(300, 6), (300, 6)]
    assert report["dropped"] == [{"region_id": 5, "region_name": "region05", "missing_in": ["01"]}]
    assert 5 not in aligned[1].meta["region_ids"]


def test_fit_names_the_empty_region_and_align_step_drops_it(empty_region, tmp_path):
    """The fit refuses an empty region with the fix; the workflow's align step applies it."""
    dirs = [tmp_path / "extract" / s for s in ("sub-01", "sub-02")]
    for res, d in zip(empty_region, dirs, strict=True):
        save_extraction(res, d)
    with pytest.raises(DsrInputError, match=r"sub-01: region\(s\) 5 \(region05\) are empty.*"
                       r"extract\.align_regions: true"):  # fmt: skip
        run_fit([dirs[0]], [tmp_path / "fit"], ["sub-01"], {"epochs": 1})
    assert not (tmp_path / "fit").exists()
    out = [tmp_path / "aligned" / s for s in ("sub-01", "sub-02")]
    run_align(dirs, out, tmp_path / "regions.tsv")
    table = pd.read_csv(tmp_path / "regions.tsv", sep="\t", dtype={"missing_in": str})
    assert table["kept"].tolist() == [True] * 6 + [False]
    assert table.iloc[-1][["region_id", "missing_in"]].tolist() == [5, "01"]
    for d, original in zip(out, empty_region, strict=True):
        got = load_extraction(d)
        assert got.timeseries.shape == (300, 6) and got.meta["empty_regions"] == []
        assert got.meta["region_ids"] == [1, 2, 3, 4, 6, 7]
        np.testing.assert_array_equal(got.timeseries, original.timeseries[:, [0, 1, 2, 3, 5, 6]])
        assert (d / "confounds.npy").is_file()  # the workflow's fixed output set
        summary = extraction_summary(got.meta, got.timeseries)  # the subject report's table
        assert summary["dropped for the cohort (extract.align_regions)"] == "region05 (empty in 01)"


def test_nonstationarity_screen_flags_a_drifting_subject(demo_cohort):
    """The screen is in meta.json; the subject report's table says which way it went."""
    run = find_fmriprep_runs(demo_cohort)[0]
    res = extract_fmriprep_subject(run, *_atlas(demo_cohort), confounds_strategy=None)
    screen = res.meta["nonstationarity"]
    assert screen["window"] == 40 and len(screen["region_corr"]) == 7
    ramp = np.linspace(0.2, 3.0, 300)[:, None].astype(np.float32)
    drift = res.timeseries * ramp
    flagged = screen_nonstationarity(drift)
    assert flagged["flagged"] and flagged["subject_corr"] > 0.5 and all(flagged["region_flag"])
    assert flagged["subject_p"] < 0.05  # few stationary surrogates come as close
    steady = screen_nonstationarity(np.random.default_rng(1).standard_normal((300, 7)))
    assert steady["subject_p"] > 0.05
    rows = [
        extraction_summary(dict(res.meta, nonstationarity=s), res.timeseries)[
            "non-stationarity screen"
        ]
        for s in (steady, flagged)
    ]
    assert rows[0].endswith("consistent with stationarity")
    assert rows[1].startswith("FLAGGED") and "region01, region02" in rows[1]
    assert rows[1].endswith(": a drifting variance")


def test_surrogate_p_is_calibrated_where_the_papers_rule_is_not():
    """Stationary white noise: the paper's |r| > 0.16 flags about half of the series, the
    surrogate test at 5 % about one in twenty; a variance ramp is caught by both."""
    noise = [
        screen_nonstationarity(np.random.default_rng(i).standard_normal((500, 6)))
        for i in range(60)
    ]
    assert np.mean([s["flagged"] for s in noise]) > 0.3
    assert np.mean([s["subject_p"] < 0.05 for s in noise]) < 0.12
    ramp = np.linspace(0.5, 2.0, 500)[:, None]
    drift = [
        screen_nonstationarity(np.random.default_rng(i).standard_normal((500, 6)) * ramp)
        for i in range(10)
    ]
    assert all(s["flagged"] and s["subject_p"] < 0.05 for s in drift)
