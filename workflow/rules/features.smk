# Stage 2: per-track features and piano-roll targets -> features/<dataset>/<features>/index.csv


rule extract_features:
    input:
        manifest=rules.prepare_dataset.output.manifest,
    output:
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
        checksums=f"{RESULTS}/features/{{dataset}}/{{features}}/checksums.json",
    log:
        f"{RESULTS}/logs/extract_features/{{dataset}}/{{features}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_features/{{dataset}}/{{features}}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    threads: stage_threads("extract_features")
    resources:
        **stage_resources("extract_features"),
    params:
        spec=features_spec,
        sample_rate=config["sample_rate"],
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt extract-features --spec {params.spec:q}"
        " --sample-rate {params.sample_rate} --manifest {input.manifest:q} --index {output.index:q}"
        " > {log:q} 2>&1"
