"""End to end: the Snakemake workflow on the tiny study, its report, and config errors
caught before any job runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.constants import SUMMARY_FIGURES
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.evaluation.notes import read_midi_notes

pytestmark = pytest.mark.workflow


def snakemake(repo, workdir, *args):
    # without the environment's bin folder on PATH, as `.venv/bin/snakemake` is often run:
    # the rules must find the package's command by themselves
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"),
                           "-d", str(workdir), "--cores", "2", *args],
                          capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    repo = Path(__file__).resolve().parents[1]
    workdir = tmp_path_factory.mktemp("study")
    done = snakemake(repo, workdir, "--configfile", str(repo / "config/tiny.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    return repo, workdir, workdir / "results" / "tiny"


def trivial_scores(study):
    """Note F of an all-silent and of a random transcriber (as many random notes as the
    reference, uniformly placed), on the same test tracks."""
    manifest = pd.read_csv(study / "data/tiny_piano/manifest.csv")
    rng = np.random.default_rng(0)
    silent, random = [], []
    for row in manifest[manifest["split"] == "test"].itertuples():
        ref_intervals, ref_pitches, _ = read_midi_notes(study / "data/tiny_piano" / row.midi_path)
        n = len(ref_pitches)
        starts = rng.uniform(0, row.duration - 0.5, n)
        guess = np.stack([starts, starts + rng.uniform(0.1, 0.5, n)], axis=1), rng.integers(36, 97, n)
        silent.append(note_metrics(ref_intervals, ref_pitches, np.zeros((0, 2)), [])["note_onset_f"])
        random.append(note_metrics(ref_intervals, ref_pitches, *guess)["note_onset_f"])
    return np.mean(silent), np.mean(random)


def test_trained_model_beats_trivial_transcribers(tiny_study):
    _, _, study = tiny_study
    results = pd.read_csv(study / "summary/results.csv")
    assert len(results) == 3  # one row per test track
    model_f = results["note_onset_f"].mean()
    silent_f, random_f = trivial_scores(study)
    assert model_f > max(silent_f, random_f) + 0.3, (model_f, silent_f, random_f)
    assert results["frame_f"].mean() > 0.3
    assert {"version_torch", "config_hash", "train_seconds", "device", "git_commit", "git_dirty", "cpu",
            "cpu_capability", "threads", "run_date"} <= set(results.columns)
    # trained by the pinned kernels (kernels.py) on an x86-64 CPU with AVX2 or more
    import torch
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert (results["cpu_capability"] == "AVX2").all()


def test_the_tiny_studys_table_in_the_docs_is_what_the_study_gives(tiny_study):
    """docs/tests.md shows the tiny study's ranked table (`lowrank-amt page-table
    docs/tests.md` copies it from a run); a fresh run must give it again. Tolerance 0.02:
    on another CPU, matrix kernels that round otherwise may flip a note, which moves a
    3-track mean F by about 0.01 (README, Reproducibility)."""
    from lowrank_amt.report import pages
    repo, _, study = tiny_study
    source, published = pages.generated_table((repo / "docs/tests.md").read_text())
    assert source == "results/tiny/summary/summary.md" and pages.ranked_rows(published)
    fresh = (study / "summary/summary.md").read_text()
    assert pages.table_differences(published, fresh, tolerance=lambda family, model: 0.02) == []


def test_a_trained_model_transcribes_recordings_from_the_command_line(tiny_study, tmp_path):
    from lowrank_amt.cli import main
    _, _, study = tiny_study
    manifest = pd.read_csv(study / "data/tiny_piano/manifest.csv")
    tests = list(manifest[manifest["split"] == "test"].itertuples())
    model = study / "models/tiny_piano/cqt/nmf_sup_kl/isolated"  # the folder: model.npz and decoding.json
    audio = [str(study / "data/tiny_piano" / row.audio_path) for row in tests]
    assert main(["transcribe", "--model", str(model), *audio, "-o", str(tmp_path)]) == 0
    scores = []
    for row in tests:
        ours = read_midi_notes(tmp_path / f"{Path(row.audio_path).stem}.mid")
        ref = read_midi_notes(study / "data/tiny_piano" / row.midi_path)
        scores.append(note_metrics(ref[0], ref[1], ours[0], ours[1])["note_onset_f"])
        # the same notes as the study's own transcription of that test track
        study_notes = read_midi_notes(study / f"transcriptions/tiny_piano/cqt/nmf_sup_kl/isolated/midi/{row.track_id}.mid")
        assert ours[1].tolist() == study_notes[1].tolist() and np.allclose(ours[0], study_notes[0])
    silent_f, random_f = trivial_scores(study)
    assert np.mean(scores) > max(silent_f, random_f) + 0.3


def test_the_shipped_piano_model_transcribes_and_comes_from_the_committed_config(tiny_study, tmp_path):
    """`transcribe --model piano` needs no study: the model shipped in the package (under
    2 MB) transcribes the tiny study's test tracks above the trivial transcribers, with
    velocities, and the config hash it records is the one config/pianos.yaml gives it now."""
    from lowrank_amt import shipped
    from lowrank_amt.cli import main
    from lowrank_amt.runtime.io import read_json
    from lowrank_amt.model_file import load_model
    repo, _, study = tiny_study
    folder = shipped.folder("piano")
    model, provenance = load_model(folder), read_json(folder / "provenance.json")
    assert (folder / "model.npz").stat().st_size <= shipped.MAX_BYTES
    expected = shipped.recorded_hash(repo / provenance["config"], repo / "workflow/schemas/config.schema.yaml",
                                     model.provenance)
    assert provenance["config_hash"] == model.provenance["config_hash"] == expected
    manifest = pd.read_csv(study / "data/tiny_piano/manifest.csv")
    tests = list(manifest[manifest["split"] == "test"].itertuples())
    audio = [str(study / "data/tiny_piano" / row.audio_path) for row in tests]
    assert main(["transcribe", "--model", "piano", *audio, "-o", str(tmp_path)]) == 0
    curve = model.decoding["velocity_curve"]
    scores = []
    for row in tests:
        ours = read_midi_notes(tmp_path / f"{Path(row.audio_path).stem}.mid")
        ref = read_midi_notes(study / "data/tiny_piano" / row.midi_path)
        scores.append(note_metrics(ref[0], ref[1], ours[0], ours[1])["note_onset_f"])
        assert len(set(ours[2])) > 3  # velocities from its curve, not one value
        # ...and from its validation-fitted curve, not 127 x the peak: the track's loudest note
        # (0 dB) gets the intercept plus its key's offset, far under 127
        assert max(ours[2]) <= np.ceil(curve["intercept"] + max(curve["key_offsets"])) < 120, (curve, ours[2])
    silent_f, random_f = trivial_scores(study)
    assert np.mean(scores) > max(silent_f, random_f) + 0.3, (scores, silent_f, random_f)


MENU = ("(() => { const texts = [...document.querySelectorAll('a')].map(a => a.textContent.trim());"
        " const about = texts.indexOf('About'); return !window.stale && about >= 0 &&"
        " texts.slice(about + 1, texts.indexOf('Save as SVG')); })()")
FILES = ("[...document.querySelectorAll('tr')].filter(row => row.querySelector('a[iconname=eye]'))"
         ".map(row => row.cells[0].innerText.trim())")


def open_category(page, report, category) -> list[str]:
    """The report opened afresh at a category of its menu: the files it lists."""
    page.js("window.stale = true")
    page.open(report)
    page.wait_for(MENU)
    page.js(f"[...document.querySelectorAll('a')].filter(a => a.textContent.trim() == {category!r}).pop().click()")
    return page.wait_for(f"(() => {{ const files = {FILES}; return files.length && files; }})()")


def test_the_report_renders_in_a_browser(tiny_study):
    """The HTML report as people read it, in headless Chromium: every file of every
    category opened as a reader would, each figure shown as an image the browser decoded,
    the ranked results table and the error analysis (summary.html) with a row per run, and
    no console error."""
    from browser import Page, find_chromium, frame_nodes
    binary = find_chromium()
    missing = "no headless Chromium here (Debian: apt-get install chromium-headless-shell; make test installs it " \
              "as root): the report is not opened in a browser"
    if binary is None and os.environ.get("CI") == "true":
        pytest.fail(missing + "; under CI that is a failure, not a skip")
    if binary is None:
        pytest.skip(missing)
    pytest.importorskip("websocket", reason="websocket-client (the test extra) is not installed")
    repo, workdir, study = tiny_study
    report = workdir / "report.html"
    if not report.exists():
        done = snakemake(repo, workdir, "--configfile", str(repo / "config/tiny.yaml"), "--report", str(report))
        assert done.returncode == 0, done.stderr[-2000:]
    shown = {}
    with Page(binary) as page:
        page.open(report)
        categories = page.wait_for(MENU)
        assert {"Results", "Trade-offs and scaling", "Training", "Decoding", "Dictionaries", "Activations"} \
            <= set(categories)
        for category in categories:
            for number, name in enumerate(open_category(page, report, category)):
                if not name.endswith((".svg", ".png", ".html")):
                    continue  # the report offers tables (CSV) for download
                open_category(page, report, category)
                page.js(f"document.querySelectorAll('a[iconname=eye]')[{number}].click()")
                if name.endswith(".html"):
                    page.wait_for("!!document.querySelector('iframe')")
                    shown[name] = page.wait_for(lambda: frame_nodes(page.document(), "TR"))
                else:
                    shown[name] = page.wait_for(
                        f"[...document.querySelectorAll('img')].filter(image => image.complete &&"
                        f" image.src.includes('filename={Path(name).name};')).map(image => image.naturalWidth)[0]")
        errors = page.errors()
    figures = {name: width for name, width in shown.items() if not name.endswith(".html")}
    assert {f"results/tiny/plots/{kind}.svg" for kind in ("tradeoff", "scaling", "losses", "velocity")} <= set(figures)
    assert all(width > 100 for width in figures.values()), figures
    runs = len(pd.read_csv(study / "summary/summary.csv"))
    # the ranked table and the error analysis: a header and a row per run each
    assert shown["results/tiny/summary/summary.html"] == 2 * (1 + runs)
    assert errors == [], errors


def test_the_browser_leaves_no_process_and_no_profile_behind_however_it_ends():
    """Chromium forks helpers: the page's close ends them all and removes its profile, also
    when the test fails inside it."""
    from browser import Page, find_chromium
    binary = find_chromium()
    if binary is None:
        pytest.skip("no headless Chromium here")
    pytest.importorskip("websocket", reason="websocket-client (the test extra) is not installed")
    with pytest.raises(AssertionError, match="a failing check"):
        with Page(binary) as page:
            group, profile = page.process.pid, page.profile
            assert Path(profile).is_dir()
            raise AssertionError("a failing check")
    alive = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    assert alive == [] and not Path(profile).exists()


def test_every_rule_wrote_its_log_and_benchmark(tiny_study):
    _, _, study = tiny_study
    for rule in ("prepare_dataset", "extract_features", "train", "activations", "decode", "evaluate"):
        assert list((study / "logs" / rule).rglob("*.log")), rule
        assert list((study / "benchmarks" / rule).rglob("*.tsv")), rule
    assert (study / "plots/tradeoff.svg").read_text().startswith("<?xml")


def test_report_builds(tiny_study):
    repo, workdir, _ = tiny_study
    done = snakemake(repo, workdir, "--configfile", str(repo / "config/tiny.yaml"),
                     "--report", str(workdir / "report.html"))
    assert done.returncode == 0, done.stderr[-3000:]
    html = (workdir / "report.html").read_text()
    assert "tradeoff.svg" in html and "Trade-off" in html


def test_a_key_added_to_a_family_with_a_default_retrains_nothing(tiny_study, tmp_path):
    """A model's identity is its user-written spec: a new key with a default (one line of
    the family's parameter table, from which the schema is generated) plans no training
    job; a change of a written key does."""
    repo, workdir, _ = tiny_study
    (tmp_path / "site").mkdir()
    (tmp_path / "site/sitecustomize.py").write_text(
        "from lowrank_amt.families import lowrank\n"
        "from lowrank_amt.param import Param\n"
        "lowrank.LowRankFamily.params = (*lowrank.PARAMS, Param('added_key', 7, type='integer', meaning='new'))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}

    def planned(config):
        done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
                               "-n", "--configfile", str(config)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert "rule train_model:" not in planned(repo / "config/tiny.yaml")
    written = tmp_path / "written.yaml"
    written.write_text((repo / "config/tiny.yaml").read_text().replace("train_iterations: 30", "train_iterations: 31"))
    assert "rule train_model:" in planned(written)
    # the added key is a key of the family there: a config may set it, and it is checked
    typo = tmp_path / "typo.yaml"
    typo.write_text((repo / "config/tiny.yaml").read_text().replace("train_iterations: 30", "added_key: x"))
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path),
                           "-n", "--configfile", str(typo)], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "models.nmf_sup_kl.added_key" in done.stdout + done.stderr


def test_config_typo_stops_before_any_job(tmp_path, repo):
    config = (repo / "config/tiny.yaml").read_text().replace("train_iterations", "train_iteration")
    (tmp_path / "typo.yaml").write_text(config)
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "typo.yaml"))
    assert done.returncode != 0
    assert "'models.nmf_sup_kl.train_iteration' is not a known key" in done.stderr
    assert not (tmp_path / "results").exists()


def test_a_test_only_folder_dataset_is_evaluated_with_models_trained_elsewhere(tmp_path, repo):
    """Recordings of one's own (a folder of audio and MIDI, no validation split) with
    `role: test`: the model trained on the tiny synthetic dataset transcribes them with the
    decoding chosen on its own validation split, in rows of their own."""
    import soundfile
    import yaml

    from lowrank_amt.evaluation.notes import write_midi_notes
    mine = tmp_path / "my_recordings"
    mine.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        rate, seconds = 16000, 4.0
        t = np.arange(int(rate * seconds)) / rate
        audio, notes = np.zeros_like(t), []
        for start in np.arange(0.2, 3.5, 0.5):
            pitch = int(rng.integers(48, 80))
            f0 = 440 * 2 ** ((pitch - 69) / 12)
            on = (t >= start) & (t < start + 0.4)
            audio += on * sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6)) * np.exp(-(t - start) / 0.5)
            notes.append((start, start + 0.4, pitch))
        soundfile.write(mine / f"{name}.wav", 0.2 * audio, rate)
        write_midi_notes(mine / f"{name}.mid", [n[:2] for n in notes], [n[2] for n in notes])
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["mine"] = {"kind": "folder", "path": str(mine), "role": "test"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = pd.read_csv(tmp_path / "results/tiny/summary/results.csv")
    on_mine = results[results["test_dataset"] == "mine"]
    assert set(on_mine["dataset"]) == {"tiny_piano"} and sorted(on_mine["track_id"]) == ["a", "b"]
    assert on_mine["note_onset_f"].mean() > 0.3  # harmonic tones: the piano's templates find them
    chosen = json.loads((tmp_path / "results/tiny/models/tiny_piano/cqt/nmf_sup_kl/isolated/decoding.json").read_text())
    used = json.loads((tmp_path / "results/tiny/transcriptions/tiny_piano/cqt/nmf_sup_kl/isolated/on/mine/decoding.json")
                      .read_text())
    assert used["params"] == chosen["params"]  # no tuning on the test-only set
    assert "its own" in (tmp_path / "results/tiny/summary/summary.md").read_text()


def test_supervised_templates_can_come_from_another_datasets_isolated_notes(tmp_path, repo):
    import yaml
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["other_piano"] = {**config["datasets"]["tiny_piano"], "seed": 2}
    config["models"]["nmf_sup_kl"]["templates_from"] = "other_piano"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", "-p")
    assert done.returncode == 0, done.stderr[-3000:]
    trains = [line for line in done.stdout.splitlines() if "lowrank-amt train " in line]
    assert len(trains) == 2  # the model on each dataset, both from other_piano's isolated notes
    assert all("--index results/tiny/features/other_piano/cqt/index.csv" in line for line in trains)
    config["models"]["nmf_sup_kl"]["templates_from"] = "nowhere"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n")
    assert done.returncode != 0 and "'models.nmf_sup_kl.templates_from' names no dataset" in done.stdout + done.stderr


def test_a_model_with_a_teacher_learns_from_the_teachers_index(tmp_path, repo):
    import yaml
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["tiny_piano"].update(n_train=2)
    config["training_hours"] = [0.001]
    config["models"]["nmf_semi_teacher"] = {"family": "nmf", "supervision": "semi_supervised",
                                            "teacher": "nmf_sup_kl"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", "-p")
    assert done.returncode == 0, done.stderr[-3000:]
    teaches = [line for line in done.stdout.splitlines() if "lowrank-amt teach " in line]
    assert len(teaches) == 1  # the teacher's notes, once, from its run on the dataset
    assert "--model results/tiny/models/tiny_piano/cqt/nmf_sup_kl/isolated/model.npz" in teaches[0]
    trains = [line for line in done.stdout.splitlines() if "lowrank-amt train " in line and "nmf_semi_teacher" in line]
    assert trains and all("--index results/tiny/teachers/tiny_piano/cqt/nmf_sup_kl/index.csv" in t for t in trains)
    config["models"]["nmf_semi_teacher"]["teacher"] = "nmf_semi_teacher"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n")
    assert done.returncode != 0 and "'models.nmf_semi_teacher.teacher' must name another model" in done.stdout + done.stderr


def test_a_size_cap_trains_a_model_only_at_the_sizes_up_to_it(tmp_path, repo):
    import yaml
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["tiny_piano"].update(n_train=3)
    config["training_hours"] = [0.001, 0.002]
    config["models"]["nmf_semi"] = {"family": "nmf", "supervision": "semi_supervised", "form": "online_mu"}
    config["models"]["nmf_semi_capped"] = {**config["models"]["nmf_semi"]}
    config["max_training_hours"] = {"nmf_semi_capped": 0.0015}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", "-p")
    assert done.returncode == 0, done.stderr[-3000:]
    trains = [line for line in done.stdout.splitlines() if "lowrank-amt train " in line]
    sizes = lambda model: sorted(t.split("--train-hours ")[1].split()[0] for t in trains if f"/{model}/" in t)  # noqa: E731
    assert sizes("nmf_semi") == ["0.001", "0.002"] and sizes("nmf_semi_capped") == ["0.001"]
    for cap, message in (({"nowhere": 1}, "'max_training_hours.nowhere' names no model"),
                         ({"nmf_semi_capped": 0.0005}, "'max_training_hours.nmf_semi_capped' (0.0005) is below")):
        config["max_training_hours"] = cap
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n")
        assert done.returncode != 0 and message in done.stdout + done.stderr


def test_only_models_runs_a_part_of_the_study_with_its_teachers(tmp_path, repo):
    import yaml
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["tiny_piano"].update(n_train=2)
    config["models"]["nmf_semi_teacher"] = {"family": "nmf", "supervision": "semi_supervised",
                                            "teacher": "nmf_sup_kl"}
    config["models"]["nmf_semi"] = {"family": "nmf", "supervision": "semi_supervised"}
    config["only_models"] = ["nmf_semi_teacher"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", "-p")
    assert done.returncode == 0, done.stderr[-3000:]
    trained = {line.split("--model ")[1].split("/")[5] for line in done.stdout.splitlines()
               if "lowrank-amt train " in line}
    assert trained == {"nmf_semi_teacher", "nmf_sup_kl"}  # its teacher too, not nmf_semi
    config["only_models"] = ["nowhere"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n")
    assert done.returncode != 0 and "'only_models' names no model of the config ('nowhere')" in done.stdout + done.stderr


#: The model the kill tests train: a mini-batch NMF that checkpoints every epoch.
KILLED_MODEL = "results/tiny/models/tiny_piano/cqt/nmf_semi/all/model.npz"


def start_training_study(repo, workdir, epochs):
    """The tiny study's data, features and ``KILLED_MODEL`` (``epochs`` epochs, never
    stopping early), started in the background in a process group of its own."""
    import yaml
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["tiny_piano"].update(n_train=2)
    config["models"] = {"nmf_semi": {"family": "nmf", "supervision": "semi_supervised", "form": "online_mu",
                                     "epochs": epochs, "patience": 0, "batch_frames": 64,
                                     "validation_note_f_every": 0}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
                             "--cores", "1", KILLED_MODEL, "--configfile", str(workdir / "config.yaml")],
                            env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for(condition, job, seconds=300):
    import time
    deadline = time.time() + seconds
    while not condition() and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def kill(job):
    import signal
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def test_a_killed_study_resumes_without_redoing_finished_jobs_or_epochs(tmp_path, repo):
    """SIGKILL to Snakemake and its jobs while a model trains; the rerun keeps the data
    and features it had made and resumes the model from its last finished epoch."""
    import time
    study = tmp_path / "results/tiny"
    checkpoint = study / "checkpoints/tiny_piano/cqt/nmf_semi/all/last.pt"
    job = start_training_study(repo, tmp_path, epochs=300)
    wait_for(checkpoint.exists, job)
    time.sleep(0.5)  # a few more epochs
    kill(job)
    assert checkpoint.exists() and not (tmp_path / KILLED_MODEL).exists(), "the kill came too late to test a resume"
    made = {p: p.stat().st_mtime_ns for p in [study / "data/tiny_piano/manifest.csv",
                                               study / "features/tiny_piano/cqt/index.csv"]}
    # as the Makefile's studies do: lift the lock the kill left behind, then run again
    assert snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--unlock").returncode == 0
    done = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--rerun-incomplete",
                     KILLED_MODEL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in made} == made  # data and features kept
    log = (study / "logs/train/tiny_piano/cqt/nmf_semi/all.log").read_text()
    resumed = int(log.split("after epoch ")[1].split()[0])
    assert resumed >= 1
    losses = pd.read_csv(tmp_path / KILLED_MODEL.replace("model.npz", "loss.csv"))
    assert losses["epoch"].nunique() == 300  # the resumed run's history holds every epoch once
    assert not checkpoint.exists()


def test_a_second_run_of_a_live_studys_folder_stops_with_one_line(tmp_path, repo):
    """While a run lives, another run of its results folder and an --unlock each stop with
    one line naming the folder and the run, and the live run's locks stay. Once the run
    is killed, --unlock lifts the lock it left."""
    locks = tmp_path / ".snakemake/locks"
    job = start_training_study(repo, tmp_path, epochs=10000)  # minutes: it lives through the test
    try:
        wait_for(lambda: any(locks.glob("*")), job)
        held = sorted(locks.iterdir())
        for args in (["--forceall"], ["--unlock"]):
            second = snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), *args)
            lines = [line for line in second.stderr.splitlines() if not line.startswith("Using workflow specific")]
            assert second.returncode == 1 and second.stdout == "" and len(lines) == 1, second.stderr[-3000:]
            assert lines[0].startswith("results/tiny is being written by a") and "--cores 1" in lines[0]
        assert sorted(locks.iterdir()) == held
        assert job.poll() is None, "the run ended before the test could try a second one"
    finally:
        kill(job)
    assert snakemake(repo, tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--unlock").returncode == 0
    assert not locks.exists() or not any(locks.iterdir())


def running_rules(log: str) -> list[str]:
    """The rules a Snakemake log shows as started and not finished."""
    import collections
    import re
    started = collections.Counter(re.findall(r"^(?:local)?rule (\w+):$", log, flags=re.MULTILINE))
    started.subtract(re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)$", log, flags=re.MULTILINE))
    return sorted(rule for rule, n in started.items() if n > 0)


def same_outputs(reference: Path, study: Path) -> list[str]:
    """Where two runs' results differ: audio, MIDI and cached arrays byte for byte, model
    and activation arrays exactly, per-track metrics and the chosen decodings."""
    differ = []
    for path in sorted(p for stage in ("data", "features", "models", "transcriptions", "metrics")
                       for p in (reference / stage).rglob("*")):
        other = study / path.relative_to(reference)
        if path.suffix in (".wav", ".mid", ".npy") or path.name == "per_track.csv":
            same = other.is_file() and path.read_bytes() == other.read_bytes()
        elif path.suffix == ".npz":
            with np.load(path) as a, np.load(other) as b:
                same = a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
        elif path.name == "decoding.json":
            same = json.loads(path.read_text())["params"] == json.loads(other.read_text())["params"]
        else:
            continue
        if not same:
            differ.append(str(path.relative_to(reference)))
    return differ


@pytest.mark.skipif(os.environ.get("LOWRANK_AMT_SLOW") != "1",
                    reason="the kill loop reruns the tiny study (100 s for 3 kills): LOWRANK_AMT_SLOW=1")
@pytest.mark.parametrize("kills", [3, 20])
def test_a_study_killed_at_random_moments_ends_as_an_uninterrupted_run(tiny_study, tmp_path, kills):
    """SIGKILL to Snakemake and its jobs at seeded random moments (0 to 6 s after each
    attempt's first job starts), then a rerun each time
    (after lifting the lock the kill left, as the Makefile's studies do): the outputs equal those
    of the uninterrupted run, and no lock, temporary file or checkpoint is left."""
    import signal
    import time
    repo, _, reference = tiny_study
    rng = np.random.default_rng(27)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)}
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
               "--configfile", str(repo / "config/tiny.yaml")]
    killed_in, finished = [], False
    while len(killed_in) < kills and not finished:
        with open(tmp_path / "attempt.log", "w") as log:
            job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            while job.poll() is None and "rule " not in (tmp_path / "attempt.log").read_text():
                time.sleep(0.05)  # Snakemake's start-up: the kill is to come inside the jobs
            try:
                finished = job.wait(timeout=rng.uniform(0.0, 6.0)) == 0
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
                killed_in.append(running_rules((tmp_path / "attempt.log").read_text()) or ["(between jobs)"])
                assert snakemake(repo, tmp_path, "--configfile", str(repo / "config/tiny.yaml"),
                                 "--unlock").returncode == 0
    done = snakemake(repo, tmp_path, "--configfile", str(repo / "config/tiny.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"{len(killed_in)} kills, in: {killed_in}")
    assert len(killed_in) == kills or finished
    study = tmp_path / "results/tiny"
    assert not same_outputs(reference, study)
    # a folder output's marker, and the run lock (a file no process holds: run_lock.py)
    leftovers = [p for p in study.rglob(".*") if p.name not in (".snakemake_timestamp", ".run.lock")]
    leftovers += list(study.glob("checkpoints/**/*.pt"))
    leftovers += [p for p in (tmp_path / ".snakemake").glob("locks/*")] + list((tmp_path / ".snakemake").glob("incomplete/*"))
    assert not leftovers, leftovers


@pytest.mark.parametrize("name, templates_from", [("slakh", "synth_band"), ("guitarset", "synth_guitar")])
def test_real_multi_instrument_and_guitar_studies_plan_their_jobs(tmp_path, repo, name, templates_from):
    """config/slakh.yaml and config/guitarset.yaml (cluster studies, not run here): the
    dry run plans every job, and the instrument templates learn from the synthetic
    corpus's isolated notes."""
    done = snakemake(repo, tmp_path, "--configfile", str(repo / f"config/{name}.yaml"), "-n", "-p")
    assert done.returncode == 0, done.stderr[-3000:]
    trains = [line for line in done.stdout.splitlines() if "lowrank-amt train " in line and "nmf_inst_kl" in line]
    assert trains and all(f"features/{templates_from}/cqt/index.csv" in line for line in trains)


def command_cases(repo, study, out):
    """(name, arguments, expected status) of every command but transcribe (test_options.py)
    on the tiny study's valid files, with its optional arguments alone and together."""
    run = "tiny_piano/cqt/nmf_sup_kl/isolated"
    model, act = study / "models" / run, study / "transcriptions" / run
    index, manifest = study / "features/tiny_piano/cqt/index.csv", study / "data/tiny_piano/manifest.csv"
    spec = json.dumps(json.loads(str(np.load(model / "model.npz")["spec"])))
    evaluation = json.dumps({"onset_tolerance": 0.05, "offset_ratio": 0.2})
    grid = json.dumps({"thresholds": [0.2, 0.4], "min_note_seconds": 0.05})
    track = pd.read_csv(index).query("split == 'test'")["track_id"].iloc[0]
    summary_csv = study / "summary/summary.csv"
    return [
        ("validate-config", [str(repo / "config/tiny.yaml"), "--schema", str(repo / "workflow/schemas/config.schema.yaml")], 0),
        ("train", ["--spec", spec, "--index", str(index), "--model", f"{out}/m/model.npz", "--loss", f"{out}/m/loss.csv",
                   "--info", f"{out}/m/train.json", "--train-hours", "all", "--checkpoint-dir", f"{out}/ck",
                   "--provenance", json.dumps({"dataset": "tiny_piano"})], 0),
        ("activations", ["--model", str(model), "--index", str(index), "--activations", f"{out}/a.npz",
                         "--info", f"{out}/a.json", "--splits", "test"], 0),
        ("activations", ["--model", str(model), "--index", str(index), "--activations", f"{out}/b.npz",
                         "--info", f"{out}/b.json", "--manifest", str(manifest), "--splits", "validation", "test"], 0),
        ("teach", ["--model", str(model), "--index", str(index), "--out-index", f"{out}/taught/index.csv",
                   "--info", f"{out}/taught.json", "--manifest", str(manifest)], 2),  # the tiny study has no training pieces
        ("decode", ["--model", str(model), "--decoding", grid, "--evaluation", evaluation, "--activations",
                    str(act / "activations.npz"), "--index", str(index), "--midi-dir", f"{out}/midi",
                    "--info", f"{out}/decoding.json"], 0),
        ("decode", ["--model", str(model), "--decoding", "{}", "--evaluation", evaluation, "--activations",
                    str(act / "activations.npz"), "--index", str(index), "--midi-dir", f"{out}/midi2",
                    "--info", f"{out}/decoding2.json", "--model-decoding"], 0),
        ("evaluate", ["--evaluation", evaluation, "--midi-dir", str(act / "midi"), "--index", str(index),
                      "--out", f"{out}/per_track.csv"], 0),
        ("evaluate", ["--evaluation", evaluation, "--midi-dir", str(act / "midi"), "--index", str(index),
                      "--out", f"{out}/per_track2.csv", "--activations", str(act / "activations.npz"),
                      "--decoding-info", str(model / "decoding.json"), "--decoding", grid], 0),
        ("assess-dictionary", ["--model", str(model), "--index", str(index), "--out", f"{out}/interp.json",
                               "--templates", f"{out}/templates.csv"], 0),
        *[("plot", [kind, "--summary", str(summary_csv), "--out", f"{out}/{kind}.svg"], 0)
          for kind in SUMMARY_FIGURES],
        ("scaling-tables", ["--summary", str(summary_csv), "--out", "-"], 0),
        ("scaling-tables", ["--summary", str(summary_csv), "--out", f"{out}/tables.md", "--memory-limit-mb", "512"], 0),
        ("plot-losses", ["--loss", f"sup={model / 'loss.csv'}", "--out", f"{out}/losses.svg"], 0),
        ("plot-validation", ["--loss", f"sup={model / 'loss.csv'}", "--out", f"{out}/validation.svg"], 2),  # no validation F
        ("plot-velocity", ["--decoding", f"sup={model / 'decoding.json'}", "--out", f"{out}/velocity.svg"], 0),
        ("plot-dictionary", ["--model", str(model), "--index", str(index), "--out", f"{out}/dict.png", "--title", "W"], 0),
        ("plot-excerpt", ["--activations", str(act / "activations.npz"), "--index", str(index), "--out",
                          f"{out}/excerpt.png", "--track", track, "--seconds", "1.5", "--title", "H"], 0),
        ("plot-excerpt", ["--activations", str(act / "activations.npz"), "--index", str(index), "--out",
                          f"{out}/excerpt2.png", "--track", "no_such_track"], 2),
        ("plot-stems", ["--model", str(model), "--audio", str(study / "data/tiny_piano" /
                        pd.read_csv(manifest).query("split == 'test'")["audio_path"].iloc[0]), "--out", f"{out}/stems.png"], 2),
    ]


def test_every_other_command_with_its_options_is_a_result_or_one_line(tiny_study, tmp_path, monkeypatch):
    import contextlib
    import io
    from lowrank_amt.cli import main
    repo, workdir, study = tiny_study
    monkeypatch.chdir(workdir)  # the study's indexes name files relative to it, as its rules run there
    outcomes = {0: 0, 2: 0}
    for name, args, expected in command_cases(repo, study, tmp_path):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main([name, *args])
        text = err.getvalue()
        assert status == expected and "Traceback" not in text, (name, args, status, text[-2000:])
        if status == 2:
            assert text.strip().splitlines()[-1].startswith(f"lowrank-amt {name}: error:"), (name, text)
            assert len([line for line in text.splitlines() if ": error:" in line]) == 1, (name, text)
        outcomes[status] += 1
    print(outcomes)  # docs/reliability.md counts them
