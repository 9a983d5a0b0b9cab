"""``lowrank-amt transcribe``: recordings to notes with any trained model (a study's
model folder, or ``basic_pitch``), the same path for every family.

Per input file: the model's outputs (88 x frames) are computed chunk by chunk, each
chunk of ``CHUNK_SECONDS`` read with ``MARGIN_SECONDS`` of audio on both sides (more
than the lowest CQT filter's half length and any template's or segment's time extent),
resampled, turned into the model's features (or given as audio to a family that reads
audio), of which only the chunk's own frames are kept, written to a temporary folder.
They are then decoded with the model's decoder and the parameters chosen on its
validation split, ``DECODE_SECONDS`` at a time with ``DECODE_MARGIN_SECONDS`` on both
sides, keeping the notes that start in each piece (the shared decoder is given the whole
recording's peak). So memory does not grow with the recording's length. A recording
shorter than a chunk is processed whole, as the activations stage processes a track.

Out, per input ``x``: ``x.mid`` (notes with velocities, and the sustain pedal as CC64
where the model predicts it), ``x.csv`` (onset_s, offset_s, pitch, velocity) and, with
``plot``, ``x.png`` (the outputs of the first ``PLOT_SECONDS`` with the notes over them);
with ``musicxml``, ``x.musicxml``: the notes as a piano score (``decoding/score.py``).
A model with instrument templates writes one MIDI track per instrument class (each
class's activations decoded alike, an ``instrument`` column in the CSV) and, with
``stems``, ``x.stems/<class>.wav``: the recording separated in the same chunks.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from . import families, shipped
from .constants import N_KEYS
from .decoding.decode import pedal_spans, score_aligned_notes
from .decoding.outputs import write_notes
from .decoding.score import DEFAULT_SPLIT, check_tempo, write_score
from .decoding.steering import Steering
from .errors import LowrankAmtError
from .evaluation.registry import evaluation_defaults
from .instruments import CLASSES
from .model_file import Model, load_model
from .runtime.device import pick_device
from .signal.audio import audio_length, load_audio, read_span
from .signal.spectrogram import bin_frequencies, compute_features
from .signal.targets import frame_targets, read_annotation

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
CHUNK_SECONDS = 60.0
MARGIN_SECONDS = 4.0
DECODE_SECONDS = 60.0
DECODE_MARGIN_SECONDS = 10.0
PLOT_SECONDS = 30.0
#: Seconds of each recording its own adaptation (``adapt_self``) learns from.
ADAPT_SECONDS = 60.0


def resolve_model(name) -> Model:
    """A model folder or ``model.npz``, or the name of a shipped or a pretrained model."""
    if str(name) in families.pretrained_names():
        family, spec = families.resolve({"family": str(name)})
        return Model(family, spec, {}, None, {"pretrained": True}, None, None)
    if str(name) in shipped.names() and not Path(name).exists():
        return load_model(shipped.folder(str(name)))
    if not Path(name).exists():
        raise LowrankAmtError(f"--model {name}: no model folder or file there, and not a shipped "
                              f"({', '.join(shipped.names())}) or pretrained model "
                              f"({', '.join(families.pretrained_names())})")
    model = load_model(name)
    if model.family.reads_features() and model.features is None:
        raise LowrankAmtError(f"model {model.path} has no feature parameters (it was trained on a hand-made "
                              "cache without params.json), so it cannot transcribe new audio")
    return model


def input_files(inputs) -> list[tuple[Path, Path]]:
    """(audio file, output stem relative to the output folder) of every input: a file, or
    every audio file under a folder (its relative path kept)."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
            if not files:
                raise LowrankAmtError(f"folder {item} has no audio files ({' '.join(AUDIO_EXTENSIONS)})")
            found += [(p, p.relative_to(item).with_suffix("")) for p in files]
        elif item.is_file():
            found.append((item, Path(item.stem)))
        else:
            raise LowrankAmtError(f"input {item} does not exist")
    stems = [stem for _, stem in found]
    clash = sorted({str(s) for s in stems if stems.count(s) > 1})
    if clash:
        raise LowrankAmtError(f"several inputs would write {clash[0]}.mid; give them in separate runs")
    return found


