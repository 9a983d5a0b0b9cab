# Stage 1: datasets -> <results>/<study>/data/<dataset>/manifest.csv


rule prepare_dataset:
    output:
        manifest=f"{RESULTS}/data/{{dataset}}/manifest.csv",
    log:
        f"{RESULTS}/logs/prepare_dataset/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_dataset/{{dataset}}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    threads: stage_threads("prepare_dataset")
    resources:
        **stage_resources("prepare_dataset"),
    params:
        spec=dataset_spec,
        sample_rate=config["sample_rate"],
    shell:
        "lowrank-amt prepare-dataset --spec {params.spec:q} --sample-rate {params.sample_rate}"
        " --manifest {output.manifest:q} --jobs {threads} > {log:q} 2>&1"
