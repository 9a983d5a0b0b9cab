"""``lowrank-amt listen``: live transcription, notes decided as the audio arrives.

The same model files as ``transcribe``. Audio comes in blocks (raw PCM on standard input,
a file as fast as it can be read or at its own pace with ``realtime``, or a sound card).
Conventions, in frames of the model's hop (frame ``f`` centred on sample ``f * hop``):

* **Settled frames.** A frame is settled once ``lookahead`` seconds of audio after its
  centre have arrived; every ``block`` seconds, the new settled frames are processed.
* **Features and outputs.** The features of the frames the model reads, as the study's
  own function gives them for the audio received so far (zeros after it): for the CQT by
  a stream that computes each octave's new samples and frames once they are final
  (``signal/cqt_stream.py``), for other kinds again over a context. The model reads the
  settled frames with ``MODEL_CONTEXT_FRAMES`` before them and the look-ahead's after
  them; its start assumes the mean of the features heard so far (a short window's own
  mean is a poor guide). The outputs of the last frames are replaced by each newer estimate, which has
  seen more of their future, so that frames estimated in different windows join.
* **Decoding.** The model's decoder with its validation-chosen parameters reads the last
  ``DECODE_SECONDS`` of outputs after each block, relative to the largest activation
  heard so far (offline: the recording's), from ``WARMUP_SECONDS`` after the first
  sound. Onsets are decided ``delay`` seconds after the newest settled frame, once a
  rising activation has peaked: a note is switched on when an onset appears in the
  newly decided frames (a key already sounding is ended there first), and off when the
  decoder ends it before the decided frames' end, or finds it no more. Notes longer than
  ``DECODE_SECONDS`` are ended there.
* **Latency.** The algorithmic latency of a note-on is ``lookahead + block + delay``; the
  time the processing of a block takes comes on top (``progress_line`` shows both).
"""

from __future__ import annotations

import inspect
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import MIDI_MIN
from .decoding.outputs import write_notes
from .errors import LowrankAmtError
from .recordings import model_decoder, resolve_model
from .runtime.device import pick_device
from .signal.spectrogram import feature_stream

#: Frames before the new ones that the model reads (picked on validation pieces,
#: bench/bench_live.py: fewer lose accuracy, more gain none).
MODEL_CONTEXT_FRAMES = 16
DECODE_SECONDS = 4.0
#: Frames at a model window's start whose outputs lack the frames before them.
REFRESH_EDGE_FRAMES = 4
#: Largest activation of silence; notes are decided from WARMUP_SECONDS after the first
#: louder one, so that the largest activation heard so far is a note's, not a start's.
SILENCE = 1e-4
WARMUP_SECONDS = 0.5
#: Onsets of a key this near (frames) are one note, placed anew by a later decoding.
SAME_NOTE_FRAMES = 4
BLOCK_SECONDS = 0.046
LOOKAHEAD_SECONDS = 0.046
#: Frames the decoder waits before deciding an onset: a rising activation has then
#: peaked, and its onset's place no longer moves (picked on validation pieces,
#: bench/bench_live.py).
DELAY_SECONDS = 0.116
#: Seconds between rewrites of the growing MIDI file.
MIDI_EVERY_SECONDS = 1.0


@dataclass
class LiveNotes:
    """Notes decided so far: finished ones (onset, offset, pitch, velocity) and the keys
    sounding now (pitch -> (onset frame, velocity))."""
    finished: list = field(default_factory=list)
    sounding: dict = field(default_factory=dict)


