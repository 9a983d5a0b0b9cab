"""On a real Slurm cluster: the tiny study's jobs all go through sbatch and give the
results of a local run of the same config; a training job cancelled mid-run (scancel)
and submitted again resumes from its last checkpoint and ends with the same model.

Skipped unless LOWRANK_AMT_SLURM=1, which CI sets after starting a single-node cluster:
    .ci/slurm/start.sh && LOWRANK_AMT_SLURM=1 .venv/bin/pytest -m slurm; .ci/slurm/stop.sh
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.constants import N_KEYS
from lowrank_amt.signal.feature_cache import record_checksums

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / ".ci/slurm/profile"
CONFIG = REPO / "config/tiny.yaml"
STUDY = Path("results/tiny")
TIMEOUT_SECONDS = 900  # a lost job would otherwise keep Snakemake polling for ever

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("LOWRANK_AMT_SLURM") != "1",
                       reason="needs a Slurm cluster (.ci/slurm/start.sh) and LOWRANK_AMT_SLURM=1"),
]


def snakemake(workdir, *args):
    """Start Snakemake on the tiny study in `workdir`; returns the running process."""
    # Slurm jobs inherit this environment (sbatch --export=ALL, then srun): the rules'
    # `lowrank-amt` must be on PATH there too.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                             "-d", str(workdir), "--configfile", str(CONFIG), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def finish(process):
    """Wait for a Snakemake process; returns (exit status, end of its stderr)."""
    try:
        _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return process.returncode, stderr[-3000:]


def slurmctld_log_tail(lines=30):
    try:
        return "".join(Path("/var/log/slurm/slurmctld.log").read_text().splitlines(True)[-lines:])
    except OSError as error:
        return str(error)


def snakemake_log(workdir):
    """Text of the (only) Snakemake log of a run in `workdir`."""
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def finished_rules(log_text):
    """Rules of the jobs a run finished (one entry per job), without the target rule."""
    return Counter(rule for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log_text)
                   if rule != "all")


def local_rules(log_text):
    """Rules the run executed beside Snakemake (the Snakefile's `localrules`)."""
    return set(re.findall(r"^localrule (\w+):", log_text, re.M)) - {"all"}


def submissions(log_text):
    """{Slurm job id: Slurm log path} of every job the Slurm executor submitted."""
    found = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", log_text)
    return {job_id: Path(path) for job_id, path in found}


def squeue(job_ids):
    """{job id: (state, job name, comment)} of the given jobs, finished ones included
    (the CI cluster keeps them for MinJobAge = 600 s)."""
    done = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%j|%k",
                           f"--jobs={','.join(job_ids)}"], capture_output=True, text=True, check=True)
    rows = [line.split("|", 3) for line in done.stdout.splitlines() if line]
    return {job_id: (state, name, comment) for job_id, state, name, comment in rows}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny study run on the cluster and locally, in fresh working directories. Both
    run at once: the Slurm run spends most of its time waiting on one job at a time.
    Both give every rule the same threads (--cores caps them), hence the same numerics."""
    on_slurm, local = tmp_path_factory.mktemp("slurm"), tmp_path_factory.mktemp("local")
    local_run = snakemake(local, "--cores", "2")
    status, stderr = finish(snakemake(on_slurm, "--profile", str(PROFILE), "--cores", "2"))
    local_status, local_stderr = finish(local_run)
    assert status == 0, stderr + "\nslurmctld.log:\n" + slurmctld_log_tail()
    assert local_status == 0, local_stderr
    return on_slurm, local


def test_every_job_went_through_sbatch(runs):
    on_slurm, local = runs
    log = snakemake_log(on_slurm)
    submitted = submissions(log)
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    # The same jobs as the local run, each one submitted once.
    assert finished_rules(log) == finished_rules(snakemake_log(local))
    # Every job but the few seconds-long `localrules` (aggregate, summary plots) is a Slurm job.
    on_cluster = Counter({rule: n for rule, n in finished_rules(log).items() if rule not in local_rules(log)})
    assert {"prepare_dataset", "extract_features", "train_model", "activations", "evaluate"} <= set(on_cluster)
    assert local_rules(log) <= {"aggregate", "plot_losses", "plot_velocity", "plot_tradeoff", "plot_tradeoff_largest",
                                "plot_scaling", "plot_cost_scaling", "plot_compute", "scaling_tables"}
    assert len(submitted) == sum(on_cluster.values()) > 0

    seen = squeue(list(submitted))
    assert set(seen) == set(submitted), "jobs unknown to squeue: " + str(set(submitted) - set(seen))
    rules = Counter()
    for job_id, (state, name, comment) in seen.items():
        assert (state, name) == ("COMPLETED", run_id), (job_id, state, name)
        rule = re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", comment).group(1)
        rules[rule] += 1
        # The job's own Slurm log shows Snakemake running that rule inside the allocation.
        slurm_log = submitted[job_id]
        assert slurm_log.name == f"{job_id}.log" and on_slurm in slurm_log.parents, slurm_log
        assert f"rule {rule}:" in slurm_log.read_text(), slurm_log
    assert rules == on_cluster


def test_results_equal_local_run(runs):
    on_slurm, local = runs
    slurm_results = pd.read_csv(on_slurm / STUDY / "summary/results.csv")
    local_results = pd.read_csv(local / STUDY / "summary/results.csv")
    keys = ["dataset", "features", "model", "track_id"]
    metrics = [c for c in local_results.columns
               if c.startswith(("note_", "frame_")) or c in ("n_ref_notes", "n_est_notes", "threshold")]
    assert "note_onset_f" in metrics and len(local_results) > 0
    pd.testing.assert_frame_equal(slurm_results.sort_values(keys)[keys + metrics].reset_index(drop=True),
                                  local_results.sort_values(keys)[keys + metrics].reset_index(drop=True),
                                  check_exact=False, rtol=1e-9)

    # The learned dictionaries themselves, whatever the model families of the study.
    slurm_models = sorted(p.relative_to(on_slurm) for p in (on_slurm / STUDY / "models").rglob("model.npz"))
    local_models = sorted(p.relative_to(local) for p in (local / STUDY / "models").rglob("model.npz"))
    assert slurm_models == local_models and slurm_models
    for path in local_models:
        with np.load(on_slurm / path) as a, np.load(local / path) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                if a[name].dtype.kind in "fc":
                    np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=0, err_msg=f"{path}:{name}")
                else:
                    np.testing.assert_array_equal(a[name], b[name], err_msg=f"{path}:{name}")


# --- preemption: a training job cancelled mid-run resumes from its last checkpoint -----

EPOCHS = 20
TRAIN_SPEC = {"family": "nmf", "supervision": "semi_supervised", "form": "gradient", "epochs": EPOCHS,
              "batch_frames": 256, "inner_iterations": 10, "patience": 0, "seed": 0, "device": "cpu"}
# What a training job runs: stages.train with a checkpoint folder outside its outputs
# (Snakemake deletes the outputs of a failed job, never the checkpoint).
TRAIN_JOB = """\
import json, sys
import torch
from lowrank_amt.stages.train import train
torch.set_num_threads(1)
out = sys.argv[1]
train(json.loads(sys.argv[2]), "index.csv", f"{out}/model.npz", f"{out}/loss.csv",
      f"{out}/train.json", log=lambda m: print(m, flush=True), checkpoint_dir=f"{out}.checkpoint")
