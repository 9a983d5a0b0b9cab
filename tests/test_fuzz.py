"""Inputs, fuzzed (hypothesis, derandomized: the same cases on every run): mutations of a
valid study config, command lines, and random bytes, truncations, odd sample rates and
empty files of audio and MIDI. Each case ends in a valid result or in one
``LowrankAmtError`` line naming the file or key, never in another exception.
docs/reliability.md counts the cases."""

import contextlib
import copy
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st

from lowrank_amt.signal.audio import load_audio
from lowrank_amt.cli import COMMANDS, main
from lowrank_amt.config import check_study, load_schema
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.signal.targets import read_annotation

REPO = Path(__file__).resolve().parents[1]
#: Fixed cases (derandomize), no example database written into the checkout.
FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def fuzz(cases: int):
    """``cases`` fixed cases of a test (``pytest --hypothesis-show-statistics`` counts them
    and their outcomes)."""
    return settings(FUZZ, max_examples=cases)


def one_line(error: LowrankAmtError) -> bool:
    return "\n" not in str(error) and len(str(error)) > 0


# --- the config -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema():
    return load_schema(REPO / "workflow/schemas/config.schema.yaml")


VALID = {name: yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text()) for name in ("tiny", "learning")}


def key_paths(node, prefix=()):
    """Every key path of a nested config."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from key_paths(value, prefix + (key,))


ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                       st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@st.composite
def mutated_configs(draw):
    """A study config with one to three mutations: a key's value replaced by a value of
    any type, a key removed, an unknown key added, or a model's teacher pointed anywhere
    (itself, a model with a teacher: a cycle, a name that is no model)."""
    config = copy.deepcopy(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(key_paths(config))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "remove", "add", "teacher"]))
        if action == "replace":
            parent[path[-1]] = draw(ODD_VALUES)
        elif action == "remove":
            del parent[path[-1]]
        elif action == "add":
            parent[draw(st.text(min_size=1, max_size=6))] = draw(ODD_VALUES)
        elif isinstance(config.get("models"), dict) and config["models"]:
            models = sorted(config["models"])
            name = draw(st.sampled_from(models))
            if isinstance(config["models"][name], dict):
                config["models"][name]["teacher"] = draw(st.sampled_from([*models, "no_such_model"]))
    return config


@fuzz(500)
@given(config=mutated_configs())
def test_a_mutated_config_is_valid_or_one_line_naming_the_key(schema, config):
    try:
        check_study(config, schema)
    except LowrankAmtError as error:
        assert one_line(error) and str(error).startswith("invalid config: ") and "'" in str(error)
        event("refused")
    else:
        event("valid")


def test_a_cycle_of_teachers_is_refused_naming_the_key(schema):
    config = copy.deepcopy(VALID["learning"])
    first, second = sorted(name for name, spec in config["models"].items() if spec["family"] != "basic_pitch")[:2]
    config["models"][first]["teacher"], config["models"][second]["teacher"] = second, first
    with pytest.raises(LowrankAmtError, match=rf"models\.({first}|{second})\.teacher' must name another model"):
        check_study(config, schema)


# --- the command line ---------------------------------------------------------------------

@st.composite
def command_lines(draw, folder: Path):
    """A command of the CLI with any of its arguments, each a path (missing, empty,
    garbage, a folder, '-'), a number, a JSON text or any text."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    paths = [folder / "missing.npz", folder / "empty.csv", folder / "garbage.wav", folder, "-"]
    values = st.one_of(st.sampled_from([str(p) for p in paths]), st.integers(-5, 10**6).map(str),
                       st.dictionaries(st.sampled_from(["kind", "family", "seed", "x"]),
                                       st.one_of(st.integers(), st.text(max_size=4)), max_size=3).map(json.dumps),
                       st.text(max_size=10))
    argv = [command]
    for flags, options in COMMANDS[command][1]:
        flag = flags[-1] if isinstance(flags, tuple) else flags
        if not (draw(st.booleans()) or (options.get("required") and draw(st.integers(0, 9)) > 0)):
            continue  # a required argument is left out now and then
        if options.get("action") == "store_true":
            argv.append(flag)
        else:
            argv += ([flag] if flag.startswith("--") else []) + [draw(values)]
    return argv


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "empty.csv").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(bytes(range(256)) * 8)
    return folder


