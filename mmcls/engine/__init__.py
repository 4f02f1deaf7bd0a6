"""The training engine: the loop both recipes share (loop, session, last_checkpoint), finetuning and pretraining,
the step and its tricks, losses, the optimizer and schedule, and batched inference for validation."""
