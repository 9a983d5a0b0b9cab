"""Evaluation stages on hand-made activation files (no training): decoding parameters
come from the validation split only, the oracle column is separate, and aggregate
builds the tidy table with costs, pooling and NaN interpretability for deep models."""

import json

import numpy as np
import pandas as pd
import pytest

from lowrank_amt import families
from lowrank_amt.report import pages, summary
from lowrank_amt.model_file import save_model
from lowrank_amt.constants import MIDI_MIN, N_KEYS
from lowrank_amt.runtime.io import read_json, write_json
from lowrank_amt.evaluation.note_errors import ERROR_NAMES
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.stages import evaluate as evaluation, transcribe as transcription
from lowrank_amt.signal.feature_cache import record_checksums

FRAME_RATE = 22050 / 512
DECODING = {"thresholds": [0.05, 0.2, 0.4], "onsets": ["threshold", "peaks", "adaptive"],
            "offset_fractions": [0.05, 0.2, 0.5], "min_note_seconds": 0.05}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}
QUIET = dict(log=lambda m: None)


def activation_of(intervals, pitches, n_frames, rng, bleed):
    """Decaying note activations plus a spurious octave 'bleed' at ``bleed`` of the peak."""
    H = np.zeros((N_KEYS, n_frames))
    for (start, end), pitch in zip(intervals, pitches):
        a, b = int(np.ceil(start * FRAME_RATE)), int(np.ceil(end * FRAME_RATE))
        H[pitch - MIDI_MIN, a:b] += rng.uniform(0.5, 1.0) * np.exp(-np.arange(b - a) / 60)
        if pitch + 12 - MIDI_MIN < N_KEYS:
            H[pitch + 12 - MIDI_MIN, a:b] += bleed * np.exp(-np.arange(b - a) / 60)
    return H


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    rows, arrays = [], {}
    for split, n in (("validation", 2), ("test", 2)):
        for i in range(n):
            track = f"{split}{i}"
            starts = np.sort(rng.uniform(0, 5, 12))
            intervals = np.stack([starts, starts + rng.uniform(0.2, 0.8, 12)], axis=1)
            pitches = rng.integers(40, 80, 12)
            write_midi_notes(tmp_path / f"{track}.mid", intervals, pitches)
            arrays[f"{split}__{track}"] = activation_of(intervals, pitches, 260, rng, 0.3).astype(np.float16)
            rows.append({"track_id": track, "split": split, "features_path": "x.npy", "roll_path": "x.roll.npy",
                         "midi_path": str(tmp_path / f"{track}.mid"), "n_frames": 260,
                         "frame_rate": FRAME_RATE, "duration": 260 / FRAME_RATE})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    record_checksums(tmp_path)
    np.savez(tmp_path / "activations.npz", **arrays)
    save_model(tmp_path / "model.npz", "nmf", families.resolve({"family": "nmf"})[1], {})  # decoded as NMF's
    return tmp_path


def decode(folder, tag):
    transcription.decode(folder / "model.npz", folder / "activations.npz", folder / "index.csv", DECODING, EVALUATION,
                         folder / tag / "midi", folder / tag / "decoding.json", **QUIET)
    return read_json(folder / tag / "decoding.json")


def test_decoding_parameters_depend_on_validation_only(study):
    first = decode(study, "first")
    assert first["params"]["threshold"] == 0.4  # above the 0.3 octave bleed
    # Scramble every test activation and reference: the chosen parameters must not move.
    arrays = dict(np.load(study / "activations.npz"))
    for key in [k for k in arrays if k.startswith("test__")]:
        arrays[key] = np.random.default_rng(5).random(arrays[key].shape).astype(np.float16)
        write_midi_notes(study / f"{key.split('__')[1]}.mid", [[0.1, 0.2]], [100])
    np.savez(study / "activations.npz", **arrays)
    second = decode(study, "second")
    assert second["params"] == first["params"]
    assert second["validation_trials"] == first["validation_trials"]
    # ...while changing a validation reference does move them
    write_midi_notes(study / "validation0.mid", [[0.1, 0.2]], [100])
    write_midi_notes(study / "validation1.mid", [[0.1, 0.2]], [100])
    assert decode(study, "third")["validation_trials"] != first["validation_trials"]


