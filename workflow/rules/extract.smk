rule extract:
    input:
        unpack(get_extract_input),
    output:
        timeseries="results/{subject}/extract/timeseries.npy",
        confounds="results/{subject}/extract/confounds.npy",
        meta="results/{subject}/extract/meta.json",
    log:
        "logs/extract/{subject}.log",
    conda:
        "../envs/dsr.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        kind=INPUT["kind"],
        input_dir=get_input_dir(),
        options=get_extract_params(),
    script:
        "../scripts/extract.py"


if is_aligned():

    # One job: needs every extraction, so adding a subject re-runs every fit.
    rule align_regions:
        input:
            expand("results/{subject}/extract/meta.json", subject=SUBJECTS),
        output:
            series=expand(
                "results/{subject}/aligned/{file}",
                subject=SUBJECTS,
                file=["timeseries.npy", "confounds.npy", "meta.json"],
            ),
            table="results/cohort/regions.tsv",
        log:
            "logs/extract/align_regions.log",
        conda:
            "../envs/dsr.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        script:
            "../scripts/align.py"
