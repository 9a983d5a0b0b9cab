# Stage 4: pitch activations of validation and test tracks, then notes decoded with a
# threshold tuned on validation -> transcriptions/<dataset>/<features>/<model>/midi/


rule activations:
    input:
        model=f"{RESULTS}/models/{RUN}/model.npz",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        activations=f"{RESULTS}/transcriptions/{RUN}/activations.npz",
        info=f"{RESULTS}/transcriptions/{RUN}/activations.json",
    params:
        spec=model_spec,
    log:
        f"{RESULTS}/logs/activations/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/activations/{RUN}.tsv"
    threads: 1
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
