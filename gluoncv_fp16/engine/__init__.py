"""The training engine: loop and hooks, checkpoints, evaluation, logging."""
