"""The pipeline's steps, from files to files: one module per rule file of
``workflow/rules/``, named after it, holding the functions its rules call through
``lowrank-amt`` (``cli.py``).

- ``data``: a dataset's manifest (``datasets/``)
- ``features``: the feature cache (``spectrogram.py``, ``targets.py``)
- ``train``: a trained model of any family (``families/``); a teacher's targets
- ``transcribe``: a model's outputs, its tuned decoder, the test tracks' MIDI
- ``evaluate``: per-track metrics, the dictionary's interpretability, the results table
- ``report``: the study's figures and the scaling tables
"""
