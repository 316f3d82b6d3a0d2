FIT_FILES = ["model.pt", "fit.json", "loss.tsv"]
# a hierarchical cohort fit also writes the subject features and the cohort model itself
COHORT_FIT_FILES = FIT_FILES + (
    ["features.npy", "hierarchical.pt"] if is_hierarchical() else []
)

if config["fit"]["batch_subjects"] or is_hierarchical():

    # One job, one ensemble of subjects x restarts models (or one hierarchical cohort model);
    # split into per-subject folders.
    rule fit_cohort:
        input:
            expand(series_meta(), subject=SUBJECTS),
        output:
            cohort=expand("results/cohort_fit/{file}", file=COHORT_FIT_FILES),
            subjects=expand(
                "results/{subject}/fit/{file}", subject=SUBJECTS, file=FIT_FILES
            ),
        log:
            "logs/fit/cohort.log",
        conda:
            "../envs/dsr.yaml"
        threads: config["fit"]["threads"]
        resources:
            gpu=config["fit"]["gpu"],
            mem_mb=config["fit"]["mem_mb"],
            runtime=config["fit"]["runtime_min"],
        params:
            subjects=SUBJECTS,
            training=get_training_params(),
            n_restarts=config["fit"]["n_restarts"],
            seed=config["fit"]["seed"],
            device=config["fit"]["device"],
            tau_s=config["input"]["tau_s"],
            checkpoint_dir="checkpoints/cohort",
            hierarchical=config["fit"]["hierarchical"],
        script:
            "../scripts/fit.py"

else:

    rule fit:
        input:
            series_meta(),
        output:
            expand("results/{{subject}}/fit/{file}", file=FIT_FILES),
        log:
            "logs/fit/{subject}.log",
        conda:
            "../envs/dsr.yaml"
        threads: config["fit"]["threads"]
        resources:
            gpu=config["fit"]["gpu"],
            mem_mb=config["fit"]["mem_mb"],
            runtime=config["fit"]["runtime_min"],
        params:
            subjects=lambda wildcards: [wildcards.subject],
            training=get_training_params(),
            n_restarts=config["fit"]["n_restarts"],
            seed=config["fit"]["seed"],
            device=config["fit"]["device"],
            tau_s=config["input"]["tau_s"],
            checkpoint_dir="checkpoints/{subject}",
        script:
            "../scripts/fit.py"
