"""Training: optimizers, schedules, losses, the training loop and the run directory it fills."""