def test_evaluate_scores_and_keeps_the_oracle_apart(study):
    info = decode(study, "run")
    table = evaluation.evaluate(study / "run" / "midi", study / "index.csv", EVALUATION, study / "per_track.csv",
                                activations_path=study / "activations.npz",
                                decoding_path=study / "run" / "decoding.json", decoding=DECODING, **QUIET)
    assert len(table) == 2 and table["note_onset_f"].min() > 0.8
    assert set(table["oracle_threshold"]) <= set(DECODING["thresholds"])
    # the oracle picks per track, so it is never worse than the tuned threshold
    assert (table["oracle_note_onset_f"] >= table["note_onset_f"] - 1e-9).all()
    assert info["threshold"] == info["params"]["threshold"]
    # the error counts account for every note the onset metric leaves unmatched
    false = table[[c for c in table if c.startswith("false_")]].sum(axis=1)
    missed = table[[c for c in table if c.startswith("missed_register_")]].sum(axis=1)
    assert (false == table["n_est_notes"] - table["note_onset_matches"]).all()
    assert (missed == table["n_ref_notes"] - table["note_onset_matches"]).all()


def test_read_benchmark(tmp_path):
    path = tmp_path / "bench.tsv"
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    "12.5\t0:00:12\t512.3\t900\t400\t450\t0\t1\t95.0\t11.0\n"
                    "13.5\t0:00:13\t600.0\t900\t400\t450\t0\t1\t95.0\tNA\n")
    assert summary.read_benchmark(path) == {"s": 13.0, "max_rss": 600.0, "cpu_time": 11.0}


def write_run(folder, name, family, f_values, interpretability=None, epochs=None, hours=1.0, validation_f=None):
    folder.mkdir(parents=True)
    pd.DataFrame({"track_id": ["a", "b"], "note_onset_p": f_values, "note_onset_r": f_values,
                  "note_onset_f": f_values, "note_offset_p": 0.1, "note_offset_r": 0.1, "note_offset_f": 0.1,
                  "frame_p": 0.5, "frame_r": 0.5, "frame_f": 0.5, "frame_accuracy": 0.3,
                  "n_ref_notes": [10, 30], "n_est_notes": [10, 30],
                  "note_onset_matches": [round(10 * f_values[0]), round(30 * f_values[1])],
                  "note_offset_matches": [1, 3], "frame_tp": 5, "frame_n_ref": 10, "frame_n_est": 10}
                 ).to_csv(folder / "per_track.csv", index=False)
    write_json(folder / "train.json", {"train_seconds": 100.0, "train_cpu_seconds": 150.0, "device": "cpu",
                                       "n_parameters": 23232})
    write_json(folder / "activations.json", {"seconds_per_audio_minute": 2.0, "device": "cpu"})
    write_json(folder / "decoding.json", {"threshold": 0.2, "params": {"threshold": 0.2, "onset": "peaks",
                                                                      "offset_fraction": 0.1},
                                          **({"validation_note_onset_f": validation_f} if validation_f else {})})
    (folder / "bench.tsv").write_text("s\tmax_rss\tcpu_time\n101.0\t700.5\t149.0\n")
    run = {"dataset": "synth", "features": "cqt", "model": name, "family": family, "train_hours": hours,
           "per_track": folder / "per_track.csv", "train_info": folder / "train.json",
           "activations_info": folder / "activations.json", "decoding_info": folder / "decoding.json",
           "train_benchmark": folder / "bench.tsv"}
    if interpretability is not None:
        write_json(folder / "interpretability.json", {"interpretability": interpretability, "coverage": 1.0,
                                                      "label_agreement": None, "n_templates": 88})
        run["interpretability"] = folder / "interpretability.json"
    if epochs:
        pd.DataFrame({"epoch": range(epochs), "loss": 1.0}).to_csv(folder / "loss.csv", index=False)
        run["loss"] = folder / "loss.csv"
    return run


