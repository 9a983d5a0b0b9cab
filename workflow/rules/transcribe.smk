# Stage 4: pitch activations of validation and test tracks, then notes decoded with
# settings tuned on validation only -> transcriptions/<RUN>/midi/


def model_file(wildcards):
    suffix = "pt" if wildcards.model in NETWORK else "npz"
    return f"{RESULTS}/models/{RUN}/model.{suffix}".format(**wildcards)


rule activations:
    input:
        model=model_file,
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        activations=f"{RESULTS}/transcriptions/{RUN}/activations.npz",
        info=f"{RESULTS}/transcriptions/{RUN}/activations.json",
    wildcard_constraints:
        model=choice(LOWRANK + NETWORK),
    params:
        spec=model_spec,
    log:
        f"{RESULTS}/logs/activations/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/activations/{RUN}.tsv"
    threads: stage_threads("activations")
    resources:
        **stage_resources("activations"),
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt activations --spec {params.spec:q}"
        " --model {input.model:q} --index {input.index:q}"
        " --activations {output.activations:q} --info {output.info:q} > {log:q} 2>&1"


rule decode:
    input:
        activations=f"{RESULTS}/transcriptions/{RUN}/activations.npz",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        midi=directory(f"{RESULTS}/transcriptions/{RUN}/midi"),
        info=f"{RESULTS}/transcriptions/{RUN}/decoding.json",
    wildcard_constraints:
        model=choice(LOWRANK + NETWORK),
    params:
        decoding=as_json(config["decoding"]),
        evaluation=as_json(config["evaluation"]),
    log:
        f"{RESULTS}/logs/decode/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decode/{RUN}.tsv"
    shell:
        "lowrank-amt decode --decoding {params.decoding:q} --evaluation {params.evaluation:q}"
        " --activations {input.activations:q} --index {input.index:q}"
        " --midi-dir {output.midi:q} --info {output.info:q} > {log:q} 2>&1"


rule basic_pitch_infer:
    input:
        manifest=f"{RESULTS}/data/{{dataset}}/manifest.csv",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        posteriorgrams=f"{RESULTS}/transcriptions/{RUN}/posteriorgrams.npz",
        info=f"{RESULTS}/transcriptions/{RUN}/activations.json",
    wildcard_constraints:
        model=choice(BASIC_PITCH),
    params:
        spec=model_spec,
    log:
        f"{RESULTS}/logs/activations/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/activations/{RUN}.tsv"
    threads: stage_threads("activations")
    resources:
        **stage_resources("activations"),
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt basic-pitch-infer --spec {params.spec:q}"
        " --manifest {input.manifest:q} --index {input.index:q}"
        " --out {output.posteriorgrams:q} --info {output.info:q} > {log:q} 2>&1"


rule basic_pitch_decode:
    input:
        posteriorgrams=f"{RESULTS}/transcriptions/{RUN}/posteriorgrams.npz",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        midi=directory(f"{RESULTS}/transcriptions/{RUN}/midi"),
        info=f"{RESULTS}/transcriptions/{RUN}/decoding.json",
    wildcard_constraints:
        model=choice(BASIC_PITCH),
    params:
        spec=model_spec,
        evaluation=as_json(config["evaluation"]),
    log:
        f"{RESULTS}/logs/decode/{RUN}.log",
    shell:
        "lowrank-amt basic-pitch-decode --spec {params.spec:q} --posteriorgrams {input.posteriorgrams:q}"
        " --index {input.index:q} --evaluation {params.evaluation:q}"
        " --midi-dir {output.midi:q} --info {output.info:q} > {log:q} 2>&1"
