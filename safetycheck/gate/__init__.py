"""The gate: threshold files and the built-in bounds, comparison with a baseline run, and
rewriting a threshold file from measured results."""
