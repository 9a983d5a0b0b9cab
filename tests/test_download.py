"""Verified downloads and safe extraction, offline: a local HTTP server on 127.0.0.1
serves the files (with Range support) and records every request."""

from __future__ import annotations

import hashlib
import re
import tarfile

import pytest

from lowrank_amt.datasets.download import (archive_stem, download, extract, fetch_archive,
                                       parse_checksum)
from lowrank_amt.errors import LowrankAmtError


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks


def quiet(_):
    pass


def test_a_dropped_transfer_is_resumed_with_a_range_request(tmp_path, local_server, sha256):
    with local_server({"/a.bin": PAYLOAD}, truncate_first={"/a.bin"}) as server:
        dest = download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", None), ("/a.bin", f"bytes={len(PAYLOAD) // 2}-")]
    assert not (tmp_path / "a.bin.part").exists()


def test_a_partial_file_from_an_interrupted_run_is_resumed(tmp_path, local_server, sha256):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    with local_server({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", "bytes=1000-")]


def test_a_complete_partial_file_gets_416_and_is_kept(tmp_path, local_server, sha256):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    with local_server({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", f"bytes={len(PAYLOAD)}-")]


def test_a_server_without_range_support_restarts_the_file(tmp_path, local_server, sha256):
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes from elsewhere")
    with local_server({"/a.bin": PAYLOAD}, ranges=False) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_a_verified_file_is_not_downloaded_again(tmp_path, local_server, sha256):
    (tmp_path / "a.bin").write_bytes(PAYLOAD)
    with local_server({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(PAYLOAD), log=quiet)
    assert server.requests == []


def test_md5_checksums_are_accepted(tmp_path, local_server):
    with local_server({"/a.bin": PAYLOAD}) as server:
        download(f"{server.url}/a.bin", tmp_path / "a.bin", "md5:" + hashlib.md5(PAYLOAD).hexdigest(), log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_a_wrong_checksum_names_the_file_removes_it_and_touches_nothing_else(tmp_path, local_server, sha256, snapshot):
    (tmp_path / "other.zip").write_bytes(b"an earlier, verified download")
    (tmp_path / "notes" / "keep.txt").parent.mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("unrelated")
    before = snapshot(tmp_path)
    with local_server({"/a.bin": PAYLOAD}) as server:
        with pytest.raises(LowrankAmtError, match=r"checksum mismatch for a\.bin .*removed"):
            download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256(b"something else"), log=quiet)
    assert snapshot(tmp_path) == before


def test_http_errors_name_the_url_without_retrying(tmp_path, local_server):
    with local_server({}) as server:
        with pytest.raises(LowrankAmtError, match=r"/missing\.zip failed: HTTP 404"):
            download(f"{server.url}/missing.zip", tmp_path / "missing.zip", log=quiet)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["sha256:abc", "crc32:" + "0" * 8, "6680fea5", "md5:" + "z" * 32])
def test_malformed_checksums_are_refused(bad):
    with pytest.raises(LowrankAmtError, match="checksum"):
        parse_checksum(bad)


TREE = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(200))}


TAR_MODES = {".tar.gz": "w:gz", ".tar": "w"}


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar"])
def test_archives_extract_whole(tmp_path, archives, suffix):
    archive = tmp_path / f"x{suffix}"
    archive.write_bytes(archives.zip(TREE) if suffix == ".zip" else archives.tar(TREE, mode=TAR_MODES[suffix]))
    target = extract(archive, tmp_path / "out", log=quiet)
    assert {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()} == TREE
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_links_inside_the_target_are_kept(tmp_path, archives):
    archive = tmp_path / "x.tar"
    archive.write_bytes(archives.tar(TREE, {"top/link.txt": (tarfile.SYMTYPE, "a.txt")}, mode="w"))
    target = extract(archive, tmp_path / "out", log=quiet)
    assert (target / "top" / "link.txt").read_bytes() == b"alpha"


#: case -> (archive kind, entries, links, reason in the error)
ESCAPES = {
    "zip with ..": ("zip", {"ok.txt": b"1", "../evil.txt": b"x"}, {}, "'..'"),
    "zip absolute": ("zip", {"/tmp/evil.txt": b"x"}, {}, "absolute"),
    "zip backslash ..": ("zip", {"a\\..\\..\\evil.txt": b"x"}, {}, "'..'"),
    "zip symlink out": ("zip", {"ok.txt": b"1"}, {"top/link": "../../outside"}, "'..'"),
    "tar with ..": ("tar", {"ok.txt": b"1", "top/../../evil.txt": b"x"}, {}, "'..'"),
    "tar absolute": ("tar", {"/tmp/evil.txt": b"x"}, {}, "absolute"),
    "tar symlink out": ("tar", {}, {"top/link": (tarfile.SYMTYPE, "/etc")}, "absolute link target"),
    "tar symlink up": ("tar", {}, {"link": (tarfile.SYMTYPE, "x/../..")}, "'..'"),
    "tar hard link out": ("tar", {}, {"h": (tarfile.LNKTYPE, "../outside")}, "hard link"),
    "tar device": ("tar", {}, {"dev": (tarfile.CHRTYPE, "")}, "not a file"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_entries_escaping_the_target_refuse_the_archive(tmp_path, archives, snapshot, case):
    kind, entries, links, reason = ESCAPES[case]
    suffix, data = (".zip", archives.zip(entries, links)) if kind == "zip" else (".tar.gz", archives.tar(entries, links))
    (tmp_path / "dl").mkdir()
    archive = tmp_path / "dl" / f"x{suffix}"
    archive.write_bytes(data)
    before = snapshot(tmp_path)
    with pytest.raises(LowrankAmtError, match=f"escapes the target folder.*{re.escape(reason)}"):
        extract(archive, tmp_path / "dl" / "out", log=quiet)
    assert snapshot(tmp_path) == before  # nothing written, inside or outside
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [archive.name]


def test_fetch_archive_downloads_extracts_and_then_works_offline(tmp_path, local_server, sha256, archives):
    data = archives.zip(TREE)
    with local_server({"/d/set.zip": data}) as server:
        folder = fetch_archive(f"{server.url}/d/set.zip", "set.zip", sha256(data), tmp_path, log=quiet)
        again = fetch_archive(f"{server.url}/d/set.zip", "set.zip", sha256(data), tmp_path, log=quiet)
    assert folder == again == tmp_path / "set"
    assert (folder / "top" / "a.txt").read_bytes() == b"alpha"
    assert len(server.requests) == 1 and not (tmp_path / "set.zip").exists()


def test_archive_stems():
    assert archive_stem("maestro-v3.0.0.zip") == "maestro-v3.0.0"
    assert archive_stem("slakh2100_flac_redux.tar.gz") == "slakh2100_flac_redux"