class Listener:
    """A model transcribing audio fed to it block by block (``feed``, then ``finish``);
    ``on_note(onset, offset, pitch, velocity)`` is called as each note ends."""

    def __init__(self, model, device=None, block: float = BLOCK_SECONDS, lookahead: float = LOOKAHEAD_SECONDS,
                 delay: float = DELAY_SECONDS, on_note=None, log=print,
                 context_frames: int = MODEL_CONTEXT_FRAMES):
        if not model.family.reads_features():
            raise LowrankAmtError(f"listen: family '{model.family.name}' reads the audio itself; "
                                  "live transcription takes a model that reads features")
        if not (0 < block <= 1 and 0 <= lookahead <= 1 and 0 <= delay <= 1):
            raise LowrankAmtError(f"listen: --block-ms must be within (0, 1000], --lookahead-ms and --delay-ms "
                                  f"within [0, 1000]; got {block * 1000:g}, {lookahead * 1000:g}, {delay * 1000:g}")
        self.model, self.on_note = model, on_note or (lambda *note: None)
        self.rate, self.hop = model.family.frame_grid(model.features)
        self.frame_rate = self.rate / self.hop
        self.block = max(1, int(round(block * self.frame_rate)))
        self.lookahead = max(0, int(round(lookahead * self.rate)))
        self.delay = max(0, int(round(delay * self.frame_rate)))
        self.context_frames = context_frames
        self.transcribe = model.family.transcriber(model.arrays, model.spec, pick_device(device or "cpu"))
        self.takes_mean = "mean" in inspect.signature(self.transcribe).parameters
        self.feature_sum, self.feature_count = 0.0, 0
        self.decoder, self.params = model_decoder(model, model.path, log)
        self.features = feature_stream(model.features, self.rate)
        self.history: dict = {}  # outputs (88 rows each) of frames history_start:
        self.history_start, self.next_frame, self.decided, self.peak = 0, 0, 0, 0.0
        self.notes, self.busy, self.last_onset, self.sound_from = LiveNotes(), 0.0, {}, None

    @property
    def received(self) -> int:
        return self.features.received

    def latency(self) -> float:
        """Algorithmic latency of a note-on (s): look-ahead, block and the decoder's delay."""
        return self.lookahead / self.rate + (self.block + self.delay) / self.frame_rate

    def feed(self, samples: np.ndarray) -> None:
        """Take the next samples (mono float32 at the model's rate); process every full block."""
        self.features.push(samples)
        while self._settled() - self.next_frame >= self.block:
            self._step(self.next_frame + self.block)

    def finish(self) -> LiveNotes:
        """The audio has ended: process what remains as the offline transcription would
        (silence after the end) and end every sounding note."""
        last = self.received // self.hop + 1
        self.features.push(np.zeros(self.lookahead + self.hop, dtype=np.float32))
        while self.next_frame < last:
            self._step(min(last, self.next_frame + self.block))
        self._decode(last, final=True)
        return self.notes

    def _settled(self) -> int:
        return max(0, (self.received - self.lookahead) // self.hop + 1)

    def _step(self, stop: int) -> None:
        """Outputs up to frame ``stop`` from the features of the frames around it, then decode."""
        wall = time.process_time()
        begin = max(0, self.next_frame - self.context_frames)
        window = self.features.frames(begin)  # the frames after ``stop`` too: the look-ahead
        new = window[:, self.next_frame - begin:stop - begin]
        self.feature_sum, self.feature_count = self.feature_sum + float(new.sum()), self.feature_count + new.size
        # a short window's own mean is a poor start for a model's layers: the mean so far
        outputs = self.transcribe(window, mean=self.feature_sum / self.feature_count) if self.takes_mean \
            else self.transcribe(window)
        self._remember(outputs, begin, stop)
        self.next_frame = stop
        if self.sound_from is None and self.peak > SILENCE:
            self.sound_from = stop
        if self.sound_from is not None and stop - self.sound_from >= WARMUP_SECONDS * self.frame_rate:
            self._decode(stop - self.delay)
        self.busy += time.process_time() - wall

    def _remember(self, outputs: dict, begin: int, stop: int) -> None:
        """Keep the outputs of frames up to ``stop``: the new ones, and better estimates of
        the last ones (all but the window's first ``REFRESH_EDGE_FRAMES``, which lack the
        frames before them), so that frames estimated in different windows join smoothly."""
        start = max(self.history_start, begin + REFRESH_EDGE_FRAMES if begin > 0 else 0)
        for name in ("note", "onset", "attack"):
            if name in outputs:
                kept = self.history.get(name, np.zeros((88, 0), dtype=np.float32))[:, :start - self.history_start]
                fresh = np.asarray(outputs[name], dtype=np.float32)[:, start - begin:stop - begin]
                self.history[name] = np.concatenate([kept, fresh], axis=1)
        self.peak = max(self.peak, float(self.history["note"][:, start - self.history_start:].max(initial=0.0)))
        excess = self.history["note"].shape[1] - int(DECODE_SECONDS * self.frame_rate)
        if excess > 0:
            self.history = {name: value[:, excess:] for name, value in self.history.items()}
            self.history_start += excess

    def _decode(self, decided: int, final: bool = False) -> None:
        """Switch notes on and off from a decoding of the outputs' history up to ``decided``."""
        if self.peak <= SILENCE:
            self.decided = max(self.decided, decided)
            return
        intervals, pitches, velocities = self.decoder.notes(self._changing_keys(), self.frame_rate, self.params,
                                                            peak=self.peak)
        frames = np.round(intervals * self.frame_rate).astype(int) + self.history_start
        found = {}
        for (start, end), pitch, velocity in zip(frames, pitches, velocities):
            pitch, last = int(pitch), self.last_onset.get(int(pitch), -SAME_NOTE_FRAMES - 1)
            if abs(start - last) <= SAME_NOTE_FRAMES:  # a note already on, its onset placed anew
                if pitch in self.notes.sounding:
                    found[pitch] = end
            elif self.decided <= start < decided and start > last:
                if pitch in self.notes.sounding:  # struck again
                    self._end(pitch, start)
                self.notes.sounding[pitch], self.last_onset[pitch] = (int(start), int(velocity)), int(start)
                found[pitch] = end
        for pitch in list(self.notes.sounding):
            end = found.get(pitch)
            if end is None:  # the decoder finds it no more: it ends now
                self._end(pitch, decided)
            elif final or end < decided:
                self._end(pitch, end)
        self.decided = decided

    def _changing_keys(self) -> dict:
        """The outputs' history with the keys whose notes cannot change zeroed, so that the
        decoder skips them: a key neither sounding nor reaching the threshold since the
        last decision has no new onset there (onsets need the activation to reach it; the
        rules that look elsewhere, ``attack`` and ``states``, decode every key)."""
        if self.params.get("onset") not in ("threshold", "peaks", "adaptive"):
            return self.history
        recent = self.history["note"][:, max(0, self.decided - self.history_start):]
        changing = (recent.astype(np.float64) / self.peak).max(axis=1, initial=0.0) >= self.params["threshold"]
        changing[[pitch - MIDI_MIN for pitch in self.notes.sounding]] = True
        return {name: np.where(changing[:, None], value, 0) for name, value in self.history.items()}

    def _end(self, pitch: int, frame: int) -> None:
        start, velocity = self.notes.sounding.pop(pitch)
        note = (start / self.frame_rate, max(frame, start + 1) / self.frame_rate, pitch, velocity)
        self.notes.finished.append(note)
        self.on_note(*note)


def pcm_blocks(stream, rate: int, channels: int, sample_format: str, seconds: float):
    """Blocks of mono float32 samples read from a binary ``stream`` of raw PCM."""
    dtype = {"s16": np.int16, "f32": np.float32}[sample_format]
    size = max(1, int(seconds * rate)) * channels * np.dtype(dtype).itemsize
    while True:
        data = stream.read(size)
        if not data:
            return
        data = data[: len(data) - len(data) % (channels * np.dtype(dtype).itemsize)]
        samples = np.frombuffer(data, dtype=dtype).reshape(-1, channels).mean(axis=1)
        yield (samples / 32768.0 if dtype == np.int16 else samples).astype(np.float32)


def file_blocks(path, seconds: float, realtime: bool):
    """Blocks of a sound file (mono float32) and its rate; at its own pace if ``realtime``."""
    import soundfile
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as exc:
        raise LowrankAmtError(f"audio file {path} cannot be read: {exc}") from exc
    began = time.perf_counter()

    def blocks():
        done = 0
        for block in soundfile.blocks(str(path), blocksize=max(1, int(seconds * info.samplerate)), dtype="float32",
                                      always_2d=True):
            done += len(block)
            if realtime:
                time.sleep(max(0.0, done / info.samplerate - (time.perf_counter() - began)))
            yield block.mean(axis=1)
    return blocks(), info.samplerate


def soundcard_blocks(seconds: float):
    """Blocks from the default input of a sound card (PortAudio through sounddevice)."""
    try:
        import sounddevice
        rate = int(sounddevice.query_devices(kind="input")["default_samplerate"])
    except Exception as exc:  # an absent package, PortAudio library or input device
        raise LowrankAmtError("listen --soundcard needs the sounddevice package, PortAudio and an input device "
                              f"(pip install sounddevice; apt-get install libportaudio2): {exc}") from exc

    def blocks():
        with sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32",
                                     blocksize=max(1, int(seconds * rate))) as stream:
            while True:
                yield stream.read(max(1, int(seconds * rate)))[0][:, 0]
    return blocks(), rate


