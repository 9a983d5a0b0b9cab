"""The score's round trip (``transcribe --musicxml``, docs/score.md): known scores
rendered, transcribed, quantised and compared with the known score.

    .venv/bin/python bench/score_round_trip.py results/bench/score.md
    .venv/bin/python bench/score_round_trip.py out.md --model results/pianos/models/synth_pianos/cqt/unrolled_nmfd/1h

Pieces: the synthetic corpus's composer (``compose_piece``) at a constant tempo (its
base tempo, 60-150 BPM) with no timing jitter is the known score (4/4, bar 1 at the
first note); the same notes, each moved by a normal jitter of 8 ms, are rendered with the
pianos study's three unseen test pianos in turn and transcribed with ``--model``.
Seeds 1000 + i (the test pieces; ``--validation``: 500 + i, on which the beat tracker's
settings, ``score.TIGHTNESS`` and ``score.START_BPM``, are picked from a grid): pieces
the studies never compose. Per piece and in the mean:

- ``note_f``: the transcription's note-onset F against the played notes (mir_eval);
- ``score_recall`` (``_given`` with the known tempo, ``_tracked`` with the beats tracked
  in the notes): the share of the known score's notes that the quantised transcription
  holds at the same pitch and beat position (``metrics.score_agreement``), the whole
  score moved by the whole number of beats (``shift``, -3 to 3) that matches most: a
  spurious note before the first one starts the score a beat early;
- ``placed_given`` / ``placed_tracked``: of the notes the transcription found (matched
  within 50 ms), the share quantised onto their known beat position: the quantiser's and
  the beat tracker's part alone;
- ``tempo_ratio``: tracked over known tempo (2 or 0.5: the other metrical level);
  ``placed_tracked_level``: ``placed_tracked`` against the known score written at the
  level tracked (its positions doubled or halved where the ratio is 2 or 0.5);
- ``musicxml_warnings``: warnings music21 gives on reading the score back.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd
from tables import write_table

from lowrank_amt.datasets.composition import compose_piece
from lowrank_amt.datasets.rendering import find_soundfont, parse_timbre, render, select_bank
from lowrank_amt.decoding import score
from lowrank_amt.decoding.score import transcription_score
from lowrank_amt.evaluation.metrics import score_agreement
from lowrank_amt.recordings import transcribe_files

PIANOS = ("FluidR3_GM.sf2:2", "sf_GMbank.sf2:2", "sf_GMbank.sf2:127:2")  # config/pianos.yaml's test_timbres
JITTER_SECONDS = 0.008
SAMPLE_RATE = 22050
SHIFTS = range(-3, 4)  # whole beats the estimated score may be moved by as a whole
VALIDATION_PIECES = 24
TIGHTNESS_GRID = (100.0, 400.0, 1600.0)
START_BPM_GRID = (80.0, 100.0, 120.0)


def known_score(midi) -> tuple[list, float]:
    """[(pitch, position)] of a constant-tempo piece without jitter, one per note in its
    order, and its tempo."""
    bpm = float(midi.get_tempo_changes()[1][0])
    first = min(n.start for n in midi.instruments[0].notes)
    return [(n.pitch, Fraction(round((n.start - first) * bpm / 60 * 12), 12)) for n in midi.instruments[0].notes], bpm


def note_arrays(midi):
    """(intervals, pitches, velocities) of a piece's notes in their order."""
    notes = midi.instruments[0].notes
    return (np.array([[n.start, n.end] for n in notes]), np.array([n.pitch for n in notes]),
            np.array([n.velocity for n in notes]))


def played(midi, rng) -> None:
    """Move every note of ``midi`` by a normal jitter (in place), keeping its length."""
    for note in midi.instruments[0].notes:
        shift = float(rng.normal(0.0, JITTER_SECONDS))
        note.start, note.end = max(0.0, note.start + shift), note.end + shift


def placed(reference, ref_notes, est_notes, quantised, shift) -> float:
    """Of the estimated notes matched to reference notes (onset within 50 ms), the share
    whose quantised position, moved by ``shift``, equals its reference note's known one."""
    (ri, rp, _), (ei, ep, _) = ref_notes, est_notes
    pairs = mir_eval.transcription.match_notes(ri, mir_eval.util.midi_to_hz(rp), ei, mir_eval.util.midi_to_hz(ep),
                                               offset_ratio=None)
    right = [reference[r][1] == quantised[e].onset + shift for r, e in pairs]
    return float(np.mean(right)) if right else 0.0


def read_back(path: Path) -> int:
    """Warnings music21 gives on parsing the MusicXML at ``path``."""
    import music21
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        music21.converter.parse(str(path), forceSource=True)
    return len(caught)


