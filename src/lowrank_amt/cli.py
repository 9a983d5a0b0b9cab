"""``lowrank-amt <command>``: the entry point the Snakemake rules call.

Model, dataset and feature specs arrive as JSON (one entry of the validated config), so
the CLI needs no config file of its own. A ``LowrankAmtError`` ends the command with one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _json(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowrank-amt", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate-config", help="validate a config file against the schema")
    p.add_argument("config")
    p.add_argument("--schema", required=True)

    p = sub.add_parser("config-docs", help="write the key reference of config/README.md from the schema")
    p.add_argument("--schema", required=True)
    p.add_argument("--readme", required=True)
    p.add_argument("--check", action="store_true", help="only check that the README is up to date")

    p = sub.add_parser("prepare-dataset", help="synthesize, download or gather a dataset into a manifest")
    p.add_argument("--spec", type=_json, required=True, help="the dataset's config entry as JSON")
    p.add_argument("--sample-rate", type=int, required=True)
    p.add_argument("--manifest", required=True, help="manifest CSV to write (data go beside it)")
    p.add_argument("--jobs", type=int, default=os.cpu_count())

    p = sub.add_parser("extract-features", help="features and piano-roll targets of every track")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--sample-rate", type=int, required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--index", required=True, help="index CSV to write (features go beside it)")

    p = sub.add_parser("train", help="learn a model's dictionary")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--loss", required=True)
    p.add_argument("--info", required=True)

    p = sub.add_parser("activations", help="pitch activations of validation and test tracks")
    p.add_argument("--spec", type=_json, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--activations", required=True)
    p.add_argument("--info", required=True)

    p = sub.add_parser("decode", help="notes from activations, threshold tuned on validation; test MIDI")
    p.add_argument("--decoding", type=_json, required=True)
    p.add_argument("--evaluation", type=_json, required=True)
    p.add_argument("--activations", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--midi-dir", required=True)
    p.add_argument("--info", required=True)

    p = sub.add_parser("evaluate", help="per-track metrics of test transcriptions")
    p.add_argument("--evaluation", type=_json, required=True)
    p.add_argument("--midi-dir", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("aggregate", help="tidy results table and summary")
    p.add_argument("--runs", type=_json, required=True, help="JSON list of runs (see stages.aggregate)")
    p.add_argument("--config-hash", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--markdown", required=True)

    p = sub.add_parser("plot-tradeoff", help="note F against training time")
    p.add_argument("--summary", required=True)
    p.add_argument("--out", required=True)
    return parser


def run(args: argparse.Namespace) -> None:
    # Heavy imports stay inside the commands so that `--help` is instant.
    from . import evaluation, stages

    if args.command == "validate-config":
        import yaml

        from .config import load_schema, validate_config
        with open(args.config) as handle:
            validate_config(yaml.safe_load(handle) or {}, load_schema(args.schema))
        _log(f"{args.config}: valid")
    elif args.command == "config-docs":
        from pathlib import Path

        from .config import embed_reference, load_schema
        from .errors import LowrankAmtError
        readme = Path(args.readme)
        updated = embed_reference(readme.read_text(), load_schema(args.schema))
        if args.check and updated != readme.read_text():
            raise LowrankAmtError(f"{readme} is out of date: run lowrank-amt config-docs without --check")
        if not args.check:
            readme.write_text(updated)
    elif args.command == "prepare-dataset":
        from .data import prepare_dataset
        prepare_dataset(args.spec, args.manifest, args.sample_rate, args.jobs, _log)
    elif args.command == "extract-features":
        from .features import extract_dataset
        extract_dataset(args.manifest, args.spec, args.sample_rate, args.index, _log)
    elif args.command == "train":
        stages.train(args.spec, args.index, args.model, args.loss, args.info, _log)
    elif args.command == "activations":
        stages.activations(args.spec, args.model, args.index, args.activations, args.info, _log)
    elif args.command == "decode":
        evaluation.decode(args.activations, args.index, args.decoding, args.evaluation,
                          args.midi_dir, args.info, _log)
    elif args.command == "evaluate":
        evaluation.evaluate(args.midi_dir, args.index, args.evaluation, args.out, _log)
    elif args.command == "aggregate":
        evaluation.aggregate(args.runs, args.config_hash, args.results, args.summary, args.markdown)
    elif args.command == "plot-tradeoff":
        import pandas as pd

        from .plots import tradeoff_plot
        tradeoff_plot(pd.read_csv(args.summary), args.out)


def main(argv: list[str] | None = None) -> int:
    from .errors import LowrankAmtError

    args = build_parser().parse_args(argv)
    try:
        run(args)
    except LowrankAmtError as exc:
        print(f"lowrank-amt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