def listen(model_name, source=None, *, out_midi=None, realtime: bool = False, soundcard: bool = False,
           rate: int = 44100, channels: int = 1, sample_format: str = "s16", block: float = BLOCK_SECONDS,
           lookahead: float = LOOKAHEAD_SECONDS, delay: float = DELAY_SECONDS, device=None, out=None,
           log=print) -> LiveNotes:
    """Transcribe audio as it arrives from ``source`` (a file; None: raw PCM on standard
    input, or the sound card with ``soundcard``): one CSV line per note on ``out`` as it
    ends, the MIDI file ``out_midi`` rewritten as notes end, a progress line each second.
    Ctrl-C ends the listening as the end of the audio would."""
    import soxr
    model, out = resolve_model(model_name), out or sys.stdout
    print("onset_s,offset_s,pitch,velocity", file=out, flush=True)
    listener = Listener(model, device, block, lookahead, delay,
                        lambda *n: print(f"{n[0]:.4f},{n[1]:.4f},{n[2]},{n[3]}", file=out, flush=True), log)
    if soundcard:
        blocks, rate = soundcard_blocks(block)
    elif source is not None:
        blocks, rate = file_blocks(source, block, realtime)
    else:
        blocks = pcm_blocks(sys.stdin.buffer, rate, channels, sample_format, block)
    resampler = None if rate == listener.rate else soxr.ResampleStream(rate, listener.rate, 1, dtype="float32")
    written, shown = 0.0, 0.0
    try:
        for samples in blocks:
            listener.feed(samples if resampler is None else resampler.resample_chunk(samples))
            heard = listener.received / listener.rate
            if out_midi is not None and heard - written >= MIDI_EVERY_SECONDS:
                write_midi(out_midi, listener.notes.finished)
                written = heard
            if heard - shown >= 1.0:
                log(progress_line(listener))
                shown = heard
    except KeyboardInterrupt:
        log("listen: stopped; the notes sounding now are ended")
    if resampler is not None:
        listener.feed(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    notes = listener.finish()
    if out_midi is not None:
        write_midi(out_midi, notes.finished)
    log(progress_line(listener) + f"; {len(notes.finished)} notes")
    return notes


def progress_line(listener: Listener) -> str:
    heard = listener.received / listener.rate
    factor = listener.busy / heard if heard else 0.0
    return (f"listen: {heard:.1f} s heard, note-on latency {1000 * listener.latency():.0f} ms "
            f"(look-ahead, block and decoder), real-time factor {factor:.3f}, {len(listener.notes.finished)} notes")


def write_midi(path, finished) -> None:
    rows = sorted(finished)
    intervals = np.array([[r[0], r[1]] for r in rows]).reshape(-1, 2)
    write_notes(Path(path), (intervals, np.array([r[2] for r in rows], dtype=int),
                             np.array([r[3] for r in rows], dtype=int)))