def transcribed_piece(seed: int, i: int, model: str, folder: Path) -> dict:
    """Piece ``seed``: its known score and tempo, its played notes, and their transcription
    by ``model`` (with the MusicXML read back)."""
    midi = compose_piece(np.random.default_rng(seed), 30.0, 8, (21, 108), tempo_spread=0.0, jitter=0.0)
    reference, bpm = known_score(midi)
    font, bank, program = parse_timbre(PIANOS[i % len(PIANOS)])
    midi.instruments[0].program = program
    played(midi, np.random.default_rng(seed + 1000))
    midi_path, wav_path = folder / f"piece{seed}.mid", folder / f"piece{seed}.wav"
    midi.write(str(midi_path))
    if bank:
        select_bank(midi_path, bank)
    render(midi_path, wav_path, find_soundfont(font), SAMPLE_RATE)
    transcribe_files(model, [wav_path], folder / "out", musicxml=True, log=lambda m: None)
    table = pd.read_csv(folder / "out" / f"piece{seed}.csv")
    return {"seed": seed, "piano": PIANOS[i % len(PIANOS)], "bpm": bpm, "reference": reference,
            "played": note_arrays(midi),
            "transcribed": (table[["onset_s", "offset_s"]].to_numpy(), table["pitch"].to_numpy(),
                            table["velocity"].to_numpy()),
            "musicxml_warnings": read_back(folder / "out" / f"piece{seed}.musicxml")}


def score_row(piece: dict) -> dict:
    """The round trip's figures for one piece, with the tracker's current settings."""
    ref, est, reference = piece["played"], piece["transcribed"], piece["reference"]
    ref_hz, est_hz = mir_eval.util.midi_to_hz(ref[1]), mir_eval.util.midi_to_hz(est[1])
    row = {"notes": len(reference),
           "note_f": mir_eval.transcription.precision_recall_f1_overlap(ref[0], ref_hz, est[0], est_hz,
                                                                          offset_ratio=None)[2]}
    for name, tempo in (("given", piece["bpm"]), ("tracked", None)):
        quantised, found_bpm = transcription_score(est, tempo)
        agreement = score_agreement(reference, [(n.pitch, n.onset) for n in quantised], SHIFTS)
        row[f"score_recall_{name}"] = agreement["recall"]
        row[f"placed_{name}"] = placed(reference, ref, est, quantised, agreement["shift"])
        row[f"shift_{name}"] = agreement["shift"]
        if tempo is None:
            row["tempo_ratio"] = round(found_bpm / piece["bpm"], 3)
            level = 2.0 ** round(np.log2(found_bpm / piece["bpm"]))  # the metrical level tracked
            at_level = [(p, t * Fraction(level)) for p, t in reference]
            agreement = score_agreement(at_level, [(n.pitch, n.onset) for n in quantised], SHIFTS)
            row["placed_tracked_level"] = placed(at_level, ref, est, quantised, agreement["shift"])
    return row


def validation_grid(pieces: list[dict]) -> list[dict]:
    """Mean figures of the validation pieces for each tracker setting of the grid."""
    rows = []
    for tightness, start_bpm in itertools.product(TIGHTNESS_GRID, START_BPM_GRID):
        score.TIGHTNESS, score.START_BPM = tightness, start_bpm
        table = pd.DataFrame([score_row(p) for p in pieces])
        rows.append({"tightness": tightness, "start_bpm": start_bpm,
                     "octave_errors": int((np.abs(np.log2(table["tempo_ratio"])) > 0.5).sum()),
                     **table.drop(columns=["notes", "note_f", "shift_given", "shift_tracked", "tempo_ratio",
                                        "placed_tracked_level"]).mean()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="markdown table (a CSV beside it)")
    parser.add_argument("--model", default="piano", help="a model folder, or a shipped or pretrained name")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--validation", action="store_true",
                        help=f"the tracker's settings on {VALIDATION_PIECES} validation pieces (seeds 500 on)")
    args = parser.parse_args()
    first, count = (500, VALIDATION_PIECES) if args.validation else (1000, args.pieces)
    with tempfile.TemporaryDirectory() as scratch:
        pieces = [transcribed_piece(first + i, i, args.model, Path(scratch)) for i in range(count)]
    if args.validation:
        write_table(validation_grid(pieces), args.out)
        return
    rows = [{"seed": p["seed"], "piano": p["piano"], "bpm": round(p["bpm"], 1), **score_row(p),
             "musicxml_warnings": p["musicxml_warnings"]} for p in pieces]
    mean = pd.DataFrame(rows).drop(columns=["seed", "piano"]).mean().to_dict()
    write_table(rows + [{"seed": "mean", "piano": "", **mean}], args.out)


if __name__ == "__main__":
    main()
