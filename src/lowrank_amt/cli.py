"""``lowrank-amt <command>``: the entry point the Snakemake rules call.

Model, dataset and feature specs arrive as JSON (one entry of the validated config), so
the CLI needs no config file of its own. Each command calls one function of the package.
A ``LowrankAmtError`` ends the command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .constants import SUMMARY_FIGURES
from .errors import LowrankAmtError
from .runtime.kernels import pin_kernels


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _json(text: str, kind=dict):
    """A JSON argument holding a ``kind`` (an object, or a list)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise argparse.ArgumentTypeError(f"a JSON {'object' if kind is dict else 'list'} is needed, not {text!r}")
    return value


def _json_list(text: str):
    return _json(text, list)


def _hours(text: str) -> float | None:
    """A training size: hours as a number, or 'all'."""
    return None if text in ("all", "none", "") else float(text)


J = {"type": _json, "required": True}   # a JSON object argument
JL = {"type": _json_list, "required": True}  # a JSON list argument
P = {"required": True}                   # a path argument
O = {"default": None}                    # an optional path argument

#: command -> (help, [(flag, argparse options), ...])
COMMANDS = {
    "validate-config": ("validate a config file against the schema",
                        [("config", {}), ("--schema", P)]),
    "page-table": ("copy a study's ranked table into a page (README.md, docs/) where its markers say, "
                   "or with --check compare them",
                   [("page", {}), ("--check", {"action": "store_true",
                                               "help": "compare, to the printed digits (a family's cpu_tolerance "
                                                       "where it has one), both ways, instead of writing"})]),
    "ship": ("copy the study's model folder that validation note F picks among --model's into the package "
             "as a shipped model (shipped.py)",
             [("--model", {"required": True, "nargs": "+"}), ("--name", {"required": True}), ("--config", P),
              ("--schema", P)]),
    "config-docs": ("write the key reference of config/README.md from the schema",
                    [("--schema", P), ("--readme", P), ("--check", {"action": "store_true"})]),
    "prepare-dataset": ("synthesize, download or gather a dataset into a manifest",
                        [("--spec", J), ("--sample-rate", {"type": int, "required": True}), ("--manifest", P),
                         ("--jobs", {"type": int, "default": os.cpu_count()})]),
    "extract-features": ("features and frame targets of every track",
                         [("--spec", J), ("--sample-rate", {"type": int, "required": True}), ("--manifest", P),
                          ("--index", P)]),
    "train": ("train a model of any family (the spec's `family`)",
              [("--spec", J), ("--index", P), ("--model", P), ("--loss", P), ("--info", P),
               ("--train-hours", {"type": _hours, "default": None}), ("--checkpoint-dir", O),
               ("--provenance", {"type": _json, "default": None})]),
    "activations": ("a trained model's outputs (88 x frames) on the validation and test tracks",
                    [("--model", P), ("--index", P), ("--activations", P), ("--info", P), ("--manifest", O),
                     ("--splits", {"nargs": "+", "default": ["validation", "test"]})]),
    "teach": ("a feature index whose training targets are a teacher model's transcription",
              [("--model", P), ("--index", P), ("--out-index", P), ("--info", P), ("--manifest", O)]),
    "decode": ("notes from a model's outputs, its decoder tuned on validation; test MIDI",
               [("--model", P), ("--decoding", J), ("--evaluation", J), ("--activations", P), ("--index", P),
                ("--midi-dir", P), ("--info", P),
                ("--model-decoding", {"action": "store_true",
                                      "help": "decode another dataset's test split as the model's decoding.json says"})]),
    "transcribe": ("transcribe recordings (audio files or folders) with a trained, shipped or pretrained model",
                   [("inputs", {"nargs": "+", "metavar": "INPUT"}), ("--model", P),
                    (("-o", "--out-dir"), P), ("--plot", {"action": "store_true", "help": "also a PNG per input"}),
                    ("--device", {"choices": ["auto", "cpu", "cuda"], "default": None}),
                    ("--pitch-range", {"nargs": 2, "metavar": ("LOW", "HIGH"), "default": None,
                                       "help": "only keys in this range (MIDI numbers or names like A0, C8)"}),
                    ("--keys", {"nargs": "+", "default": None, "help": "only these keys"}),
                    ("--drop-keys", {"nargs": "+", "default": None, "help": "switch these keys' templates off"}),
                    ("--scale", {"default": None, "help": "penalise keys outside this scale, e.g. 'D major'"}),
                    ("--scale-weight", {"type": float, "default": 0.5,
                                        "help": "factor of out-of-scale keys' outputs (default 0.5)"}),
                    ("--score", {"default": None, "help": "an approximate MIDI score of the (one) input"}),
                    ("--score-tolerance", {"type": float, "default": 0.2,
                                           "help": "seconds around the score's notes where a key may sound"}),
                    ("--score-weight", {"type": float, "default": 0.3,
                                        "help": "factor of outputs outside the score's windows (0: confined)"}),
                    ("--adapt", {"nargs": 2, "metavar": ("AUDIO", "MIDI"), "default": None,
                                 "help": "adapt the dictionary to a short recording of this piano and its MIDI"}),
                    ("--stems", {"action": "store_true",
                                 "help": "also the stems a model with instrument templates separates "
                                         "(<out>.stems/<class>.wav)"}),
                    ("--adapt-self", {"action": "store_true",
                                      "help": "adapt the dictionary to each recording itself (unsupervised)"}),
                    ("--adapt-iterations", {"type": int, "default": 20,
                                            "help": "multiplicative updates from the trained templates"}),
                    ("--musicxml", {"action": "store_true",
                                    "help": "also a quantised two-staff piano score (<out>.musicxml)"}),
                    ("--tempo", {"type": float, "default": None,
                                 "help": "the score's tempo in BPM (default: the beats tracked in the notes)"}),
                    ("--split", {"default": None,
                                 "help": "lowest key of the score's upper staff (default C4)"})]),
    "listen": ("transcribe audio as it arrives (raw PCM on standard input, a file, or a sound card): one CSV "
               "line per note on standard output as it ends",
               [("input", {"nargs": "?", "default": None, "help": "an audio file (default: raw PCM on stdin)"}),
                ("--model", P), (("-o", "--midi"), {"default": None, "help": "a MIDI file rewritten as notes end"}),
                ("--realtime", {"action": "store_true", "help": "play the file at its own pace"}),
                ("--soundcard", {"action": "store_true", "help": "the default input of a sound card (PortAudio)"}),
                ("--rate", {"type": int, "default": 44100, "help": "sample rate of the PCM on stdin"}),
                ("--channels", {"type": int, "default": 1, "help": "channels of the PCM on stdin"}),
                ("--format", {"choices": ["s16", "f32"], "default": "s16", "help": "samples of the PCM on stdin"}),
                ("--block-ms", {"type": float, "default": 46.0, "help": "audio processed at a time"}),
                ("--lookahead-ms", {"type": float, "default": 46.0, "help": "audio after a frame before it is used"}),
                ("--delay-ms", {"type": float, "default": 116.0,
                                "help": "frames the decoder waits before deciding an onset"}),
                ("--device", {"choices": ["auto", "cpu", "cuda"], "default": None})]),
    "evaluate": ("per-track metrics of test transcriptions (and the labelled oracle threshold)",
                 [("--evaluation", J), ("--midi-dir", P), ("--index", P), ("--out", P),
                  ("--activations", O), ("--decoding-info", O), ("--decoding", {"type": _json, "default": None})]),
    "assess-dictionary": ("interpretability of a model's dictionary (families that have one)",
                          [("--model", P), ("--index", P), ("--out", P), ("--templates", P)]),
    "aggregate": ("tidy results table and ranked summary",
                  [("--runs", JL), ("--config-hash", P), ("--results", P), ("--summary", P), ("--markdown", P),
                   ("--html", O), ("--errors", O)]),
    "plot": ("a summary figure: " + ", ".join(SUMMARY_FIGURES),
             [("kind", {"choices": SUMMARY_FIGURES}),
              ("--summary", P), ("--out", P)]),
    "scaling-tables": ("the scaling study's tables (note F per size, costs, memory) as markdown",
                       [("--summary", P), ("--out", {"required": True, "help": "a file, or - for standard output"}),
                        ("--memory-limit-mb", {"type": float, "default": None,
                                               "help": "memory full batch must fit in (default: this machine's)"})]),
    "plot-losses": ("loss curves of several models",
                    [("--loss", {"nargs": "+", "required": True, "metavar": "NAME=PATH"}), ("--out", P)]),
    "plot-validation": ("validation note F against optimizer steps of several runs (from their loss.csv)",
                        [("--loss", {"nargs": "+", "required": True, "metavar": "NAME=PATH"}), ("--out", P)]),
    "plot-velocity": ("the velocity curves chosen on validation of several models",
                      [("--decoding", {"nargs": "+", "required": True, "metavar": "NAME=PATH"}), ("--out", P)]),
    "plot-dictionary": ("a model's templates with their estimated pitches",
                        [("--model", P), ("--index", P), ("--out", P), ("--title", O)]),
    "plot-excerpt": ("activations of a test excerpt beside its piano roll",
                     [("--activations", P), ("--index", P), ("--out", P), ("--track", O),
                      ("--seconds", {"type": float, "default": 10.0}), ("--title", O)]),
    "plot-stems": ("the stems a model with instrument templates separates from a mixture, beside the rendered ones",
                   [("--model", P), ("--audio", P), ("--out", P), ("--seconds", {"type": float, "default": 10.0}),
                    ("--title", O)]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowrank-amt", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, arguments) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        for flags, options in arguments:
            command.add_argument(*(flags if isinstance(flags, tuple) else (flags,)), **options)
    return parser


# One function per command: each imports what it calls, so that a job loads only its
# stage's modules (torch, mir_eval and matplotlib take seconds) and `--help` is instant.
def _validate_config(a):
    from .config import load_schema, read_yaml, validate_config
    validate_config(read_yaml(a.config), load_schema(a.schema))
    _log(f"{a.config}: valid")


def _ship(a):
    from .shipped import ship
    ship(a.model, a.name, a.config, a.schema, _log)


def _config_docs(a):
    from .report.config_docs import update_readme
    update_readme(a.readme, a.schema, a.check)


def _prepare_dataset(a):
    from .stages.data import prepare_dataset
    prepare_dataset(a.spec, a.manifest, a.sample_rate, a.jobs, _log)


def _extract_features(a):
    from .stages.features import extract_dataset
    extract_dataset(a.manifest, a.spec, a.sample_rate, a.index, _log)


def _train(a):
    from .stages.train import train
    train(a.spec, a.index, a.model, a.loss, a.info, _log, checkpoint_dir=a.checkpoint_dir,
          train_hours=a.train_hours, provenance=a.provenance)


def _activations(a):
    from .stages.transcribe import activations
    activations(a.model, a.index, a.activations, a.info, _log, manifest_path=a.manifest, splits=tuple(a.splits))


def _teach(a):
    from .stages.train import teach
    teach(a.model, a.index, a.out_index, a.info, _log, manifest_path=a.manifest)


def _decode(a):
    from .stages.transcribe import decode
    decode(a.model, a.activations, a.index, a.decoding, a.evaluation, a.midi_dir, a.info, _log,
           model_decoding=a.model_decoding)


def _transcribe(a):
    from .decoding.steering import Steering, parse_key
    from .recordings import transcribe_files
    steering = Steering.from_options(a.pitch_range, a.keys, a.drop_keys, a.scale, a.scale_weight,
                                     a.score, a.score_tolerance, a.score_weight)
    transcribe_files(a.model, a.inputs, a.out_dir, plot=a.plot, device=a.device, steering=steering, adapt=a.adapt,
                     adapt_self=a.adapt_self, adapt_iterations=a.adapt_iterations, stems=a.stems,
                     musicxml=a.musicxml, tempo=a.tempo, split=None if a.split is None else parse_key(a.split),
                     log=_log)


def _listen(a):
    from .live import listen
    if a.rate <= 0 or a.channels <= 0:
        raise LowrankAmtError(f"listen: --rate and --channels must be positive, got {a.rate} and {a.channels}")
    listen(a.model, a.input, out_midi=a.midi, realtime=a.realtime, soundcard=a.soundcard, rate=a.rate,
           channels=a.channels, sample_format=a.format, block=a.block_ms / 1000, lookahead=a.lookahead_ms / 1000,
           delay=a.delay_ms / 1000, device=a.device, log=_log)


def _evaluate(a):
    from .stages.evaluate import evaluate
    evaluate(a.midi_dir, a.index, a.evaluation, a.out, _log, activations_path=a.activations,
             decoding_path=a.decoding_info, decoding=a.decoding)


def _assess_dictionary(a):
    from .stages.evaluate import assess
    assess(a.model, a.index, a.out, a.templates, _log)


def _aggregate(a):
    from .stages.evaluate import aggregate
    aggregate(a.runs, a.config_hash, a.results, a.summary, a.markdown, a.html, a.errors)


def _plot(a):
    from .stages.report import plot
    plot(a.kind, a.summary, a.out)


def _page_table(a):
    from .report.pages import update_page
    message = update_page(a.page, a.check)
    if a.check:
        print(message)  # a check's verdict is its output
    else:
        _log(message)


def _scaling_tables(a):
    from .stages.report import scaling_tables
    scaling_tables(a.summary, a.out, a.memory_limit_mb)


def _named_paths(items, option: str) -> dict:
    """``{NAME: PATH}`` of arguments ``NAME=PATH``, or one line naming the option."""
    pairs = [item.split("=", 1) for item in items]
    if any(len(p) != 2 for p in pairs):
        raise LowrankAmtError(f"each {option} must be NAME=PATH")
    return dict(pairs)


def _plot_losses(a):
    from .stages.report import plot_losses
    plot_losses(_named_paths(a.loss, "--loss"), a.out)


def _plot_validation(a):
    from .stages.report import plot_validation
    plot_validation(_named_paths(a.loss, "--loss"), a.out)


def _plot_velocity(a):
    from .stages.report import plot_velocity
    plot_velocity(_named_paths(a.decoding, "--decoding"), a.out)


def _plot_dictionary(a):
    from .stages.report import plot_dictionary
    plot_dictionary(a.model, a.index, a.out, a.title)


def _plot_stems(a):
    from .stages.report import plot_stems
    scores = plot_stems(a.model, a.audio, a.out, seconds=a.seconds, title=a.title)
    _log("SI-SDR " + ", ".join(f"{name} {s['si_sdr']:.1f} dB" for name, s in scores.items()))


def _plot_excerpt(a):
    from .stages.report import plot_excerpt
    plot_excerpt(a.activations, a.index, a.out, track_id=a.track, seconds=a.seconds, title=a.title)


#: command -> the function it calls
HANDLERS = {
    "validate-config": _validate_config, "config-docs": _config_docs, "prepare-dataset": _prepare_dataset,
    "extract-features": _extract_features, "train": _train, "activations": _activations, "teach": _teach,
    "decode": _decode, "transcribe": _transcribe, "listen": _listen, "evaluate": _evaluate, "assess-dictionary": _assess_dictionary,
    "aggregate": _aggregate, "plot": _plot, "scaling-tables": _scaling_tables, "page-table": _page_table,
    "ship": _ship, "plot-losses": _plot_losses, "plot-validation": _plot_validation,
    "plot-velocity": _plot_velocity, "plot-dictionary": _plot_dictionary,
    "plot-excerpt": _plot_excerpt, "plot-stems": _plot_stems,
}


def main(argv: list[str] | None = None) -> int:
    pin_kernels()  # before torch's first kernel call: the same float kernels on every x86-64 CPU
    args = build_parser().parse_args(argv)
    try:
        HANDLERS[args.command](args)
    except LowrankAmtError as exc:
        print(f"lowrank-amt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: outputs are written whole or not at all (io.atomic_path)
        print(f"lowrank-amt {args.command}: interrupted; the outputs already written are whole, "
              "the one in progress was not written", file=sys.stderr)
        return 130
    except OSError as exc:  # a path of the command line that cannot be read or written
        print(f"lowrank-amt {args.command}: error: {exc.filename or 'a file'}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
