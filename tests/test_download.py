"""Verified downloads and safe extraction, offline: a local HTTP server on 127.0.0.1
serves the files (with Range support) and records every request."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from lowrank_amt.data.download import (archive_stem, download, extract, fetch_archive,
                                       parse_checksum)
from lowrank_amt.errors import LowrankAmtError


class LocalServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 at a free port, in a thread.

    Honours ``Range: bytes=N-`` unless ``ranges`` is False; for the paths in
    ``truncate_first`` the first response announces the full length but sends only half,
    then closes (a dropped connection). ``requests`` lists (path, Range header). The server
    stops itself after ``lifetime`` seconds at most, and on leaving the ``with`` block.
    """

    def __init__(self, files: dict[str, bytes], truncate_first=(), ranges: bool = True, lifetime: float = 60):
        self.files = dict(files)
        self.truncate_first = set(truncate_first)
        self.ranges = ranges
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime, self.httpd.shutdown)
        self._timer.daemon = True

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold the server

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, wanted = 0, self.headers.get("Range")
                if wanted and server.ranges:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.path in server.truncate_first:
                    server.truncate_first.discard(self.path)
                    payload = payload[: len(payload) // 2]
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler

    def __enter__(self):
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Content and modification time of every file under ``folder``."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def quiet(_):
    pass


def test_a_dropped_transfer_is_resumed_with_a_range_request(tmp_path):
    with LocalServer({"/a.bin": PAYLOAD}, truncate_first={"/a.bin"}) as server:
        dest = download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", None), ("/a.bin", f"bytes={len(PAYLOAD) // 2}-")]
    assert not (tmp_path / "a.bin.part").exists()


def test_a_partial_file_from_an_interrupted_run_is_resumed(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    with LocalServer({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", "bytes=1000-")]


def test_a_complete_partial_file_gets_416_and_is_kept(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    with LocalServer({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", f"bytes={len(PAYLOAD)}-")]


def test_a_server_without_range_support_restarts_the_file(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes from elsewhere")
    with LocalServer({"/a.bin": PAYLOAD}, ranges=False) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_a_verified_file_is_not_downloaded_again(tmp_path):
    (tmp_path / "a.bin").write_bytes(PAYLOAD)
    with LocalServer({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert server.requests == []


def test_md5_checksums_are_accepted(tmp_path):
    with LocalServer({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", "md5:" + hashlib.md5(PAYLOAD).hexdigest(), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_a_wrong_checksum_names_the_file_removes_it_and_touches_nothing_else(tmp_path):
    (tmp_path / "other.zip").write_bytes(b"an earlier, verified download")
    (tmp_path / "notes" / "keep.txt").parent.mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("unrelated")
    before = snapshot(tmp_path)
    with LocalServer({"/a.bin": PAYLOAD}) as server:
        with pytest.raises(LowrankAmtError, match=r"checksum mismatch for a\.bin .*removed"):
            download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(b"something else"), log=quiet)
    assert snapshot(tmp_path) == before


def test_http_errors_name_the_url_without_retrying(tmp_path):
    with LocalServer({}) as server:
        with pytest.raises(LowrankAmtError, match=r"/missing\.zip failed: HTTP 404"):
            download(f"{server.url}/missing.zip", tmp_path / "missing.zip", log=quiet)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["sha256:abc", "crc32:" + "0" * 8, "6680fea5", "md5:" + "z" * 32])
def test_malformed_checksums_are_refused(bad):
    with pytest.raises(LowrankAmtError, match="checksum"):
        parse_checksum(bad)


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] = {}) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, link in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link, as Info-ZIP stores one
            zf.writestr(info, link)
    return buffer.getvalue()


def make_tar(entries: dict[str, bytes], links: dict[str, tuple[bytes, str]] = {}, mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return buffer.getvalue()


TREE = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(200))}


@pytest.mark.parametrize("suffix, data", [(".zip", make_zip(TREE)), (".tar.gz", make_tar(TREE)),
                                          (".tar", make_tar(TREE, mode="w"))])
def test_archives_extract_whole(tmp_path, suffix, data):
    archive = tmp_path / f"x{suffix}"
    archive.write_bytes(data)
    target = extract(archive, tmp_path / "out", log=quiet)
    assert {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()} == TREE
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_links_inside_the_target_are_kept(tmp_path):
    archive = tmp_path / "x.tar"
    archive.write_bytes(make_tar(TREE, {"top/link.txt": (tarfile.SYMTYPE, "a.txt")}, mode="w"))
    target = extract(archive, tmp_path / "out", log=quiet)
    assert (target / "top" / "link.txt").read_bytes() == b"alpha"


ESCAPES = {
    "zip with ..": (".zip", make_zip({"ok.txt": b"1", "../evil.txt": b"x"}), "'..'"),
    "zip absolute": (".zip", make_zip({"/tmp/evil.txt": b"x"}), "absolute"),
    "zip backslash ..": (".zip", make_zip({"a\\..\\..\\evil.txt": b"x"}), "'..'"),
    "zip symlink out": (".zip", make_zip({"ok.txt": b"1"}, {"top/link": "../../outside"}), "'..'"),
    "tar with ..": (".tar.gz", make_tar({"ok.txt": b"1", "top/../../evil.txt": b"x"}), "'..'"),
    "tar absolute": (".tar.gz", make_tar({"/tmp/evil.txt": b"x"}), "absolute"),
    "tar symlink out": (".tar.gz", make_tar({}, {"top/link": (tarfile.SYMTYPE, "/etc")}), "absolute link target"),
    "tar symlink up": (".tar.gz", make_tar({}, {"link": (tarfile.SYMTYPE, "x/../..")}), "'..'"),
    "tar hard link out": (".tar.gz", make_tar({}, {"h": (tarfile.LNKTYPE, "../outside")}), "hard link"),
    "tar device": (".tar.gz", make_tar({}, {"dev": (tarfile.CHRTYPE, "")}), "not a file"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_entries_escaping_the_target_refuse_the_archive(tmp_path, case):
    suffix, data, reason = ESCAPES[case]
    (tmp_path / "dl").mkdir()
    archive = tmp_path / "dl" / f"x{suffix}"
    archive.write_bytes(data)
    before = snapshot(tmp_path)
    with pytest.raises(LowrankAmtError, match=f"escapes the target folder.*{re.escape(reason)}"):
        extract(archive, tmp_path / "dl" / "out", log=quiet)
    assert snapshot(tmp_path) == before  # nothing written, inside or outside
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [archive.name]


def test_fetch_archive_downloads_extracts_and_then_works_offline(tmp_path):
    data = make_zip(TREE)
    with LocalServer({"/d/set.zip": data}) as server:
        folder = fetch_archive(f"{server.url}/d/set.zip", "set.zip", sha256(data), tmp_path, log=quiet)
        again = fetch_archive(f"{server.url}/d/set.zip", "set.zip", sha256(data), tmp_path, log=quiet)
    assert folder == again == tmp_path / "set"
    assert (folder / "top" / "a.txt").read_bytes() == b"alpha"
    assert len(server.requests) == 1 and not (tmp_path / "set.zip").exists()


def test_archive_stems():
    assert archive_stem("maestro-v3.0.0.zip") == "maestro-v3.0.0"
    assert archive_stem("slakh2100_flac_redux.tar.gz") == "slakh2100_flac_redux"
