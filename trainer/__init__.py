"""Continuous training: datasets from moderators' labels, the DeepSpeed LoRA fine-tune, Ray submission,
evaluation, and the trigger that closes the loop (see docs/training.md)."""
