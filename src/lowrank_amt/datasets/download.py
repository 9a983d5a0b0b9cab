"""Verified downloads and safe archive extraction, shared by the real-dataset preparers.

- ``download(url, dest, checksum)`` writes to ``dest.part`` and resumes it with an HTTP
  ``Range`` request after a dropped connection or an interrupted run; the finished file is
  checked against a published checksum and only then renamed onto ``dest``. A file that fails
  the check is removed, and nothing else is touched.
- ``extract(archive, target)`` unpacks a zip or tar archive (any compression) into ``target``
  after checking every entry first: an absolute path, a ``..`` component, or a link that
  points out of the target (or uses ``..`` at all) refuses the whole archive before anything
  is written. It extracts into a hidden staging folder renamed onto ``target`` at the end, so
  ``target`` exists only when complete.
- ``fetch_archive`` combines both, skipping whatever a previous run already finished.

Checksums are written ``"sha256:<hex>"`` or ``"md5:<hex>"`` (Zenodo publishes MD5 only).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ..errors import LowrankAmtError
from ..param import Param

CHUNK_BYTES = 1 << 20
USER_AGENT = "lowrank-amt (dataset preparation)"
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")
#: Checksum algorithm -> hex digits of its digest.
DIGEST_HEX_DIGITS = {"sha256": 64, "md5": 32}
#: A checksum as a config writes it (JSON Schema pattern).
CHECKSUM_PATTERN = "^(" + "|".join(f"{name}:[0-9a-f]{{{n}}}" for name, n in DIGEST_HEX_DIGITS.items()) + ")$"


def download_params(official: str) -> tuple[Param, ...]:
    """The config keys of a downloaded dataset; ``official`` says where its archives come
    from when ``base_url`` is null."""
    return (
        Param("path", None, type=["string", "null"],
              meaning="Use an already extracted local copy instead of downloading (null = download)."),
        Param("base_url", None, type=["string", "null"],
              meaning=f"Mirror folder holding the archives (null = {official})."),
        Param("checksums", {}, type="object",
              additionalProperties={"type": "string", "pattern": CHECKSUM_PATTERN},
              meaning="Archive name -> `sha256:<hex>` or `md5:<hex>`, overriding the published checksum."),
        Param("download_dir", None, type=["string", "null"],
              meaning="Where archives are downloaded and extracted (null = <dataset folder>/downloads); can be "
                      "shared between studies."),
        Param("keep_archives", False, type="boolean", meaning="Keep each archive after extraction."),
    )


def parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    """``"sha256:<hex>"`` -> ``("sha256", "<hex>")``; None stays None (nothing to verify)."""
    if checksum is None:
        return None
    algorithm, _, digest = str(checksum).partition(":")
    algorithm, digest = algorithm.lower(), digest.strip().lower()
    digits = DIGEST_HEX_DIGITS.get(algorithm)
    if digits is None or not re.fullmatch(f"[0-9a-f]{{{digits}}}", digest):
        raise LowrankAmtError(f"checksum {checksum!r} is not '<algorithm>:<hex digest>' with algorithm "
                              f"sha256 (64 hex digits) or md5 (32 hex digits)")
    return algorithm, digest


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


PROGRESS_BYTES = 1 << 30  # log progress every GiB


def _fetch(url: str, part: Path, timeout: float, log=print) -> None:
    """Append the rest of ``url`` to ``part`` (from its current size); raise on a short read."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file already holds every byte
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206
        if resumed and not (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
            raise http.client.HTTPException(f"server answered Range bytes={offset}- with "
                                            f"{response.headers.get('Content-Range')!r}")
        length = response.headers.get("Content-Length")
        received = 0
        # A server that ignores Range sends the whole file (200): start over.
        with open(part, "ab" if resumed else "wb") as f:
            while block := response.read(CHUNK_BYTES):
                f.write(block)
                received += len(block)
                if received // PROGRESS_BYTES > (received - len(block)) // PROGRESS_BYTES:
                    total = f" of {(int(length) + (offset if resumed else 0)) / 2**30:.1f}" if length else ""
                    log(f"  {part.name}: {((offset if resumed else 0) + received) / 2**30:.1f}{total} GiB")
        if length is not None and received < int(length):
            raise http.client.IncompleteRead(b"", int(length) - received)


def download(url: str, dest: str | Path, checksum: str | None = None, attempts: int = 4,
             timeout: float = 60.0, log=print) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    A dropped connection is retried up to ``attempts`` times, each resuming where the last
    stopped; an interrupted run leaves ``dest.part`` for the next run to resume. With a
    ``checksum`` the file is verified before ``dest`` appears; a mismatch removes the bad file
    and raises an error naming it.
    """
    dest = Path(dest)
    expected = parse_checksum(checksum)
    if dest.exists():
        if expected is None or file_digest(dest, expected[0]) == expected[1]:
            log(f"{dest} is already downloaded")
            return dest
        log(f"{dest} does not match its checksum; downloading it again")
        dest.unlink()
    if expected is None:
        log(f"warning: no checksum given for {dest.name}; it will not be verified")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = time.perf_counter()
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        log(f"downloading {url} -> {dest}" + (f" (resuming at byte {have})" if have else ""))
        try:
            _fetch(url, part, timeout, log)
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts:
                raise LowrankAmtError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            if attempt == attempts:
                raise LowrankAmtError(f"download of {url} failed after {attempts} attempts ({exc!r}); "
                                      f"the partial file {part} is kept and the next run resumes it") from exc
        log(f"download of {url} interrupted (attempt {attempt} of {attempts}); resuming")
        time.sleep(0.0 if attempt == 1 else min(2.0 ** attempt, 30.0))
    actual = file_digest(part, expected[0]) if expected else None
    if expected and actual != expected[1]:
        part.unlink()
        raise LowrankAmtError(f"checksum mismatch for {dest.name} downloaded from {url}: expected "
                              f"{expected[0]} {expected[1]}, got {actual}; the bad file was removed. "
                              f"Run again to retry, or set the dataset's 'checksums' if the file was republished")
    os.replace(part, dest)
    size = dest.stat().st_size
    log(f"downloaded {dest.name}: {size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s"
        + (f", {expected[0]} verified" if expected else ""))
    return dest


def _escape_reason(name: str, link: str | None = None) -> str | None:
    """Why an archive entry ``name`` (optionally a link to ``link``) could write outside
    the extraction folder, or None when it is safe. Purely lexical: links may not use
    ``..`` at all, so that no chain of links can climb out."""
    for label, value in (("path", name), ("link target", link)):
        if value is None:
            continue
        if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
            return f"absolute {label} {value!r}"
        if ".." in re.split(r"[/\\]", value):
            return f"{label} {value!r} contains '..'"
    if link is not None and posixpath.normpath(posixpath.join(posixpath.dirname(name), link)).startswith(".."):
        return f"link target {link!r} points outside"
    return None


def _refuse(archive: Path, target: Path, name: str, reason: str) -> LowrankAmtError:
    return LowrankAmtError(f"archive {archive} has an entry that escapes the target folder {target}: "
                           f"{name!r} ({reason}); refusing to extract it")


def _extract_zip(archive: Path, staging: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            link = None
            if stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode("utf-8", "replace")
            reason = _escape_reason(info.filename, link)
            if reason:
                raise _refuse(archive, target, info.filename, reason)
        # zipfile writes a link entry as a small file holding the link's path, never a link.
        zf.extractall(staging)


def _extract_tar(archive: Path, staging: Path, target: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise _refuse(archive, target, member.name, "not a file, folder or link")
            link = None
            if member.issym():
                link = member.linkname
            elif member.islnk():  # hard links name their target from the archive root
                reason = _escape_reason(member.linkname)
                if reason:
                    raise _refuse(archive, target, member.name, f"hard link: {reason}")
            reason = _escape_reason(member.name, link)
            if reason:
                raise _refuse(archive, target, member.name, reason)
        if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4
            tf.extractall(staging, members=members)
            return
        try:  # the standard library's filter adds a second, physical check
            tf.extractall(staging, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise _refuse(archive, target, exc.tarinfo.name, str(exc)) from exc


def extract(archive: str | Path, target: str | Path, log=print) -> Path:
    """Extract a zip or tar archive into the folder ``target`` (created whole, or not at all).

    An existing ``target`` is taken as a finished extraction and kept as it is.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        log(f"{target} is already extracted")
        return target
    staging = target.with_name(f".{target.name}.extracting")
    if staging.exists():  # left over from an interrupted run
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        log(f"extracting {archive} -> {target}")
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging, target)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging, target)
        else:
            raise LowrankAmtError(f"{archive} is neither a zip nor a tar archive")
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def archive_stem(filename: str) -> str:
    """``maestro-v3.0.0.zip`` -> ``maestro-v3.0.0``; ``x.tar.gz`` -> ``x``."""
    for suffix in ARCHIVE_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def fetch_archive(url: str, filename: str, checksum: str | None, download_dir: str | Path,
                  keep_archive: bool = False, log=print) -> Path:
    """Download (verified) and extract one archive into ``download_dir/<archive stem>/``;
    return that folder. A finished extraction is reused without touching the network."""
    download_dir = Path(download_dir)
    target = download_dir / archive_stem(filename)
    if target.exists():
        log(f"{target} is already extracted")
        return target
    archive = download(url, download_dir / filename, checksum, log=log)
    extract(archive, target, log=log)
    if not keep_archive:
        archive.unlink()
    return target


def remote(spec: dict, filename: str, default_base_url: str, default_checksum: str | None) -> tuple[str, str | None]:
    """URL and checksum of one archive of a dataset entry: ``base_url`` (a mirror, or a local
    test server) replaces the official folder; ``checksums[filename]`` overrides the
    published value."""
    base = (spec.get("base_url") or default_base_url).rstrip("/")
    checksums = spec.get("checksums") or {}
    return f"{base}/{filename}", checksums.get(filename, default_checksum)


def download_dir(spec: dict, dataset_dir: str | Path) -> Path:
    """Where archives go: ``download_dir`` from the spec (e.g. a cache shared by studies),
    else ``<dataset folder>/downloads``."""
    return Path(spec.get("download_dir") or Path(dataset_dir) / "downloads")


def manifest_path_of(path: str | Path, dataset_dir: str | Path) -> str:
    """How a manifest in ``dataset_dir`` refers to ``path``: relative when inside that folder
    (so the prepared dataset moves as a whole), absolute otherwise."""
    path, dataset_dir = Path(path).resolve(), Path(dataset_dir).resolve()
    return str(path.relative_to(dataset_dir)) if path.is_relative_to(dataset_dir) else str(path)
