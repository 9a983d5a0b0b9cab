"""One run per results folder, so that two runs never write the same files.

The workflow's main process holds ``<results folder>/.run.lock`` (an ``flock``, which the
kernel releases when the process ends, however it ends) for as long as it lives. A second
run of the same folder stops at once with one line naming the holder, before Snakemake's
own lock is reached (whose refusal takes a screen and advises ``--unlock``). A killed run
therefore leaves no lock of ours; Snakemake's, which it does leave, is lifted by
``snakemake --unlock``, and that is refused while a run of this results folder, or of a
folder beside it, lives: Snakemake's unlock lifts every lock of the working directory.
A dry run (``-n``) holds nothing and is never refused. On a filesystem without locks (some
cluster mounts) a note says so and the run goes on unguarded.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from pathlib import Path

LOCK_NAME = ".run.lock"
#: The open lock files of this process by path: a lock lasts as long as its file is open
#: (and a second flock of the same file from this process would find it held).
_held: dict[Path, object] = {}


def is_dry_run(argv: list[str]) -> bool:
    """Whether a Snakemake command line plans without running (``-n``, ``-np``, ``--dry-run``)."""
    return any(arg in ("--dry-run", "--dryrun") or re.fullmatch(r"-[a-zA-Z]*n[a-zA-Z]*", arg) for arg in argv)


def holder(lock_path: Path) -> str | None:
    """Who holds ``lock_path`` (what it wrote there), or None when nobody does."""
    if not lock_path.exists():
        return None
    with open(lock_path) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return file.read().strip() or "a starting run"
        except OSError:  # a filesystem without locks: nobody can hold one there
            return None
    return None


def take(lock_path: Path, argv: list[str]) -> str | None:
    """Hold ``lock_path`` for the rest of this process; None when taken, else its holder."""
    lock_path = lock_path.resolve()
    if lock_path in _held:
        return None
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    file = open(lock_path, "a+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        found = file.read().strip() or "a starting run"
        file.close()
        return found
    except OSError as exc:  # a filesystem without locks (some cluster mounts): run unguarded
        file.close()
        print(f"note: {lock_path} cannot be locked here ({exc.strerror or exc}): a second run of this results "
              "folder would not be stopped", file=sys.stderr)
        return None
    file.seek(0)
    file.truncate()
    file.write(f"process {os.getpid()}: {' '.join(argv)}\n")
    file.flush()
    _held[lock_path] = file
    return None


def refusal(results: str | os.PathLike, argv: list[str]) -> str | None:
    """Hold the lock of the results folder ``results`` for a workflow run; the line to
    stop with when another run holds it (or, for ``--unlock``, a folder beside it)."""
    results = Path(results)
    if is_dry_run(argv):
        return None
    if "--unlock" in argv:
        for lock_path in [results / LOCK_NAME, *sorted(results.parent.glob(f"*/{LOCK_NAME}"))]:
            found = holder(lock_path)
            if found:
                return (f"{lock_path.parent} is being written by a live run ({found}); --unlock would lift "
                        "its locks: wait for it to finish or stop it first")
        return None
    found = take(results / LOCK_NAME, argv)
    if found:
        return f"{results} is being written by another run ({found}); wait for it to finish or stop it"
    return None
