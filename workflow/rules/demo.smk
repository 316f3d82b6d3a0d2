if is_demo():

    rule demo:
        output:
            bold=expand(f"{DEMO_DIR}/{DEMO_STEM}.nii.gz", subject=SUBJECTS),
            truth=expand(f"{DEMO_DIR}/ground_truth/{{subject}}.json", subject=SUBJECTS),
            atlas=f"{DEMO_DIR}/atlas/atlas-demo_dseg.nii.gz",
            labels=f"{DEMO_DIR}/atlas/atlas-demo_dseg.tsv",
        log:
            "logs/demo/demo.log",
        conda:
            "../envs/dsr.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            subjects=SUBJECTS,
            n_volumes=config["demo"]["n_volumes"],
            n_regions=config["demo"]["n_regions"],
            tr_s=config["demo"]["tr_s"],
            rho_range=config["demo"]["rho_range"],
            seed=config["demo"]["seed"],
        script:
            "../scripts/demo.py"