class OutputStore:
    """A recording's ``TrackOutputs``, frame ranges written in order to .npy files in ``folder``
    and read back as ranges, so that none is held whole in memory."""

    def __init__(self, folder: Path):
        self.folder, self.parts, self.peak = Path(folder), [], 0.0
        self.classes = None  # the instrument classes of a model that names them

    def append(self, outputs: dict) -> None:
        start = self.parts[-1][1] if self.parts else 0
        stop = start + outputs["note"].shape[1]
        for name, value in outputs.items():
            np.save(self.folder / f"{len(self.parts)}.{name}.npy", np.asarray(value, dtype=np.float16))
        self.parts.append((start, stop, tuple(outputs)))
        self.peak = max(self.peak, float(np.max(outputs["note"], initial=0.0)))

    @property
    def n_frames(self) -> int:
        return self.parts[-1][1] if self.parts else 0

    def read(self, start: int, stop: int, only=None) -> dict:
        """Frames ``start:stop`` of every output (of the names ``only``, if given)."""
        pieces: dict[str, list] = {}
        for number, (a, b, names) in enumerate(self.parts):
            if a < stop and b > start:
                for name in (n for n in names if only is None or n in only):
                    part = np.load(self.folder / f"{number}.{name}.npy")
                    pieces.setdefault(name, []).append(part[:, max(start, a) - a:min(stop, b) - a])
        return {name: np.concatenate(parts, axis=1).astype(np.float32) for name, parts in pieces.items()}


def _progress(done: int, total: int, label: str, log) -> None:
    if total > 1:
        bar = "#" * int(20 * done / total)
        log(f"{label} [{bar:<20}] {done}/{total} chunks")


def audio_chunks(audio_path, rate: int, hop: int, n_samples: int):
    """(number, count, audio, first, start, stop) of each chunk of a recording, in frames of
    ``hop`` samples: the chunk's own frames ``start:stop`` (``CHUNK_SECONDS``), its audio
    read from frame ``first`` with ``MARGIN_SECONDS`` on both sides; a recording of one
    chunk is read whole, as the activations stage reads a track."""
    n_frames = 1 + n_samples // hop
    chunk, margin = int(CHUNK_SECONDS * rate / hop), int(MARGIN_SECONDS * rate / hop)
    starts = range(0, n_frames, chunk)
    for number, start in enumerate(starts, 1):
        stop = min(start + chunk, n_frames)
        if len(starts) == 1:
            audio, first = load_audio(audio_path, rate), 0
        else:
            first, last = max(0, start - margin), min(n_frames, stop + margin)
            audio = read_span(audio_path, first * hop, min(n_samples, last * hop), rate)
        yield number, len(starts), audio, first, start, stop


def compute_outputs(model: Model, transcribe, audio_path, store: OutputStore, steering: Steering, log=print) -> float:
    """The model's outputs of a whole recording, chunk by chunk (``audio_chunks``) and
    steered, into ``store``; returns the recording's length in seconds."""
    rate, hop = model.family.frame_grid(model.features)
    n_samples = audio_length(audio_path, rate)
    for number, count, audio, first, start, stop in audio_chunks(audio_path, rate, hop, n_samples):
        x = compute_features(audio, model.features, rate) if model.family.reads_features() else audio
        outputs = transcribe(x)
        if "by_class" in outputs:  # classes x 88 x frames, stored as (classes * 88) x frames
            store.classes = [CLASSES[c] for c in outputs.pop("classes")]
            outputs["by_class"] = np.asarray(outputs["by_class"]).reshape(-1, outputs["by_class"].shape[-1])
        keep = slice(start - first, stop - first)
        kept = {name: _frames(value, keep) for name, value in outputs.items()}
        store.append(steering.apply(kept, rate / hop, start))
        _progress(number, count, Path(audio_path).name, log)
    return n_samples / rate


def _frames(value, keep: slice) -> np.ndarray:
    """Frames ``keep`` of outputs (88 x frames), zero-padded where the model gave fewer."""
    value = np.asarray(value)
    out = np.zeros((value.shape[0], keep.stop - keep.start), dtype=np.float32)
    piece = value[:, keep]
    out[:, : piece.shape[1]] = piece
    return out


