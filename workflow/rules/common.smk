import os
import re

import pandas as pd
from snakemake.utils import validate

from dsr.pipeline import discover_subjects

validate(config, schema="../schemas/config.schema.yaml")

INPUT = config["input"]
DEMO_DIR = "results/demo"
DEMO_STEM = (
    "{subject}/func/{subject}_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold"
)


def is_demo():
    return INPUT["kind"] == "demo"


def check_input():
    """Config checks the schema cannot express; fail at parse time, naming the key."""
    if is_demo():
        return
    if not INPUT["dir"] or not os.path.isdir(INPUT["dir"]):
        raise ValueError(
            f"config key 'input.dir' must be an existing folder for input.kind "
            f"'{INPUT['kind']}'; got {INPUT['dir']!r}"
        )
    if INPUT["kind"] == "fmriprep" and not os.path.isfile(INPUT["atlas"]):
        raise ValueError(
            f"config key 'input.atlas' must be an existing NIfTI file; got {INPUT['atlas']!r}"
        )
    if INPUT["kind"] == "npy" and (INPUT["tr_s"] is None) == (INPUT["fs_hz"] is None):
        raise ValueError(
            "config keys 'input.tr_s' / 'input.fs_hz': give exactly one for npy"
        )


def get_subjects():
    """Demo: sub-01..sub-NN; else the subject sheet if given, else discovery in input.dir."""
    if is_demo():
        return [f"sub-{i + 1:02d}" for i in range(config["demo"]["n_subjects"])]
    if INPUT["subject_sheet"]:
        sheet = pd.read_csv(INPUT["subject_sheet"], sep="\t", dtype=str)
        validate(sheet, schema="../schemas/subjects.schema.yaml")
        return list(sheet["subject"])
    found = discover_subjects(
        INPUT["kind"], INPUT["dir"], task=INPUT["task"], space=INPUT["space"]
    )
    if not found:
        raise ValueError(
            f"config key 'input.dir': no subjects found in {INPUT['dir']!r}"
        )
    return found


check_input()
SUBJECTS = get_subjects()


wildcard_constraints:
    subject="|".join(map(re.escape, SUBJECTS)),


def get_input_dir():
    return DEMO_DIR if is_demo() else INPUT["dir"]


def get_atlas():
    """Atlas image and labels TSV (the demo's own atlas for the demo)."""
    if is_demo():
        return {
            "atlas": f"{DEMO_DIR}/atlas/atlas-demo_dseg.nii.gz",
            "labels": f"{DEMO_DIR}/atlas/atlas-demo_dseg.tsv",
        }
    return {"atlas": INPUT["atlas"], "labels": INPUT["labels"] or None}


def get_extract_input(wildcards):
    """Files a subject's extraction reads (so Snakemake orders demo -> extract)."""
    if is_demo():
        return {
            "data": f"{DEMO_DIR}/{DEMO_STEM}.nii.gz".format(subject=wildcards.subject),
            **get_atlas(),
        }
    kind, root = INPUT["kind"], INPUT["dir"]
    suffix = {"nwb": ".nwb", "npy": ".npy"}.get(kind, "")
    data = f"{root}/{wildcards.subject}{suffix}"  # the subject's folder or file
    files = {"data": data}
    if kind == "fmriprep":
        files["atlas"] = INPUT["atlas"]
    return files


def get_extract_params():
    """Extraction options passed to dsr.pipeline.run_extract."""
    atlas = get_atlas()
    return {
        "atlas": atlas["atlas"],
        "labels": atlas["labels"],
        "task": INPUT["task"],
        "space": INPUT["space"],
        "tr_s": INPUT["tr_s"],
        "fs_hz": INPUT["fs_hz"],
        **{k: v for k, v in config["extract"].items() if k != "align_regions"},
    }


def is_aligned():
    """extract.align_regions: every subject gets the regions all subjects have."""
    return config["extract"]["align_regions"]


def series_meta(subject="{subject}"):
    """meta.json of the series a subject is fitted and scored on: its extraction or, with
    extract.align_regions, its copy with the cohort's common regions (rule align_regions).
    """
    return f"results/{subject}/{'aligned' if is_aligned() else 'extract'}/meta.json"


def get_training_params():
    """TrainingConfig fields from config['fit'], plus the held-out fraction (evaluate)."""
    keys = (
        "model decoder latent_dim hidden_dim alpha gtf epochs batches_per_epoch batch_size seq_len "
        "lr_start lr_end noise_sd deconv_weight grad_clip noise_floor cut_left cut_right "
        "checkpoint_every"
    )
    params = {k: config["fit"][k] for k in keys.split()}
    return params | {"test_fraction": config["evaluate"]["test_fraction"]}


def is_hierarchical():
    """fit.hierarchical.enabled: one hierarchical cohort model instead of independent fits."""
    return config["fit"]["hierarchical"]["enabled"]


def get_truth(wildcards):
    """Ground-truth JSON of a demo subject (empty for real data)."""
    if is_demo():
        return f"{DEMO_DIR}/ground_truth/{wildcards.subject}.json"
    return []


FIGURE_CATEGORIES = {
    "data": "1 Data",
    "connectivity": "1 Data",
    "loss": "2 Training",
    "trajectories": "3 Models",
    "state_space": "3 Models",
    "spectra": "3 Models",
    "lyapunov": "4 Dynamics",
    "fixed_points": "4 Dynamics",
}


def subject_figure(name):
    return report(
        f"results/{{subject}}/figures/{name}.png",
        caption=f"../report/{name}.rst",
        category=FIGURE_CATEGORIES[name],
        subcategory="{subject}",
    )


def get_final_outputs():
    outputs = expand("results/{subject}/report.html", subject=SUBJECTS) + [
        "results/cohort/summary.tsv",
        "results/cohort/dissimilarity.tsv",
        "results/cohort/embedding.tsv",
        "results/cohort/report.html",
    ]
    return outputs + (["results/cohort/features.tsv"] if is_hierarchical() else [])
