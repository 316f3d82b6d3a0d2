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


rule subject_report:
    input:
        meta="results/{subject}/extract/meta.json",
        fit="results/{subject}/fit/fit.json",
        metrics="results/{subject}/evaluate/metrics.tsv",
        fixed_points="results/{subject}/evaluate/fixed_points.json",
        trajectories="results/{subject}/evaluate/trajectories.npz",
        truth=get_truth,
    output:
        html="results/{subject}/report.html",
        data=subject_figure("data"),
        connectivity=subject_figure("connectivity"),
        loss=subject_figure("loss"),
        trajectories=subject_figure("trajectories"),
        state_space=subject_figure("state_space"),
        spectra=subject_figure("spectra"),
        lyapunov=subject_figure("lyapunov"),
        fixed_points=subject_figure("fixed_points"),
    log:
        "logs/report/{subject}.log",
    params:
        figures=list(FIGURE_CATEGORIES),
        n_show=config["report"]["n_show"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/subject_report.py"
