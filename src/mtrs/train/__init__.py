"""Training: the trainer, task weighting and checkpoints."""
