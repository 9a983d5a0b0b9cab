"""The score (decoding/score.py, ``transcribe --musicxml``): beats, grid, hands, key and
the MusicXML, each against values written out by hand or a known composed piece."""

import warnings
from fractions import Fraction

import numpy as np
import pytest

from lowrank_amt.datasets.composition import compose_piece
from lowrank_amt.decoding.score import (ScoreNote, estimate_key, key_fifths, pitch_names, quantise, split_hands,
                                        transcription_score, write_musicxml)
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.evaluation.metrics import score_agreement

F = Fraction
#: (position in beats, pitch): quarters, eighths, sixteenths and triplets in one phrase
PHRASE = [(F(0), 60), (F(0), 48), (F(1), 62), (F(3, 2), 64), (F(2), 65), (F(9, 4), 67), (F(5, 2), 69),
          (F(11, 4), 71), (F(3), 72), (F(10, 3), 71), (F(11, 3), 69), (F(4), 67), (F(4), 43), (F(6), 60)]


def played(phrase, bpm, start, jitter, seed=0):
    """Onsets (s) of a phrase at ``bpm`` from ``start``, each moved by a uniform jitter."""
    rng = np.random.default_rng(seed)
    return np.array([start + float(pos) * 60 / bpm + rng.uniform(-jitter, jitter) for pos, _ in phrase])


def test_quantise_puts_jittered_onsets_back_on_their_written_positions():
    bpm = 100.0
    onsets = played(PHRASE, bpm, start=0.7, jitter=0.015)
    pitches = [p for _, p in PHRASE]
    beats = 0.7 + np.arange(12) * 60 / bpm
    notes = quantise(onsets, onsets + 0.2, pitches, beats)
    assert [(n.onset, n.pitch) for n in notes] == PHRASE
    assert all(n.offset > n.onset for n in notes)


def test_a_finer_grid_only_where_the_onsets_ask_for_it():
    # eighths on a sixteenth grid would also fit; the simpler grid is chosen
    eighths = [(F(k, 2), 60) for k in range(8)]
    onsets = played(eighths, 120.0, 0.0, 0.01)
    notes = quantise(onsets, onsets + 0.1, [60] * 8, np.arange(10) * 0.5)
    assert [n.onset for n in notes] == [pos for pos, _ in eighths]
    assert {n.offset - n.onset for n in notes} == {F(1, 2)}  # 0.1 s = 0.2 beat, one cell of the eighths' grid


def test_tracked_beats_of_a_constant_tempo_piece_give_its_known_score():
    exact = compose_piece(np.random.default_rng(7), 20.0, 6, (36, 96), tempo_spread=0.0, jitter=0.0)
    bpm = float(exact.get_tempo_changes()[1][0])
    notes = exact.instruments[0].notes
    beats = (np.array([n.start for n in notes]) - min(n.start for n in notes)) * bpm / 60
    assert np.abs(beats * 12 - np.round(beats * 12)).max() < 0.01  # jitter 0: every onset on its beat's grid
    known = [(n.pitch, F(round(b * 12), 12)) for n, b in zip(notes, beats)]
    onsets = np.array([n.start for n in notes]) + np.random.default_rng(0).normal(0, 0.008, len(notes))
    transcription = (np.stack([onsets, onsets + 0.2], axis=1), np.array([n.pitch for n in notes]),
                     np.array([n.velocity for n in notes]))
    for tempo, least in ((bpm, 1.0), (None, 0.95)):
        quantised, found = transcription_score(transcription, tempo)
        assert found == pytest.approx(bpm, rel=0.02)
        assert score_agreement(known, [(n.pitch, n.onset) for n in quantised])["recall"] >= least


def test_hands_split_at_the_given_key_and_chords_last_until_the_next():
    notes = [ScoreNote(60, F(0), F(2)), ScoreNote(64, F(0), F(1)), ScoreNote(59, F(0), F(4)),
             ScoreNote(67, F(1), F(3)), ScoreNote(40, F(2), F(3))]
    upper, lower = split_hands(notes, split=60)
    assert upper == [(F(0), F(1), (60, 64)), (F(1), F(2), (67,))]
    assert lower == [(F(0), F(2), (59,)), (F(2), F(1), (40,))]
    assert split_hands(notes, split=65)[0] == [(F(1), F(2), (67,))]


@pytest.mark.parametrize("scale, tonic, mode, fifths", [
    ((0, 2, 4, 5, 7, 9, 11), 0, "major", 0), ((3, 5, 7, 8, 10, 0, 2), 3, "major", -3),
    ((9, 11, 0, 2, 4, 5, 8), 9, "minor", 0), ((2, 4, 5, 7, 9, 10, 1), 2, "minor", -1),
    ((6, 8, 10, 11, 1, 3, 5), 6, "major", 6)])
def test_key_of_a_scale_played_with_its_tonic_triad(scale, tonic, mode, fifths):
    triad = [scale[0], scale[2], scale[4]] * 3  # the tonic chord weighs as it does in music
    pitches = [60 + pc for pc in list(scale) + triad]
    assert estimate_key(pitches, np.ones(len(pitches))) == (tonic, mode)
    assert key_fifths(tonic, mode) == fifths


def test_pitches_are_spelled_in_the_key():
    assert pitch_names(3, "major")[10] == "B-" and pitch_names(7, "major")[6] == "F#"
    d_minor = pitch_names(2, "minor")
    assert d_minor[1] == "C#" and d_minor[10] == "B-"  # raised seventh in a flat key
    assert pitch_names(0, "minor")[11] == "B"  # C minor's leading tone is B natural


def test_score_agreement_counts_each_note_once_after_the_best_shift():
    reference = [(60, F(0)), (64, F(0)), (60, F(1)), (62, F(3, 2))]
    estimate = [(60, F(1)), (64, F(1)), (60, F(2)), (60, F(2)), (65, F(5, 2))]
    assert score_agreement(reference, estimate)["matched"] == 1
    moved = score_agreement(reference, estimate, shifts=range(-2, 3))
    assert (moved["matched"], moved["shift"], moved["precision"]) == (3, -1, 3 / 5)


def test_musicxml_reads_back_in_music21_without_warnings(tmp_path):
    music21 = pytest.importorskip("music21")
    onsets = played(PHRASE, 90.0, 0.3, 0.0)
    notes = quantise(onsets, onsets + np.array([0.6] + [0.3] * 12 + [1.2]), [p for _, p in PHRASE],
                     0.3 + np.arange(12) * 60 / 90)
    key = write_musicxml(tmp_path / "x.musicxml", notes, bpm=90, title="phrase")
    assert key == (0, "major")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = music21.converter.parse(str(tmp_path / "x.musicxml"), forceSource=True)
    assert len(score.parts) == 2 and score.parts[0].flatten().getElementsByClass("KeySignature")[0].sharps == 0
    read = sorted((p.midi, F(el.offset).limit_denominator(12)) for part in score.parts
                  for el in part.flatten().notes if el.tie is None or el.tie.type == "start" for p in el.pitches)
    assert read == sorted((p, pos) for pos, p in PHRASE)
    upper = score.parts[0].flatten().notesAndRests
    assert sum(el.quarterLength for el in upper) == 8  # two bars of 4/4, rests filled in


def test_a_tempo_out_of_range_is_refused():
    with pytest.raises(LowrankAmtError, match="--tempo must be between 20 and 400 BPM"):
        transcription_score((np.array([[0.0, 1.0]]), np.array([60]), np.array([80])), tempo=1000.0)
