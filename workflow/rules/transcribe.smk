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
        "OMP_NUM_THREADS={threads} lowrank-amt activations --model {input.model:q} --index {input.index:q}"
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
        "lowrank-amt decode --model {input.model:q} --decoding {params.decoding:q}"
        " --evaluation {params.evaluation:q} --activations {input.activations:q} --index {input.index:q}"
        " --midi-dir {output.midi:q} --info {output.info:q} > {log:q} 2>&1"


# Test-only datasets (`role: test`): every trained model's outputs on their test split,
# decoded as the model's own validation split chose -> transcriptions/<RUN>/on/<test>/


rule activations_on:
    input:
        model=rules.train_model.output.model,
        index=test_index,
        manifest=test_manifest,
    output:
        activations=f"{RESULTS}/transcriptions/{RUN}/on/{{test}}/activations.npz",
        info=f"{RESULTS}/transcriptions/{RUN}/on/{{test}}/activations.json",
    log:
        f"{RESULTS}/logs/activations_on/{RUN}/{{test}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/activations_on/{RUN}/{{test}}.tsv"
    conda:
        "../../envs/lowrank-amt.yaml"
    threads: stage_threads("activations")
    resources:
        **stage_resources("activations"),
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt activations --model {input.model:q} --index {input.index:q}"
        " --manifest {input.manifest:q} --splits test --activations {output.activations:q}"
        " --info {output.info:q} > {log:q} 2>&1"


rule decode_on:
    input:
        model=rules.train_model.output.model,
        decoding=rules.decode.output.info,
        activations=rules.activations_on.output.activations,
        index=test_index,
    output:
        midi=directory(f"{RESULTS}/transcriptions/{RUN}/on/{{test}}/midi"),
        info=f"{RESULTS}/transcriptions/{RUN}/on/{{test}}/decoding.json",
    log:
        f"{RESULTS}/logs/decode_on/{RUN}/{{test}}.log",
    conda:
        "../../envs/lowrank-amt.yaml"
    params:
        decoding=as_json(config["decoding"]),
        evaluation=as_json(config["evaluation"]),
    shell:
        "lowrank-amt decode --model {input.model:q} --model-decoding --decoding {params.decoding:q}"
        " --evaluation {params.evaluation:q} --activations {input.activations:q} --index {input.index:q}"
        " --midi-dir {output.midi:q} --info {output.info:q} > {log:q} 2>&1"
