"""Data in and models in: dataset files (IDX, ...), model files and the model contract, and the
one batched forward pass every measure reads logits through."""
