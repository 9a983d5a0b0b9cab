# Stage 3: learn each model variant's dictionary -> models/<dataset>/<features>/<model>/


rule train_model:
    input:
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        model=f"{RESULTS}/models/{RUN}/model.npz",
        loss=f"{RESULTS}/models/{RUN}/loss.csv",
        info=f"{RESULTS}/models/{RUN}/train.json",
    params:
        spec=model_spec,
    log:
        f"{RESULTS}/logs/train_model/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{RUN}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt train --spec {params.spec:q} --index {input.index:q}"
        " --model {output.model:q} --loss {output.loss:q} --info {output.info:q} > {log:q} 2>&1"
