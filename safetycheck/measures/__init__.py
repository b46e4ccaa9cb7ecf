"""The measures, as plain functions on tensors: attacks, corruptions, OOD scores and metrics,
calibration, robust-accuracy sweeps and the attack speed-ups."""
