"""Model loading and the input/output contract: every bad input gets its own message."""

import math
import warnings

import pytest
import torch
from torch import nn

from safetycheck.core.errors import ConfigError, ModelContractError, ModelLoadError
from safetycheck.io.models import (
    Ensemble,
    ModelUnderTest,
    check_contract,
    evaluation_mode,
    load_model_file,
    resolve_device,
)

CPU = torch.device("cpu")
TINY = """
import torch
from torch import nn

def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
"""


def write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(TINY + body)
    return path


class Wrap(nn.Module):
    """A tiny model whose output is passed through ``post``."""

    def __init__(self, post):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.post = post

    def forward(self, x):
        return self.post(self.net(x))


def contract_error(module) -> str:
    with pytest.raises(ModelContractError) as info:
        check_contract(ModelUnderTest("m", module, "test"), CPU)
    return str(info.value)


@pytest.mark.parametrize("factory", ["safety_model", "build_model"])
def test_factories_are_found(tmp_path, factory):
    path = write(tmp_path, "mine.py", f"def {factory}():\n    return tiny()\n")
    [model] = load_model_file(path)
    assert model.name == "mine" and isinstance(model.module, nn.Sequential)


def test_module_level_model_and_name_attribute(tmp_path):
    path = write(tmp_path, "file_stem.py", "model = tiny()\nmodel.name = 'custom'\n")
    [model] = load_model_file(path)
    assert model.name == "custom"


def test_list_is_an_ensemble_and_dict_gives_named_models(tmp_path):
    path = write(
        tmp_path,
        "zoo.py",
        "def safety_model():\n    return {'a': tiny(), 'pair': [tiny(), tiny()]}\n",
    )
    models = load_model_file(path)
    assert [m.name for m in models] == ["a", "pair"]
    assert isinstance(models[1].module, Ensemble) and len(models[1].module.members) == 2


def test_ensemble_logits_are_log_of_mean_probabilities():
    torch.manual_seed(1)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(784, 10)) for _ in range(3)]
    x = torch.rand(5, 1, 28, 28)
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0).log()
    assert torch.allclose(Ensemble(members)(x), expected, atol=1e-6)


def test_ensemble_stays_finite_where_probabilities_underflow():
    class Extreme(nn.Module):
        def forward(self, x):
            return torch.tensor([[1000.0] + [-1000.0] * 9]).repeat(len(x), 1)

    logits = Ensemble([Extreme(), Extreme()])(torch.rand(2, 1, 28, 28))
    assert torch.isfinite(logits).all()


def test_torchscript_file_loads(tmp_path):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # TorchScript is deprecated, yet still shipped
        torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))), str(path))
    [model] = load_model_file(path)
    assert model.name == "scripted"
    check_contract(model, CPU)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "not found"),
        ("state_dict", "bare state_dict"),
        ("pickled_module", "pickled with torch.save"),
        ("text", "neither a .py file nor a file written by torch.jit.save"),
        ("no_factory", "defines none of safety_model(), build_model() or a module-level `model`"),
        ("import_error", "importing model file"),
        ("factory_raises", "safety_model() raised ValueError: broken"),
        ("class_not_instance", "call it: give the module, not its class"),
        ("bad_name", "cannot be used in test ids"),
    ],
)
def test_bad_model_files_are_refused_with_a_specific_message(tmp_path, case, expected):
    path = tmp_path / f"{case}.pt"
    if case == "state_dict":
        torch.save(nn.Linear(784, 10).state_dict(), path)
    elif case == "pickled_module":
        torch.save(nn.Linear(784, 10), path)
    elif case == "text":
        path.write_text("hello")
    elif case == "no_factory":
        path = write(tmp_path, "nothing.py", "x = 1\n")
    elif case == "import_error":
        path = write(tmp_path, "broken.py", "import does_not_exist_anywhere\n")
    elif case == "factory_raises":
        path = write(tmp_path, "raises.py", "def safety_model():\n    raise ValueError('broken')\n")
    elif case == "class_not_instance":
        path = write(tmp_path, "klass.py", "model = nn.Linear\n")
    elif case == "bad_name":
        path = write(tmp_path, "named.py", "model = tiny()\nmodel.name = 'has space'\n")
    with pytest.raises(ModelLoadError, match=".*") as info:
        load_model_file(path)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "post, expected",
    [
        (lambda z: z.softmax(1), "returns probabilities"),
        (lambda z: z * float("nan"), "non-finite values (NaN or inf) in 8 of 8 rows"),
        (lambda z: z[:, :5], "returns shape (8, 5) for a batch of 8; expected (8, 10) logits"),
        (lambda z: (z, z), "returns a tuple of 2 items; return the logits tensor (N, 10) alone"),
        (lambda z: {"logits": z}, "returns a dict with keys ['logits']"),
        (lambda z: z.argmax(1), "returns a torch.int64 tensor"),
        (lambda z: z.numpy(), "returns a ndarray"),
    ],
)
def test_contract_violations_each_get_their_message(post, expected):
    assert expected in contract_error(Wrap(post))


