"""Unit tests of the attacks: bad input, side effects on inputs and model, device, schedules."""

import pytest
import torch

from safetycheck.core.errors import ConfigError
from safetycheck.measures.attacks import APGD, FAB, FGSM, PGD, Square
from safetycheck.measures.attacks.apgd import checkpoints
from safetycheck.measures.attacks.base import loss_gradient
from safetycheck.measures.attacks.cascades import BUDGETS, CASCADES, cascade, threat_model
from safetycheck.measures.attacks.fab import project_l2, project_linf
from safetycheck.measures.attacks.square import margin, square_fraction

ATTACKS = {
    "fgsm": lambda: FGSM(0.1),
    "pgd_linf": lambda: PGD(0.1, steps=3, step_size=0.05),
    "pgd_l2": lambda: PGD(1.0, norm="L2", steps=3, step_size=0.5),
    "apgd_ce": lambda: APGD(0.1, steps=4),
    "apgd_dlr": lambda: APGD(0.1, loss="dlr", steps=4),
    "apgd_t": lambda: APGD(0.1, targeted=True, steps=3, n_target_classes=2),
    "square": lambda: Square(0.1, n_queries=10),
    "fab_t": lambda: FAB(0.1, steps=3, n_target_classes=2),
    "fab_l2": lambda: FAB(1.0, norm="L2", targeted=False, steps=3, restarts=2),
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
        (lambda: FAB(eps=1.5), "eps=1.5", "[0, 1.0] for the Linf norm"),  # an L2 radius
        (lambda: FAB(eps=30.0, norm="L2"), "eps=30.0", "[0, 28.0] for the L2 norm"),
        (lambda: FAB(eps=-0.1), "eps=-0.1", "[0, 1.0]"),
        (lambda: FAB(0.1, norm="L1"), "'L1'", "Linf, L2"),
        (lambda: FAB(0.1, steps=0), "steps=0", "1 or more"),
        (lambda: FAB(0.1, steps=2.5), "steps=2.5", "1 or more"),
        (lambda: FAB(0.1, restarts=0), "restarts=0", "1 or more"),
        (lambda: FAB(0.1, n_target_classes=0), "n_target_classes=0", "[1, 9]"),
        (lambda: FAB(0.1, n_target_classes=10), "n_target_classes=10", "[1, 9]"),
        (lambda: FAB(0.1, targeted="yes"), "targeted='yes'", "True (FAB-T) or False (FAB)"),
        (lambda: FAB(0.1, alpha_max=1.5), "alpha_max=1.5", "[0, 1]"),
        (lambda: FAB(0.1, alpha_max=True), "alpha_max=True", "[0, 1]"),
        (lambda: FAB(0.1, eta=0.9), "eta=0.9", "[1, inf)"),
        (lambda: FAB(0.1, eta=float("inf")), "eta=inf", "[1, inf)"),
        (lambda: FAB(0.1, beta=1.0), "beta=1.0", "(0, 1)"),
        (lambda: FAB(0.1, beta=0), "beta=0", "(0, 1)"),
        (lambda: Square(0.1, p_init=1.5), "p_init=1.5", "(0, 1]"),
        (
            lambda: cascade("pgd"),
            "'pgd'",
            "fgsm, pgd_linf, pgd_l2, fast_linf, apgd, apgd_fast, autoattack, autoattack_fast",
        ),
        (lambda: cascade("autoattack", seed=-1), "seed=-1", "non-negative"),
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
        pairs = cascade(name, seed=3)
        names = [attack_name for attack_name, _ in pairs]
        assert len(names) == len(set(names)) and names
        attacks = [factory(0.5 if name == "pgd_l2" else 0.1) for _, factory in pairs]
        assert all(callable(attack) and attack.describe() for attack in attacks)
    assert [n for n, _ in cascade("pgd_linf")] == ["fgsm", "pgd_linf"]


def test_autoattack_is_the_standard_protocol_and_the_fast_variant_has_its_own_name():
    """One meaning per name (Croce & Hein 2020's standard AutoAttack): APGD-CE 100 steps, APGD-T
    and FAB-T on 9 targets x 100 steps, Square 5000 queries; ``*_fast`` is the cheap budget."""
    for name in ("autoattack", "autoattack_fast"):
        assert [n for n, _ in cascade(name)] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    for name in ("apgd", "apgd_fast"):
        assert [n for n, _ in cascade(name)] == ["apgd_ce", "apgd_t"]
    apgd_ce, apgd_t, fab_t, square = [f(0.1) for _, f in cascade("autoattack")]
    assert apgd_ce.steps == 100 and not apgd_ce.targeted and apgd_ce.loss == "ce"
    assert apgd_t.steps == 100 and apgd_t.targeted and apgd_t.n_target_classes == 9
    assert fab_t.steps == 100 and fab_t.targeted and fab_t.n_target_classes == 9
    assert square.n_queries == 5000
    fast = [f(0.1) for _, f in cascade("autoattack_fast")]
    assert (fast[0].steps, fast[1].n_target_classes, fast[2].steps, fast[3].n_queries) == (
        50,
        3,
        50,
        250,
    )
    assert set(BUDGETS) == {"apgd", "apgd_fast", "autoattack", "autoattack_fast"}


def test_a_cascade_is_explicit_data_that_names_every_attack_and_its_budget():
    described = threat_model("autoattack", seed=2)
    assert described["norm"] == "Linf" and described["budget"]["square_queries"] == 5000
    assert [a["name"] for a in described["attacks"]] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert described["attacks"][2]["attack"] == "FAB" and described["attacks"][2]["steps"] == 100
    assert all(a["seed"] == 2 for a in described["attacks"] if "seed" in a)
    assert "eps" not in described["attacks"][0]
    assert threat_model("pgd_linf")["budget"] is None
    assert threat_model("autoattack") != threat_model("autoattack_fast")


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


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Module:
    """A linear classifier of flattened 28x28 images: (C, 784) weight, (C,) bias."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, weight.shape[0]))
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(bias)
    return model.eval()


def _random_linear_case():
    """A 10-class linear model and 3 grey images (pixels 0.5) of class 0 whose closest boundary is
    near enough that the box does not bind: the minimal distances are closed-form."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(10, 784, generator=generator) * 0.01
    images = torch.full((3, 1, 28, 28), 0.5)
    labels = torch.zeros(3, dtype=torch.int64)
    # Margins z_0 - z_k at the images, in units of the Linf distance each boundary should have.
    linf_distance = 0.04 + 0.2 * torch.rand(10, generator=generator)
    differences = weight[0] - weight  # (10, 784): grad of z_0 - z_k
    margins = linf_distance * differences.abs().sum(dim=1)
    bias = -(weight @ images[0].flatten()) - margins
    bias[0] = -(weight[0] @ images[0].flatten())
    return _linear(weight, bias), images, labels, differences[1:], margins[1:]


@pytest.mark.parametrize("targeted", [True, False])
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_fab_finds_the_closest_boundary_of_a_linear_model(norm, targeted):
    model, images, labels, differences, margins = _random_linear_case()
    dual = differences.abs().sum(dim=1) if norm == "Linf" else differences.norm(dim=1)
    distances = margins / dual  # to each boundary, without the box
    closest = float(distances.min())  # no point closer than this is misclassified
    # The closest boundary point stays inside the box (0.5 of room everywhere), so it is the
    # minimal distance with the box too.
    normal = differences[distances.argmin()]
    step = closest * (normal.sign() if norm == "Linf" else normal / normal.norm())
    assert float(step.abs().max()) < 0.5
    attack = FAB(closest * 1.02, norm=norm, targeted=targeted, steps=30)
    result = attack(model, images, labels)
    assert bool(result.fooled.all()), f"FAB missed the boundary at {closest:.5f} ({norm})"
    size = _size(result.adversarial - images, norm)
    assert float(size.min()) >= closest * (1 - 1e-4) and float(size.max()) <= attack.eps
    below = FAB(closest * 0.98, norm=norm, targeted=targeted, steps=30)(model, images, labels)
    assert not bool(below.fooled.any()), "FAB reported a point closer than the boundary"


@pytest.mark.parametrize("norm, closest", [("Linf", 0.1), ("L2", 0.1 * 392**0.5)])
def test_fab_finds_the_closest_boundary_where_the_pixel_box_binds(norm, closest):
    # f_1 - f_0 = sum of the pixels - c; half the pixels are at 1 and cannot grow, so only the 392
    # grey ones can move: at Linf distance d they add 392 d, at L2 distance d, sqrt(392) d. Without
    # the box the boundary would be closer (Linf 0.05, L2 1.4): the projections must respect it.
    images = torch.full((2, 1, 28, 28), 0.5)
    images.view(2, -1)[:, :392] = 1.0
    gap = 392 * 0.1  # sum the grey pixels must gain: Linf 0.1 each, or L2 0.1 * sqrt(392)
    weight = torch.stack([torch.zeros(784), torch.ones(784)])
    bias = torch.tensor([0.0, -(392 * 1.0 + 392 * 0.5) - gap])
    model = _linear(weight, bias)
    labels = torch.zeros(2, dtype=torch.int64)
    result = FAB(closest * 1.02, norm=norm, steps=30)(model, images, labels)
    assert bool(result.fooled.all())
    size = _size(result.adversarial - images, norm)
    assert float(size.min()) >= closest * (1 - 1e-4)
    assert not bool(FAB(closest * 0.98, norm=norm, steps=30)(model, images, labels).fooled.any())


def test_fab_t_attacks_only_the_wrong_classes_a_small_model_has():
    # 3 classes: z_0 = 0, z_1 = sum of the first 392 pixels - 394, z_2 = sum of the last 392 - 199.
    # At the image (first half at 1, second at 0.5) z = (0, -2, -3): class 1 is the most likely
    # wrong class but its pixels cannot grow, so only class 2 (rank 2, at Linf distance 3 / 392)
    # can be reached. n_target_classes=1 misses it; 2 and 9 (more than the model's 2 wrong
    # classes) find it.
    weight = torch.zeros(3, 784)
    weight[1, :392], weight[2, 392:] = 1.0, 1.0
    model = _linear(weight, torch.tensor([0.0, -394.0, -199.0]))
    images = torch.full((1, 1, 28, 28), 0.5)
    images.view(1, -1)[:, :392] = 1.0
    labels = torch.zeros(1, dtype=torch.int64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), torch.tensor([[0.0, -2.0, -3.0]]))
    eps = 3.0 / 392 * 1.05
    assert not bool(FAB(eps, n_target_classes=1, steps=20)(model, images, labels).fooled.any())
    for n_targets in (2, 9):
        result = FAB(eps, n_target_classes=n_targets, steps=20)(model, images, labels)
        assert bool(result.fooled.all()), f"n_target_classes={n_targets} missed class 2"
        with torch.no_grad():
            assert model(result.adversarial).argmax(dim=1).tolist() == [2]


