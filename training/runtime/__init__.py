"""Running a recipe: resolve and launch (runner), the training process (worker), stages, resume, checkpoints,
budget, failures, distributed launch, before/after evaluation."""
