"""Small file helpers: atomic writes, so that a failed job never leaves a file that
looks complete, and the checks that find a file damaged after it was written.

A file's size and SHA-256 (``file_record``) are recorded when it is written where a
format has no check of its own (the feature caches' .npy files, ``spectrogram.py``);
.npz files (models, activations) and torch checkpoints are zip archives, whose members
carry their size and CRC-32, checked as they are read (``read_npz``, ``check_zip``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import LowrankAmtError

#: Why a write fails for want of room or rights, not because of the data written.
WRITE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


def file_mode() -> int:
    """The mode a new file gets under the process's umask (mkstemp's own is 0600, which
    a cluster group could not read). Read from /proc where it can be: setting the umask
    to read it would, for a moment, change it for every thread."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_writable(path: Path) -> Path:
    """``path`` to replace: a symlink is followed to its target; an existing path that is
    not a regular file (a directory, device, FIFO or socket) is refused, so that a write
    never replaces, say, /dev/stdout with a regular file."""
    advice = "give a file path, or '-' for standard output where a command prints a table"
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.is_file():  # a folder, a device, a pipe (/dev/stdout), or nothing
            raise LowrankAmtError(f"{path} links to {target}, which is not a regular file; refusing to write "
                                  f"there ({advice})")
        return target
    if os.path.lexists(path) and not path.is_file():
        raise LowrankAmtError(f"{path} exists and is not a regular file; refusing to write over it ({advice})")
    return path


#: A temporary file of ``atomic_path``: ``.<target>.<writer's pid>.<8 random characters><suffix>``.
TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?P<suffix>.*)$")
#: Folders this process has already cleaned (once each: a cache folder holds thousands of files).
_cleaned: set[Path] = set()


def remove_orphans(folder: Path) -> None:
    """Remove the temporary files that killed writers left in ``folder`` (SIGKILL runs no
    cleanup): their names carry the writer's process id, and that process is gone."""
    if folder in _cleaned:
        return
    for entry in os.scandir(folder):
        match = TEMPORARY_NAME.match(entry.name)
        if match and match["suffix"] == Path(match["target"]).suffix and not _alive(int(match["pid"])):
            Path(entry.path).unlink(missing_ok=True)
    _cleaned.add(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.
    The file gets the mode any new file gets under the umask; the temporary files a
    killed writer left are removed first. A write that fails (no
    space, no permission, the file-size limit) leaves the previous file as it was, no
    temporary file behind, and is one error naming ``path``."""
    path = check_writable(Path(path))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise LowrankAmtError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` into ``path`` atomically, or onto standard output when ``path`` is '-'."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_array(path: str | os.PathLike, array) -> dict:
    """``np.save`` of ``array`` into ``path``, atomically; returns its ``file_record``."""
    import numpy as np
    with atomic_path(path) as tmp:
        np.save(tmp, array)
        return file_record(tmp)


def file_record(path: str | os.PathLike) -> dict:
    """A file's size in bytes and SHA-256, to record when it is written."""
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return {"bytes": os.path.getsize(path), "sha256": digest}


def read_npz(path: str | os.PathLike, what: str, advice: str) -> dict:
    """Every array of an .npz file (no pickles); a missing, truncated or corrupt file is
    one error: "<what> <path> ...; <advice>". The archive is checked whole first: numpy
    parses a member's header before its CRC-32 is reached, and a damaged header raises
    whatever the parser meets."""
    import numpy as np
    if not os.path.exists(path):
        raise LowrankAmtError(f"{what} {path} does not exist; {advice}")
    check_zip(path, what, advice)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LowrankAmtError(f"{what} {path} is truncated or corrupt ({exc}); {advice}") from exc


def check_zip(path: str | os.PathLike, what: str, advice: str) -> None:
    """Read every member of a zip archive (a torch checkpoint is one) against its recorded
    size and CRC-32; a damaged archive is one error naming it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise LowrankAmtError(f"{what} {path} is truncated or corrupt ({exc}); {advice}") from exc
    if bad is not None:
        raise LowrankAmtError(f"{what} {path} is corrupt (its member {bad} fails its CRC-32); {advice}")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The text of ``path``; a missing, unreadable or non-text file is one error naming it."""
    try:
        return Path(path).read_text()
    except FileNotFoundError as exc:
        raise LowrankAmtError(f"{what} {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise LowrankAmtError(f"{what} {path} is a folder, not a file") from exc
    except OSError as exc:
        raise LowrankAmtError(f"{what} {path} cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise LowrankAmtError(f"{what} {path} is not text (UTF-8): {exc.reason} at byte {exc.start}") from exc
    except ValueError as exc:  # a path with a null byte
        raise LowrankAmtError(f"{what} {path!r} is not a valid path ({exc})") from exc


def read_csv(path: str | os.PathLike, what: str, required=(), **options):
    """``pd.read_csv`` of ``path`` (``options`` passed on); a file that is missing, not a
    table, or lacks a ``required`` column is one error: "<what> <path> ..."."""
    import pandas as pd
    try:
        table = pd.read_csv(path, **options)
    except FileNotFoundError as exc:
        raise LowrankAmtError(f"{what} {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LowrankAmtError(f"{what} {path} cannot be read as a table ({reason})") from exc
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise LowrankAmtError(f"{what} {path} lacks the column(s) {', '.join(missing)}")
    return table


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """The JSON value in ``path``; a missing, unreadable or malformed file is one error
    naming it."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LowrankAmtError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
