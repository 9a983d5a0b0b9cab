# Stage 3: train each model variant at each training size -> models/<RUN>/
# Checkpoints (one per epoch) go to checkpoints/<RUN>/, outside the declared outputs, so
# that a killed or failed job resumes from its last epoch instead of starting over.


rule train_model:
    input:
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        model=f"{RESULTS}/models/{RUN}/model.npz",
        loss=f"{RESULTS}/models/{RUN}/loss.csv",
        info=f"{RESULTS}/models/{RUN}/train.json",
    wildcard_constraints:
        model=choice(LOWRANK),
    params:
        spec=model_spec,
        hours=train_hours,
        checkpoints=f"{RESULTS}/checkpoints/{RUN}",
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN}.tsv"
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt train --spec {params.spec:q} --index {input.index:q}"
        " --train-hours {params.hours} --checkpoint-dir {params.checkpoints:q}"
        " --model {output.model:q} --loss {output.loss:q} --info {output.info:q} > {log:q} 2>&1"


rule train_network:
    input:
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        model=f"{RESULTS}/models/{RUN}/model.pt",
        loss=f"{RESULTS}/models/{RUN}/loss.csv",
        info=f"{RESULTS}/models/{RUN}/train.json",
    wildcard_constraints:
        model=choice(NETWORK),
    params:
        spec=model_spec,
        hours=train_hours,
        checkpoints=f"{RESULTS}/checkpoints/{RUN}",
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN}.tsv"
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt train --spec {params.spec:q} --index {input.index:q}"
        " --train-hours {params.hours} --checkpoint-dir {params.checkpoints:q}"
        " --model {output.model:q} --loss {output.loss:q} --info {output.info:q} > {log:q} 2>&1"


rule basic_pitch_model:
    output:
        info=f"{RESULTS}/models/{RUN}/train.json",
    wildcard_constraints:
        model=choice(BASIC_PITCH),
    params:
        spec=model_spec,
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    shell:
        "lowrank-amt basic-pitch-train --spec {params.spec:q} --info {output.info:q} > {log:q} 2>&1"
