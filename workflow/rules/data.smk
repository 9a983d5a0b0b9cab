# Stage 1: datasets -> <results>/<study>/data/<dataset>/manifest.csv


rule prepare_synthetic:
    output:
        manifest=f"{RESULTS}/data/{{dataset}}/manifest.csv",
    params:
        spec=dataset_spec,
        sample_rate=config["sample_rate"],
    log:
        f"{RESULTS}/logs/prepare_synthetic/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_synthetic/{{dataset}}.tsv"
    threads: workflow.cores
    shell:
        "lowrank-amt prepare-synthetic --spec {params.spec:q} --sample-rate {params.sample_rate}"
        " --manifest {output.manifest:q} --jobs {threads} > {log:q} 2>&1"
