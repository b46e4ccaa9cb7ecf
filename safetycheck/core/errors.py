"""Errors the engine raises for bad input.

Every error carries one complete sentence that says what is wrong and what to do; the pytest
plugin turns them into one-line usage errors rather than tracebacks from inside torch.
"""


class SafetyCheckError(Exception):
    """Base class of every error safetycheck raises on purpose."""


class DataError(SafetyCheckError):
    """A dataset is missing, truncated or corrupt, or cannot be downloaded."""


class ModelLoadError(SafetyCheckError):
    """A model file cannot be found or turned into a torch module."""


class ModelContractError(SafetyCheckError):
    """A model breaks the input/output contract (float32 (N,1,28,28) in [0,1] -> logits (N,10))."""


class ConfigError(SafetyCheckError):
    """A setting or threshold is invalid (unknown key, wrong type, impossible bound)."""


class NotCertifiable(SafetyCheckError):
    """A model holds a layer the certified bounds cannot relax (a tanh, a softmax in the middle,
    attention) or cannot be traced by ``torch.fx``; the message is ``not certifiable: <layer>``."""
