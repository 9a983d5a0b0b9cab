"""Pretrained Basic Pitch through ONNX on pieces rendered by fluidsynth: its posteriorgrams
equal basic-pitch's own inference, it transcribes far better than trivial transcribers
scored in the same test, and its stages tune thresholds on validation only and write
what ``stages/evaluate.py`` scores."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt import families
from lowrank_amt.datasets.composition import random_piece
from lowrank_amt.datasets.manifest import write_manifest
from lowrank_amt.datasets.rendering import find_soundfont, render
from lowrank_amt.deep import basic_pitch_onnx as bp
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.evaluation.notes import read_midi_notes
from lowrank_amt.runtime.io import read_json
from lowrank_amt.signal.audio import load_audio
from lowrank_amt.stages import evaluate as evaluation
from lowrank_amt.stages import train as training
from lowrank_amt.stages import transcribe as transcription

SAMPLE_RATE = 22050
SPEC = {"family": "basic_pitch", "onset_thresholds": [0.4, 0.6], "frame_thresholds": [0.3], "min_note_ms": [127.7]}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}
QUIET = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """Two rendered 6-second pieces (validation, test) with a manifest and a feature
    index (the index's feature files are never read by Basic Pitch)."""
    folder = tmp_path_factory.mktemp("bp")
    soundfont = find_soundfont()
    manifest, index = [], []
    for i, split in enumerate(("validation", "test")):
        track_id = f"{split}_0"
        random_piece(np.random.default_rng([5, i]), 6.0, 3, (40, 90)).write(str(folder / f"{track_id}.mid"))
        duration = render(folder / f"{track_id}.mid", folder / f"{track_id}.wav", soundfont, SAMPLE_RATE)
        manifest.append({"track_id": track_id, "split": split, "audio_path": f"{track_id}.wav",
                         "midi_path": f"{track_id}.mid", "duration": duration, "instrument": "gm0"})
        index.append({"track_id": track_id, "split": split, "features_path": "unused.npy", "roll_path": "unused.npy",
                      "midi_path": str(folder / f"{track_id}.mid"), "n_frames": 0, "frame_rate": SAMPLE_RATE / 512,
                      "duration": duration})
    write_manifest(manifest, folder / "manifest.csv")
    pd.DataFrame(index).to_csv(folder / "index.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def model():
    return bp.load_model()


def test_the_familys_audio_grid_is_basic_pitchs():
    from basic_pitch import constants
    family = families.get("basic_pitch")
    assert (family.sample_rate, family.hop_length) == (constants.AUDIO_SAMPLE_RATE, constants.FFT_HOP)


def test_posteriorgrams_equal_basic_pitchs_own_inference(pieces, model):
    from basic_pitch.inference import run_inference
    ours = bp.posteriorgrams(load_audio(pieces / "test_0.wav", SAMPLE_RATE), model)
    theirs = run_inference(pieces / "test_0.wav", model)
    for key in ("note", "onset"):
        assert ours[key].shape == theirs[key].shape and ours[key].shape[1] == 88
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-6)


def test_transcribes_far_better_than_trivial_transcribers(pieces, model):
    ref = read_midi_notes(pieces / "test_0.mid")
    outputs = bp.posteriorgrams(load_audio(pieces / "test_0.wav", SAMPLE_RATE), model)
    est = bp.posteriorgram_notes(outputs["note"], outputs["onset"], 0.5, 0.3)  # Basic Pitch's defaults
    f_basic_pitch = note_metrics(ref[0], ref[1], est[0], est[1])["note_onset_f"]
    f_silent = note_metrics(ref[0], ref[1], np.zeros((0, 2)), np.zeros(0, dtype=int))["note_onset_f"]
    rng = np.random.default_rng(0)  # as many random notes as the reference, in its pitch range
    starts = np.sort(rng.uniform(0, 6.0, len(ref[1])))
    random_notes = np.stack([starts, starts + 0.3], axis=1), rng.integers(40, 91, len(ref[1]))
    f_random = note_metrics(ref[0], ref[1], *random_notes)["note_onset_f"]
    assert f_silent == 0.0
    assert f_basic_pitch > 0.6 and f_basic_pitch > f_random + 0.4


def run_stages(pieces, out, manifest=None):
    training.train(SPEC, pieces / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json", log=QUIET)
    transcription.activations(out / "model.npz", pieces / "index.csv", out / "activations.npz", out / "activations.json",
                              log=QUIET, manifest_path=manifest or pieces / "manifest.csv")


def test_stages_tune_on_validation_and_write_what_evaluation_scores(pieces, tmp_path):
    run_stages(pieces, tmp_path)
    info = read_json(tmp_path / "activations.json")
    assert info["seconds_per_audio_minute"] > 0 and info["device"] == "cpu (onnxruntime)"
    arrays = np.load(tmp_path / "activations.npz")
    assert sorted(arrays.files) == ["frame_rate", "test__test_0", "test__test_0__onset",
                                    "validation__validation_0", "validation__validation_0__onset"]
    assert float(arrays["frame_rate"]) == pytest.approx(22050 / 256)
    transcription.decode(tmp_path / "model.npz", tmp_path / "activations.npz", pieces / "index.csv", {}, EVALUATION,
                         tmp_path / "midi", tmp_path / "decoding.json", log=QUIET)
    decoding = read_json(tmp_path / "decoding.json")
    assert len(decoding["validation_trials"]) == 2 and decoding["basic_pitch_version"] == "0.4.0"
    # The choice is the best validation trial, recomputed independently here (frames x 88).
    validation = arrays["validation__validation_0"].astype(np.float32).T, \
        arrays["validation__validation_0__onset"].astype(np.float32).T
    ref = read_midi_notes(pieces / "validation_0.mid")
    scores = {}
    for onset_threshold in SPEC["onset_thresholds"]:
        est = bp.posteriorgram_notes(*validation, onset_threshold, 0.3)
        scores[onset_threshold] = note_metrics(ref[0], ref[1], est[0], est[1])["note_onset_f"]
    assert decoding["params"]["onset_threshold"] == max(scores, key=scores.get)
    table = evaluation.evaluate(tmp_path / "midi", pieces / "index.csv", EVALUATION, tmp_path / "per_track.csv",
                                log=QUIET)
    assert table["note_onset_f"].iloc[0] > 0.6
    train_info = read_json(tmp_path / "train.json")
    assert train_info["pretrained"] and train_info["n_parameters"] == bp.count_parameters(bp.model_path())
    assert train_info["train_seconds"] is None


def test_transcribe_takes_basic_pitch_by_name(pieces, tmp_path):
    from lowrank_amt.recordings import transcribe_files
    transcribe_files("basic_pitch", [pieces / "test_0.wav"], tmp_path, log=QUIET)
    ref, est = read_midi_notes(pieces / "test_0.mid"), read_midi_notes(tmp_path / "test_0.mid")
    assert note_metrics(ref[0], ref[1], est[0], est[1])["note_onset_f"] > 0.6  # as its own inference, above


def test_a_track_missing_from_the_manifest_is_named(pieces, tmp_path):
    write_manifest([], tmp_path / "manifest.csv")
    with pytest.raises(LowrankAmtError, match="lacks track"):
        run_stages(pieces, tmp_path, manifest=tmp_path / "manifest.csv")


def test_parameter_count_matches_the_architecture():
    """The count read from the ONNX graph equals the one worked out from basic-pitch's
    ``models.model`` (harmonic stack of 8, 32 filters): each convolution's
    out x in x height x width kernel plus out biases, and the input batch norm's scale
    and shift (its later batch norms are folded into the convolutions' biases; the
    first 32-filter contour convolution is overwritten in models.py, so not exported)."""
    convolutions = [(8, 8, 3, 39), (1, 8, 5, 5), (32, 1, 7, 7), (1, 32, 7, 3), (32, 8, 5, 5), (1, 33, 3, 3)]
    expected = sum(o * i * h * w + o for o, i, h, w in convolutions) + 2
    assert bp.count_parameters(bp.model_path()) == expected == 16_702  # the paper: "about 17 K"