def test_aggregate_tidy_table_and_ranked_summary(tmp_path):
    runs = [write_run(tmp_path / "nmf", "nmf_kl", "nmf", [0.6, 0.8], interpretability=0.9),
            write_run(tmp_path / "deep", "cnn", "deep", [0.9, 0.7], epochs=4, hours=2.0)]
    table = evaluation.aggregate(runs, "abc123", tmp_path / "results.csv", tmp_path / "summary.csv",
                          tmp_path / "summary.md")
    results = pd.read_csv(tmp_path / "results.csv")
    assert len(results) == 4 and (results["config_hash"] == "abc123").all()
    assert {"version_mir_eval", "device", "train_peak_memory_mb", "train_hours"} <= set(results.columns)
    assert results["train_peak_memory_mb"].iloc[0] == 700.5
    deep = table[table["model"] == "cnn"].iloc[0]
    nmf = table[table["model"] == "nmf_kl"].iloc[0]
    assert np.isnan(deep["interpretability"]) and nmf["interpretability"] == 0.9
    assert deep["train_seconds_per_epoch"] == 25.0 and np.isnan(nmf["train_seconds_per_epoch"])
    # mean over tracks vs pooled over notes: track b has 3x the notes
    assert nmf["note_onset_f_mean"] == pytest.approx(0.7)
    assert nmf["note_onset_f_pooled"] == pytest.approx((6 + 24) / 40)
    assert deep["note_onset_f_pooled"] == pytest.approx((9 + 21) / 40)
    assert nmf["note_onset_f_std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert list(table["rank"]) == [1, 2] and table["model"].iloc[0] in ("nmf_kl", "cnn")
    markdown = (tmp_path / "summary.md").read_text()
    assert "| 1 |" in markdown and "–" in markdown  # the deep model's interpretability: a dash
    assert json.loads(json.dumps(table["decoding_onset"].tolist())) == ["peaks", "peaks"]


def test_the_summary_names_the_size_validation_picks_not_the_test_maximum(tmp_path):
    """Three sizes of one model: the test table's best is 2 h, validation picks 1 h; the
    summary names 1 h with its test figure. A model of one size has no pick to name."""
    runs = [write_run(tmp_path / f"{h}", "hybrid", "unrolled", [f, f], hours=h, validation_f=v)
            for h, f, v in ((0.5, 0.60, 0.70), (1.0, 0.70, 0.80), (2.0, 0.75, 0.78))]
    runs.append(write_run(tmp_path / "once", "nmf_kl", "nmf", [0.5, 0.5], validation_f=0.9))
    table = evaluation.aggregate(runs, "abc", tmp_path / "results.csv", tmp_path / "summary.csv", tmp_path / "summary.md")
    picks = summary.validation_picks(table)
    assert picks[["model", "train_hours"]].values.tolist() == [["hybrid", 1.0]]
    assert ("Sizes picked by validation note F (onset): hybrid 1 h on its own (validation 0.800, test 0.700)."
            in (tmp_path / "summary.md").read_text())


def test_the_summary_pools_each_runs_errors_into_a_table_of_their_sources(tmp_path):
    runs = [write_run(tmp_path / "a", "nmf_kl", "nmf", [0.6, 0.8]), write_run(tmp_path / "b", "cnn", "deep", [0.5, 0.7])]
    counts = pd.read_csv(runs[0]["per_track"]).assign(**dict.fromkeys(ERROR_NAMES, 0))
    counts["false_octave"], counts["false_semitone"] = [1, 2], [0, 1]  # 3 octaves of 4 false notes
    counts["reference_register_high"], counts["missed_register_high"] = [5, 5], [1, 4]
    counts.to_csv(runs[0]["per_track"], index=False)
    table = evaluation.aggregate(runs, "abc", tmp_path / "results.csv", tmp_path / "summary.csv",
                                 tmp_path / "summary.md", tmp_path / "summary.html", tmp_path / "errors.md")
    nmf = table.set_index("model").loc["nmf_kl"]
    assert nmf["false_octave_share"] == pytest.approx(0.75) and nmf["recall_register_high"] == pytest.approx(0.5)
    rows = [line for line in (tmp_path / "errors.md").read_text().splitlines() if line.startswith("| nmf_kl")]
    assert len(rows) == 1 and "| 4 | 0 | 25 | 0 | 0 | 75 |" in rows[0]  # the run without counts has no row
    assert "cnn" not in (tmp_path / "errors.md").read_text()
    assert "Note errors" in (tmp_path / "summary.html").read_text()


def test_every_results_row_says_where_and_when_its_model_was_trained(tmp_path):
    made = {"git_commit": "0123456789abcdef", "git_dirty": True, "cpu": "Some CPU", "cpu_capability": "AVX2",
            "threads": 2, "run_date": "2026-12-02T21:00:00Z"}
    runs = [write_run(tmp_path / "a", "nmf_kl", "nmf", [0.6, 0.8]), write_run(tmp_path / "b", "cnn", "deep", [0.5, 0.7])]
    info = json.loads((tmp_path / "a/train.json").read_text())
    write_json(tmp_path / "a/train.json", {**info, "run": made})
    evaluation.aggregate(runs, "abc123", tmp_path / "results.csv", tmp_path / "summary.csv", tmp_path / "summary.md")
    results = pd.read_csv(tmp_path / "results.csv").set_index("model")
    assert results.loc["nmf_kl", "git_commit"].tolist() == ["0123456789abcdef"] * 2
    assert results.loc["nmf_kl", "cpu_capability"].tolist() == ["AVX2"] * 2
    assert results.loc["cnn", "git_commit"].isna().all()  # a train.json of before: empty cells
    markdown = (tmp_path / "summary.md").read_text()
    assert ("Trained by commit 0123456789 with uncommitted changes on Some CPU (AVX2 kernels, threads: 2), "
            "2026-12-02 to 2026-12-02 (rows: 1).") in markdown


def test_run_provenance_names_this_checkouts_commit_and_torchs_kernels(repo):
    import torch
    from lowrank_amt.runtime.versions import run_provenance
    made = run_provenance()
    head = (repo / ".git/HEAD").read_text().strip()
    if head.startswith("ref: "):  # a branch: its commit, loose or packed
        ref = head[5:]
        loose = repo / ".git" / ref
        packed = (repo / ".git/packed-refs").read_text() if (repo / ".git/packed-refs").exists() else ""
        head = loose.read_text().strip() if loose.exists() else next(
            line.split()[0] for line in packed.splitlines() if line.endswith(" " + ref))
    assert made["git_commit"] == head
    assert made["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert made["threads"] == torch.get_num_threads() and made["run_date"].endswith("Z")


def test_a_fresh_table_may_differ_from_the_readme_only_where_the_cpu_decides(repo):
    readme = (repo / "README.md").read_text()
    rows = pages.ranked_rows(readme)
    assert len(rows) >= 20 and {"network", "nmf", "basic_pitch"} <= {family for family, _ in rows.values()}
    assert pages.table_differences(readme, readme) == []
    lines = readme.splitlines()
    network = next(i for i, line in enumerate(lines) if "| harmonic_net | network |" in line)
    lowrank = next(i for i, line in enumerate(lines) if "| nmf_sup_kl | nmf |" in line)

    def with_cell(index, change):  # the note F (onset) cell of one row, changed
        cells = lines[index].split(" | ")
        f, std = cells[6].split(" ")
        cells[6] = f"{float(f) + change:.3f} {std}"
        return "\n".join(lines[:index] + [" | ".join(cells)] + lines[index + 1:])

    assert pages.table_differences(readme, with_cell(network, 0.05)) == []  # within the networks' 0.1
    assert len(pages.table_differences(readme, with_cell(network, 0.15))) == 1
    assert len(pages.table_differences(readme, with_cell(lowrank, 0.001))) == 1  # low-rank: exact
    # the gradient form (summary.csv says which model has it) within its 0.02, and only it
    gradient = next(i for i, line in enumerate(lines) if "| nmf_unsup_gradient | nmf |" in line)
    specs = {"nmf_unsup_gradient": {"supervision": "unsupervised", "form": "gradient"},
             "nmf_sup_kl": {"supervision": "supervised", "form": "full_batch"}}
    by_form = lambda family, model: pages.cpu_tolerance(family, model, specs)  # noqa: E731
    assert pages.table_differences(readme, with_cell(gradient, 0.015), by_form) == []
    assert len(pages.table_differences(readme, with_cell(gradient, 0.025), by_form)) == 1
    assert len(pages.table_differences(readme, with_cell(lowrank, 0.001), by_form)) == 1
    # both ways: a row the fresh table has and the page lacks is a difference too
    shorter = "\n".join(lines[:lowrank] + lines[lowrank + 1:])
    assert pages.table_differences(shorter, readme) == [
        "nmf_sup_kl / synth_piano / synth_piano_timgm / –: in the fresh table, not in the page"]


def test_a_pages_generated_table_is_copied_from_its_study_and_checked(tmp_path, monkeypatch, capsys):
    """`lowrank-amt page-table PAGE` copies the summary.md its markers name into the page;
    with --check it compares them (to the printed digits) and names each difference."""
    from lowrank_amt.cli import main
    runs = [write_run(tmp_path / "a", "nmf_kl", "nmf", [0.6, 0.8])]
    study = tmp_path / "results/s/summary"
    evaluation.aggregate(runs, "abc", study / "results.csv", study / "summary.csv", study / "summary.md")
    page = tmp_path / "page.md"
    page.write_text(f"# A study\n\n{pages.TABLE_BEGIN}results/s/summary/summary.md -->\nold\n"
                    f"{pages.TABLE_END}\n\nText after.\n")
    monkeypatch.chdir(tmp_path)
    assert main(["page-table", "page.md"]) == 0
    text = page.read_text()
    assert (study / "summary.md").read_text().strip() in text and text.endswith("Text after.\n")
    assert main(["page-table", "page.md", "--check"]) == 0
    page.write_text(text.replace("0.700 (0.141)", "0.710 (0.141)"))
    assert main(["page-table", "page.md", "--check"]) == 2
    assert "note F (onset) 0.71 published, 0.7 now" in capsys.readouterr().err


def test_a_transcriptions_own_pedal_lengthens_its_notes_as_the_references_does(tmp_path):
    """References are read with the sustain pedal's extension (``evaluation.pedal_extension``,
    the default), and so are transcriptions: a model that writes the pedal (CC64) and its
    key releases matches the lengthened reference; the same notes without the pedal do not."""
    import pretty_midi

    def midi(path, pedal):
        piece, piano = pretty_midi.PrettyMIDI(), pretty_midi.Instrument(0)
        piano.notes = [pretty_midi.Note(80, 60, 0.0, 0.5), pretty_midi.Note(70, 64, 3.0, 3.5)]
        if pedal:
            piano.control_changes = [pretty_midi.ControlChange(64, 127, 0.2), pretty_midi.ControlChange(64, 0, 2.0)]
        piece.instruments.append(piano)
        piece.write(str(path))
    midi(tmp_path / "ref.mid", pedal=True)
    pd.DataFrame([{"track_id": "t", "split": "test", "features_path": "-", "roll_path": "-", "duration": 4.0,
                   "midi_path": str(tmp_path / "ref.mid"), "n_frames": 0, "frame_rate": 100.0}]
                 ).to_csv(tmp_path / "index.csv", index=False)
    scores = {}
    for pedal in (True, False):
        (tmp_path / str(pedal)).mkdir()
        midi(tmp_path / str(pedal) / "t.mid", pedal)
        for extension in (True, False):
            table = evaluation.evaluate(tmp_path / str(pedal), tmp_path / "index.csv",
                                        {**EVALUATION, "pedal_extension": extension}, tmp_path / "per_track.csv",
                                        log=lambda message: None)
            scores[pedal, extension] = float(table["note_offset_f"].iloc[0])
    assert scores == {(True, True): 1.0, (False, True): 0.5, (True, False): 1.0, (False, False): 1.0}


def test_a_pedal_lengthens_only_its_own_tracks_notes(tmp_path):
    """In a band the piano's pedal does not lengthen the bass, in references and in the
    class-aware reading alike."""
    import pretty_midi
    from lowrank_amt.instruments import read_class_notes
    from lowrank_amt.evaluation.notes import read_midi_notes
    piece = pretty_midi.PrettyMIDI()
    piano, bass = pretty_midi.Instrument(0), pretty_midi.Instrument(33)
    piano.notes = [pretty_midi.Note(80, 60, 0.0, 0.5)]
    bass.notes = [pretty_midi.Note(80, 40, 0.0, 0.5)]
    piano.control_changes = [pretty_midi.ControlChange(64, 127, 0.2), pretty_midi.ControlChange(64, 0, 2.0)]
    piece.instruments += [piano, bass]
    piece.write(str(tmp_path / "band.mid"))
    intervals, pitches, _ = read_midi_notes(tmp_path / "band.mid", pedal_extension=True)
    assert dict(zip(pitches.tolist(), intervals[:, 1].tolist())) == {40: 0.5, 60: 2.0}
    by_class = read_class_notes(tmp_path / "band.mid", pedal_extension=True)
    assert by_class["bass"][0][:, 1].tolist() == [0.5] and by_class["piano"][0][:, 1].tolist() == [2.0]
