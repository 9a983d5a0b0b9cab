"""Pretrained Transkun 2.0, the reference, on a finished study's test sets, through the
same stages as the study's models (pretrained: its validation split only scores it):
note F (onset; onset and offset; onset, offset and velocity; references lengthened by
the sustain pedal), frame F and seconds per audio minute, per dataset.
It is not in the default study, whose 10-minute budget it would break (about 1.5 s per
second of audio on 2 cores).

    make study && .venv/bin/python bench/bench_reference.py results/bench/reference.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from tables import write_table

from lowrank_amt.runtime.io import read_json
from lowrank_amt.stages import evaluate, train, transcribe

EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2, "pedal_extension": True}  # the schema's defaults


def reference_rows(config: dict, out: Path) -> list[dict]:
    """One row per dataset and feature set of ``config``: Transkun's scores on its test
    split (a training dataset's decoding.json comes from its validation split)."""
    study = Path(config["results"]) / config["study"]
    model, rows = out / "model", []
    quiet = lambda message: None  # noqa: E731
    for dataset, spec in sorted(config["datasets"].items(), key=lambda item: item[1].get("role") == "test"):
        own = spec.get("role") != "test"
        index = study / f"features/{dataset}/{next(iter(config['features']))}/index.csv"
        if not (model / "model.npz").exists():
            train.train({"family": "transkun", "device": "cpu"}, index, model / "model.npz", model / "loss.csv",
                        model / "train.json", log=quiet)
        run = out / dataset
        transcribe.activations(model / "model.npz", index, run / "activations.npz", run / "activations.json",
                               log=quiet, manifest_path=study / f"data/{dataset}/manifest.csv",
                               splits=("validation", "test") if own else ("test",))
        transcribe.decode(model / "model.npz", run / "activations.npz", index, {}, EVALUATION, run / "midi",
                          (model if own else run) / "decoding.json", log=quiet, model_decoding=not own)
        table = evaluate.evaluate(run / "midi", index, EVALUATION, run / "per_track.csv", log=quiet)
        timing = read_json(run / "activations.json")
        rows.append({"test_set": dataset, "tracks": len(table), "note_onset_f": table["note_onset_f"].mean(),
                     "note_offset_f": table["note_offset_f"].mean(),
                     "note_offset_velocity_f": table["note_offset_velocity_f"].mean(), "frame_f": table["frame_f"].mean(),
                     "audio_seconds": timing["audio_seconds"],
                     "seconds_per_audio_minute": timing["seconds_per_audio_minute"]})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="markdown table to write (and .csv beside it)")
    parser.add_argument("--config", default="config/config.yaml", help="the finished study's config")
    parser.add_argument("--work", default="results/bench/reference", help="folder for Transkun's outputs")
    args = parser.parse_args(argv)
    write_table(reference_rows(yaml.safe_load(Path(args.config).read_text()), Path(args.work)), args.out)


if __name__ == "__main__":
    main()
