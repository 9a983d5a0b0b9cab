"""How a transcription is scored: notes as arrays and MIDI (``notes``), the transcription
metrics (``metrics``), where the note errors come from (``note_errors``), how readable a
dictionary is (``interpretability``) and separation into stems (``separation``)."""
