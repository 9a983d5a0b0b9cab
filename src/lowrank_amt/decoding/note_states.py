"""A note-state model of each key, decoded by Viterbi: the ``states`` onset rule of the
shared decoder (``decode.py``), in place of a threshold crossing.

Conventions. Each key is a two-state Markov chain, off and on, with per-frame transition
probabilities ``p_on`` (off to on) and ``p_off`` (on to off), the same for every key,
fitted on reference notes (``fit_transitions``: the validation split's, as every decoding
parameter). A frame's evidence for "on" is the log-likelihood ratio
``slope * ln(h / threshold)`` of its activation h (relative to the track's peak), so that
an activation at the threshold is neutral and every factor e above it adds ``slope``
nats. Viterbi finds each key's most probable state sequence; a note is a run of "on".

Degenerate setting: with ``p_on = p_off = 0.5`` the transitions carry no information,
and the path is "on" exactly where h >= threshold: the plain threshold decoder
(tests/test_note_states.py). The fitted transitions make short blips and short gaps
cost what their rarity in real notes says: a key rarely starts a note (p_on of about
0.003 per frame at 43 frames per second) and a sounding note rarely stops in one frame.
"""

from __future__ import annotations

import numpy as np

#: Probabilities are kept in [FLOOR, 1 - FLOOR] so that every path stays possible.
FLOOR = 1e-6


def fit_transitions(rolls) -> tuple[float, float]:
    """(p_on, p_off) of a list of binary piano rolls (keys x frames): off-to-on changes
    per off frame and on-to-off changes per on frame, pooled over keys and rolls (each
    with one pseudo-count of a change, so an empty roll gives a finite estimate)."""
    changes = {"on": 1.0, "off": 1.0}
    frames = {"on": 2.0, "off": 2.0}
    for roll in rolls:
        roll = np.asarray(roll, dtype=bool)
        before, after = roll[:, :-1], roll[:, 1:]
        changes["on"] += np.sum(~before & after)
        changes["off"] += np.sum(before & ~after)
        frames["off"] += np.sum(~before)
        frames["on"] += np.sum(before)
    clip = lambda p: float(np.clip(p, FLOOR, 1 - FLOOR))  # noqa: E731
    return clip(changes["on"] / frames["off"]), clip(changes["off"] / frames["on"])


def notes_roll(intervals, pitches, n_frames: int, frame_rate: float, midi_min: int = 21) -> np.ndarray:
    """88 x n_frames binary roll of notes (intervals in s, MIDI pitches), as the decoder's frames."""
    roll = np.zeros((88, n_frames), dtype=bool)
    for (start, end), pitch in zip(np.asarray(intervals, dtype=float).reshape(-1, 2), pitches):
        key = int(pitch) - midi_min
        a, b = int(round(start * frame_rate)), int(round(end * frame_rate))
        if 0 <= key < 88:
            roll[key, max(a, 0):max(min(b, n_frames), a + 1)] = True
    return roll


def viterbi_on(H: np.ndarray, threshold: float, slope: float, p_on: float, p_off: float) -> np.ndarray:
    """The most probable on/off path of every key (rows of ``H``, activations relative
    to the track's peak), as a boolean array of H's shape. Ties go to "on"."""
    H = np.asarray(H, dtype=np.float64)
    keys, n = H.shape
    if n == 0:
        return np.zeros_like(H, dtype=bool)
    evidence = slope * (np.log(np.maximum(H, 1e-12)) - np.log(threshold))
    stay_off, enter = np.log1p(-p_on), np.log(p_on)
    stay_on, leave = np.log1p(-p_off), np.log(p_off)
    # the first frame: the chain's stationary start would favour "off"; a neutral start
    # keeps the degenerate setting equal to thresholding from the first frame on
    off, on = np.zeros(keys), evidence[:, 0].copy()
    from_on_to_off = np.zeros((keys, n), dtype=bool)  # back pointers: best predecessor is "on"
    from_on_to_on = np.zeros((keys, n), dtype=bool)
    for t in range(1, n):
        off_from_off, off_from_on = off + stay_off, on + leave
        on_from_off, on_from_on = off + enter, on + stay_on
        from_on_to_off[:, t] = off_from_on >= off_from_off
        from_on_to_on[:, t] = on_from_on >= on_from_off
        off = np.maximum(off_from_off, off_from_on)
        on = np.maximum(on_from_off, on_from_on) + evidence[:, t]
    path = np.zeros((keys, n), dtype=bool)
    state = on >= off
    for t in range(n - 1, -1, -1):
        path[:, t] = state
        state = np.where(state, from_on_to_on[:, t], from_on_to_off[:, t])
    return path
