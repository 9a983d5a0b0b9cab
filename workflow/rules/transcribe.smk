# Stage 4: activations, decoding tuned on validation, test tracks to MIDI
# -> transcriptions/<dataset>/<features>/<model>/midi/


rule transcribe:
    input:
        model=f"{RESULTS}/models/{RUN}/model.npz",
        index=f"{RESULTS}/features/{{dataset}}/{{features}}/index.csv",
    output:
        midi=directory(f"{RESULTS}/transcriptions/{RUN}/midi"),
        activations=f"{RESULTS}/transcriptions/{RUN}/activations.npz",
        info=f"{RESULTS}/transcriptions/{RUN}/transcribe.json",
    params:
        spec=model_spec,
        decoding=as_json(config["decoding"]),
        evaluation=as_json(config["evaluation"]),
    log:
        f"{RESULTS}/logs/transcribe/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/transcribe/{RUN}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} lowrank-amt transcribe --spec {params.spec:q}"
        " --decoding {params.decoding:q} --evaluation {params.evaluation:q}"
        " --model {input.model:q} --index {input.index:q} --midi-dir {output.midi:q}"
        " --activations {output.activations:q} --info {output.info:q} > {log:q} 2>&1"
