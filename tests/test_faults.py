"""Faults injected on purpose: every output path that is not a regular file is refused,
a write that fails leaves the previous file and no temporary file, and '-' writes a
table to standard output. docs/reliability.md counts what these tests try."""

import os
import resource
import socket
import subprocess
import sys

import pytest

from lowrank_amt.cli import main
from test_scaling import summary

#: A command that writes one file given on its command line.
SCALING_TABLES = ["scaling-tables", "--memory-limit-mb", "24000"]


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


@pytest.mark.parametrize("damage", ["truncated", "garbage header"])
def test_a_damaged_feature_cache_file_is_named_never_used(tmp_path, cache_builder, small_spec, damage):
    """As a killed copy or a full disk leaves it: training stops with one line naming the
    file and what to do."""
    from lowrank_amt.errors import LowrankAmtError
    from lowrank_amt.stages.train import train
    (tmp_path / "cache").mkdir()
    folder, _ = cache_builder(tmp_path / "cache", (("train", 2), ("validation", 1), ("test", 1)),
                              notes_per_track=10, key_spacing=0.3, key_hold=0.25)
    victim = sorted(folder.glob("train_*.npy"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * len(data))
    out = tmp_path / "model"
    spec = {**small_spec, "family": "nmf", "supervision": "unsupervised", "form": "online_mu"}
    with pytest.raises(LowrankAmtError, match=f"feature cache file {victim} is truncated or corrupt"):
        train(spec, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json", log=lambda m: None)
    assert not out.exists()


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """SIGKILL runs no cleanup: the next write of the same file removes what a dead
    writer left, and keeps what a live one is writing."""
    from lowrank_amt.io import write_text
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".tables.md.{dead.stdout.strip()}.x1y2z3w4.md"  # as mkstemp names them
    live = tmp_path / f".tables.md.{os.getpid()}.a1b2c3d4.md"
    orphan.write_text("half a table")
    live.write_text("being written")
    write_text(tmp_path / "tables.md", "the table\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "tables.md"]
