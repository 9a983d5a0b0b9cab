"""Deep-learning baselines: the pretrained Basic Pitch model run through ONNX
(``basic_pitch``) and a compact trainable network in its spirit (``network``); the
families of ``families/`` train and run them on the same feature cache, splits and
budgets as the low-rank models."""
