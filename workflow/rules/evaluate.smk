# Stage 5: per-track metrics (mir_eval), then one tidy table over all runs.


rule evaluate:
    input:
        midi=f"{RESULTS}/transcriptions/{RUN}/midi",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        per_track=f"{RESULTS}/metrics/{RUN}/per_track.csv",
    params:
        evaluation=as_json(config["evaluation"]),
    log:
        f"{RESULTS}/logs/evaluate/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{RUN}.tsv"
    shell:
        "lowrank-amt evaluate --evaluation {params.evaluation:q} --midi-dir {input.midi:q}"
        " --index {input.index:q} --out {output.per_track:q} > {log:q} 2>&1"


rule aggregate:
    input:
        **aggregate_inputs(),
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
    params:
        runs=aggregate_runs_json,
        config_hash=STUDY_CONFIG_HASH,
    log:
        f"{RESULTS}/logs/aggregate.log",
    shell:
        "lowrank-amt aggregate --runs {params.runs:q} --config-hash {params.config_hash}"
        " --results {output.results:q} --summary {output.summary:q} --markdown {output.markdown:q}"
        " > {log:q} 2>&1"
