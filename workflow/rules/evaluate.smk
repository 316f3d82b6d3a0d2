rule evaluate:
    input:
        model="results/{subject}/fit/model.pt",
        fit="results/{subject}/fit/fit.json",
        meta=series_meta(),
    output:
        metrics="results/{subject}/evaluate/metrics.tsv",
        summary="results/{subject}/evaluate/summary.json",
        lyapunov="results/{subject}/evaluate/lyapunov.npy",
        fixed_points="results/{subject}/evaluate/fixed_points.json",
        trajectories="results/{subject}/evaluate/trajectories.npz",
    log:
        "logs/evaluate/{subject}.log",
    conda:
        "../envs/dsr.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        # test_fraction reaches evaluation through the fitted model (the fit made the split)
        options={
            k: v
            for k, v in config["evaluate"].items()
            if k not in ("threads", "test_fraction")
        },
        seed=config["fit"]["seed"],
    script:
        "../scripts/evaluate.py"