def decode_outputs(notes_of, store: OutputStore, frame_rate: float):
    """Notes of a whole recording's outputs, ``DECODE_SECONDS`` at a time (see the module
    docstring); ``notes_of(outputs, first_frame, peak)`` decodes a piece starting at
    ``first_frame`` (peak None: the piece is the whole recording). Returns
    (intervals, pitches, velocities) sorted by onset."""
    piece, margin = int(DECODE_SECONDS * frame_rate), int(DECODE_MARGIN_SECONDS * frame_rate)
    if store.n_frames <= piece + 2 * margin:
        return notes_of(store.read(0, store.n_frames), 0, None)
    pieces = []
    for start in range(0, store.n_frames, piece):
        first = max(0, start - margin)
        intervals, pitches, velocities = notes_of(store.read(first, start + piece + margin), first, store.peak)
        intervals = np.reshape(intervals, (-1, 2)) + first / frame_rate
        mine = (intervals[:, 0] >= start / frame_rate) & (intervals[:, 0] < (start + piece) / frame_rate)
        pieces.append((intervals[mine], np.asarray(pitches, dtype=int)[mine], np.asarray(velocities, dtype=int)[mine]))
    intervals, pitches, velocities = (np.concatenate(part) for part in zip(*pieces))
    order = np.lexsort((pitches, intervals[:, 0]))  # by onset, then pitch
    return intervals[order], pitches[order], velocities[order]


class ClassOutputs:
    """One instrument class's key activations in a recording's ``OutputStore``, read as its
    ``note`` (for ``decode_outputs``)."""

    def __init__(self, store: OutputStore, number: int):
        self.store, self.rows = store, slice(number * N_KEYS, (number + 1) * N_KEYS)
        self.n_frames, self.peak = store.n_frames, store.peak

    def read(self, start: int, stop: int, only=None) -> dict:
        return {"note": self.store.read(start, stop, only=("by_class",))["by_class"][self.rows]}


def class_notes(notes_of, store: OutputStore, frame_rate: float) -> dict:
    """class -> its notes, each class's activations decoded as the model's are (relative
    to the recording's peak)."""
    return {name: decode_outputs(lambda o, first, peak: notes_of(o, first, peak or store.peak),
                                 ClassOutputs(store, number), frame_rate)
            for number, name in enumerate(store.classes)}


def stem_separator(model: Model, arrays: dict, device):
    """The model's separator (``Family.separator``), or an error saying it has none."""
    separator = model.family.separator(arrays, model.spec, device)
    if separator is None:
        raise LowrankAmtError(f"model {model.path or model.family.name} does not separate stems: --stems needs a "
                              "model with instrument_templates")
    return separator


def write_stems(model: Model, separator, audio_path, out_stem: Path, log=print) -> list[Path]:
    """The recording separated into one stem per class (``separation.py``), written as
    ``<out>.stems/<class>.wav``; in the chunks of its outputs (``audio_chunks``), each
    chunk's own samples kept, so that memory does not grow with the recording."""
    rate, hop = model.family.frame_grid(model.features)
    n_samples, bin_hz = audio_length(audio_path, rate), bin_frequencies(model.features)
    folder = out_stem.with_suffix(".stems")
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    try:
        for number, count, audio, first, start, stop in audio_chunks(audio_path, rate, hop, n_samples):
            stems = separator(compute_features(audio, model.features, rate), audio, rate, hop, bin_hz)
            own = slice((start - first) * hop, min(stop * hop, n_samples) - first * hop)
            for name, stem in stems.items():
                if name not in files:
                    files[name] = soundfile.SoundFile(str(folder / f"{name}.wav"), "w", rate, 1, "PCM_16", format="WAV")
                files[name].write(np.clip(stem[own], -1, 32767 / 32768))
            _progress(number, count, f"{Path(audio_path).name} stems", log)
    finally:
        for file in files.values():
            file.close()
    return [folder / f"{name}.wav" for name in files]


def adaptation_data(model: Model, audio_path, midi_path=None, seconds: float | None = None):
    """(features, roll or None) of a recording (its first ``seconds``) for ``Family.adapt``."""
    rate, hop = model.family.frame_grid(model.features)
    n_samples = audio_length(audio_path, rate)
    audio = read_span(audio_path, 0, n_samples if seconds is None else min(n_samples, int(seconds * rate)), rate)
    features = compute_features(audio, model.features, rate)
    if midi_path is None:
        return features, None
    intervals, pitches = read_annotation(midi_path, len(audio) / rate, audio_path=audio_path)
    return features, frame_targets(intervals, pitches, features.shape[1], rate / hop)["roll"]


