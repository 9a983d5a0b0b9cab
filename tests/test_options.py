"""Every option of ``lowrank-amt transcribe`` in combination, on valid small inputs, with
every kind of model: a low-rank model, one with instrument templates of two classes,
the shipped ``piano`` model (the unrolled hybrid), pretrained Basic Pitch and Transkun.
Each case ends in a result (the MIDI and CSV, the PNG and stems it asked for) or in
exactly one error line, with nothing written; the refusals are the ones the options'
meanings call for, and no other. docs/reliability.md counts the cases."""

import contextlib
import io
import itertools
import random
import re

import numpy as np
import pytest
import soundfile

from lowrank_amt import families
from lowrank_amt.cli import main
from lowrank_amt.instruments import CLASSES
from lowrank_amt.runtime.io import write_json
from lowrank_amt.model_file import save_model
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.signal.feature_cache import params_hash
from lowrank_amt.signal.spectrogram import feature_params

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RATE = 22050
CQT = {"kind": "cqt", "hop_length": 512, "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88}
NOTES = [(0.1, 0.6, 60), (0.5, 1.0, 64), (0.9, 1.4, 67), (1.2, 1.8, 72)]
#: combinations of two to four options tried per model beyond each option alone and all at once
RANDOM_COMBINATIONS = 6


def options(folder):
    """Each option of transcribe (with valid values) by name."""
    return {"plot": ["--plot"], "pitch_range": ["--pitch-range", "C3", "C6"], "keys": ["--keys", "C4", "E4", "G4"],
            "drop_keys": ["--drop-keys", "A4"], "scale": ["--scale", "C major", "--scale-weight", "0.4"],
            "score": ["--score", str(folder / "piece.mid"), "--score-weight", "0.2"],
            "adapt": ["--adapt", str(folder / "piece.wav"), str(folder / "piece.mid")],
            "adapt_self": ["--adapt-self"], "adapt_iterations": ["--adapt-iterations", "3"], "stems": ["--stems"],
            "device": ["--device", "cpu"], "musicxml": ["--musicxml", "--tempo", "90", "--split", "B3"]}


def combinations(names, kind):
    """Each option alone, every option at once, and ``RANDOM_COMBINATIONS`` seeded picks of
    2-4. Transkun takes about 14 s a recording on CPU: it gets each refused option alone
    (refused before any inference) and every other option at once."""
    if kind == "transkun":
        refused = [name for name in names if (kind, name) in REFUSED]
        return [(name,) for name in refused] + [tuple(name for name in names if name not in refused)]
    rng = random.Random(kind)
    picks = [tuple(sorted(rng.sample(names, rng.randint(2, 4)))) for _ in range(RANDOM_COMBINATIONS)]
    return [(name,) for name in names] + [tuple(names)] + picks


def lowrank_model(folder, W, classes=None):
    """A supervised NMF model of templates ``W`` (bins x 88), once per class of ``classes``."""
    keys = np.tile(np.arange(88), 1 if classes is None else len(classes))
    arrays = {"W": np.tile(W, (1, len(keys) // 88)).astype(np.float32), "template_keys": keys}
    if classes is not None:
        arrays["template_classes"] = np.repeat([CLASSES.index(c) for c in classes], 88)
    spec = families.resolve({"family": "nmf", "supervision": "supervised", "transcribe_iterations": 30,
                             "device": "cpu", "instrument_templates": classes is not None})[1]
    params = feature_params(CQT, RATE)
    folder.mkdir()
    save_model(folder / "model.npz", "nmf", spec, arrays, features={**params, "params_hash": params_hash(params)})
    write_json(folder / "decoding.json", {"params": {"threshold": 0.2, "onset": "peaks", "min_note_seconds": 0.05}})
    return str(folder)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, comb_templates):
    folder = tmp_path_factory.mktemp("options")
    t = np.arange(2 * RATE) / RATE
    audio = np.zeros_like(t)
    for start, end, pitch in NOTES:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        inside = (t >= start) & (t < end)
        audio[inside] += sum(0.1 / h * np.sin(2 * np.pi * h * f0 * t[inside]) for h in range(1, 6))
    soundfile.write(folder / "piece.wav", audio, RATE)
    write_midi_notes(folder / "piece.mid", np.array([n[:2] for n in NOTES]), [n[2] for n in NOTES])
    models = {"lowrank": lowrank_model(folder / "nmf", comb_templates),
              "instruments": lowrank_model(folder / "inst", comb_templates, classes=("piano", "guitar")),
              "piano": "piano", "basic_pitch": "basic_pitch", "transkun": "transkun"}
    return folder, models


#: (model kind, option) pairs refused, and the line that says why
REFUSED = {("basic_pitch", "adapt"): "has no dictionary to adapt", ("basic_pitch", "adapt_self"): "has no dictionary",
           ("transkun", "adapt"): "has no dictionary to adapt", ("transkun", "adapt_self"): "has no dictionary",
           **{(kind, "stems"): "does not separate stems" for kind in ("lowrank", "piano", "basic_pitch", "transkun")}}


def run(args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(args)
    return status, err.getvalue()


@pytest.mark.parametrize("kind", ["lowrank", "instruments", "piano", "basic_pitch", "transkun"])
def test_every_option_combination_is_a_result_or_one_line(inputs, tmp_path, kind):
    folder, models = inputs
    catalogue = options(folder)
    outcomes = {"result": 0, "refused": 0}
    for number, chosen in enumerate(combinations(sorted(catalogue), kind)):
        out = tmp_path / str(number)
        args = ["transcribe", "--model", models[kind], str(folder / "piece.wav"), "-o", str(out)]
        status, err = run(args + list(itertools.chain.from_iterable(catalogue[name] for name in chosen)))
        assert "Traceback" not in err, (chosen, err)
        refusals = [REFUSED[kind, name] for name in chosen if (kind, name) in REFUSED]
        if refusals:
            errors = [line for line in err.splitlines() if line.startswith("lowrank-amt transcribe: error:")]
            assert status == 2 and len(errors) == 1 and err.strip().endswith(errors[0]), (chosen, err)
            assert any(re.search(why, errors[0]) for why in refusals), (chosen, errors)
            assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), chosen
            outcomes["refused"] += 1
            continue
        assert status == 0, (chosen, err)
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        expected = ["piece.csv", "piece.mid"] + (["piece.png"] if "plot" in chosen else [])
        expected += ["piece.musicxml"] if "musicxml" in chosen else []
        expected += [f"piece.stems/{c}.wav" for c in ("guitar", "piano")] if "stems" in chosen else []
        assert written == sorted(expected), (chosen, written)
        outcomes["result"] += 1
    print(kind, outcomes)  # docs/reliability.md counts them


@pytest.mark.parametrize("kind", ["lowrank", "instruments", "piano", "basic_pitch"])
def test_a_recording_of_a_few_samples_is_transcribed_to_no_notes(inputs, tmp_path, kind):
    folder, models = inputs
    soundfile.write(tmp_path / "blip.wav", np.full(10, 0.1), RATE)
    extra = {"instruments": ["--stems", "--adapt-self"], "lowrank": ["--adapt-self", "--score", str(folder / "piece.mid")],
             "piano": ["--musicxml"]}
    status, err = run(["transcribe", "--model", models[kind], str(tmp_path / "blip.wav"), "-o", str(tmp_path / "out"),
                       "--plot", *extra.get(kind, [])])
    assert status == 0 and "Traceback" not in err, err
    assert (tmp_path / "out" / "blip.mid").is_file() and (tmp_path / "out" / "blip.png").is_file()
    assert (tmp_path / "out" / "blip.musicxml").is_file() == (kind == "piano")  # a bar of rests


def test_ctrl_c_is_one_line_and_leaves_no_partial_output(inputs, tmp_path, monkeypatch):
    from lowrank_amt import recordings
    folder, models = inputs
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        (tmp_path / "in" / f"{name}.wav").write_bytes((folder / "piece.wav").read_bytes())
    write_notes = recordings.write_notes

    def interrupted_after_the_second_midi(midi_path, *args, **kwargs):
        write_notes(midi_path, *args, **kwargs)  # its MIDI and CSV are on disk (in the draft folder)
        if midi_path.stem == "b":
            raise KeyboardInterrupt
    monkeypatch.setattr(recordings, "write_notes", interrupted_after_the_second_midi)
    status, err = run(["transcribe", "--model", models["lowrank"], str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                       "--plot"])
    assert status == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("lowrank-amt transcribe: interrupted")
    left = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert left == ["a.csv", "a.mid", "a.png"]  # the finished recording whole, nothing of the other


def test_a_model_file_with_a_damaged_spec_is_one_line_naming_it(inputs, tmp_path):
    folder, models = inputs
    arrays = dict(np.load(f"{models['lowrank']}/model.npz"))
    arrays["spec"] = np.array('{"family": "nmf", "supervision": ')
    np.savez(tmp_path / "model.npz", **arrays)
    status, err = run(["transcribe", "--model", str(tmp_path / "model.npz"), str(folder / "piece.wav"), "-o",
                       str(tmp_path / "out")])
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(r"model .*model.npz: its spec entry is not valid JSON", err)


def test_a_damaged_transkun_checkpoint_or_config_is_one_line_naming_it(tmp_path):
    from lowrank_amt.deep import transkun_pretrained
    from lowrank_amt.errors import LowrankAmtError
    original = transkun_pretrained.package_folder() / "pretrained"
    (tmp_path / "2.0.pt").write_bytes((original / "2.0.pt").read_bytes()[:-5000])
    with pytest.raises(LowrankAmtError, match=r"Transkun checkpoint .*2.0.pt is truncated or corrupt.*reinstall"):
        transkun_pretrained.read_weights(tmp_path / "2.0.pt")
    (tmp_path / "2.0.conf").write_text('{"Model": ')
    with pytest.raises(LowrankAmtError, match=r"Transkun config .*2.0.conf is missing or damaged"):
        transkun_pretrained.read_config(tmp_path / "2.0.conf")
    assert transkun_pretrained.read_config(original / "2.0.conf")["fs"] == transkun_pretrained.SAMPLE_RATE
