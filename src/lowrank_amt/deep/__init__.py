"""Deep-learning baselines: the pretrained Basic Pitch model run through ONNX
(``basic_pitch``) and a compact trainable network in its spirit (``network``, trained
by ``training``) on the same feature cache, splits and budgets as the low-rank models."""
