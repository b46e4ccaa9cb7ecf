"""Unit tests of the attacks: bad input, side effects on inputs and model, device, schedules."""

import pytest
import torch

from safetycheck.core.errors import ConfigError
from safetycheck.measures.attacks import APGD, FGSM, PGD, Square
from safetycheck.measures.attacks.apgd import checkpoints
from safetycheck.measures.attacks.base import loss_gradient
from safetycheck.measures.attacks.cascades import BUDGETS, CASCADES, cascade
from safetycheck.measures.attacks.square import margin, square_fraction

ATTACKS = {
    "fgsm": lambda: FGSM(0.1),
    "pgd_linf": lambda: PGD(0.1, steps=3, step_size=0.05),
    "pgd_l2": lambda: PGD(1.0, norm="L2", steps=3, step_size=0.5),
    "apgd_ce": lambda: APGD(0.1, steps=4),
    "apgd_dlr": lambda: APGD(0.1, loss="dlr", steps=4),
    "apgd_t": lambda: APGD(0.1, targeted=True, steps=3, n_target_classes=2),
    "square": lambda: Square(0.1, n_queries=10),
}


def _batch(n=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, 28, 28), generator=generator), torch.randint(
        0, 10, (n,), generator=generator
    )


@pytest.mark.parametrize(
    "make, parameter, valid_range",
    [
        (lambda: FGSM(-0.1), "eps=-0.1", "[0, 1.0]"),
        (lambda: FGSM(1.5), "eps=1.5", "[0, 1.0]"),
        (lambda: PGD(eps=float("nan")), "eps=nan", "[0, 1.0]"),
        (lambda: PGD(eps=30.0, norm="L2"), "eps=30.0", "[0, 28.0]"),
        (lambda: APGD(eps=2.0), "eps=2.0", "[0, 1.0]"),
        (lambda: Square(eps=-1.0), "eps=-1.0", "[0, 1.0]"),
        (lambda: PGD(0.1, steps=-1), "steps=-1", "1 or more"),
        (lambda: PGD(0.1, steps=0), "steps=0", "1 or more"),
        (lambda: APGD(0.1, steps=-5), "steps=-5", "1 or more"),
        (lambda: PGD(0.1, restarts=0), "restarts=0", "1 or more"),
        (lambda: APGD(0.1, restarts=-1), "restarts=-1", "1 or more"),
        (lambda: PGD(0.1, step_size=0.0), "step_size=0.0", "(0, 1.0]"),
        (lambda: PGD(0.1, norm="L1"), "'L1'", "Linf, L2"),
        (lambda: APGD(0.1, norm="linf"), "'linf'", "Linf, L2"),
        (lambda: APGD(0.1, loss="cw"), "'cw'", "ce, dlr"),
        (lambda: APGD(0.1, targeted=True, n_target_classes=10), "n_target_classes=10", "[1, 9]"),
        (lambda: Square(0.1, n_queries=0), "n_queries=0", "1 or more"),
        (lambda: Square(0.1, p_init=1.5), "p_init=1.5", "(0, 1]"),
        (lambda: cascade("pgd"), "'pgd'", "fgsm, pgd_linf, pgd_l2, fast_linf, apgd, autoattack"),
        (lambda: cascade("autoattack", budget="huge"), "'huge'", "standard, fast"),
    ],
)
def test_bad_parameters_raise_config_error_naming_parameter_and_range(make, parameter, valid_range):
    with pytest.raises(ConfigError) as error:
        make()
    assert parameter in str(error.value) and valid_range in str(error.value)


@pytest.mark.parametrize("kind", ATTACKS)
@pytest.mark.parametrize(
    "images, labels, expected",
    [
        (
            torch.rand(4, 1, 28, 28),
            torch.zeros(4, 1, dtype=torch.int64),
            "labels must be an int64 tensor of shape (4,)",
        ),
        (
            torch.rand(4, 1, 28, 28),
            torch.zeros(3, dtype=torch.int64),
            "labels must be an int64 tensor of shape (4,)",
        ),
        (torch.rand(4, 1, 28, 28), torch.zeros(4), "labels must be int64"),
        (torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 10]), "labels must lie in [0, 9]"),
        (torch.rand(4, 1, 28, 28), torch.tensor([0, -1, 2, 3]), "labels must lie in [0, 9]"),
        (
            torch.rand(4, 28, 28),
            torch.zeros(4, dtype=torch.int64),
            "images must be a float tensor (N, C, H, W)",
        ),
    ],
)
def test_bad_batches_raise_config_error(kind, images, labels, expected, tiny_model):
    with pytest.raises(ConfigError) as error:
        ATTACKS[kind]()(tiny_model, images, labels)
    assert expected in str(error.value)


@pytest.mark.parametrize("kind", ATTACKS)
def test_inputs_are_not_modified_and_model_state_is_restored(kind):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 26 * 26, 10),
    )
    model.train()
    model[1].eval()  # a mixed state must come back exactly as it was
    model[0].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = _batch()
    images_copy, labels_copy = images.clone(), labels.clone()
    result = ATTACKS[kind]()(model, images, labels)
    assert torch.equal(images, images_copy) and torch.equal(labels, labels_copy)
    assert result.adversarial.data_ptr() != images.data_ptr()
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients computed
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), (
            f"{key} changed: the attack ran batch norm in train mode"
        )
    assert result.forward_passes >= len(labels)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ATTACKS)
