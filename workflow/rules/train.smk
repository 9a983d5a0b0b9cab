# Stage 3: train each model variant at each training size -> models/<RUN>/ (every family:
# a pretrained one records itself). Checkpoints (one per epoch) go to checkpoints/<RUN>/,
# outside the declared outputs, so that a killed or failed job resumes from its last
# epoch instead of starting over; the job removes its checkpoint once it succeeds.


# A teacher's notes on the training audio, as the training targets of the models that
# name it (`teacher`); see src/lowrank_amt/stages/train.py.
rule teach:
    input:
        unpack(teacher_files),
        index=rules.extract_features.output.index,
        manifest=rules.prepare_dataset.output.manifest,
    output:
        index=f"{RESULTS}/teachers/{{dataset}}/{{features}}/{{teacher}}/index.csv",
        info=f"{RESULTS}/teachers/{{dataset}}/{{features}}/{{teacher}}/teach.json",
    log:
        f"{RESULTS}/logs/teach/{{dataset}}/{{features}}/{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/teach/{{dataset}}/{{features}}/{{teacher}}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    threads: stage_threads("activations")
    resources:
        **stage_resources("activations"),
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt teach --model {input.model:q} --index {input.index:q}"
        " --manifest {input.manifest:q} --out-index {output.index:q} --info {output.info:q}"
        " > {log:q} 2>&1"


rule train_model:
    input:
        index=training_index,
    output:
        model=f"{RESULTS}/models/{RUN}/model.npz",
        loss=f"{RESULTS}/models/{RUN}/loss.csv",
        info=f"{RESULTS}/models/{RUN}/train.json",
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    params:
        spec=model_spec,
        hours=train_hours,
        provenance=provenance,
        checkpoints=f"{RESULTS}/checkpoints/{RUN}",
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt train --spec {params.spec:q} --index {input.index:q}"
        " --train-hours {params.hours} --checkpoint-dir {params.checkpoints:q}"
        " --provenance {params.provenance:q}"
        " --model {output.model:q} --loss {output.loss:q} --info {output.info:q} > {log:q} 2>&1"
