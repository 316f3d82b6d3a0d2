# dsr: dynamical system reconstruction from brain recordings, subject by subject and as a cohort.
# Stages: demo -> extract -> fit -> evaluate -> report -> cohort (see workflow/rules/).
# Run: snakemake --cores 2 (default config: the synthetic demo cohort, offline, < 10 min)
#      snakemake --profile workflow/profiles/slurm (cluster), snakemake --report report.zip


from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/scheduler.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cohort.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
