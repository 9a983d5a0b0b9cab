# Stage 5: per-track metrics (mir_eval), dictionary interpretability, then one tidy
# table over all runs.


rule evaluate:
    input:
        midi=rules.decode.output.midi,
        decoding=rules.decode.output.info,
        index=rules.extract_features.output.index,
        activations=oracle_inputs,
    output:
        per_track=f"{RESULTS}/metrics/{RUN}/per_track.csv",
    log:
        f"{RESULTS}/logs/evaluate/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{RUN}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        evaluation=as_json(config["evaluation"]),
        oracle=oracle_arguments,
    shell:
        "lowrank-amt evaluate --evaluation {params.evaluation:q} --midi-dir {input.midi:q}"
        " --index {input.index:q} --out {output.per_track:q} {params.oracle} > {log:q} 2>&1"


rule evaluate_on:
    input:
        midi=rules.decode_on.output.midi,
        index=test_index,
    output:
        per_track=f"{RESULTS}/metrics/{RUN}/on/{{test}}/per_track.csv",
    log:
        f"{RESULTS}/logs/evaluate_on/{RUN}/{{test}}.log",
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        evaluation=as_json(config["evaluation"]),
    shell:
        "lowrank-amt evaluate --evaluation {params.evaluation:q} --midi-dir {input.midi:q}"
        " --index {input.index:q} --out {output.per_track:q} > {log:q} 2>&1"


rule assess_dictionary:
    input:
        model=rules.train_model.output.model,
        index=rules.extract_features.output.index,
    output:
        scores=f"{RESULTS}/interpretability/{RUN}/interpretability.json",
        templates=f"{RESULTS}/interpretability/{RUN}/templates.csv",
    log:
        f"{RESULTS}/logs/assess_dictionary/{RUN}.log",
    wildcard_constraints:
        model=choice(WITH_DICTIONARY),
    conda:
        "../../envs/lowrank-amt.yaml"
    shell:
        "lowrank-amt assess-dictionary --model {input.model:q} --index {input.index:q}"
        " --out {output.scores:q} --templates {output.templates:q} > {log:q} 2>&1"


rule aggregate:
    input:
        aggregate_inputs(),
    output:
        results=report(
            f"{RESULTS}/summary/results.csv",
            caption="../report/results.rst",
            category="Results",
        ),
        summary=report(
            f"{RESULTS}/summary/summary.csv",
            caption="../report/summary.rst",
            category="Results",
        ),
        markdown=f"{RESULTS}/summary/summary.md",
        errors=f"{RESULTS}/summary/errors.md",
        html=report(
            f"{RESULTS}/summary/summary.html",
            caption="../report/summary.rst",
            category="Results",
        ),
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        runs=aggregate_runs_json,
        config_hash=STUDY_CONFIG_HASH,
    shell:
        "lowrank-amt aggregate --runs {params.runs:q} --config-hash {params.config_hash}"
        " --results {output.results:q} --summary {output.summary:q} --markdown {output.markdown:q}"
        " --html {output.html:q} --errors {output.errors:q} > {log:q} 2>&1"
