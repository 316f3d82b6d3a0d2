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
