"""Bad input stops with one line naming the file or key, and leaves nothing half-written."""

import numpy as np
import pytest

from lowrank_amt.audio import load_audio
from lowrank_amt.cli import main
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.io import atomic_path
from lowrank_amt.notes import read_midi_notes


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