@fuzz(300)
@given(data=st.data())
def test_a_random_command_line_ends_in_a_result_or_one_line(cli_folder, data, monkeypatch):
    argv = data.draw(command_lines(cli_folder))
    monkeypatch.chdir(cli_folder)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit:  # argparse: usage and one error line
            status = exit.code
    assert status in (0, 2), (argv, stderr.getvalue())
    event("valid" if status == 0 else "refused by argparse" if "usage:" in stderr.getvalue() else "refused")
    if status == 2 and "usage:" not in stderr.getvalue():
        assert stderr.getvalue().count(": error: ") == 1 and "Traceback" not in stderr.getvalue()


# --- audio and MIDI -------------------------------------------------------------------------

def a_wav(path, seconds=0.5, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(path, np.stack([tone] * channels, axis=1), rate, subtype="PCM_16")
    return path.read_bytes()


def a_midi(path):
    write_midi_notes(path, np.array([[0.0, 0.3], [0.1, 0.4]]), np.array([60, 64]))
    return path.read_bytes()


@st.composite
def damaged(draw, valid: bytes):
    """``valid`` truncated, with bytes overwritten, or replaced by random bytes."""
    how = draw(st.sampled_from(["truncated", "overwritten", "random"]))
    if how == "truncated":
        return valid[: draw(st.integers(0, len(valid)))]
    if how == "overwritten":
        at = draw(st.integers(0, len(valid) - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        return valid[:at] + patch + valid[at + len(patch):]
    return draw(st.binary(max_size=2048))


@fuzz(300)
@given(data=st.data())
def test_damaged_audio_loads_or_is_one_line_naming_the_file(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "take.wav"
        path.write_bytes(data.draw(damaged(a_wav(path))))
        try:
            audio = load_audio(path, 16000)
        except LowrankAmtError as error:
            assert one_line(error) and str(path) in str(error)
            event("refused")
        else:
            event("valid")
            assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()


@fuzz(300)
@given(data=st.data(), pedal=st.booleans())
def test_a_damaged_midi_file_reads_or_is_one_line_naming_it(data, pedal):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "take.mid"
        path.write_bytes(data.draw(damaged(a_midi(path))))
        try:
            intervals, pitches = read_annotation(path, 1.0, pedal, log=lambda m: None)
        except LowrankAmtError as error:
            assert one_line(error) and str(path) in str(error)
            event("refused")
        else:
            event("valid")
            assert len(pitches) == len(intervals) > 0 and (intervals[:, 1] >= intervals[:, 0]).all()


@fuzz(100)
@given(rate=st.integers(1000, 192000), channels=st.integers(1, 3), seconds=st.floats(0.0, 0.2))
def test_audio_at_any_rate_and_channel_count_is_resampled_or_named(rate, channels, seconds):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "take.wav"
        a_wav(path, seconds, rate, channels)
        try:
            audio = load_audio(path, 16000)
        except LowrankAmtError as error:
            assert one_line(error) and str(path) in str(error) and int(seconds * rate) == 0
        else:
            assert abs(len(audio) - round(int(seconds * rate) * 16000 / rate)) <= 1


def test_an_hour_of_silence_loads_as_an_hour_of_zeros(tmp_path):
    """Long and silent is valid audio: an hour at 8 kHz, resampled to 16 kHz."""
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(3600 * 8000, np.int16), 8000, subtype="PCM_16")
    audio = load_audio(path, 16000)
    assert len(audio) == 3600 * 16000 and not audio.any()