def test_outputs_follow_the_model_device_whatever_the_input_device(kind, device, tiny_model):
    model = tiny_model.to(device)
    images, labels = _batch()  # on the CPU
    result = ATTACKS[kind]()(model, images, labels)
    assert result.adversarial.device.type == device and result.fooled.device.type == device


@pytest.mark.parametrize("kind", ATTACKS)
def test_empty_batch_gives_empty_result(kind, tiny_model):
    result = ATTACKS[kind]()(
        tiny_model, torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.int64)
    )
    assert result.adversarial.shape == (0, 1, 28, 28) and result.fooled.shape == (0,)


def test_fgsm_takes_one_signed_step_of_size_eps():
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    images = torch.full((3, 1, 28, 28), 0.5)
    labels = torch.tensor([0, 1, 2])
    result = FGSM(0.1)(linear, images, labels)
    x = images.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(linear(x), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    expected = images + 0.1 * grad.sign()
    stepped = ~result.fooled | (linear(images).argmax(1) == labels)
    torch.testing.assert_close(result.adversarial[stepped], expected[stepped])


def test_apgd_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), times 100 iterations.
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert checkpoints(1) == []


def test_square_schedule_shrinks_from_p_init():
    assert square_fraction(0.8, 0, 10000) == 0.8
    assert square_fraction(0.8, 30, 10000) == 0.4
    assert square_fraction(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert square_fraction(0.8, 50, 100) == pytest.approx(
        0.8 / 128
    )  # rescaled: query 5000 of 10 000


def test_margin_is_negative_exactly_where_misclassified():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(2))
    assert torch.equal(margin(logits, labels) < 0, logits.argmax(1) != labels)


def test_a_non_differentiable_model_gets_a_zero_gradient_not_an_autograd_error():
    class Thresholded(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot((x > 0.5).flatten(1).sum(1).long() % 10, 10).float()

    images, labels = _batch()
    logits, loss, grad = loss_gradient(
        Thresholded(),
        images,
        labels,
        lambda z, y: torch.nn.functional.cross_entropy(z, y, reduction="none"),
    )
    assert torch.equal(grad, torch.zeros_like(images)) and loss.shape == (5,)
    result = PGD(0.1, steps=2)(Thresholded(), images, labels)  # runs, finds nothing by gradient
    assert result.adversarial.shape == images.shape


def test_every_cascade_builds_attacks_cheapest_first():
    for name in CASCADES:
        for budget in BUDGETS:
            pairs = cascade(name, seed=3, budget=budget)
            names = [attack_name for attack_name, _ in pairs]
            assert len(names) == len(set(names)) and names
            attacks = [factory(0.5 if name == "pgd_l2" else 0.1) for _, factory in pairs]
            assert all(callable(attack) and attack.describe() for attack in attacks)
    assert [n for n, _ in cascade("autoattack")] == ["apgd_ce", "apgd_t", "square"]
    assert [n for n, _ in cascade("pgd_linf")] == ["fgsm", "pgd_linf"]
    standard = [f(0.1) for _, f in cascade("autoattack")]
    assert (
        standard[0].steps == 100
        and standard[1].n_target_classes == 9
        and standard[2].n_queries == 5000
    )


@pytest.fixture
def attack_families():
    import safetycheck.checks.attacks as module

    return module


def test_attack_families_register_variants(attack_families):
    from safetycheck.checks import families
    from safetycheck.checks.evaluation import RunSettings

    settings = RunSettings(epsilons=(0.3, 0.1))
    for name in ("fgsm", "apgd", "autoattack"):
        assert [v["eps"] for v in families()[name].variants(settings)] == [0.1, 0.3]
    assert [v["eps"] for v in families()["pgd_l2"].variants(settings)] == list(
        attack_families.PGD_L2_EPSILONS
    )


@pytest.mark.real_data
def test_fgsm_family_measures_once_per_model_on_real_mnist(
    attack_families, lenet, data_root, monkeypatch
):
    import safetycheck.checks.adversarial as adversarial
    from safetycheck.checks import families
    from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
    from safetycheck.io.models import ModelUnderTest

    evaluation = ModelEvaluation(
        ModelUnderTest("lenet", lenet, "test"),
        RunSettings(attack_samples=40, epsilons=(0.1, 0.3), data_root=data_root),
    )
    calls = []
    sweep = adversarial.robust_accuracy_sweep
    monkeypatch.setattr(
        adversarial, "robust_accuracy_sweep", lambda *a, **k: calls.append(1) or sweep(*a, **k)
    )
    low = families()["fgsm"].measure(evaluation, {"eps": 0.1})
    high = families()["fgsm"].measure(evaluation, {"eps": 0.3})
    assert low.n == high.n == 40 and 0.0 <= high.value <= low.value <= 1.0
    assert "FGSM-Linf eps=0.1" in low.details and "fgsm broke" in low.details
    assert len(calls) == 1  # one sweep, shared by both checks
    with pytest.raises(ConfigError, match="not measured at eps=0.2"):
        families()["fgsm"].measure(evaluation, {"eps": 0.2})
