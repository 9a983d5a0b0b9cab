"""Pretrained Transkun 2.0 on pieces rendered by fluidsynth: the filterbank that stands in
for torchaudio is the weights' own, its notes survive the grid they are written on, and
through the stages it transcribes a rendered piece better than Basic Pitch, scored in the
same test; ``lowrank-amt transcribe --model transkun`` writes the same notes, with their
velocities and the sustain pedal."""

import json

import numpy as np
import pandas as pd
import pretty_midi
import pytest
import torch

from lowrank_amt import families
from lowrank_amt.cli import main
from lowrank_amt.datasets.composition import random_piece
from lowrank_amt.datasets.manifest import write_manifest
from lowrank_amt.datasets.rendering import find_soundfont, render
from lowrank_amt.decoding.decode import pedal_spans
from lowrank_amt.deep import transkun_pretrained as tk
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.evaluation.notes import pedal_intervals, read_midi_notes
from lowrank_amt.runtime.io import read_json
from lowrank_amt.stages import evaluate as evaluation
from lowrank_amt.stages import train as training
from lowrank_amt.stages import transcribe as transcription

EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}
QUIET = lambda message: None  # noqa: E731


def test_the_filterbank_standing_in_for_torchaudio_is_the_weights_own():
    folder = tk.package_folder() / "pretrained"
    config = json.loads((folder / "2.0.conf").read_text())["Model"]["config"]
    weights = torch.load(folder / "2.0.pt", map_location="cpu", weights_only=True)["state_dict"]
    ours = tk.melscale_fbanks(config["windowSize"] // 2 + 1, config["f_min"], config["f_max"], config["n_mels"],
                              config["fs"])
    torch.testing.assert_close(ours, weights["framewiseFeatureExtractor.freq2mels"], atol=1e-6, rtol=0)
    assert config["fs"] == tk.SAMPLE_RATE == families.get("transkun").sample_rate


def test_notes_survive_the_grid_they_are_written_on():
    """Written at 100 Hz and stored as float16 (as the activations stage stores them):
    times within half a frame, pitches and velocities exact, re-struck keys kept apart."""
    rng = np.random.default_rng(3)
    intervals, pitches, velocities = [], [], []
    for key in rng.choice(np.arange(21, 109), 30, replace=False):
        start = 0.0
        for _ in range(3):  # three notes a key, the next starting as the last ends or later
            start += rng.uniform(0.0, 0.5)
            end = start + rng.uniform(0.05, 1.0)
            intervals.append([start, end]), pitches.append(key), velocities.append(rng.integers(1, 128))
            start = end if rng.random() < 0.5 else end + 0.1
    pedal = np.array([[0.5, 2.0], [2.5, 4.0]])  # the sustain pedal comes as notes of pitch -64
    intervals, pitches = np.vstack([intervals, pedal]), np.concatenate([pitches, [tk.SUSTAIN_PITCH] * 2])
    velocities = np.concatenate([velocities, [127, 127]])
    outputs = {name: array.astype(np.float16) for name, array in
               tk.notes_to_outputs(intervals, pitches, velocities, n_frames=1000).items()}
    assert np.array_equal(pedal_spans(outputs, tk.FRAME_RATE), pedal)
    intervals, pitches, velocities = intervals[:-2], pitches[:-2], velocities[:-2]
    back = tk.outputs_to_notes(outputs)
    ours, theirs = np.lexsort((intervals[:, 0], pitches)), np.lexsort((back[0][:, 0], back[1]))  # key, then time
    assert np.array_equal(back[1][theirs], pitches[ours]) and np.array_equal(back[2][theirs], velocities[ours])
    assert np.abs(back[0][theirs] - intervals[ours]).max() <= 0.005 + 1e-9
    assert np.all(np.diff(back[0][:, 0]) >= 0)  # in onset order


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """Two rendered 5-second pieces (validation, test) with a manifest and a feature
    index (whose feature files Transkun never reads)."""
    folder = tmp_path_factory.mktemp("transkun")
    manifest, index = [], []
    for i, split in enumerate(("validation", "test")):
        track_id = f"{split}_0"
        random_piece(np.random.default_rng([8, i]), 5.0, 3, (36, 96)).write(str(folder / f"{track_id}.mid"))
        duration = render(folder / f"{track_id}.mid", folder / f"{track_id}.wav", find_soundfont(), tk.SAMPLE_RATE)
        manifest.append({"track_id": track_id, "split": split, "audio_path": f"{track_id}.wav",
                         "midi_path": f"{track_id}.mid", "duration": duration, "instrument": "gm0"})
        index.append({"track_id": track_id, "split": split, "features_path": "unused.npy", "roll_path": "unused.npy",
                      "midi_path": str(folder / f"{track_id}.mid"), "n_frames": 0, "frame_rate": 100.0,
                      "duration": duration})
    write_manifest(manifest, folder / "manifest.csv")
    pd.DataFrame(index).to_csv(folder / "index.csv", index=False)
    return folder