def test_fab_passes_count_each_evaluated_image_once():
    # Two wrong classes whose boundaries lie beyond the pixel box: nothing is ever fooled. The
    # clean pass, then per target (or restart) and image a gradient pass and a check per step.
    weight = torch.zeros(3, 784)
    weight[1:] = 1.0
    model = _linear(weight, torch.tensor([0.0, -1000.0, -1001.0]))
    images, labels = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64)
    result = FAB(0.1, steps=5)(model, images, labels)
    assert not bool(result.fooled.any())
    assert result.forward_passes == 4 + 2 * 4 * (2 * 5)
    untargeted = FAB(0.1, steps=5, targeted=False, restarts=3)(model, images, labels)
    assert untargeted.forward_passes == 4 + 3 * 4 * (2 * 5)


def _size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "Linf" else flat.norm(dim=1)


def test_fab_projections_on_a_worked_example():
    # Point (0.5, 0.9, 1.0), normal (2, 1, 1): the third coordinate is at the box's top and cannot
    # grow, the second has 0.1 of room.
    t = torch.tensor([[0.5, 0.9, 1.0]])
    w = torch.tensor([[2.0, 1.0, 1.0]])
    up = (w * t).sum(1) + 0.3  # the hyperplane 0.3 above the point along w
    # Linf: 2 min(l, 0.5) + min(l, 0.1) = 0.3 at l = 0.1.
    torch.testing.assert_close(project_linf(t, w, up), torch.tensor([[0.1, 0.1, 0.0]]))
    # L2: delta = clip(mu w): 4 min(mu, 0.25) + min(mu, 0.1) = 0.3 at mu = 0.06.
    torch.testing.assert_close(project_l2(t, w, up), torch.tensor([[0.12, 0.06, 0.0]]))
    # Below the point, every coordinate has room: the unconstrained projections.
    down = (w * t).sum(1) - 0.3
    torch.testing.assert_close(project_linf(t, w, down), torch.full((1, 3), -0.075))
    torch.testing.assert_close(project_l2(t, w, down), -0.3 * w / 6)
    # A hyperplane beyond the box: as far as the box allows towards it.
    far = (w * t).sum(1) + 10
    for project in (project_linf, project_l2):
        torch.testing.assert_close(project(t, w, far), torch.tensor([[0.5, 0.1, 0.0]]))