def test_a_model_that_raises_names_the_probe_batch():
    message = contract_error(nn.Linear(3, 10))
    assert "raised RuntimeError on a probe batch of shape (8, 1, 28, 28)" in message
    assert "float32 images (N, 1, 28, 28) in [0, 1] in, logits (N, 10) out" in message


def test_log_probabilities_are_valid_logits():
    check_contract(ModelUnderTest("m", Wrap(lambda z: z.log_softmax(1)), "test"), CPU)


def test_ensemble_member_returning_probabilities_is_named():
    ensemble = Ensemble([Wrap(lambda z: z), Wrap(lambda z: z.softmax(1))])
    assert "ensemble member 1" in contract_error(ensemble)


class Noisy(nn.Module):
    """Dropout that stays on in eval mode: the classic randomised model."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        return nn.functional.dropout(self.net(x), 0.5, training=True)


def test_randomised_model_refused_unless_allowed():
    assert "is randomised" in contract_error(
        Noisy()
    ) and "--safety-allow-randomized" in contract_error(Noisy())
    model = ModelUnderTest("noisy", Noisy(), "test")
    check_contract(model, CPU, allow_randomized=True)
    assert model.randomized


def test_evaluation_mode_restores_every_submodule_mode_and_requires_grad():
    model = nn.Sequential(
        nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2))
    )
    model.train()
    model[2].eval()  # a model that is partly in eval mode must come back that way
    model[0].weight.requires_grad_(False)
    before_modes = [m.training for m in model.modules()]
    before_grads = [p.requires_grad for p in model.parameters()]
    with evaluation_mode(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert [m.training for m in model.modules()] == before_modes
    assert [p.requires_grad for p in model.parameters()] == before_grads


def test_check_contract_leaves_the_model_as_it_was():
    model = Wrap(lambda z: z).train()
    check_contract(ModelUnderTest("m", model, "test"), CPU)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_devices():
    assert resolve_device("cpu") == CPU
    with pytest.raises(ConfigError, match="not a device|not supported"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no GPU here"):
            resolve_device("cuda")


def test_trained_example_model_honours_the_contract(lenet):
    check_contract(ModelUnderTest("lenet", lenet, "example"), CPU)
    with torch.no_grad():
        assert not math.isnan(float(lenet(torch.zeros(1, 1, 28, 28)).sum()))


def test_lazy_modules_are_initialised_by_the_probe():
    """A model built with lazy modules gets its parameters from one probe call (no
    INTERNALERROR on "uninitialized parameter"), in whatever mode it came, and then honours the
    contract."""
    model = nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(10)).train()
    check_contract(ModelUnderTest("lazy", model, "test"), CPU)
    assert model[1].weight.shape == (16, 784) and model[3].weight.shape == (10, 16)
    assert model.training
    with evaluation_mode(model):  # the parameters can now be frozen and restored
        assert not model[1].weight.requires_grad


class _NeverCalledLazy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.spare = nn.LazyLinear(4)  # never reached by forward: stays uninitialised

    def forward(self, x):
        return self.used(x)


def test_a_model_left_with_uninitialised_parameters_is_refused_in_one_line():
    message = contract_error(_NeverCalledLazy())
    assert "uninitialised lazy parameters" in message and "spare.weight" in message
    assert "\n" not in message