def note_decoder(family, decoder, params: dict, frame_rate: float, steering: Steering):
    """``notes_of`` for ``decode_outputs``: the model's decoder, or with a score, the
    score aligned to the outputs (``decode.score_aligned_notes``) plus the notes the
    decoder finds where the score has none of their key within its tolerance."""
    def notes_of(outputs, first_frame, peak):
        decoded = decoder.notes(outputs, frame_rate, params, peak=peak)
        if steering.score is None:
            return decoded
        threshold, scale = family.score_threshold(params, peak)
        aligned = score_aligned_notes(outputs["note"], frame_rate, *steering.score, steering.score_tolerance,
                                      threshold, params.get("min_note_seconds", 0.05), params.get("offset_fraction"),
                                      scale, first_frame, outputs.get("onset"), params.get("velocity_curve"))
        score_onsets, score_pitches = steering.score[0][:, 0] - first_frame / frame_rate, steering.score[1]
        near = steering.score_tolerance
        aligned = aligned[:2] + (decoded_velocities(aligned, decoded, near),)
        lacking = [i for i, ((onset, _), pitch) in enumerate(zip(decoded[0], decoded[1]))
                   if not np.any((score_pitches == pitch) & (np.abs(score_onsets - onset) <= near))]
        merged = [np.concatenate([a, d[lacking]]) for a, d in zip(aligned, decoded)]
        order = np.lexsort((merged[1], merged[0][:, 0]))
        return tuple(m[order] for m in merged)
    return notes_of


def decoded_velocities(aligned, decoded, near: float) -> np.ndarray:
    """One velocity rule for every note of a score-informed transcription: an aligned note
    takes the velocity the decoder gave its key's note nearest in onset within ``near``
    seconds (a family's own decoder included), and keeps its own (the decoder's curve on
    its peak) where the decoder found none."""
    velocities = np.array(aligned[2], dtype=int)
    for i, ((onset, _), pitch) in enumerate(zip(aligned[0], aligned[1])):
        gaps = np.where(decoded[1] == pitch, np.abs(decoded[0][:, 0] - onset), np.inf)
        if len(gaps) and gaps.min() <= near:
            velocities[i] = decoded[2][int(np.argmin(gaps))]
    return velocities