def test_fab_projections_match_scipy():
    optimize = pytest.importorskip("scipy.optimize")
    import numpy as np

    generator = torch.Generator().manual_seed(3)
    n, d = 12, 10
    t = torch.rand(n, d, generator=generator, dtype=torch.float64)
    t[t < 0.2], t[t > 0.9] = 0.0, 1.0  # pixels at the box's faces
    w = torch.randn(n, d, generator=generator, dtype=torch.float64)
    w[:, 0] = 0.0  # a coordinate the hyperplane ignores
    b = (w * torch.rand(n, d, generator=generator, dtype=torch.float64)).sum(1)  # meets the box
    linf, l2 = project_linf(t, w, b), project_l2(t, w, b)
    for i in range(n):
        ti, wi, gap = t[i].numpy(), w[i].numpy(), float(b[i] - w[i] @ t[i])
        box = [(-x, 1 - x) for x in ti]
        # Linf: min s over (delta, s) with -s <= delta_j <= s, w . delta = gap, the box.
        eye = np.eye(d)
        lp = optimize.linprog(
            np.r_[np.zeros(d), 1.0],
            A_ub=np.block([[eye, -np.ones((d, 1))], [-eye, -np.ones((d, 1))]]),
            b_ub=np.zeros(2 * d),
            A_eq=np.r_[wi, 0.0][None],
            b_eq=[gap],
            bounds=[*box, (0, None)],
        )
        assert float(linf[i].abs().max()) == pytest.approx(lp.fun, rel=1e-6, abs=1e-9)
        qp = optimize.minimize(
            lambda x: x @ x,
            np.zeros(d),
            jac=lambda x: 2 * x,
            constraints=[{"type": "eq", "fun": lambda x, wi=wi, gap=gap: wi @ x - gap}],
            bounds=box,
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 1000},
        )
        np.testing.assert_allclose(l2[i].numpy(), qp.x, atol=1e-6)
        for delta in (linf[i], l2[i]):
            assert float(w[i] @ delta) == pytest.approx(gap, abs=1e-9)
            assert float((t[i] + delta).min()) >= 0 and float((t[i] + delta).max()) <= 1
