# lowrank-amt: the study as one DAG. Stages live in workflow/rules/, logic in src/lowrank_amt/.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line replaces the default study instead of merging
# into it (Snakemake merges by default, which would mix both studies' entries).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/transcribe.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Seconds of work each: on a cluster they run beside Snakemake instead of as Slurm jobs.
localrules:
    all,
    aggregate,
    plot_losses,
    plot_velocity,
    plot_tradeoff,
    plot_tradeoff_largest,
    plot_scaling,
    plot_cost_scaling,
    plot_compute,
    scaling_tables,


rule all:
    default_target: True
    input:
        final_outputs(),
