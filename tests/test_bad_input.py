"""Bad input stops with one line naming the file or key, and leaves nothing half-written."""

import numpy as np
import pytest

from lowrank_amt.signal.audio import load_audio
from lowrank_amt.cli import main
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.runtime.io import atomic_path
from lowrank_amt.evaluation.notes import read_midi_notes


def test_corrupt_audio_is_named(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnonsense")
    with pytest.raises(LowrankAmtError, match="broken.wav"):
        load_audio(bad, 22050)


def test_missing_audio_is_named(tmp_path):
    with pytest.raises(LowrankAmtError, match="absent.wav"):
        load_audio(tmp_path / "absent.wav", 22050)


def test_stereo_and_other_rates_are_downmixed_and_resampled(tmp_path):
    import soundfile
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1)
    soundfile.write(tmp_path / "s.wav", stereo, 44100)
    audio = load_audio(tmp_path / "s.wav", 22050)
    assert audio.shape == (22050,)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


def test_corrupt_midi_is_named(tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(LowrankAmtError, match="broken.mid"):
        read_midi_notes(bad)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_written_files_honour_the_umask(tmp_path):
    import os
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "shared.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o640  # group-readable, as the umask says


def test_cli_reports_one_line_and_exit_status_2(tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    (tmp_path / "manifest.csv").write_text(
        "track_id,split,audio_path,midi_path,duration,instrument\nx,test,broken.wav,x.mid,1.0,piano\n")
    status = main(["extract-features", "--spec",
                   '{"kind": "cqt", "hop_length": 512, "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88, "dtype": "float32"}',
                   "--sample-rate", "22050", "--manifest", str(tmp_path / "manifest.csv"),
                   "--index", str(tmp_path / "feat" / "index.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("lowrank-amt extract-features: error:") and "broken.wav" in err[-1]
    assert not (tmp_path / "feat" / "index.csv").exists()


def test_every_command_has_its_function_and_an_unknown_one_is_refused(capsys):
    from lowrank_amt import cli
    assert set(cli.COMMANDS) == set(cli.HANDLERS)
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def _mir_eval_scores(ref, est):
    """mir_eval's own P/R/F (onset; onset+offset; onset+offset+velocity) of two note lists."""
    import mir_eval
    hz = mir_eval.util.midi_to_hz
    args = (ref[0], hz(ref[1]), est[0], hz(est[1]))
    return (*mir_eval.transcription.precision_recall_f1_overlap(*args, offset_ratio=None)[:3],
            *mir_eval.transcription.precision_recall_f1_overlap(*args)[:3],
            *mir_eval.transcription_velocity.precision_recall_f1_overlap(
                ref[0], hz(ref[1]), ref[2], est[0], hz(est[1]), est[2])[:3])


def _ours(ref, est):
    from lowrank_amt.evaluation.metrics import transcription_metrics
    scores = transcription_metrics(ref, est)
    return tuple(scores[f"{name}_{m}"] for name in ("note_onset", "note_offset", "note_offset_velocity")
                 for m in "prf")


def test_a_reference_with_pedal_but_no_notes_scores_zero_and_is_refused_for_targets(tmp_path):
    import pretty_midi
    from lowrank_amt.evaluation.notes import read_reference
    from lowrank_amt.signal.targets import read_annotation
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.control_changes = [pretty_midi.ControlChange(64, 127, 0.5), pretty_midi.ControlChange(64, 0, 2.0)]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "pedal_only.mid"))
    ref = read_reference(tmp_path / "pedal_only.mid", {})
    assert len(ref[1]) == 0
    est = (np.array([[0.5, 1.0]]), np.array([60]), np.array([80]))
    with pytest.warns(UserWarning, match="empty"):  # mir_eval warns, and scores 0
        expected = _mir_eval_scores(ref, est)
    assert _ours(ref, est) == expected == (0,) * 9
    with pytest.raises(LowrankAmtError, match="pedal_only.mid has no notes"):
        read_annotation(tmp_path / "pedal_only.mid", 3.0)


def test_a_note_on_of_velocity_zero_ends_the_note(tmp_path):
    import mido
    song = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: a beat is 0.5 s
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=0),
                            mido.Message("note_on", note=60, velocity=0, time=480)])
    song.tracks.append(track)
    song.save(tmp_path / "v0.mid")
    intervals, pitches, velocities = read_midi_notes(tmp_path / "v0.mid")
    assert intervals.tolist() == [[0.0, 0.5]] and pitches.tolist() == [60] and velocities.tolist() == [80]
    # a velocity of 0 in a note list (not a MIDI file) is scored as mir_eval scores it
    ref = (np.array([[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]]), np.array([60, 62, 64]), np.array([0, 90, 45]))
    est = (np.array([[0.01, 0.5], [1.0, 1.4], [2.0, 2.5]]), np.array([60, 62, 64]), np.array([10, 100, 90]))
    assert _ours(ref, est) == pytest.approx(_mir_eval_scores(ref, est), abs=1e-12)
    assert _ours(ref, est)[8] < 1  # the third velocity is off the line


def test_overlapping_notes_of_one_key_are_both_kept_and_scored_as_mir_eval_does(tmp_path):
    import pretty_midi
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(80, 60, 0.0, 2.0), pretty_midi.Note(60, 60, 1.0, 1.5)]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "overlap.mid"))
    ref = read_midi_notes(tmp_path / "overlap.mid")
    assert ref[0].tolist() == [[0.0, 1.5], [1.0, 1.5]]  # the key's first release ends both
    est = (np.array([[0.0, 1.5], [1.02, 1.5], [3.0, 3.5]]), np.array([60, 60, 60]), np.array([90, 70, 50]))
    assert _ours(ref, est) == pytest.approx(_mir_eval_scores(ref, est), abs=1e-12)
    assert _ours(ref, est)[1] == 1.0  # both reference notes found
