# Stage 6: figures flagged for `snakemake --report`, each with a caption saying what to
# read in it.


for summary_plot in SUMMARY_FIGURES:

    rule:
        name:
            f"plot_{summary_plot.replace('-', '_')}"
        input:
            summary=rules.aggregate.output.summary,
        output:
            report(
                f"{RESULTS}/plots/{summary_plot}.svg",
                caption=f"../report/{summary_plot}.rst",
                category="Trade-offs and scaling",
            ),
        log:
            f"{RESULTS}/logs/plot/{summary_plot}.log",
        conda:
            "../../envs/lowrank-amt.yaml"
        params:
            kind=summary_plot,
        shell:
            "lowrank-amt plot {params.kind} --summary {input.summary:q} --out {output:q} > {log:q} 2>&1"


rule scaling_tables:
    input:
        summary=rules.aggregate.output.summary,
    output:
        f"{RESULTS}/summary/scaling.md",
    log:
        f"{RESULTS}/logs/scaling_tables.log",
    conda:
        "../../envs/lowrank-amt.yaml"
    shell:
        "lowrank-amt scaling-tables --summary {input.summary:q} --out {output:q} > {log:q} 2>&1"


rule plot_losses:
    input:
        loss_inputs(),
    output:
        report(
            f"{RESULTS}/plots/losses.svg",
            caption="../report/losses.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/plot/losses.log",
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        losses=loss_arguments,
    shell:
        "lowrank-amt plot-losses --loss {params.losses} --out {output:q} > {log:q} 2>&1"


rule plot_velocity:
    input:
        velocity_inputs(),
    output:
        report(
            f"{RESULTS}/plots/velocity.svg",
            caption="../report/velocity.rst",
            category="Decoding",
        ),
    log:
        f"{RESULTS}/logs/plot/velocity.log",
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        decodings=velocity_arguments,
    shell:
        "lowrank-amt plot-velocity --decoding {params.decodings} --out {output:q} > {log:q} 2>&1"


rule plot_dictionary:
    input:
        model=rules.train_model.output.model,
        index=rules.extract_features.output.index,
    output:
        report(
            f"{RESULTS}/plots/dictionary/{RUN}.svg",
            caption="../report/dictionary.rst",
            category="Dictionaries",
            labels={
                "model": "{model}",
                "size": "{size}",
                "dataset": "{dataset}",
                "features": "{features}",
            },
        ),
    log:
        f"{RESULTS}/logs/plot/dictionary/{RUN}.log",
    wildcard_constraints:
        model=choice(WITH_DICTIONARY),
    conda:
        "../../envs/lowrank-amt.yaml"
    shell:
        "lowrank-amt plot-dictionary --model {input.model:q} --index {input.index:q}"
        " --title '{wildcards.model} ({wildcards.size})' --out {output:q} > {log:q} 2>&1"


rule plot_excerpt:
    input:
        activations=rules.activations.output.activations,
        index=rules.extract_features.output.index,
    output:
        report(
            f"{RESULTS}/plots/excerpt/{RUN}.svg",
            caption="../report/excerpt.rst",
            category="Activations",
            labels={
                "model": "{model}",
                "size": "{size}",
                "dataset": "{dataset}",
                "features": "{features}",
            },
        ),
    log:
        f"{RESULTS}/logs/plot/excerpt/{RUN}.log",
    wildcard_constraints:
        model=choice(ON_FEATURES),
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        track=excerpt_track,
        seconds=config["evaluation"]["excerpt_seconds"],
    shell:
        "lowrank-amt plot-excerpt --activations {input.activations:q} --index {input.index:q}"
        " {params.track} --seconds {params.seconds} --title '{wildcards.model} ({wildcards.size})'"
        " --out {output:q} > {log:q} 2>&1"
