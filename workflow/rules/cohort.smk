rule cohort:
    input:
        meta=expand(series_meta(), subject=SUBJECTS),
        metrics=expand("results/{subject}/evaluate/metrics.tsv", subject=SUBJECTS),
        trajectories=expand(
            "results/{subject}/evaluate/trajectories.npz", subject=SUBJECTS
        ),
        reports=expand("results/{subject}/report.html", subject=SUBJECTS),
        truths=(
            expand(f"{DEMO_DIR}/ground_truth/{{subject}}.json", subject=SUBJECTS)
            if is_demo()
            else []
        ),
        features=(
            ["results/cohort_fit/features.npy", "results/cohort_fit/model.pt"]
            if is_hierarchical()
            else []
        ),
    output:
        summary="results/cohort/summary.tsv",
        dissimilarity="results/cohort/dissimilarity.tsv",
        embedding="results/cohort/embedding.tsv",
        html="results/cohort/report.html",
        lam=report(
            "results/cohort/figures/lambda.png",
            caption="../report/cohort_lambda.rst",
            category="5 Cohort",
        ),
        dissimilarity_png=report(
            "results/cohort/figures/dissimilarity.png",
            caption="../report/cohort_dissimilarity.rst",
            category="5 Cohort",
        ),
        embedding_png=report(
            "results/cohort/figures/embedding.png",
            caption="../report/cohort_embedding.rst",
            category="5 Cohort",
        ),
        features=(
            [
                "results/cohort/features.tsv",
                report(
                    "results/cohort/figures/features.png",
                    caption="../report/cohort_features.rst",
                    category="5 Cohort",
                ),
            ]
            if is_hierarchical()
            else []
        ),
    log:
        "logs/cohort/cohort.log",
    conda:
        "../envs/dsr.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        subjects=SUBJECTS,
        n_clusters=config["cohort"]["n_clusters"],
        n_show=config["report"]["n_show"],
        subject_sheet=config["input"]["subject_sheet"],
    script:
        "../scripts/cohort.py"
