"""Stages on a feature cache built from known templates (no audio, no fluidsynth):
planted templates are recovered, transcription beats trivial transcribers, and the
decoding threshold depends on the validation split only."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.constants import MIDI_MIN, N_KEYS
from lowrank_amt.io import read_json
from lowrank_amt.notes import piano_roll, write_midi_notes
from lowrank_amt import evaluation, stages

FRAME_RATE = 22050 / 512
N_BINS = 264
SPEC = {"family": "nmf", "supervision": "supervised", "beta": 1, "train_iterations": 50,
        "transcribe_iterations": 100, "sparsity": 0.0, "seed": 0, "device": "cpu"}
DECODING = {"thresholds": [0.05, 0.1, 0.2, 0.3, 0.5], "min_note_seconds": 0.05}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}


def harmonic_templates(rng):
    """A comb of decaying harmonics per key on a 3-bins-per-semitone log axis."""
    W = np.full((N_BINS, N_KEYS), 1e-4)
    for key in range(N_KEYS):
        for h in range(1, 9):
            b = 3 * key + int(round(36 * np.log2(h)))
            if b < N_BINS:
                W[b, key] += rng.uniform(0.5, 1.0) / h
    return W / W.sum(axis=0)


def random_notes(rng, seconds, n):
    starts = np.sort(rng.uniform(0, seconds - 0.6, n))
    intervals = np.stack([starts, starts + rng.uniform(0.2, 0.6, n)], axis=1)
    return intervals, rng.integers(40, 90, n)


def write_track(folder, track_id, split, W, intervals, pitches, seconds, rng):
    n_frames = int(seconds * FRAME_RATE)
    roll = piano_roll(intervals, pitches, n_frames, FRAME_RATE)
    decay = np.exp(-np.arange(n_frames) / 40.0)
    gains = np.zeros((N_KEYS, n_frames))
    for (start, end), pitch in zip(intervals, pitches):
        a, b = int(np.ceil(start * FRAME_RATE)), int(np.ceil(end * FRAME_RATE))
        gains[pitch - MIDI_MIN, a:b] += decay[: b - a]
    V = W @ gains + 1e-3 * rng.random((N_BINS, n_frames))
    np.save(folder / f"{track_id}.npy", V.astype(np.float32))
    np.save(folder / f"{track_id}.roll.npy", roll.astype(np.uint8))
    write_midi_notes(folder / f"{track_id}.mid", intervals, pitches)
    return {"track_id": track_id, "split": split, "features_path": f"{track_id}.npy",
            "roll_path": f"{track_id}.roll.npy", "midi_path": str(folder / f"{track_id}.mid"),
            "n_frames": n_frames, "frame_rate": FRAME_RATE, "duration": seconds}


def build_cache(folder, splits, notes_per_track, key_spacing, key_hold):
    """A feature cache in ``folder`` from known harmonic templates: one isolated-note track
    (a key every ``key_spacing`` s, held ``key_hold`` s) and 8-s pieces of
    ``notes_per_track`` random notes, ``splits`` = ((split, number of tracks), ...).
    Returns (folder, true templates)."""
    rng = np.random.default_rng(0)
    W = harmonic_templates(rng)
    keys = np.arange(MIDI_MIN, MIDI_MIN + N_KEYS)
    starts = 0.1 + key_spacing * np.arange(N_KEYS)
    isolated = np.stack([starts, starts + key_hold], axis=1)
    rows = [write_track(folder, "isolated", "isolated", W, isolated, keys, key_spacing * N_KEYS + 1, rng)]
    for split, n in splits:
        for i in range(n):
            rows.append(write_track(folder, f"{split}_{i}", split, W, *random_notes(rng, 8, notes_per_track), 8, rng))
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    return folder, W


@pytest.fixture
def cache(tmp_path):
    return build_cache(tmp_path, (("validation", 2), ("test", 3)), notes_per_track=25, key_spacing=0.5, key_hold=0.4)


def run_pipeline(folder, tag):
    out = folder / tag
    stages.train(SPEC, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json", log=lambda m: None)
    stages.activations(SPEC, out / "model.npz", folder / "index.csv", out / "activations.npz",
                       out / "activations.json", log=lambda m: None)
    evaluation.decode(out / "activations.npz", folder / "index.csv", DECODING, EVALUATION, out / "midi",
                      out / "decoding.json", log=lambda m: None)
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


def test_transcription_beats_trivial_transcribers(cache):
    folder, _ = cache
    _, table = run_pipeline(folder, "run")
    from lowrank_amt.metrics import note_metrics
    from lowrank_amt.notes import read_midi_notes
    rng = np.random.default_rng(1)
    index = pd.read_csv(folder / "index.csv")
    random_f = []
    for row in index[index["split"] == "test"].itertuples():
        ref = read_midi_notes(row.midi_path)
        guess = random_notes(rng, 8, len(ref[1]))
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
    assert read_json(first / "decoding.json")["threshold"] == read_json(second / "decoding.json")["threshold"]
    assert table["note_onset_f"].max() == 0.0  # the test references did change
