"""The pytest integration of safetycheck (installed as ``safetycheck_pytest``)."""
