"""Signal and piano constants shared by every stage (one place, as in basic-pitch)."""

#: MIDI numbers of the 88 piano keys, A0 (21) to C8 (108).
MIDI_MIN = 21
MIDI_MAX = 108
N_KEYS = MIDI_MAX - MIDI_MIN + 1

#: Default sample rate of the study (Hz).
SAMPLE_RATE = 22050

#: Default hop between feature frames (samples); 512 / 22050 Hz = 23.2 ms.
HOP_LENGTH = 512

#: mir_eval conventions for note metrics.
ONSET_TOLERANCE = 0.05
OFFSET_RATIO = 0.2
#: References lengthened by the sustain pedal, as MAESTRO's evaluations read them.
PEDAL_EXTENDED_REFERENCES = True

#: Time step (s) of the grid on which frame-level metrics sample both piano rolls.
FRAME_METRIC_HOP = 0.01

#: The figures of a study's summary table (``lowrank-amt plot KIND``, ``stages/report.py``).
SUMMARY_FIGURES = ("tradeoff", "tradeoff-largest", "scaling", "cost-scaling", "compute")

#: Manifest columns every dataset preparation writes.
MANIFEST_COLUMNS = ("track_id", "split", "audio_path", "midi_path", "duration", "instrument")
SPLITS = ("train", "validation", "test", "isolated")
