# Stage 4: every model's outputs (activations, or posteriorgrams) on the validation and
# test tracks, then notes by the model's decoder, tuned on validation only ->
# transcriptions/<RUN>/midi/


rule activations:
    input:
        model=rules.train_model.output.model,
        index=rules.extract_features.output.index,
        manifest=rules.prepare_dataset.output.manifest,
    output:
        activations=f"{RESULTS}/transcriptions/{RUN}/activations.npz",
        info=f"{RESULTS}/transcriptions/{RUN}/activations.json",
    log:
        f"{RESULTS}/logs/activations/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/activations/{RUN}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    threads: stage_threads("activations")
    resources:
        **stage_resources("activations"),
    shell:
        "OMP_NUM_THREADS={threads} {LOWRANK_AMT} activations --model {input.model:q} --index {input.index:q}"
        " --manifest {input.manifest:q} --activations {output.activations:q} --info {output.info:q}"
        " > {log:q} 2>&1"


rule decode:
    input:
        model=rules.train_model.output.model,
        activations=rules.activations.output.activations,
        index=rules.extract_features.output.index,
    output:
        midi=directory(f"{RESULTS}/transcriptions/{RUN}/midi"),
        info=f"{RESULTS}/models/{RUN}/decoding.json",
    log:
        f"{RESULTS}/logs/decode/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decode/{RUN}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        decoding=as_json(config["decoding"]),
        evaluation=as_json(config["evaluation"]),
    shell:
        "{LOWRANK_AMT} decode --model {input.model:q} --decoding {params.decoding:q}"
        " --evaluation {params.evaluation:q} --activations {input.activations:q} --index {input.index:q}"
        " --midi-dir {output.midi:q} --info {output.info:q} > {log:q} 2>&1"
