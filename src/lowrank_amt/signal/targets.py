"""Frame targets of piano notes, 88 x frames uint8 each: ``roll`` (key down; a note covers
the frames whose centre lies in [onset, offset)), ``onsets`` (the first frame of each
note) and ``offsets`` (the last frame of each note). With ``pedal_extension``, notes
are lengthened by the sustain pedal as MAESTRO's targets are (``notes.py``).

Bad input: a MIDI file that cannot be read or has no notes stops with an error naming
the file. Notes outside the piano range are dropped, and notes beyond the end of the
audio are clipped to it (dropped if they start after it), each with a warning naming
the file.
"""

from __future__ import annotations

import numpy as np

from ..constants import MIDI_MAX, MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from ..evaluation.notes import read_midi_notes

NAMES = ("roll", "onsets", "offsets")
#: Notes ending this little after the audio are not reported as clipped (s).
END_TOLERANCE = 0.05


def frame_targets(intervals, pitches, n_frames: int, frame_rate: float) -> dict[str, np.ndarray]:
    """``roll``, ``onsets`` and ``offsets`` (88 x n_frames uint8) of piano notes: a note
    covers the frames ``ceil(onset * rate)`` to ``ceil(offset * rate) - 1`` (at least one);
    its onset marks the first and its offset the last of them."""
    targets = {name: np.zeros((N_KEYS, n_frames), dtype=np.uint8) for name in NAMES}
    for (start, end), pitch in zip(intervals, pitches):
        key = int(pitch) - MIDI_MIN
        a = int(np.ceil(start * frame_rate - 1e-9))
        b = max(int(np.ceil(end * frame_rate - 1e-9)), a + 1)
        if not 0 <= key < N_KEYS or a >= n_frames or b <= 0:
            continue
        a, b = max(a, 0), min(b, n_frames)
        targets["roll"][key, a:b] = 1
        targets["onsets"][key, a] = 1
        targets["offsets"][key, b - 1] = 1
    return targets


def read_annotation(midi_path, audio_seconds: float, pedal_extension: bool = False, log=print, audio_path=None):
    """Piano notes of a MIDI file ready for targets, for the audio ``audio_path`` of
    ``audio_seconds`` (see the module doc)."""
    intervals, pitches, _ = read_midi_notes(midi_path, pedal_extension)
    if len(pitches) == 0:
        raise LowrankAmtError(f"MIDI file {midi_path} has no notes; remove the track or fix its annotation")
    in_range = (pitches >= MIDI_MIN) & (pitches <= MIDI_MAX)
    if not in_range.all():
        log(f"warning: MIDI file {midi_path}: {int((~in_range).sum())} note(s) outside the piano range "
            f"{MIDI_MIN}-{MIDI_MAX} dropped")
        intervals, pitches = intervals[in_range], pitches[in_range]
    if len(pitches) and intervals[:, 1].max() > audio_seconds + END_TOLERANCE:
        starts_after = intervals[:, 0] >= audio_seconds
        log(f"warning: audio file {audio_path or 'of ' + str(midi_path)} is shorter ({audio_seconds:.2f} s) than "
            f"its annotation {midi_path} ({intervals[:, 1].max():.2f} s): {int(starts_after.sum())} note(s) "
            "dropped, the others clipped")
        intervals, pitches = intervals[~starts_after], pitches[~starts_after]
        intervals[:, 1] = np.minimum(intervals[:, 1], audio_seconds)
    if len(pitches) == 0:
        raise LowrankAmtError(f"MIDI file {midi_path} has no piano notes within its audio")
    return intervals, pitches
