"""Inference: predicts every validated event with the current model snapshot, in micro-batches."""
