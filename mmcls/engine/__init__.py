"""Training and inference engine: optimisation, losses, evaluation, checkpoints, finetuning and prediction loops."""
