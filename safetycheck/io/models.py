"""Models under test: loading them from files, ensembles, and the input/output contract.

The contract: a model takes float32 images of shape (N, 1, 28, 28) with pixel values in [0, 1]
(normalisation belongs inside the model) and returns logits, a float tensor of shape (N, 10).
:func:`check_contract` verifies it on a small probe batch and says precisely what is wrong.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.core.errors import ConfigError, ModelContractError, ModelLoadError
from safetycheck.io.profiles import DEFAULT_PROFILE, DatasetProfile

FACTORY_NAMES = ("safety_model", "build_model")
# The default (MNIST) contract; a run on another dataset checks its profile's instead.
NUM_CLASSES = DEFAULT_PROFILE.num_classes
INPUT_SHAPE = DEFAULT_PROFILE.input_shape
CONTRACT = DEFAULT_PROFILE.contract
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass
class ModelUnderTest:
    """A model with the id used in test ids and reports, and where it came from."""

    name: str
    module: nn.Module
    source: str
    randomized: bool = False  # set by check_contract when the user allowed a randomised model


class Ensemble(nn.Module):
    """Averages its members' softmax probabilities; its logits are the log of that mean.

    ``log(mean_k softmax(f_k(x)))`` is computed as a log-sum-exp of log-softmaxes, which stays
    finite where the probabilities underflow.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ModelLoadError(
                "an ensemble needs at least one member; the list of models is empty."
            )
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([F.log_softmax(member(x), dim=1) for member in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


# ---------------------------------------------------------------------------------------------
# Loading


def load_model_file(path: str | Path) -> list[ModelUnderTest]:
    """Load the models a file provides.

    ``path`` is a ``.py`` file that defines ``safety_model()`` or ``build_model()`` (a factory) or a
    module-level ``model``, or a TorchScript file saved with ``torch.jit.save``. A factory or
    ``model`` may give a module, a list/tuple of modules (an ensemble), or a dict name -> module
    (several models). A bare state_dict is refused: it holds weights without an architecture.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file {path} not found (working directory {Path.cwd()}).")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; give a .py model file or a TorchScript file.")
    if path.suffix == ".py":
        return models_from_object(
            _object_from_python_file(path), default_name=path.stem, source=str(path)
        )
    return [ModelUnderTest(name=path.stem, module=_load_torchscript(path), source=str(path))]


def models_from_object(obj: Any, default_name: str, source: str) -> list[ModelUnderTest]:
    """Turn what a factory, a ``model`` variable or a ``safety_model`` fixture gave into models."""
    if isinstance(obj, dict):
        if not obj:
            raise ModelLoadError(f"{source} gave an empty dict of models.")
        models = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ModelLoadError(
                    f"{source} gave a dict with the non-string key {key!r}; name "
                    "models with strings."
                )
            models.append(_single_model(value, name=key, source=f"{source}[{key!r}]"))
        return models
    name = getattr(obj, "name", None)
    return [_single_model(obj, name=name if isinstance(name, str) else default_name, source=source)]


def _single_model(obj: Any, name: str, source: str) -> ModelUnderTest:
    if isinstance(obj, (list, tuple)):
        for index, member in enumerate(obj):
            if not isinstance(member, nn.Module):
                raise ModelLoadError(
                    f"{source}: ensemble member {index} is a {type(member).__name__}, not a "
                    "torch.nn.Module."
                )
        obj = Ensemble(list(obj))
    if not isinstance(obj, nn.Module):
        hint = (
            " (call it: give the module, not its class)"
            if isinstance(obj, type) or callable(obj)
            else ""
        )
        raise ModelLoadError(
            f"{source} gave a {type(obj).__name__}, not a torch.nn.Module{hint}; give a module, a "
            "list of modules (an ensemble) or a dict name -> module."
        )
    if not _NAME_PATTERN.fullmatch(name):
        raise ModelLoadError(
            f"model name {name!r} from {source} cannot be used in test ids; use letters, digits, "
            "'_', '-' and '.'."
        )
    return ModelUnderTest(name=name, module=obj, source=source)


def _object_from_python_file(path: Path) -> Any:
    module_name = (
        f"safetycheck_model_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_"
        f"{abs(hash(str(path.resolve())))}"
    )
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path} cannot be imported as a Python module.")
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)
    # The file's own folder goes on sys.path, so that it can import its neighbours the way it would
    # when run as a script.
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        sys.modules[module_name] = module
        try:
            loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ModelLoadError(
                f"importing model file {path} raised {type(exc).__name__}: {exc}"
            ) from exc
        for factory_name in FACTORY_NAMES:
            factory = getattr(module, factory_name, None)
            if factory is not None:
                if not callable(factory):
                    raise ModelLoadError(
                        f"{path}: {factory_name} must be a function that returns the model."
                    )
                try:
                    return factory()
                except Exception as exc:
                    raise ModelLoadError(
                        f"{path}: {factory_name}() raised {type(exc).__name__}: {exc}"
                    ) from exc
        if hasattr(module, "model"):
            return module.model
    finally:
        if added:
            sys.path.remove(folder)
    raise ModelLoadError(
        f"{path} defines none of safety_model(), build_model() or a module-level `model`; "
        "add a function safety_model() that returns the model (a torch.nn.Module "
        f"taking {CONTRACT})."
    )


def _load_torchscript(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            # torch 2.9+ marks TorchScript deprecated, but users still ship models in it.
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as script_error:
        detail = _describe_non_torchscript(path)
        raise ModelLoadError(f"{path} is not a TorchScript file: {detail}") from script_error


def _describe_non_torchscript(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        try:
            head = path.read_bytes()[:2]
        except OSError as exc:
            return f"it cannot be read ({exc})."
        if head == b"\x80\x02" or head[:1] == b"\x80":
            return (
                "it is a legacy pickle file; save the model with torch.jit.save, or provide a .py "
                "factory."
            )
        return (
            "it is neither a .py file nor a file written by torch.jit.save; provide a .py file "
            "with safety_model()."
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return (
            "it looks like a whole module pickled with torch.save, which cannot be loaded safely; "
            "save it with torch.jit.save, or provide a .py file whose safety_model() builds the "
            "model and loads the weights."
        )
    if (
        isinstance(content, dict)
        and content
        and all(isinstance(v, torch.Tensor) for v in content.values())
    ):
        return (
            f"it is a bare state_dict ({len(content)} tensors, no architecture); provide a .py "
            "file whose safety_model() builds the model and loads these weights with "
            "load_state_dict."
        )
    return (
        f"it holds a {type(content).__name__}; provide a .py file with safety_model() or a "
        "TorchScript file."
    )


# ---------------------------------------------------------------------------------------------
# Device and evaluation mode


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; CUDA only when it is available."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"--safety-device {name!r} is not a device; use cpu, cuda or cuda:N."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--safety-device {name} asked for CUDA, but torch {torch.__version__} sees no GPU "
                "here; use cpu."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--safety-device {name}: only {torch.cuda.device_count()} CUDA "
                "device(s) are visible."
            )
    elif device.type != "cpu":
        raise ConfigError(f"--safety-device {name!r} is not supported; use cpu, cuda or cuda:N.")
    return device


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and freeze every parameter; restore both exactly on exit.

    Restores each submodule's own ``training`` flag (not just the top-level one), so a model that
    was partly in train mode comes back that way.
    """
    modes = [(module, module.training) for module in model.modules()]
    grads = [(param, param.requires_grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _ in grads:
            param.requires_grad_(False)
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in grads:
            param.requires_grad_(requires_grad)


def model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# The contract


def probe_batch(
    n: int = 8, seed: int = 0, shape: tuple[int, int, int] = INPUT_SHAPE
) -> torch.Tensor:
    """A fixed batch of valid inputs of ``shape`` (C, H, W): random pixels plus an all-black and
    an all-white image."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.rand((n, *shape), generator=generator)
    batch[0].zero_()
    batch[1].fill_(1.0)
    return batch


def check_contract(
    mut: ModelUnderTest,
    device: torch.device,
    allow_randomized: bool = False,
    profile: DatasetProfile = DEFAULT_PROFILE,
) -> None:
    """Raise :class:`ModelContractError` unless ``mut`` honours ``profile``'s contract (float32
    (N, C, H, W) in [0, 1] in, (N, K) logits out; MNIST's by default) on a probe batch.

    Checks, each with its own message: the call succeeds; the output is a tensor (not a tuple or
    dict) of floats with shape (N, K); all values are finite; rows are not probabilities; two
    identical calls in eval mode agree (else the model is randomised, refused unless
    ``allow_randomized``, in which case ``mut.randomized`` is set for the reports).
    """
    initialise_lazy_modules(mut.module, f"model {mut.name!r}", device, profile)
    members: Iterable[nn.Module] = mut.module.members if isinstance(mut.module, Ensemble) else []
    for index, member in enumerate(members):
        _check_outputs(member, f"model {mut.name!r} (ensemble member {index})", device, profile)
    first, second = _check_outputs(mut.module, f"model {mut.name!r}", device, profile)
    if not torch.allclose(first, second, rtol=1e-4, atol=1e-5):
        if not allow_randomized:
            difference = (first - second).abs().max().item()
            raise ModelContractError(
                f"model {mut.name!r} is randomised: two identical calls in eval mode differ by up "
                f"to {difference:.3g}. Plain attacks on a randomised model give misleading "
                "numbers; make it deterministic in eval mode (dropout, noise layers), or pass "
                "--safety-allow-randomized to evaluate it anyway (reports will say so)."
            )
        mut.randomized = True


def uninitialised_parameters(model: nn.Module) -> list[str]:
    """The names of the parameters and buffers a lazy module (``nn.LazyLinear``, ...) has not
    materialised yet."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, tensor in tensors if nn.parameter.is_lazy(tensor)]


def initialise_lazy_modules(
    model: nn.Module, label: str, device: torch.device, profile: DatasetProfile = DEFAULT_PROFILE
) -> None:
    """Materialise the parameters of lazy modules by one call on the probe batch, before anything
    reads a parameter; a model that still has uninitialised ones after it is refused.

    The call runs in eval mode without touching the parameters (eval mode's usual freezing of
    ``requires_grad`` would itself fail on an uninitialised parameter); modes are restored.
    """
    if not uninitialised_parameters(model):
        return
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            _call(model, probe_batch(shape=profile.input_shape).to(device), label, profile)
    finally:
        for module, training in modes:
            module.training = training
    left = uninitialised_parameters(model)
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        raise ModelContractError(
            f"{label} still has uninitialised lazy parameters after a call on a probe batch "
            f"({shown}); call the model once on a batch of the input shape inside its factory, "
            "or use modules with explicit sizes."
        )


def _check_outputs(
    model: nn.Module, label: str, device: torch.device, profile: DatasetProfile = DEFAULT_PROFILE
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = probe_batch(shape=profile.input_shape).to(device)
    with evaluation_mode(model), torch.no_grad():
        first = _call(model, batch, label, profile)
        _check_output_value(first, label, batch.shape[0], profile)
        second = _call(model, batch.clone(), label, profile)
    return first.float(), second.float()


def _call(
    model: nn.Module, batch: torch.Tensor, label: str, profile: DatasetProfile = DEFAULT_PROFILE
) -> Any:
    try:
        return model(batch)
    except Exception as exc:
        raise ModelContractError(
            f"{label} raised {type(exc).__name__} on a probe batch of shape {tuple(batch.shape)} "
            f"({batch.dtype}, {batch.device}, values in [0, 1]): {exc}. "
            f"The contract is {profile.contract}."
        ) from exc


def _check_output_value(
    output: Any, label: str, n: int, profile: DatasetProfile = DEFAULT_PROFILE
) -> None:
    k = profile.num_classes
    if isinstance(output, (tuple, list)):
        raise ModelContractError(
            f"{label} returns a {type(output).__name__} of {len(output)} items; return the logits "
            f"tensor (N, {k}) alone."
        )
    if isinstance(output, dict):
        raise ModelContractError(
            f"{label} returns a dict with keys {sorted(map(str, output))}; return the logits "
            f"tensor (N, {k}) alone."
        )
    if not isinstance(output, torch.Tensor):
        raise ModelContractError(
            f"{label} returns a {type(output).__name__}; return a logits tensor of shape (N, {k})."
        )
    if not output.is_floating_point():
        raise ModelContractError(
            f"{label} returns a {output.dtype} tensor; return float logits, not class indices."
        )
    if tuple(output.shape) != (n, k):
        classes = (
            ""
            if output.dim() != 2 or output.shape[0] != n
            else f" ({profile.title} has {k} classes; is this a model for another dataset?)"
        )
        raise ModelContractError(
            f"{label} returns shape {tuple(output.shape)} for a batch of {n}; expected "
            f"({n}, {k}) logits.{classes}"
        )
    finite = torch.isfinite(output)
    if not finite.all():
        bad_rows = int((~finite).any(dim=1).sum())
        raise ModelContractError(
            f"{label} returns non-finite values (NaN or inf) in {bad_rows} of {n} rows of a probe "
            "batch of valid images; fix the model before testing its safety."
        )
    values = output.float()
    if (values >= 0).all() and torch.allclose(
        values.sum(dim=1), torch.ones(n, device=values.device), atol=1e-4
    ):
        raise ModelContractError(
            f"{label} returns probabilities (non-negative rows summing to 1); return the logits "
            "from before the softmax. Attacks on softmax outputs have vanishing gradients and "
            "report false robustness."
        )
