"""Faults injected on purpose: every output path that is not a regular file is refused,
a write that fails leaves the previous file and no temporary file, and '-' writes a
table to standard output. docs/reliability.md counts what these tests try."""

import os
import re
import resource
import shutil
import socket
import subprocess
import sys

import pytest

from lowrank_amt.cli import main
from lowrank_amt.learning.epochs import fit_epochs
from lowrank_amt.runtime.io import write_json
from test_scaling import summary

#: A command that writes one file given on its command line.
SCALING_TABLES = ["scaling-tables", "--memory-limit-mb", "24000"]
QUIET = lambda message: None  # noqa: E731


@pytest.fixture
def summary_csv(tmp_path):
    path = tmp_path / "summary.csv"
    summary().to_csv(path, index=False)
    return path


def run(args, capsys):
    """(exit status, stdout, stderr) of ``lowrank-amt ARGS`` in this process."""
    capsys.readouterr()
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


def special_paths(tmp_path):
    """An existing path of each kind that is not a regular file (a socket stands for the
    devices: a regression must not replace the machine's /dev/null)."""
    (tmp_path / "a_folder").mkdir()
    os.mkfifo(tmp_path / "a_fifo")
    socket.socket(socket.AF_UNIX).bind(str(tmp_path / "a_socket"))
    os.symlink(tmp_path / "a_folder", tmp_path / "a_link_to_a_folder")
    return {"directory": tmp_path / "a_folder", "FIFO": tmp_path / "a_fifo", "socket": tmp_path / "a_socket",
            "symlink to a directory": tmp_path / "a_link_to_a_folder"}


def test_an_output_that_is_not_a_regular_file_is_refused_and_left_alone(tmp_path, summary_csv, capsys):
    for kind, path in special_paths(tmp_path).items():
        before = os.lstat(path)
        status, _, err = run([*SCALING_TABLES, "--summary", str(summary_csv), "--out", str(path)], capsys)
        assert status == 2, kind
        assert err.count("\n") == 1 and "is not a regular file" in err, (kind, err)
        assert str(path) in err, kind
        after = os.lstat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_fifo", "a_folder", "a_link_to_a_folder", "a_socket",
                                                          "summary.csv"]