def basic_pitch_note_f(pieces):
    """Basic Pitch's note F on the test piece with its own default thresholds."""
    from lowrank_amt.deep import basic_pitch_onnx as bp
    from lowrank_amt.signal.audio import load_audio
    outputs = bp.posteriorgrams(load_audio(pieces / "test_0.wav", 22050), bp.load_model())
    est = bp.posteriorgram_notes(outputs["note"], outputs["onset"], 0.5, 0.3)
    ref = read_midi_notes(pieces / "test_0.mid")
    return note_metrics(ref[0], ref[1], est[0], est[1])["note_onset_f"]


def test_through_the_stages_it_transcribes_better_than_basic_pitch(pieces, tmp_path, capsys):
    spec = {"family": "transkun", "device": "cpu"}
    training.train(spec, pieces / "index.csv", tmp_path / "model.npz", tmp_path / "loss.csv", tmp_path / "train.json",
                   log=QUIET)
    assert read_json(tmp_path / "train.json")["n_parameters"] == 13_613_711
    transcription.activations(tmp_path / "model.npz", pieces / "index.csv", tmp_path / "activations.npz",
                              tmp_path / "activations.json", log=QUIET, manifest_path=pieces / "manifest.csv")
    transcription.decode(tmp_path / "model.npz", tmp_path / "activations.npz", pieces / "index.csv", {}, EVALUATION,
                         tmp_path / "midi", tmp_path / "decoding.json", log=QUIET)
    decoding = read_json(tmp_path / "decoding.json")
    assert decoding["params"] == {} and decoding["transkun_version"] == "2.0.1"
    table = evaluation.evaluate(tmp_path / "midi", pieces / "index.csv", EVALUATION, tmp_path / "per_track.csv",
                                log=QUIET)
    f_transkun, f_basic_pitch = float(table["note_onset_f"].iloc[0]), basic_pitch_note_f(pieces)
    scores = table.iloc[0]
    print(f"note onset F on a rendered piece: Transkun {f_transkun:.3f}, Basic Pitch {f_basic_pitch:.3f}; Transkun "
          f"with offsets {scores['note_offset_f']:.3f}, and velocity {scores['note_offset_velocity_f']:.3f}")
    assert f_transkun > 0.9 and f_transkun > f_basic_pitch
    # its velocities carry: scored against the same notes with their velocities shuffled
    ref, est = read_midi_notes(pieces / "test_0.mid"), read_midi_notes(tmp_path / "midi" / "test_0.mid")
    shuffled = note_metrics(ref[0], ref[1], est[0], est[1], ref_velocities=ref[2],
                            est_velocities=np.random.default_rng(0).permutation(est[2]))["note_offset_velocity_f"]
    print(f"velocity-aware note F {scores['note_offset_velocity_f']:.3f}, with its velocities shuffled {shuffled:.3f}")
    assert scores["note_offset_velocity_f"] > shuffled + 0.1
    # the command line writes the same notes as the stages
    assert main(["transcribe", "--model", "transkun", str(pieces / "test_0.wav"), "-o", str(tmp_path / "cli")]) == 0
    cli, stages = read_midi_notes(tmp_path / "cli" / "test_0.mid"), read_midi_notes(tmp_path / "midi" / "test_0.mid")
    assert np.array_equal(cli[1], stages[1]) and np.abs(cli[0] - stages[0]).max() <= 0.011
    assert np.array_equal(cli[2], stages[2])


def test_the_sustain_pedal_it_hears_is_written_as_cc64(tmp_path):
    """Staccato chords every 0.5 s, the sustain pedal down from 1.5 to 4 s: the chords
    under it ring on. Transkun hears the pedal from the first chord it holds (1.75 s) to
    its release, and ``transcribe`` writes it as CC64; it also marks each staccato
    release with a blip of under 0.1 s, written as it gives them."""
    piece, piano = pretty_midi.PrettyMIDI(), pretty_midi.Instrument(0)
    rng = np.random.default_rng(0)
    for start in np.arange(0.25, 5.5, 0.5):
        piano.notes += [pretty_midi.Note(80, int(key), start, start + 0.12)
                        for key in rng.choice(np.arange(48, 84), 3, replace=False)]
    piano.control_changes = [pretty_midi.ControlChange(64, 127, 1.5), pretty_midi.ControlChange(64, 0, 4.0)]
    piece.instruments.append(piano)
    piece.write(str(tmp_path / "pedal.mid"))
    render(tmp_path / "pedal.mid", tmp_path / "pedal.wav", find_soundfont(), tk.SAMPLE_RATE)
    assert main(["transcribe", "--model", "transkun", str(tmp_path / "pedal.wav"), "-o", str(tmp_path / "out")]) == 0
    written = pedal_intervals(tmp_path / "out" / "pedal.mid")
    longest = written[np.argmax(written[:, 1] - written[:, 0])]
    assert abs(longest[0] - 1.75) <= 0.1 and abs(longest[1] - 4.0) <= 0.1
    assert np.all(np.delete(written[:, 1] - written[:, 0], np.argmax(written[:, 1] - written[:, 0])) < 0.1)
    assert len(read_midi_notes(tmp_path / "out" / "pedal.mid")[1]) >= 30  # its notes, with the pedal
