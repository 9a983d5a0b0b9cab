"""Shared fixtures: helpers that several test modules use are fixtures here, never
imports of another test module."""

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import sys
import tarfile
import threading
import types
import zipfile
from pathlib import Path

from lowrank_amt.runtime.kernels import pin_kernels

# The CLI's kernels (kernels.py) from the suite's first torch kernel on, not only once a
# test has called a command in-process: a learning test must not pass or fail by test order.
pin_kernels()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lowrank_amt.constants import MIDI_MIN, N_KEYS  # noqa: E402
from lowrank_amt.signal.targets import frame_targets
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.signal.feature_cache import record_checksums

REPO = Path(__file__).resolve().parents[1]
FRAME_RATE = 22050 / 512
N_BINS = 264


@pytest.fixture(scope="session", autouse=True)
def no_wait_for_a_slurm_controller(tmp_path_factory):
    """Snakemake's Slurm plugin runs `scontrol show config` as it is imported, by every
    snakemake command, and that waits 9 s where Slurm's client is installed but no
    controller runs (CI starts its cluster after `make test`): outside the Slurm tests,
    a stub answers at once that there is none."""
    if os.environ.get("LOWRANK_AMT_SLURM") == "1" or not shutil.which("scontrol"):
        yield
        return
    folder = tmp_path_factory.mktemp("no_slurm_controller")
    (folder / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (folder / "scontrol").chmod(0o755)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{folder}{os.pathsep}{path}"
    yield
    os.environ["PATH"] = path


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def one_torch_thread():
    """One torch thread: on tiny tensors it is faster and steadier than two on a shared
    machine (test modules opt in with pytestmark)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a feature cache made from known templates (no audio, no fluidsynth) ---------------

@pytest.fixture(scope="session")
def comb_templates():
    """``harmonic_templates``: 264 bins (3 a semitone from A0, the default CQT's) x 88 keys."""
    return harmonic_templates(np.random.default_rng(0))


def harmonic_templates(rng):
    """A comb of decaying harmonics per key on a 3-bins-per-semitone log axis."""
    W = np.full((N_BINS, N_KEYS), 1e-4)
    for key in range(N_KEYS):
        for h in range(1, 9):
            b = 3 * key + int(round(36 * np.log2(h)))
            if b < N_BINS:
                W[b, key] += rng.uniform(0.5, 1.0) / h
    return W / W.sum(axis=0)


def random_notes(rng, seconds, n):
    starts = np.sort(rng.uniform(0, seconds - 0.6, n))
    intervals = np.stack([starts, starts + rng.uniform(0.2, 0.6, n)], axis=1)
    return intervals, rng.integers(40, 90, n)


def write_track(folder, track_id, split, W, intervals, pitches, seconds, rng, attack=None):
    """One track's features: each note its key's template in W times a decay, plus, with
    ``attack`` (bins x 88), its key's attack spectrum in the note's first two frames."""
    n_frames = int(seconds * FRAME_RATE)
    targets = frame_targets(intervals, pitches, n_frames, FRAME_RATE)
    decay = np.exp(-np.arange(n_frames) / 40.0)
    gains = np.zeros((N_KEYS, n_frames))
    for (start, end), pitch in zip(intervals, pitches):
        a, b = int(np.ceil(start * FRAME_RATE)), int(np.ceil(end * FRAME_RATE))
        gains[pitch - MIDI_MIN, a:b] += decay[: b - a]
    V = W @ gains + 1e-3 * rng.random((N_BINS, n_frames))
    if attack is not None:
        V += attack @ np.minimum(targets["onsets"] + np.roll(targets["onsets"], 1, axis=1), 1)
    np.save(folder / f"{track_id}.npy", V.astype(np.float32))
    for name in ("roll", "onsets"):
        np.save(folder / f"{track_id}.{name}.npy", targets[name].astype(np.uint8))
    write_midi_notes(folder / f"{track_id}.mid", intervals, pitches)
    return {"track_id": track_id, "split": split, "features_path": f"{track_id}.npy",
            "roll_path": f"{track_id}.roll.npy", "onsets_path": f"{track_id}.onsets.npy", "midi_path": str(folder / f"{track_id}.mid"),
            "n_frames": n_frames, "frame_rate": FRAME_RATE, "duration": seconds}


def build_cache(folder, splits, notes_per_track, key_spacing, key_hold):
    """A feature cache in ``folder`` from known harmonic templates: one isolated-note track
    (a key every ``key_spacing`` s, held ``key_hold`` s) and 8-s pieces of
    ``notes_per_track`` random notes, ``splits`` = ((split, number of tracks), ...).
    Returns (folder, true templates)."""
    rng = np.random.default_rng(0)
    W = harmonic_templates(rng)
    keys = np.arange(MIDI_MIN, MIDI_MIN + N_KEYS)
    starts = 0.1 + key_spacing * np.arange(N_KEYS)
    isolated = np.stack([starts, starts + key_hold], axis=1)
    rows = [write_track(folder, "isolated", "isolated", W, isolated, keys, key_spacing * N_KEYS + 1, rng)]
    for split, n in splits:
        for i in range(n):
            rows.append(write_track(folder, f"{split}_{i}", split, W, *random_notes(rng, 8, notes_per_track), 8, rng))
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    record_checksums(folder)
    return folder, W


@pytest.fixture(scope="session")
def cache_builder():
    """``build_cache(folder, splits, notes_per_track, key_spacing, key_hold)``: see above."""
    return build_cache


@pytest.fixture(scope="session")
def track_writer():
    """``write_track(folder, track_id, split, W, intervals, pitches, seconds, rng,
    attack=None)`` -> the track's index row: see above."""
    return write_track


@pytest.fixture(scope="session")
def random_piece():
    """``random_notes(rng, seconds, n)`` -> (intervals, pitches) of random notes."""
    return random_notes


#: A small low-rank spec: every test of the stages trains in about a second with it.
SMALL = {"beta": 1.0, "seed": 0, "device": "cpu", "train_iterations": 30, "transcribe_iterations": 30,
         "time_extent": 3, "segment_frames": 16, "time_rank": 4, "segment_rank": 6, "batch_frames": 256,
         "epochs": 2, "inner_iterations": 5, "rank": 12}


@pytest.fixture
def small_spec() -> dict:
    return dict(SMALL)


@pytest.fixture(scope="module")
def lowrank_cache(tmp_path_factory):
    """A feature cache synthesized from known harmonic templates (no audio), with train,
    validation, test and isolated splits and a params.json for bin frequencies."""
    folder, W = build_cache(tmp_path_factory.mktemp("cache"), (("train", 3), ("validation", 1), ("test", 1)),
                            notes_per_track=30, key_spacing=0.3, key_hold=0.25)
    (folder / "params.json").write_text(json.dumps({"kind": "cqt", "sample_rate": 22050, "hop_length": 512,
                                                    "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88}))
    return folder, W


# --- in-memory mini-batches ---------------------------------------------------------------

@pytest.fixture(scope="session")
def array_batches():
    """``bench/batches.py``'s ArrayBatches: FrameBatches for a matrix in memory."""
    sys.path.insert(0, str(REPO / "bench"))
    from batches import ArrayBatches
    return ArrayBatches


def planted_data(seed=0, F=30, K=5, N=3000):
    rng = np.random.default_rng(seed)
    W = 0.01 + rng.gamma(0.5, 1.0, (F, K))
    H = rng.gamma(0.5, 1.0, (K, N)) * (rng.random((K, N)) < 0.4)
    return (W @ H + 0.05 * rng.random((F, N))).astype(np.float32)


@pytest.fixture(scope="session")
def planted():
    """``planted_data(seed, F, K, N)``: F x N float32 data from K planted gamma templates."""
    return planted_data


# --- a local HTTP server and archives, for the download and dataset tests ---------------

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


@pytest.fixture
def local_server(monkeypatch):
    """The ``LocalServer`` class above; requests to 127.0.0.1 bypass any proxy."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return LocalServer


@pytest.fixture(scope="session")
def archives():
    """``archives.zip(entries, symlinks)`` and ``archives.tar(entries, links, mode)``: the
    bytes of an archive holding ``entries`` (name -> bytes)."""
    return types.SimpleNamespace(zip=make_zip, tar=make_tar)


@pytest.fixture(scope="session")
def sha256():
    """bytes -> their ``sha256:<hex>`` checksum, as dataset specs write one."""
    return lambda data: "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def snapshot():
    """folder -> {relative path: (content, mtime)} of every file under it."""
    return lambda folder: {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
                           for p in sorted(Path(folder).rglob("*")) if p.is_file()}