def test_dev_stdout_on_a_pipe_is_refused_with_a_hint(tmp_path, summary_csv):
    """The case reported: /dev/stdout links to a pipe, not a file to replace."""
    done = subprocess.run([sys.executable, "-m", "lowrank_amt.cli", *SCALING_TABLES, "--summary", str(summary_csv),
                           "--out", "/dev/stdout"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "/dev/stdout links to" in done.stderr
    assert "'-' for standard output" in done.stderr and os.path.islink("/dev/stdout")


def test_a_dash_writes_the_table_to_standard_output(tmp_path, summary_csv, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, printed, _ = run([*SCALING_TABLES, "--summary", str(summary_csv), "--out", "-"], capsys)
    run([*SCALING_TABLES, "--summary", str(summary_csv), "--out", str(tmp_path / "tables.md")], capsys)
    assert status == 0 and printed == (tmp_path / "tables.md").read_text()
    assert "nmf_semi_online" in printed and not (tmp_path / "-").exists()


def test_a_symlink_to_a_file_is_written_through(tmp_path, summary_csv, capsys):
    (tmp_path / "target.md").write_text("old")
    os.symlink(tmp_path / "target.md", tmp_path / "link.md")
    assert run([*SCALING_TABLES, "--summary", str(summary_csv), "--out", str(tmp_path / "link.md")], capsys)[0] == 0
    assert (tmp_path / "link.md").is_symlink() and "nmf_semi_online" in (tmp_path / "target.md").read_text()


def test_a_write_over_the_file_size_limit_keeps_the_previous_file(tmp_path, summary_csv):
    """``ulimit -f``: the table is larger than the limit, the previous file is smaller."""
    out = tmp_path / "tables.md"
    out.write_text("the previous tables\n")

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    done = subprocess.run([sys.executable, "-m", "lowrank_amt.cli", *SCALING_TABLES, "--summary", str(summary_csv),
                           "--out", str(out)], capture_output=True, text=True, preexec_fn=limit_file_size)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot write {out}: File too large" in done.stderr
    assert out.read_text() == "the previous tables\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", "tables.md"]  # no temporary file


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_write_without_permission_keeps_the_previous_file(tmp_path, summary_csv, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    (folder / "tables.md").write_text("the previous tables\n")
    folder.chmod(0o555)
    try:
        status, _, err = run([*SCALING_TABLES, "--summary", str(summary_csv), "--out", str(folder / "tables.md")],
                             capsys)
    finally:
        folder.chmod(0o755)
    assert status == 2 and "cannot write" in err and err.count("\n") == 1
    assert (folder / "tables.md").read_text() == "the previous tables\n" and len(list(folder.iterdir())) == 1


@pytest.fixture(scope="module")
def written_files(tmp_path_factory, cache_builder):
    """A feature cache, a model trained on it, its activations and a checkpoint, written
    as the stages write them."""
    from lowrank_amt.stages.train import train
    from lowrank_amt.stages.transcribe import activations
    folder = tmp_path_factory.mktemp("written")
    (folder / "cache").mkdir()
    cache_builder(folder / "cache", (("train", 2), ("validation", 1), ("test", 1)), notes_per_track=10,
                  key_spacing=0.3, key_hold=0.25)
    write_json(folder / "cache" / "params.json", {"kind": "cqt", "bins_per_semitone": 3, "fmin_midi": 21,
                                                  "n_semitones": 88, "hop_length": 512, "sample_rate": 22050})
    index, model = folder / "cache" / "index.csv", folder / "model" / "model.npz"
    spec = {"family": "nmf", "supervision": "supervised", "train_iterations": 10, "transcribe_iterations": 10,
            "device": "cpu", "seed": 0}
    train(spec, index, model, folder / "model" / "loss.csv", folder / "model" / "train.json", log=QUIET)
    activations(model, index, folder / "a.npz", folder / "a.json", log=QUIET)
    fit_epochs(Learner(), epochs=1, checkpoint_path=folder / "last.pt", fingerprint="x", log=QUIET)
    return folder


class Learner:
    """The least a learner is (``epochs.py``): its checkpoint holds a 264 x 88 dictionary."""

    learning_rate = None

    def __init__(self):
        import torch
        self.W = torch.rand(264, 88, generator=torch.Generator().manual_seed(0))

    def train_epoch(self, epoch):
        return 1.0

    def end_epoch(self):
        pass

    def validate(self, epoch):
        return None

    def snapshot(self):
        return {"W": self.W.clone()}

    def state_dict(self):
        return {"W": self.W}

    def load_state_dict(self, state):
        self.W = state["W"]


def _read_features(folder):
    from lowrank_amt.stages.train import train
    out = folder / "out"
    spec = {"family": "nmf", "supervision": "unsupervised", "form": "online_mu", "rank": 12, "epochs": 1,
            "batch_frames": 256, "inner_iterations": 2, "transcribe_iterations": 2, "device": "cpu", "seed": 0}
    train(spec, folder / "cache" / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json", log=QUIET)


def _read_model(folder):
    from lowrank_amt.model_file import load_model
    load_model(folder / "model")


def _read_activations(folder):
    from lowrank_amt.stages.transcribe import load_activations
    load_activations(folder / "a.npz")


def _read_checkpoint(folder):
    fit_epochs(Learner(), epochs=1, checkpoint_path=folder / "last.pt", fingerprint="x", log=QUIET)


#: Each kind of file a stage reads back: (the file in ``written_files``, a reader of it).
WRITTEN = {"cached features": ("cache/train_0.npy", _read_features),
           "cached piano roll": ("cache/train_1.roll.npy", _read_features),
           "model file": ("model/model.npz", _read_model),
           "activations": ("a.npz", _read_activations),
           "checkpoint": ("last.pt", _read_checkpoint)}


def damage(path, how):
    """As a full disk, a killed copy or a bad sector leaves a file."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "one byte flipped":  # in the middle: inside the largest array's data
        data[len(data) // 2] ^= 0x01
    else:  # "zeroed": the second half overwritten
        data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "one byte flipped", "zeroed"])
@pytest.mark.parametrize("kind", WRITTEN)
def test_a_damaged_file_is_named_never_used(tmp_path, written_files, kind, how):
    """Size and hash recorded at write time (checksums.json beside a feature cache; the
    CRC-32 of each member of an .npz or a torch checkpoint) find every damage, one flipped
    bit included (numpy loads such an .npy, and torch such a checkpoint, without a word);
    the reader stops with one line naming the file, and writes nothing."""
    from lowrank_amt.errors import LowrankAmtError
    folder = tmp_path / "copy"
    shutil.copytree(written_files, folder)
    name, read = WRITTEN[kind]
    read(folder)  # undamaged, it reads
    shutil.rmtree(folder / "out", ignore_errors=True)
    damage(folder / name, how)
    with pytest.raises(LowrankAmtError) as error:
        read(folder)
    message = str(error.value)
    assert str(folder / name) in message and re.search("truncated|corrupt|damaged", message)
    assert "\n" not in message and not (folder / "out").exists()


def test_a_feature_cache_without_recorded_checksums_is_refused(tmp_path, written_files):
    """A cache from before checksums were recorded, or whose extraction died before
    recording them, is not trusted."""
    from lowrank_amt.errors import LowrankAmtError
    folder = tmp_path / "copy"
    shutil.copytree(written_files, folder)
    (folder / "cache" / "checksums.json").unlink()
    with pytest.raises(LowrankAmtError, match="has no checksums.json"):
        _read_features(folder)


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """SIGKILL runs no cleanup: the next write of the same file removes what a dead
    writer left, and keeps what a live one is writing."""
    from lowrank_amt.runtime.io import write_text
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".tables.md.{dead.stdout.strip()}.x1y2z3w4.md"  # as mkstemp names them
    live = tmp_path / f".tables.md.{os.getpid()}.a1b2c3d4.md"
    orphan.write_text("half a table")
    live.write_text("being written")
    write_text(tmp_path / "tables.md", "the table\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "tables.md"]


#: Trains a learner whose dictionary moves every epoch, checkpointing after each; with
#: argument 2 = k > 0 the process is killed (SIGKILL) while writing the k-th checkpoint,
#: its temporary file half written. Prints the best dictionary's hash and the history.
CHECKPOINTED_TRAINING = """
import hashlib, os, sys, torch
from lowrank_amt.learning.epochs import fit_epochs

class Learner:
    learning_rate = None
    def __init__(self):
        self.W = torch.rand(264, 88, generator=torch.Generator().manual_seed(0))
    def train_epoch(self, epoch):
        self.W = 0.9 * self.W + torch.rand(264, 88, generator=torch.Generator().manual_seed(epoch))
        return float(self.W.sum())
    def end_epoch(self): pass
    def validate(self, epoch): return None
    def snapshot(self): return {"W": self.W.clone()}
    def state_dict(self): return {"W": self.W}
    def load_state_dict(self, state): self.W = state["W"]

kill_at, saves, save = int(sys.argv[2]), [], torch.save
def save_then_die(obj, path):
    save(obj, path)
    saves.append(path)
    if len(saves) == kill_at:
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), 9)
torch.save = save_then_die
state = fit_epochs(Learner(), epochs=6, checkpoint_path=sys.argv[1], fingerprint="x", log=lambda m: None)
print(hashlib.sha256(state["best"]["W"].numpy().tobytes()).hexdigest(), [row["loss"] for row in state["history"]])
"""


def checkpointed_training(checkpoint, kill_at=0):
    return subprocess.run([sys.executable, "-c", CHECKPOINTED_TRAINING, str(checkpoint), str(kill_at)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("kill_at", [1, 3, 6])
def test_a_kill_while_a_checkpoint_is_written_resumes_as_an_uninterrupted_run(tmp_path, kill_at):
    """SIGKILL while the k-th checkpoint is being written (its temporary file half there):
    the previous checkpoint is intact, the rerun resumes from it, ends with the same
    dictionary and history as an uninterrupted run, and removes the half-written file."""
    straight = checkpointed_training(tmp_path / "straight" / "last.pt")
    assert straight.returncode == 0, straight.stderr
    killed = checkpointed_training(tmp_path / "killed" / "last.pt", kill_at)
    assert killed.returncode == -9
    left = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert len(left) == (1 if kill_at == 1 else 2) and left[0].startswith(".last.pt.")  # the half-written file
    resumed = checkpointed_training(tmp_path / "killed" / "last.pt")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == straight.stdout
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["last.pt"]


def test_the_run_lock_refuses_a_second_run_and_an_unlock_but_not_a_dry_run(tmp_path, monkeypatch, capsys):
    """run_lock.refusal as the Snakefile calls it, with the folder's lock held as a live
    run holds it (an flock of another open file); on a filesystem without locks the run
    goes on with a note."""
    import errno
    import fcntl
    from lowrank_amt.runtime import run_lock
    results = tmp_path / "results" / "study"
    results.mkdir(parents=True)
    with open(results / run_lock.LOCK_NAME, "w") as held:
        held.write("process 1: snakemake --cores 2\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run_lock.refusal(results, ["snakemake", "--cores", "1"])
        assert refused == f"{results} is being written by another run (process 1: snakemake --cores 2); " \
                          "wait for it to finish or stop it"
        beside = tmp_path / "results" / "other"
        assert "--unlock would lift its locks" in run_lock.refusal(beside, ["snakemake", "--unlock"])
        assert run_lock.refusal(results, ["snakemake", "-np"]) is None
        assert run_lock.refusal(results, ["snakemake", "--dry-run"]) is None
    assert run_lock.refusal(beside, ["snakemake", "--unlock"]) is None  # the run ended
    assert not run_lock.is_dry_run(["snakemake", "--cores", "2", "--nolock", "-p"])

    def no_locks_here(file, operation):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr(fcntl, "flock", no_locks_here)
    assert run_lock.refusal(tmp_path / "results" / "third", ["snakemake", "--cores", "1"]) is None
    assert "cannot be locked here (Operation not supported)" in capsys.readouterr().err
