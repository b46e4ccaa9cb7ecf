"""Attack acceleration (bf16/fp16 autocast, channels_last, torch.compile): off by default, clear
errors when a model cannot run under it, and a generated check that fails when it weakens the
attacks."""

import pytest
import torch
from torch import nn

from safetycheck.checks import plan_checks
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.errors import ConfigError
from safetycheck.gate.thresholds import SafetyConfig
from safetycheck.io.models import ModelUnderTest, load_model_file
from safetycheck.measures.acceleration import Acceleration, accelerate
from safetycheck.run.runner import run_check
from safetycheck.run.settings import Options, build_settings

CPU = torch.device("cpu")


def trained_lenet() -> nn.Module:
    return load_model_file("example_models/lenet.py")[0].module.eval()


class BinarisesUnderAutocast(nn.Module):
    """The trained LeNet, except that under autocast it binarises its input first: its gradients
    vanish exactly when the attack runs accelerated, the failure the check exists for."""

    def __init__(self):
        super().__init__()
        self.inner = trained_lenet()

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):
            x = (x > 0.5).float()
        return self.inner(x)


class FailsUnderAutocast(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):
            raise RuntimeError("custom kernel has no bf16 implementation")
        return self.linear(x.flatten(1))


def test_no_acceleration_returns_the_model_itself():
    model = trained_lenet()
    assert accelerate(model, Acceleration(), CPU) is model
    assert not Acceleration().active and Acceleration().describe() == "fp32"


@pytest.mark.parametrize(
    "acceleration",
    [
        Acceleration("bf16"),
        Acceleration(channels_last=True),
        Acceleration("bf16", channels_last=True),
    ],
)
def test_accelerated_logits_are_fp32_and_close_to_plain(acceleration):
    model = trained_lenet()
    images = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(images)
        fast = accelerate(model, acceleration, CPU)(images)
    assert fast.dtype == torch.float32 and fast.shape == plain.shape
    # bf16 keeps 8 bits of mantissa: logits of size ~10-20 move by a few hundredths
    tolerance = 0.0 if acceleration.precision == "fp32" else 0.25
    assert (fast - plain).abs().max().item() <= tolerance + 1e-5


def test_unknown_precision_is_a_usage_error_naming_the_option():
    with pytest.raises(ConfigError, match=r"--safety-precision 'bf8'.*fp32, bf16, fp16"):
        build_settings(Options(precision="bf8"), SafetyConfig())
    with pytest.raises(ConfigError, match="precision 'half'"):
        Acceleration("half")


def test_a_model_that_cannot_run_accelerated_fails_before_any_attack():
    with pytest.raises(
        ConfigError,
        match=r"bf16 autocast on cpu: RuntimeError: custom kernel.*Drop --safety-precision bf16",
    ):
        accelerate(FailsUnderAutocast(), Acceleration("bf16"), CPU)


def test_the_acceleration_check_is_planned_exactly_when_acceleration_is_on():
    plain = [p.id for p in plan_checks(RunSettings(checks=("pgd_linf",)))]
    fast = [
        p.id
        for p in plan_checks(RunSettings(checks=("pgd_linf",), acceleration=Acceleration("bf16")))
    ]
    assert "attack_acceleration" not in plain
    assert fast == ["attack_acceleration"] + plain
    assert "attack_acceleration" in [
        p.id for p in plan_checks(RunSettings(acceleration=Acceleration(compile=True)))
    ]


def _acceleration_record(model: nn.Module, data_root) -> dict:
    settings = RunSettings(
        samples=200,
        attack_samples=40,
        epsilons=(0.05, 0.1, 0.2),
        data_root=data_root,
        acceleration=Acceleration("bf16"),
    )
    evaluation = ModelEvaluation(ModelUnderTest("m", model, "test"), settings)
    return run_check(
        evaluation,
        [p for p in plan_checks(settings) if p.family.name == "attack_acceleration"][0],
        SafetyConfig(),
    ).record()


def test_bf16_attacks_on_the_example_model_are_as_strong_as_fp32(data_root):
    record = _acceleration_record(trained_lenet(), data_root)
    assert record["passed"], record
    assert (
        abs(record["value"]) <= 0.02
        and "eps=0.1" in record["details"]
        and "bf16 autocast" in record["details"]
    )


def test_an_acceleration_that_masks_gradients_fails_the_check(data_root):
    record = _acceleration_record(BinarisesUnderAutocast(), data_root)
    assert not record["passed"], record
    assert record["value"] > 0.1, record
    assert record["threshold"] == 0.02


def test_a_study_resumes_across_plain_runs_but_not_into_an_accelerated_one():
    from safetycheck.study.runner import settings_fingerprint

    ids = [p.id for p in plan_checks(RunSettings())]
    plain = settings_fingerprint(RunSettings(), ids, SafetyConfig())
    assert (
        settings_fingerprint(RunSettings(acceleration=Acceleration()), ids, SafetyConfig()) == plain
    )
    assert (
        settings_fingerprint(RunSettings(acceleration=Acceleration("bf16")), ids, SafetyConfig())
        != plain
    )
