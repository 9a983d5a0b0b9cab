"""From activations to notes: the decoder every model shares (``decode``), velocity
calibration (``velocity``), the note-state model (``note_states``) and steering by the
keys a transcription may use (``steering``)."""
