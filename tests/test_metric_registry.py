"""The metric contract: a metric defined in this file alone (one function and one
registry line) reaches the per-track table, the stage's log, the summary, the ranked
tables and the figures, with values worked out by hand here; no package module edited."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.evaluation import registry
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.report import plots
from lowrank_amt.runtime.io import write_json
from lowrank_amt.stages import evaluate as evaluation

EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}

# Per test track: the reference's and the transcription's pitches (one note a second), and
# the pitch-class F worked out by hand from the sets of pitch classes played.
TRACKS = {"a": ([60, 64, 67], [60, 76], 0.8),  # classes {0, 4, 7} against {0, 4}: P 1, R 2/3
          "b": ([62, 60, 64], [62, 72, 64, 65], 6 / 7)}  # {0, 2, 4} against {0, 2, 4, 5}: P 3/4, R 1


def pitch_class_f(reference, transcription, onset_tolerance, offset_ratio):
    """A toy metric: the F-measure of the sets of pitch classes played, timing ignored."""
    played, found = ({int(p) % 12 for p in notes[1]} for notes in (reference, transcription))
    hits = len(played & found)
    return {"pitch_class_f": 2 * hits / (len(played) + len(found)) if played or found else 0.0}


@pytest.fixture
def toy_metric():
    metric = registry.register(registry.Metric("pitch_class_f", "pitch-class F", pitch_class_f))
    yield metric
    registry.METRICS.remove(metric)


def one_note_a_second(pitches):
    return np.array([[i, i + 0.5] for i in range(len(pitches))], dtype=float), np.array(pitches), np.full(len(pitches), 80)


@pytest.fixture
def test_split(tmp_path):
    """Two test tracks: their reference MIDI files, an index naming them, and a folder of
    transcriptions; and one run's cost files, as ``aggregate`` reads them."""
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    rows = []
    for track_id, (played, found, _) in TRACKS.items():
        write_midi_notes(tmp_path / f"{track_id}_ref.mid", *one_note_a_second(played))
        write_midi_notes(midi_dir / f"{track_id}.mid", *one_note_a_second(found))
        rows.append({"track_id": track_id, "split": "test", "features_path": f"{track_id}.npz",
                     "midi_path": str(tmp_path / f"{track_id}_ref.mid"), "duration": 4.0})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    write_json(tmp_path / "train.json", {"train_seconds": 10.0, "train_hours": 1.0})
    write_json(tmp_path / "activations.json", {"seconds_per_audio_minute": 1.0})
    write_json(tmp_path / "decoding.json", {"threshold": 0.2, "params": {"threshold": 0.2}})
    return tmp_path, midi_dir


def evaluate_and_aggregate(folder, midi_dir, log):
    per_track = evaluation.evaluate(midi_dir, folder / "index.csv", EVALUATION, folder / "per_track.csv", log=log)
    run = {"dataset": "synth", "features": "cqt", "model": "toy_run", "family": "nmf",
           **{key: folder / name for key, name in (("per_track", "per_track.csv"), ("train_info", "train.json"),
                                                   ("activations_info", "activations.json"),
                                                   ("decoding_info", "decoding.json"))}}
    summary = evaluation.aggregate([run], "abc", folder / "results.csv", folder / "summary.csv",
                                   folder / "summary.md", folder / "summary.html")
    return per_track, summary


def test_a_metric_added_in_one_line_reaches_every_table_and_figure(toy_metric, test_split):
    folder, midi_dir = test_split
    lines = []
    per_track, summary = evaluate_and_aggregate(folder, midi_dir, lines.append)
    expected = [f for _, _, f in TRACKS.values()]
    # the per-track table and the stage's log line
    assert per_track.set_index("track_id")["pitch_class_f"].to_list() == pytest.approx(expected, abs=1e-12)
    assert any(line.startswith("a: ") and "pitch-class F 0.800" in line for line in lines)
    # the summary: the mean and standard deviation over tracks, per track (not per run)
    row = pd.read_csv(folder / "summary.csv").iloc[0]
    assert row["pitch_class_f_mean"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert row["pitch_class_f_std"] == pytest.approx(np.std(expected, ddof=1), abs=1e-12)
    # the ranked tables, markdown and HTML: a labelled column of mean (std)
    cell = f"{np.mean(expected):.3f} ({np.std(expected, ddof=1):.3f})"
    markdown = (folder / "summary.md").read_text().splitlines()
    assert "pitch-class F" in markdown[0].split(" | ") and cell in markdown[2]
    assert "pitch-class F" in (folder / "summary.html").read_text()
    # the figures: a panel of its own in the trade-off and scaling figures
    for plot in (plots.tradeoff_plot, plots.scaling_plot):
        plot(summary, folder / f"{plot.__name__}.svg")
        assert "pitch-class F" in (folder / f"{plot.__name__}.svg").read_text()


def test_without_its_line_the_metric_is_nowhere(test_split):
    folder, midi_dir = test_split
    per_track, summary = evaluate_and_aggregate(folder, midi_dir, lambda m: None)
    assert "pitch_class_f" not in per_track and "pitch_class_f_mean" not in summary
    assert "pitch-class F" not in (folder / "summary.md").read_text()
    assert registry.columns() == ["note_onset_f", "note_offset_f", "note_offset_velocity_f", "frame_f"]


def test_a_column_is_registered_once(toy_metric):
    with pytest.raises(ValueError, match="pitch_class_f"):
        registry.register(registry.Metric("pitch_class_f", "again", pitch_class_f))
