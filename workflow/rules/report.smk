# Stage 6: figures flagged for `snakemake --report`, each with a caption saying what to
# read in it.


for summary_plot in ("tradeoff", "scaling", "cost-scaling"):

    rule:
        name:
            f"plot_{summary_plot.replace('-', '_')}"
        input:
            summary=f"{RESULTS}/summary/summary.csv",
        output:
            report(
                f"{RESULTS}/plots/{summary_plot}.svg",
                caption=f"../report/{summary_plot}.rst",
                category="Trade-offs and scaling",
            ),
        params:
            kind=summary_plot,
        log:
            f"{RESULTS}/logs/plot/{summary_plot}.log",
        shell:
            "lowrank-amt plot {params.kind} --summary {input.summary:q} --out {output:q} > {log:q} 2>&1"


rule plot_losses:
    input:
        loss_inputs(),
    output:
        report(f"{RESULTS}/plots/losses.svg", caption="../report/losses.rst", category="Training"),
    params:
        losses=loss_arguments,
    log:
        f"{RESULTS}/logs/plot/losses.log",
    shell:
        "lowrank-amt plot-losses --loss {params.losses} --out {output:q} > {log:q} 2>&1"


rule plot_dictionary:
    input:
        model=f"{RESULTS}/models/{RUN}/model.npz",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        report(
            f"{RESULTS}/plots/dictionary/{RUN}.svg",
            caption="../report/dictionary.rst",
            category="Dictionaries",
            labels={"model": "{model}", "size": "{size}", "dataset": "{dataset}", "features": "{features}"},
        ),
    wildcard_constraints:
        model=choice(LOWRANK),
    log:
        f"{RESULTS}/logs/plot/dictionary/{RUN}.log",
    shell:
        "lowrank-amt plot-dictionary --model {input.model:q} --index {input.index:q}"
        " --title '{wildcards.model} ({wildcards.size})' --out {output:q} > {log:q} 2>&1"


rule plot_excerpt:
    input:
        activations=f"{RESULTS}/transcriptions/{RUN}/activations.npz",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        report(
            f"{RESULTS}/plots/excerpt/{RUN}.svg",
            caption="../report/excerpt.rst",
            category="Activations",
            labels={"model": "{model}", "size": "{size}", "dataset": "{dataset}", "features": "{features}"},
        ),
    wildcard_constraints:
        model=choice(LOWRANK + NETWORK),
    params:
        track=f"--track {config['evaluation']['excerpt_track']}" if config["evaluation"]["excerpt_track"] else "",
        seconds=config["evaluation"]["excerpt_seconds"],
    log:
        f"{RESULTS}/logs/plot/excerpt/{RUN}.log",
    shell:
        "lowrank-amt plot-excerpt --activations {input.activations:q} --index {input.index:q}"
        " {params.track} --seconds {params.seconds} --title '{wildcards.model} ({wildcards.size})'"
        " --out {output:q} > {log:q} 2>&1"
