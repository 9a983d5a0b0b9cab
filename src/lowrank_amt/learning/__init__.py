"""What every trainable family shares: streaming mini-batches from the feature cache
(``loader``), the one epoch loop (``epochs``), per-epoch validation note F
(``epoch_scoring``) and training-time augmentation (``augment``)."""
