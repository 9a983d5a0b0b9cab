"""Stages on a feature cache built from known templates (no audio, no fluidsynth):
planted templates are recovered, transcription beats trivial transcribers, and the
decoding threshold depends on the validation split only."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.constants import N_KEYS
from lowrank_amt.runtime.io import read_json
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.stages import evaluate as evaluation, train as training, transcribe as transcription


SPEC = {"family": "nmf", "supervision": "supervised", "beta": 1, "train_iterations": 50,
        "transcribe_iterations": 100, "sparsity": 0.0, "seed": 0, "device": "cpu"}
DECODING = {"thresholds": [0.05, 0.1, 0.2, 0.3, 0.5], "min_note_seconds": 0.05}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}


@pytest.fixture
def cache(tmp_path, cache_builder):
    return cache_builder(tmp_path, (("validation", 2), ("test", 3)), notes_per_track=25, key_spacing=0.5, key_hold=0.4)


def run_pipeline(folder, tag):
    out = folder / tag
    training.train(SPEC, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json", log=lambda m: None)
    transcription.activations(out / "model.npz", folder / "index.csv", out / "activations.npz", out / "activations.json",
                              log=lambda m: None)
    transcription.decode(out / "model.npz", out / "activations.npz", folder / "index.csv", DECODING, EVALUATION,
                         out / "midi", out / "decoding.json", log=lambda m: None)
    table = evaluation.evaluate(out / "midi", folder / "index.csv", EVALUATION, out / "per_track.csv", log=lambda m: None)
    return out, table


def test_planted_templates_are_recovered(cache):
    folder, W_true = cache
    out, _ = run_pipeline(folder, "run")
    W = np.load(out / "model.npz")["W"]
    correlations = [np.corrcoef(W[:, k], W_true[:, k])[0, 1] for k in range(N_KEYS)]
    assert min(correlations) > 0.95
    losses = pd.read_csv(out / "loss.csv")
    first, last = losses.groupby("template")["loss"].first(), losses.groupby("template")["loss"].last()
    assert (last < first).all()


def test_transcription_beats_trivial_transcribers(cache, random_piece):
    folder, _ = cache
    _, table = run_pipeline(folder, "run")
    from lowrank_amt.evaluation.metrics import note_metrics
    from lowrank_amt.evaluation.notes import read_midi_notes
    rng = np.random.default_rng(1)
    index = pd.read_csv(folder / "index.csv")
    random_f = []
    for row in index[index["split"] == "test"].itertuples():
        ref = read_midi_notes(row.midi_path)
        guess = random_piece(rng, 8, len(ref[1]))
        random_f.append(note_metrics(ref[0], ref[1], *guess)["note_onset_f"])
    assert table["note_onset_f"].mean() > 0.9
    assert table["note_onset_f"].mean() > np.mean(random_f) + 0.5


def test_threshold_depends_on_validation_only(cache):
    folder, _ = cache
    first, _ = run_pipeline(folder, "first")
    # Replace every test reference by nonsense: the chosen threshold must not move.
    index = pd.read_csv(folder / "index.csv")
    for row in index[index["split"] == "test"].itertuples():
        write_midi_notes(row.midi_path, [[0.1, 0.2]], [100])
    second, table = run_pipeline(folder, "second")
    # every decoding parameter: threshold, onset rule, offset fraction, release slope, velocity curve
    chosen = read_json(first / "decoding.json")
    assert chosen["params"] == read_json(second / "decoding.json")["params"] and "velocity_curve" in chosen["params"]
    assert table["note_onset_f"].max() == 0.0  # the test references did change
