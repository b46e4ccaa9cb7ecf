"""Example models for safetycheck: definitions, small trained weights and the training script."""
