"""safetycheck: safety tests for image classifiers, as plain functions on tensors.

The engine (this package) never imports pytest; the pytest plugin lives in ``plugins/``
(importable as ``safetycheck_pytest``).
"""

__version__ = "0.1.0"