"""


def write_feature_cache(folder, rng, n_bins=264, frames=800):
    """Two training tracks and one validation track made from random templates, with
    their rolls: enough for a few quick epochs."""
    templates = rng.random((n_bins, N_KEYS)) ** 4
    rows = []
    for track_id, split in (("train_0", "train"), ("train_1", "train"), ("validation_0", "validation")):
        roll = (rng.random((N_KEYS, frames)) < 0.03).astype(np.uint8)
        features = templates @ (roll * rng.random((N_KEYS, frames))) + 1e-3
        np.save(folder / f"{track_id}.npy", features.astype(np.float32))
        np.save(folder / f"{track_id}.roll.npy", roll)
        rows.append({"track_id": track_id, "split": split, "features_path": f"{track_id}.npy",
                     "roll_path": f"{track_id}.roll.npy", "n_frames": frames, "frame_rate": 43.0,
                     "duration": frames / 43.0})
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    record_checksums(folder)


def job_state(job_id):
    done = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job_id}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def wait_for(condition, what, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}\nslurmctld.log:\n{slurmctld_log_tail()}"
        time.sleep(0.1)


def sbatch_training(folder, out):
    command = f"{sys.executable} train_job.py {out} {shlex.quote(json.dumps(TRAIN_SPEC))}"
    done = subprocess.run(["sbatch", "--parsable", "--job-name=lowrank-amt-preemption", "--ntasks=1",
                           "--cpus-per-task=1", "--time=10", f"--chdir={folder}",
                           f"--output={folder}/{out}-%j.log", f"--wrap={command}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip().split(";")[0]


def test_cancelled_training_job_resumes_to_the_same_model(tmp_path):
    write_feature_cache(tmp_path, np.random.default_rng(0))
    (tmp_path / "train_job.py").write_text(TRAIN_JOB)
    # Reference: the same job, uninterrupted, outside Slurm.
    subprocess.run([sys.executable, "train_job.py", "reference", json.dumps(TRAIN_SPEC)], cwd=tmp_path,
                   check=True, capture_output=True)

    first = sbatch_training(tmp_path, "preempted")
    first_log = tmp_path / f"preempted-{first}.log"
    # Epoch 2 has begun, so the checkpoint of epoch 1 is complete (each is written
    # before the next epoch starts): cancel the job now, mid-run.
    wait_for(lambda: first_log.exists() and "epoch 2:" in first_log.read_text(), "epoch 2 of the first job")
    subprocess.run(["scancel", first], check=True)
    wait_for(lambda: job_state(first) == "CANCELLED", f"job {first} to be cancelled")
    cancelled_log = first_log.read_text()
    assert not (tmp_path / "preempted/model.npz").exists(), cancelled_log

    second = sbatch_training(tmp_path, "preempted")
    wait_for(lambda: job_state(second) in ("COMPLETED", "FAILED", "CANCELLED"), f"job {second} to end")
    resumed_log = (tmp_path / f"preempted-{second}.log").read_text()
    assert job_state(second) == "COMPLETED", resumed_log
    resumed = re.search(r"resumed from \S+ after epoch (\d+)", resumed_log)
    assert resumed, resumed_log
    after = int(resumed.group(1))
    # Cancelled mid-run, and the second job went on from there instead of starting over.
    assert 1 <= after < EPOCHS, (after, cancelled_log)
    # Each epoch's line is logged once its checkpoint is saved, so a job cancelled between
    # the two has saved one epoch more than its log shows.
    logged = [int(e) for e in re.findall(r"^epoch (\d+):", cancelled_log, re.M)]
    assert logged and after - 1 <= logged[-1] <= after and EPOCHS not in logged, (after, cancelled_log)
    assert re.findall(r"^epoch (\d+):", resumed_log, re.M) == [str(e) for e in range(after + 1, EPOCHS + 1)]

    with np.load(tmp_path / "preempted/model.npz") as got, np.load(tmp_path / "reference/model.npz") as want:
        np.testing.assert_allclose(got["W"], want["W"], rtol=1e-6, atol=0)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "preempted/loss.csv"),
                                  pd.read_csv(tmp_path / "reference/loss.csv"), check_exact=False, rtol=1e-9)
