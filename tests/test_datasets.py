"""Real-dataset preparers, offline: tiny archives in each dataset's real layout, served by a
local HTTP server on 127.0.0.1 (or a local folder for MAPS and own recordings), must give
manifests whose audio, durations and MIDI notes match what was put in."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest
import soundfile
import yaml

from lowrank_amt.datasets import PREPARERS, maestro, maps
from lowrank_amt.datasets.guitarset import read_jams_notes
from lowrank_amt.datasets.manifest import read_manifest, stem_paths
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.evaluation.notes import read_midi_notes
from lowrank_amt.stages.data import prepare_dataset

RATE = 8000
TICK = 1 / 440  # pretty_midi's default time step (220 ticks per beat at 120 bpm)


def quiet(_):
    pass


def wav_bytes(seconds: float, freq: float = 440.0, fmt: str = "WAV", rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * freq * t), rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def midi_bytes(notes: list[tuple[float, float, int]], program: int = 0, drum: bool = False) -> bytes:
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=drum)
    inst.notes = [pretty_midi.Note(90, pitch, start, end) for start, end, pitch in notes]
    midi.instruments.append(inst)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def assert_notes(midi_path, expected: list[tuple[float, float, int]]):
    intervals, pitches, _ = read_midi_notes(midi_path)
    expected = sorted(expected)
    np.testing.assert_allclose(intervals, [e[:2] for e in expected], atol=TICK)
    assert list(pitches) == [e[2] for e in expected]


# --- MAESTRO -------------------------------------------------------------------------------

MAESTRO_PIECES = [  # (split, file stem, seconds, notes)
    ("train", "MIDI-Unprocessed_01_R1_2004_01_Track01_wav", 0.6, [(0.1, 0.4, 60), (0.2, 0.5, 64)]),
    ("train", "MIDI-Unprocessed_02_R1_2004_02_Track02_wav", 0.8, [(0.0, 0.7, 48)]),
    ("validation", "MIDI-Unprocessed_03_R1_2004_03_Track03_wav", 0.5, [(0.1, 0.3, 72)]),
    ("test", "MIDI-Unprocessed_04_R1_2004_04_Track04_wav", 0.7, [(0.05, 0.6, 55), (0.3, 0.6, 67)]),
]


def maestro_archive(archives, with_audio: bool) -> bytes:
    root = "maestro-v3.0.0"
    rows, entries = [], {}
    for split, stem, seconds, notes in MAESTRO_PIECES:
        rows.append({"canonical_composer": "X", "canonical_title": stem, "split": split, "year": 2004,
                     "midi_filename": f"2004/{stem}.midi", "audio_filename": f"2004/{stem}.wav", "duration": seconds})
        entries[f"{root}/2004/{stem}.midi"] = midi_bytes(notes)
        if with_audio:
            entries[f"{root}/2004/{stem}.wav"] = wav_bytes(seconds)
    entries[f"{root}/maestro-v3.0.0.csv"] = pd.DataFrame(rows).to_csv(index=False).encode()
    entries[f"{root}/maestro-v3.0.0.json"] = pd.DataFrame(rows).to_json().encode()
    return archives.zip(entries)


def test_maestro_recorded_is_downloaded_resumed_verified_and_listed(tmp_path, local_server, sha256, archives):
    archive = maestro_archive(archives, with_audio=True)
    files = {"/maestro/v3.0.0/maestro-v3.0.0.zip": archive}
    manifest = tmp_path / "maestro" / "manifest.csv"
    with local_server(files, truncate_first=set(files)) as server:
        spec = {"kind": "maestro", "base_url": f"{server.url}/maestro/v3.0.0",
                "checksums": {"maestro-v3.0.0.zip": sha256(archive)}}
        prepare_dataset(spec, manifest, RATE, jobs=2, log=quiet)
        assert [r for _, r in server.requests] == [None, f"bytes={len(archive) // 2}-"]
        (manifest).unlink()
        prepare_dataset(spec, manifest, RATE, jobs=2, log=quiet)  # extracted copy reused
        assert len(server.requests) == 2
    table = read_manifest(manifest)
    assert list(table["split"]) == [p[0] for p in MAESTRO_PIECES]
    assert list(table["track_id"]) == [f"2004_{p[1]}" for p in MAESTRO_PIECES]
    for row, (_, _, seconds, notes) in zip(table.itertuples(), MAESTRO_PIECES):
        assert row.duration == pytest.approx(seconds, abs=1e-3)
        assert soundfile.info(row.audio_path).samplerate == RATE
        assert_notes(row.midi_path, notes)
    raw = pd.read_csv(manifest)
    assert not any(Path(p).is_absolute() for p in raw["audio_path"])  # moves with the dataset
    assert not (tmp_path / "maestro" / "downloads" / "maestro-v3.0.0.zip").exists()


def test_maestro_checks_the_official_checksum_by_default(tmp_path, local_server, snapshot, archives):
    before = snapshot(tmp_path)
    with local_server({"/m/maestro-v3.0.0-midi.zip": maestro_archive(archives, with_audio=False)}) as server:
        spec = {"kind": "maestro", "audio": "rendered", "base_url": f"{server.url}/m"}
        with pytest.raises(LowrankAmtError, match=r"checksum mismatch for maestro-v3\.0\.0-midi\.zip.*"
                                                  + maestro.ARCHIVES["rendered"][1].split(":")[1]):
            prepare_dataset(spec, tmp_path / "m" / "manifest.csv", RATE, log=quiet)
    assert snapshot(tmp_path) == before and not (tmp_path / "m" / "manifest.csv").exists()


def test_maestro_midi_only_mode_renders_the_first_pieces_of_each_split(tmp_path, local_server, sha256, archives):
    try:
        from lowrank_amt.datasets.rendering import find_fluidsynth, find_soundfont
        find_fluidsynth(), find_soundfont("auto")
    except LowrankAmtError as exc:
        pytest.skip(f"fluidsynth or a soundfont is missing: {exc}")
    archive = maestro_archive(archives, with_audio=False)
    manifest = tmp_path / "m" / "manifest.csv"
    with local_server({"/m/maestro-v3.0.0-midi.zip": archive}) as server:
        spec = {"kind": "maestro", "audio": "rendered", "base_url": f"{server.url}/m",
                "checksums": {"maestro-v3.0.0-midi.zip": sha256(archive)}, "max_pieces_per_split": 1}
        prepare_dataset(spec, manifest, RATE, jobs=2, log=quiet)
    table = read_manifest(manifest)
    chosen = [MAESTRO_PIECES[i] for i in (0, 2, 3)]  # the first piece of each split
    assert list(table["split"]) == ["train", "validation", "test"]
    for row, (_, _, _, notes) in zip(table.itertuples(), chosen):
        audio, rate = soundfile.read(row.audio_path)
        assert rate == RATE and np.abs(audio).max() > 0.01
        assert row.duration >= max(n[1] for n in notes)
        assert_notes(row.midi_path, notes)
        assert row.instrument.startswith("piano:")


def test_maestro_selection_by_hours_is_nested():
    table = pd.DataFrame({"split": ["train"] * 5 + ["test"] * 2, "duration": [1800.0] * 7,
                          "midi_filename": [f"{i}.midi" for i in range(7)]})
    half = maestro.select(table, None, 0.5)
    one = maestro.select(table, None, 1.0)
    assert list(half["midi_filename"]) == ["0.midi", "5.midi"]
    assert list(one["midi_filename"]) == ["0.midi", "1.midi", "5.midi", "6.midi"]
    assert list(maestro.select(table, 3, 1.0)["midi_filename"]) == list(one["midi_filename"])


# --- MAPS ----------------------------------------------------------------------------------

def write_maps(root: Path, piano: str, piece: str, notes, seconds: float = 0.6) -> None:
    folder = root / piano / "MUS"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"MAPS_MUS-{piece}_{piano}.wav").write_bytes(wav_bytes(seconds))
    lines = ["OnsetTime\tOffsetTime\tMidiPitch"] + [f"{a:.6f}\t{b:.6f}\t{p}" for a, b, p in notes]
    (folder / f"MAPS_MUS-{piece}_{piano}.txt").write_text("\r\n".join(lines) + "\r\n")


def make_maps(root: Path) -> None:
    write_maps(root, "ENSTDkCl", "chpn_op25_e1", [(0.1, 0.5, 60)])
    write_maps(root, "ENSTDkAm", "alb_se2", [(0.0, 0.2, 40), (0.1, 0.4, 80)])
    write_maps(root, "AkPnBcht", "chpn_op25_e1", [(0.1, 0.5, 60)])  # a test piece: left out
    write_maps(root, "AkPnBcht", "bach_846", [(0.2, 0.3, 50), (0.25, 0.5, 62)])
    write_maps(root, "SptkBGCl", "mz_331_2", [(0.05, 0.55, 70)])
    isol = root / "AkPnBcht" / "ISOL" / "NO"
    isol.mkdir(parents=True)
    for pitch in (21, 108):
        (isol / f"MAPS_ISOL_NO_F_S0_M{pitch}_AkPnBcht.wav").write_bytes(wav_bytes(0.4))
        (isol / f"MAPS_ISOL_NO_F_S0_M{pitch}_AkPnBcht.txt").write_text(
            f"OnsetTime\tOffsetTime\tMidiPitch\n0.05\t0.35\t{pitch}\n")


MAPS_SPEC = {"kind": "maps", "train_pianos": ["AkPnBcht"], "validation_pianos": ["SptkBGCl"]}


def test_maps_usual_configuration(tmp_path):
    make_maps(tmp_path / "MAPS")
    manifest = tmp_path / "out" / "manifest.csv"
    prepare_dataset({**MAPS_SPEC, "path": str(tmp_path / "MAPS")}, manifest, RATE, jobs=2, log=quiet)
    table = read_manifest(manifest).set_index("track_id")
    assert table["split"].to_dict() == {
        "MUS-bach_846_AkPnBcht": "train", "MUS-mz_331_2_SptkBGCl": "validation",
        "MUS-alb_se2_ENSTDkAm": "test", "MUS-chpn_op25_e1_ENSTDkCl": "test",
        "ISOL_NO_F_S0_M21_AkPnBcht": "isolated", "ISOL_NO_F_S0_M108_AkPnBcht": "isolated"}
    assert_notes(table.loc["MUS-alb_se2_ENSTDkAm", "midi_path"], [(0.0, 0.2, 40), (0.1, 0.4, 80)])
    assert_notes(table.loc["ISOL_NO_F_S0_M108_AkPnBcht", "midi_path"], [(0.05, 0.35, 108)])
    assert table.loc["MUS-bach_846_AkPnBcht", "duration"] == pytest.approx(0.6)
    assert table.loc["MUS-bach_846_AkPnBcht", "instrument"] == "piano:AkPnBcht"


def test_maps_names_what_is_missing(tmp_path):
    make_maps(tmp_path / "MAPS")
    shutil.rmtree(tmp_path / "MAPS" / "ENSTDkAm")
    with pytest.raises(LowrankAmtError, match=r"lacks .*ENSTDkAm/MUS"):
        prepare_dataset({**MAPS_SPEC, "path": str(tmp_path / "MAPS")}, tmp_path / "o" / "m.csv", RATE, log=quiet)
    with pytest.raises(LowrankAmtError, match="needs 'datasets.<name>.path'"):
        prepare_dataset({"kind": "maps"}, tmp_path / "o" / "m.csv", RATE, log=quiet)


def test_maps_annotation_errors_name_file_and_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("OnsetTime\tOffsetTime\tMidiPitch\n0.1\t0.2\t60\n0.3\toops\t61\n")
    with pytest.raises(LowrankAmtError, match=r"x\.txt line 3"):
        maps.read_maps_annotation(path)


# --- GuitarSet -----------------------------------------------------------------------------

def jams_bytes(strings: list[list[tuple[float, float, float]]], dense: bool = False) -> bytes:
    annotations = [{"namespace": "pitch_contour", "data": [{"time": 0.0, "duration": 0.0, "value": {"frequency": 1.0},
                                                            "confidence": None}],
                    "annotation_metadata": {"data_source": "0"}}]
    for string, notes in enumerate(strings):
        records = [{"time": a, "duration": b - a, "value": v, "confidence": None} for a, b, v in notes]
        data = ({k: [r[k] for r in records] for k in ("time", "duration", "value", "confidence")}
                if dense else records)
        annotations.append({"namespace": "note_midi", "data": data,
                            "annotation_metadata": {"data_source": str(string)}})
    return json.dumps({"annotations": annotations, "file_metadata": {"duration": 1.0}}).encode()


GUITAR = {  # track id -> notes per string (value is a float MIDI pitch, as in GuitarSet)
    "00_BN1-129-Eb_comp": [[(0.1, 0.4, 40.2)], [(0.0, 0.3, 45.0), (0.5, 0.7, 47.0)]],
    "04_Funk2-108-Eb_solo": [[(0.2, 0.6, 52.9)]],
    "05_Jazz3-150-C_comp": [[], [(0.3, 0.5, 57.0)], [(0.1, 0.2, 62.0)]],
}


def test_guitarset_downloads_both_archives_and_merges_the_strings(tmp_path, local_server, archives):
    annotation = archives.zip({f"{t}.jams": jams_bytes(s, dense=t.startswith("05")) for t, s in GUITAR.items()})
    audio = archives.zip({f"{t}_mic.wav": wav_bytes(0.8) for t in GUITAR})
    md5 = lambda data: "md5:" + hashlib.md5(data).hexdigest()  # noqa: E731
    with local_server({"/gs/annotation.zip": annotation, "/gs/audio_mono-mic.zip": audio}) as server:
        spec = {"kind": "guitarset", "base_url": f"{server.url}/gs",
                "checksums": {"annotation.zip": md5(annotation), "audio_mono-mic.zip": md5(audio)}}
        prepare_dataset(spec, tmp_path / "gs" / "manifest.csv", RATE, jobs=2, log=quiet)
    assert sorted(p for p, _ in server.requests) == ["/gs/annotation.zip", "/gs/audio_mono-mic.zip"]
    table = read_manifest(tmp_path / "gs" / "manifest.csv").set_index("track_id")
    assert table["split"].to_dict() == {"00_BN1-129-Eb_comp": "train", "04_Funk2-108-Eb_solo": "validation",
                                        "05_Jazz3-150-C_comp": "test"}
    for track_id, strings in GUITAR.items():
        assert_notes(table.loc[track_id, "midi_path"], [(a, b, round(v)) for s in strings for a, b, v in s])
        assert table.loc[track_id, "duration"] == pytest.approx(0.8)
    assert pretty_midi.PrettyMIDI(table.loc["00_BN1-129-Eb_comp", "midi_path"]).instruments[0].program == 25


def test_jams_errors_name_the_file(tmp_path):
    (tmp_path / "bad.jams").write_text('{"annotations": [{"namespace": "note_midi", "data": [{"time": 1}]}]}')
    with pytest.raises(LowrankAmtError, match=r"bad\.jams"):
        read_jams_notes(tmp_path / "bad.jams")


# --- Slakh ---------------------------------------------------------------------------------

SLAKH_STEMS = {  # stem -> (inst_class, program, is_drum, notes, tone Hz)
    "S00": ("Piano", 0, False, [(0.1, 0.5, 60), (0.2, 0.4, 64)], 262.0),
    "S01": ("Bass", 33, False, [(0.0, 0.6, 36)], 65.0),
    "S02": ("Drums", 0, True, [(0.0, 0.1, 36)], 1000.0),
}


def slakh_archive(archives) -> bytes:
    entries = {}
    for split, track in (("train", "Track00001"), ("test", "Track00002"), ("omitted", "Track00003")):
        folder = f"slakh2100_flac_redux/{split}/{track}"
        metadata = {"UUID": track, "stems": {s: {"inst_class": c, "program_num": p, "is_drum": d,
                                                 "audio_rendered": True, "midi_saved": True}
                                             for s, (c, p, d, _, _) in SLAKH_STEMS.items()}}
        entries[f"{folder}/metadata.yaml"] = yaml.safe_dump(metadata).encode()
        entries[f"{folder}/mix.flac"] = wav_bytes(0.7, 300.0, "FLAC")
        for stem, (_, program, drum, notes, freq) in SLAKH_STEMS.items():
            entries[f"{folder}/MIDI/{stem}.mid"] = midi_bytes(notes, program, drum)
            entries[f"{folder}/stems/{stem}.flac"] = wav_bytes(0.7, freq, "FLAC")
    return archives.tar(entries)


def test_slakh_all_pitched_stems_from_the_mix(tmp_path, local_server, archives):
    archive = slakh_archive(archives)
    with local_server({"/s/slakh2100_flac_redux.tar.gz": archive}) as server:
        spec = {"kind": "slakh", "base_url": f"{server.url}/s",
                "checksums": {"slakh2100_flac_redux.tar.gz": "md5:" + hashlib.md5(archive).hexdigest()}}
        prepare_dataset(spec, tmp_path / "s" / "manifest.csv", RATE, log=quiet)
    table = read_manifest(tmp_path / "s" / "manifest.csv")
    assert list(zip(table["track_id"], table["split"])) == [("Track00002", "test"), ("Track00001", "train")]
    row = table.iloc[0]
    assert row.instrument == "Bass+Piano" and Path(row.audio_path).name == "mix.flac"
    assert_notes(row.midi_path, SLAKH_STEMS["S00"][3] + SLAKH_STEMS["S01"][3])  # no drum notes
    programs = sorted(i.program for i in pretty_midi.PrettyMIDI(row.midi_path).instruments)
    assert programs == [0, 33]


def test_slakh_stem_without_midi_is_one_line_naming_it(tmp_path, archives):
    root = tmp_path / "slakh"
    with tarfile.open(fileobj=io.BytesIO(slakh_archive(archives))) as tf:
        tf.extractall(root, filter="data")
    (root / "slakh2100_flac_redux" / "test" / "Track00002" / "MIDI" / "S01.mid").unlink()
    with pytest.raises(LowrankAmtError, match="Track00002: stem S01 is rendered but .* lacks S01.mid"):
        prepare_dataset({"kind": "slakh", "path": str(root / "slakh2100_flac_redux")}, tmp_path / "out" / "m.csv",
                        RATE, log=quiet)
    assert not (tmp_path / "out" / "m.csv").exists()


def test_slakh_one_class_with_its_own_stem_audio(tmp_path, archives):
    root = tmp_path / "slakh"
    with tarfile.open(fileobj=io.BytesIO(slakh_archive(archives))) as tf:
        tf.extractall(root, filter="data")
    spec = {"kind": "slakh", "path": str(root / "slakh2100_flac_redux"), "instrument_classes": ["piano"],
            "audio": "stems"}
    prepare_dataset(spec, tmp_path / "out" / "manifest.csv", RATE, log=quiet)
    table = read_manifest(tmp_path / "out" / "manifest.csv")
    assert len(table) == 2 and set(table["instrument"]) == {"Piano"}
    for row in table.itertuples():
        assert_notes(row.midi_path, SLAKH_STEMS["S00"][3])
        audio, rate = soundfile.read(row.audio_path)
        piano, _ = soundfile.read(root / "slakh2100_flac_redux" / row.split / row.track_id / "stems" / "S00.flac")
        assert rate == RATE and np.abs(audio - piano).max() < 2 / 32768  # the piano stem, nothing else
        stems = stem_paths(row.audio_path)  # and the class's stems beside it, for separation
        assert list(stems) == ["piano"] and np.abs(soundfile.read(stems["piano"])[0] - piano).max() < 2 / 32768


# --- own folder ----------------------------------------------------------------------------

def make_folder(root: Path) -> None:
    for rel, seconds in (("train/a.wav", 0.5), ("test/b.flac", 0.25), ("test/deeper/c.wav", 0.3)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav_bytes(seconds, fmt="FLAC" if rel.endswith("flac") else "WAV"))
        path.with_suffix(".midi" if rel.startswith("test/b") else ".mid").write_bytes(midi_bytes([(0.1, 0.2, 69)]))


def test_folder_lists_pairs_in_one_split_or_by_subfolder(tmp_path):
    make_folder(tmp_path / "mine")
    prepare_dataset({"kind": "folder", "path": str(tmp_path / "mine")}, tmp_path / "o1" / "m.csv", RATE, log=quiet)
    table = read_manifest(tmp_path / "o1" / "m.csv")
    assert list(table["track_id"]) == ["test_b", "test_deeper_c", "train_a"]
    assert set(table["split"]) == {"test"}
    np.testing.assert_allclose(table["duration"], [0.25, 0.3, 0.5])
    assert_notes(table["midi_path"][0], [(0.1, 0.2, 69)])
    prepare_dataset({"kind": "folder", "path": str(tmp_path / "mine"), "split": "folders"},
                    tmp_path / "o2" / "m.csv", RATE, log=quiet)
    assert list(read_manifest(tmp_path / "o2" / "m.csv")["split"]) == ["test", "test", "train"]


def test_folder_audio_without_midi_is_named_unless_it_is_for_training(tmp_path):
    make_folder(tmp_path / "mine")
    (tmp_path / "mine" / "train" / "a.mid").unlink()
    with pytest.raises(LowrankAmtError, match=r"without a same-named .*train/a\.wav"):
        prepare_dataset({"kind": "folder", "path": str(tmp_path / "mine")}, tmp_path / "o" / "m.csv", RATE, log=quiet)
    # in the training split a recording may go without MIDI (a teacher annotates it)
    prepare_dataset({"kind": "folder", "path": str(tmp_path / "mine"), "split": "folders"},
                    tmp_path / "o2" / "m.csv", RATE, log=quiet)
    table = read_manifest(tmp_path / "o2" / "m.csv")
    assert list(table["midi_path"] == "") == [False, False, True]
    (tmp_path / "mine" / "test" / "b.midi").unlink()
    with pytest.raises(LowrankAmtError, match=r"without a same-named .*test/b\.flac"):
        prepare_dataset({"kind": "folder", "path": str(tmp_path / "mine"), "split": "folders"},
                        tmp_path / "o3" / "m.csv", RATE, log=quiet)


def test_every_kind_is_registered():
    assert {"synthetic", "maestro", "maps", "guitarset", "slakh", "folder"} <= set(PREPARERS)
