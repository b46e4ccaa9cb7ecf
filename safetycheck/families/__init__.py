"""Check families, one module per concern; importing this package registers them all.

A new family: a module here that calls :func:`safetycheck.checks.register`, imported below, and a
family-level entry in :data:`safetycheck.config.DEFAULT_PROFILE`.
"""

from . import acceleration, accuracy, adversarial, attacks, calibration, corruptions, ood, trust  # noqa: F401