def transcribe_files(model_name, inputs, out_dir, *, plot: bool = False, device: str | None = None,
                     steering: Steering | None = None, adapt=None, adapt_self: bool = False,
                     adapt_iterations: int = 20, stems: bool = False, musicxml: bool = False,
                     tempo: float | None = None, split: int | None = None, log=print) -> list[Path]:
    """Transcribe every input (audio files or folders of them) with a model; write the
    MIDI and CSV (and PNG) of each into ``out_dir``; returns the MIDI paths.

    ``adapt`` = (audio, MIDI) of a short recording of the instrument to transcribe (a few
    isolated notes, a scale): the model's dictionary is adapted to it first; with
    ``adapt_self``, to the first ``ADAPT_SECONDS`` of each recording itself, unsupervised.
    Either takes ``adapt_iterations`` multiplicative updates from the trained templates.
    A model that names instruments writes one MIDI track per class (and an
    ``instrument`` column); with ``stems``, it also writes the separated stems."""
    model = resolve_model(model_name)
    files = input_files(inputs)
    steering = steering or Steering()
    check_options(model, files, steering, adapt is not None or adapt_self, musicxml, tempo, split)
    device = pick_device(device or model.spec.get("device", "auto"))
    arrays = model.family.steer(model.arrays, model.spec, steering) if steering.allowed else model.arrays
    if adapt is not None:
        arrays = model.family.adapt(arrays, model.spec, *adaptation_data(model, *adapt), device, adapt_iterations)
        log(f"dictionary adapted to {adapt[0]} ({adapt_iterations} iterations)")
    transcribe = model.family.transcriber(arrays, model.spec, device)
    separator = stem_separator(model, arrays, device) if stems else None
    decoder, params = model_decoder(model, model_name, log)
    rate, hop = model.family.frame_grid(model.features)
    written = []
    for audio_path, stem in files:
        out_stem = Path(out_dir) / stem
        out_stem.parent.mkdir(parents=True, exist_ok=True)
        wall = time.perf_counter()
        if adapt_self:
            own = model.family.adapt(arrays, model.spec, *adaptation_data(model, audio_path, seconds=ADAPT_SECONDS),
                                     device, adapt_iterations)
            transcribe = model.family.transcriber(own, model.spec, device)
        # every output is written in a temporary folder first and moved into place at the end,
        # so that an error or Ctrl-C leaves a recording's outputs whole or absent
        with tempfile.TemporaryDirectory(prefix=".lowrank-amt-", dir=out_stem.parent) as folder:
            store, draft = OutputStore(folder), Path(folder) / "out" / out_stem.name
            draft.parent.mkdir()
            seconds = compute_outputs(model, transcribe, audio_path, store, steering, log)
            notes_of = note_decoder(model.family, decoder, params, rate / hop, steering)
            notes = decode_outputs(notes_of, store, rate / hop)
            by_class = None if store.classes is None else class_notes(notes_of, store, rate / hop)
            write_notes(draft.with_suffix(".mid"), notes, pedal_spans(store.read(0, store.n_frames, only=("pedal",)),
                                                                      rate / hop), by_class, draft.with_suffix(".csv"))
            if plot:
                plot_transcription(store, rate / hop, notes, draft.with_suffix(".png"),
                                   f"{audio_path.name}: {model.family.name}")
            if musicxml:
                write_score(draft.with_suffix(".musicxml"), notes, tempo, DEFAULT_SPLIT if split is None else split,
                            audio_path.stem, log)
            if stems:
                names = [p.name for p in write_stems(model, separator, audio_path, draft, log)]
                log(f"{audio_path}: stems -> {out_stem.with_suffix('.stems')}/ ({', '.join(names)})")
            move_outputs(draft.parent, out_stem.parent)
        log(f"{audio_path}: {len(notes[1])} notes -> {out_stem.with_suffix('.mid')} "
            f"({time.perf_counter() - wall:.1f} s for {seconds:.1f} s of audio)")
        written.append(out_stem.with_suffix(".mid"))
    return written


def check_options(model: Model, files, steering: Steering, adapting: bool, musicxml: bool, tempo, split) -> None:
    """Refuse, before any work, options that cannot go together."""
    if steering.score is not None and len(files) != 1:
        raise LowrankAmtError(f"a score goes with one recording; {len(files)} were given")
    if (tempo is not None or split is not None) and not musicxml:
        raise LowrankAmtError("--tempo and --split set the score: they go with --musicxml")
    check_tempo(tempo)
    if adapting and not model.family.has_dictionary:
        raise LowrankAmtError(f"--adapt and --adapt-self: family '{model.family.name}' has no dictionary to adapt")


def model_decoder(model, model_name, log=print):
    """(decoder, its parameters) of a model: the parameters its decoding.json holds (chosen
    on a validation split), else the decoder's defaults, which are then said once."""
    decoder = model.family.make_decoder(model.spec, {}, evaluation_defaults())
    params = model.decoding
    if params is None:
        params = decoder.default_params()
        log(f"note: {model.path or model_name} has no decoding.json (chosen on a validation split); "
            f"decoding with the defaults {params}")
    return decoder, params


def plot_transcription(store, frame_rate: float, notes, out_path: Path, title: str) -> None:
    """The first ``PLOT_SECONDS`` of a recording's activations with its notes outlined."""
    from .report.run_plots import transcription_plot
    shown = store.read(0, min(store.n_frames, int(PLOT_SECONDS * frame_rate)))
    transcription_plot(shown["note"], frame_rate, notes, out_path, title)


def move_outputs(draft: Path, out: Path) -> None:
    """Every file written in ``draft`` (and a stems folder's files) moved into ``out``, each
    by an atomic rename; the CSV last, MIDI before it, so that a CSV means the rest is there."""
    files = sorted((p for p in draft.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".csv", p.suffix == ".mid"))
    for path in files:
        target = out / path.relative_to(draft)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)

