"""Live transcription (``lowrank-amt listen``, docs/live.md) against the offline
transcription of the same recordings: note F, real-time factor and latency.

    .venv/bin/python bench/bench_live.py results/bench/live.md --models piano \\
        results/default/models/synth_piano/cqt/nmf_sup_kl/isolated
    .venv/bin/python bench/bench_live.py results/bench/live-validation.md --validation

Pieces: the pianos study's own (``config/pianos.yaml``, dataset ``synth_pianos``),
rendered here alone: its 12 unseen-piano test pieces, or with ``--validation`` its first
6 validation pieces (the training pianos), on which the decoder's delay and the frames
of context the model reads are picked.
Per model and setting, means over the pieces:

- ``offline_f`` / ``live_f``: note-onset F (mir_eval, 50 ms) of ``transcribe`` and of
  ``listen`` (the file fed in blocks of 1,024 samples, as fast as they are processed);
- ``real_time_factor``: CPU seconds of the live processing per second of audio, one
  torch thread (the offline transcription's in ``offline_rtf``);
- ``latency_ms``: the algorithmic latency of a note-on (look-ahead, block and delay).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd
import torch
import yaml
from tables import write_table

from lowrank_amt.datasets.rendering import find_soundfont, render, select_bank
from lowrank_amt.datasets.synth import full_spec, plan_tracks
from lowrank_amt.evaluation.notes import read_midi_notes
from lowrank_amt.live import Listener
from lowrank_amt.recordings import resolve_model, transcribe_files
from lowrank_amt.signal.audio import load_audio

SAMPLE_RATE = 22050
#: (block, look-ahead, delay in seconds, frames of context): the default, and settings of lower latency
SETTINGS = ((0.046, 0.046, 0.116, 16), (0.023, 0.046, 0.023, 16), (0.046, 0.093, 0.070, 16))
#: The validation grid, at the default block and look-ahead: delays, then contexts at the default delay.
VALIDATION = tuple((0.046, 0.046, d, 16) for d in (0.023, 0.070, 0.116, 0.163)) + \
    tuple((0.046, 0.046, 0.116, c) for c in (8, 24))


def pieces(split: str, count: int, folder: Path) -> list[tuple[Path, Path]]:
    """(audio, MIDI) of the first ``count`` pieces of a split of the pianos study."""
    spec = full_spec(yaml.safe_load(Path("config/pianos.yaml").read_text())["datasets"]["synth_pianos"])
    chosen = [t for t in plan_tracks(spec) if t["split"] == split][:count]
    out = []
    for track in chosen:
        midi_path, wav_path = folder / f"{track['track_id']}.mid", folder / f"{track['track_id']}.wav"
        if not wav_path.exists():
            track["make"]().write(str(midi_path))
            if track["bank"]:
                select_bank(midi_path, track["bank"])
            render(midi_path, wav_path, find_soundfont(track["soundfont"]), SAMPLE_RATE, spec["reverb"],
                   spec["noise_snr_db"], [*track["seed"], 7])
        out.append((wav_path, midi_path))
    return out


def note_f(reference, estimate) -> float:
    (ri, rp, _), (ei, ep) = reference, estimate
    if len(ep) == 0:
        return 0.0
    return mir_eval.transcription.precision_recall_f1_overlap(
        ri, mir_eval.util.midi_to_hz(rp), ei, mir_eval.util.midi_to_hz(ep), offset_ratio=None)[2]


def live_notes(model, audio, block, lookahead, delay, context):
    """``listen``'s notes of ``audio`` and the CPU seconds their processing took."""
    listener = Listener(model, block=block, lookahead=lookahead, delay=delay, log=lambda m: None,
                        context_frames=context)
    began = time.process_time()
    for start in range(0, len(audio), 1024):
        listener.feed(audio[start:start + 1024])
    notes = listener.finish().finished
    cpu = time.process_time() - began
    return (np.array([n[:2] for n in notes]).reshape(-1, 2), np.array([n[2] for n in notes], dtype=int)), cpu, \
        listener.latency()


def offline_notes(name, wav, folder):
    began = time.process_time()
    transcribe_files(name, [wav], folder, log=lambda m: None)
    cpu = time.process_time() - began
    table = pd.read_csv(folder / f"{wav.stem}.csv")
    return (table[["onset_s", "offset_s"]].to_numpy(), table["pitch"].to_numpy()), cpu


def compare(name, recordings, settings, scratch: Path) -> list[dict]:
    model = resolve_model(name)
    rows = {setting: [] for setting in settings}
    for wav, midi in recordings:
        reference, audio = read_midi_notes(midi), load_audio(wav, SAMPLE_RATE)
        seconds = len(audio) / SAMPLE_RATE
        offline, offline_cpu = offline_notes(name, wav, scratch)
        for setting in settings:
            live, cpu, latency = live_notes(model, audio, *setting)
            rows[setting].append({"offline_f": note_f(reference, offline), "live_f": note_f(reference, live),
                                  "offline_rtf": offline_cpu / seconds, "real_time_factor": cpu / seconds,
                                  "latency_ms": 1000 * latency})
    label = Path(name).parts[-2] if "/" in str(name) else name
    return [{"model": label, "block_ms": 1000 * s[0], "lookahead_ms": 1000 * s[1], "delay_ms": 1000 * s[2],
             "context_frames": s[3],
             **pd.DataFrame(rows[s]).mean().round(4).to_dict()} for s in settings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="markdown table (a CSV beside it)")
    parser.add_argument("--models", nargs="+", default=["piano"])
    parser.add_argument("--validation", action="store_true", help="pick the delay on 6 validation pieces")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path("results/bench/live-pieces")
    folder.mkdir(parents=True, exist_ok=True)
    recordings = pieces("validation", 6, folder) if args.validation else pieces("test", 12, folder)
    settings = VALIDATION if args.validation else SETTINGS
    with tempfile.TemporaryDirectory() as scratch:
        rows = [row for name in args.models for row in compare(name, recordings, settings, Path(scratch))]
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
