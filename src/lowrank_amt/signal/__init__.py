"""From audio to what the models read: loading (``audio``), features and their on-disk
cache (``spectrogram``), frame targets of notes (``targets``) and the pitch of a
spectral template (``pitch``)."""
