"""Hypothesis property tests of the attack invariants, on small untrained models of several shapes.

Hypothesis draws the attack, eps, steps, batch size, seed and model; the profile is derandomised
with few examples so the file stays fast and gives the same verdict on every run. Labels are the
model's own predictions with one flipped, so that most samples are clean-correct (an untrained
model is right 10% of the time on real labels) and the clean-misclassified path is exercised too.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safetycheck.measures.attacks import APGD, FAB, FGSM, PGD, Square
from safetycheck.measures.attacks.apgd import dlr_loss
from safetycheck.measures.attacks.cascades import cascade
from safetycheck.measures.attacks.fab import project_l2, project_linf
from safetycheck.measures.robustness import robust_accuracy_sweep

FAST = settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _conv():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 12 * 12, 10),
    )


def _mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
    )


def _conv_bn_pool():
    # Batch norm and dropout make eval mode matter; max pooling gives sparse gradients.
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(4),
        torch.nn.Dropout(0.5),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 6 * 6, 10),
    )


def _build(index: int) -> torch.nn.Module:
    torch.manual_seed(index)
    model = (_conv, _mlp, _conv_bn_pool)[index]()
    if index == 2:  # non-trivial running statistics, so train and eval mode differ
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


MODELS = [_build(i) for i in range(3)]


def _batch(model, n: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((n, 1, 28, 28), generator=generator)
    # Sparse, MNIST-like images: most pixels at exactly 0 or 1, so clipping to [0, 1] matters.
    images = torch.where(
        images < 0.6, torch.zeros_like(images), torch.where(images > 0.9, 1.0, images)
    )
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    labels[0] = (labels[0] + 1) % 10  # one clean-misclassified sample
    return images, labels


def _attack(kind: str, eps: float, steps: int, seed: int):
    return {
        "fgsm": lambda: FGSM(eps),
        "pgd_linf": lambda: PGD(
            eps, norm="Linf", steps=steps, step_size=max(eps / 2, 1e-3), seed=seed
        ),
        "pgd_l2": lambda: PGD(
            eps * 8, norm="L2", steps=steps, step_size=max(eps * 4, 1e-3), seed=seed, restarts=2
        ),
        "apgd_ce": lambda: APGD(eps, steps=steps * 3, seed=seed),
        "apgd_dlr_l2": lambda: APGD(eps * 8, norm="L2", loss="dlr", steps=steps * 3, seed=seed),
        "apgd_t": lambda: APGD(eps, targeted=True, n_target_classes=2, steps=steps * 2, seed=seed),
        "square": lambda: Square(eps, n_queries=steps * 8, seed=seed),
        "fab_t": lambda: FAB(eps, n_target_classes=2, steps=steps * 2, restarts=2, seed=seed),
        "fab_l2": lambda: FAB(
            eps * 8, norm="L2", targeted=False, steps=steps * 2, restarts=2, seed=seed
        ),
    }[kind]()


KINDS = [
    "fgsm",
    "pgd_linf",
    "pgd_l2",
    "apgd_ce",
    "apgd_dlr_l2",
    "apgd_t",
    "square",
    "fab_t",
    "fab_l2",
]
cases = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(KINDS),
        "model": st.integers(0, len(MODELS) - 1),
        "eps": st.floats(0.0, 0.25),
        "steps": st.integers(1, 4),
        "n": st.integers(1, 6),
        "seed": st.integers(0, 2**16),
    }
)


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(case=cases)
def test_perturbation_stays_in_the_ball_and_the_pixel_range(kind, case):
    model = MODELS[case["model"]]
    images, labels = _batch(model, case["n"], case["seed"])
    attack = _attack(kind, case["eps"], case["steps"], case["seed"])
    result = attack(model, images, labels)
    delta = (result.adversarial - images).flatten(1)
    if attack.norm == "Linf":
        assert float(delta.abs().max()) <= attack.eps + 1e-6
    else:
        assert float(delta.norm(dim=1).max()) <= attack.eps * (1 + 1e-5) + 1e-6
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    # A sample reported fooled comes with a point that is misclassified.
    with torch.no_grad():
        wrong = model(result.adversarial).argmax(dim=1) != labels
    assert torch.equal(wrong[result.fooled], torch.ones_like(wrong[result.fooled]))
    assert bool(result.fooled[0])  # the clean-misclassified sample counts as fooled


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(case=cases)
def test_eps_zero_returns_the_input(kind, case):
    model = MODELS[case["model"]]
    images, labels = _batch(model, case["n"], case["seed"])
    result = _attack(kind, 0.0, case["steps"], case["seed"])(model, images, labels)
    assert torch.equal(result.adversarial, images)
    with torch.no_grad():
        clean_wrong = model(images).argmax(dim=1) != labels
    assert torch.equal(result.fooled, clean_wrong)


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def _dlr(model, x, y):
    with torch.no_grad():
        return dlr_loss(model(x), y)


def _negative_margin(model, x, y):
    # FAB's survivors return their in-ball point of lowest margin z_y - max_{i != y} z_i.
    with torch.no_grad():
        logits = model(x)
    others = logits.scatter(1, y[:, None], -math.inf).amax(dim=1)
    return others - logits.gather(1, y[:, None]).squeeze(1)


@pytest.mark.parametrize(
    "kind,loss",
    [
        ("pgd_linf", _ce),
        ("pgd_l2", _ce),
        ("apgd_ce", _ce),
        ("apgd_dlr_l2", _dlr),
        ("fab_t", _negative_margin),
        ("fab_l2", _negative_margin),
    ],
)
@FAST
@given(case=cases)
def test_loss_at_the_returned_point_is_not_below_the_clean_loss(kind, loss, case):
    model = MODELS[case["model"]]
    images, labels = _batch(model, case["n"], case["seed"])
    result = _attack(kind, case["eps"], case["steps"], case["seed"])(model, images, labels)
    survivors = ~result.fooled
    clean, attacked = loss(model, images, labels), loss(model, result.adversarial, labels)
    assert torch.all(attacked[survivors] >= clean[survivors] - 1e-5)


@pytest.mark.parametrize(
    "kind", ["pgd_linf", "pgd_l2", "apgd_ce", "apgd_t", "square", "fab_t", "fab_l2"]
)
@FAST
@given(case=cases)
def test_same_seed_same_result_and_permuted_batch_permuted_result(kind, case):
    model = MODELS[case["model"]]
    images, labels = _batch(model, case["n"], case["seed"])
    attack = _attack(kind, case["eps"], case["steps"], case["seed"])
    first, second = attack(model, images, labels), attack(model, images, labels)
    assert torch.equal(first.adversarial, second.adversarial) and torch.equal(
        first.fooled, second.fooled
    )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(case["seed"]))
    permuted = attack(model, images[order], labels[order])
    assert torch.equal(permuted.fooled, first.fooled[order])
    torch.testing.assert_close(permuted.adversarial, first.adversarial[order], atol=1e-5, rtol=0)


def test_different_seeds_give_different_random_starts():
    model = MODELS[0]
    images, labels = _batch(model, 4, 0)
    a = PGD(0.1, steps=1, seed=1)(model, images, labels).adversarial
    b = PGD(0.1, steps=1, seed=2)(model, images, labels).adversarial
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name", ["pgd_linf", "autoattack"])
@settings(max_examples=4, derandomize=True, deadline=None, database=None)
@given(
    model_index=st.integers(0, len(MODELS) - 1),
    n=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    epsilons=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=4),
)
def test_robust_accuracy_is_at_most_clean_and_monotone_in_eps(name, model_index, n, seed, epsilons):
    model = MODELS[model_index]
    images, labels = _batch(model, n, seed)
    attacks = [
        (attack, lambda eps, f=factory: _shrunk(f(eps)))
        for attack, factory in cascade(name, seed=seed)
    ]
    sweep = robust_accuracy_sweep(model, images, labels, epsilons, attacks)
    # Counted exactly, as sweep.accuracy is (a float32 mean of 5/6 rounds below 5/6).
    clean = int(sweep.clean_correct.sum()) / sweep.n
    accuracies = [sweep.accuracy(eps) for eps in sweep.epsilons]
    assert all(a <= clean for a in accuracies)
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:], strict=False))
    for earlier, later in zip(sweep.epsilons, sweep.epsilons[1:], strict=False):
        assert not torch.any(sweep.robust[later] & ~sweep.robust[earlier])  # robust sets are nested


def _shrunk(attack):
    """The same attack with a tiny budget, to keep the property test fast."""
    from dataclasses import replace

    budget = (
        {"steps": 3}
        if isinstance(attack, (PGD, APGD))
        else {"n_queries": 10}
        if isinstance(attack, Square)
        else {}
    )
    if isinstance(attack, APGD) and attack.targeted:
        budget["n_target_classes"] = 2
    return replace(attack, **budget)


def test_dlr_loss_is_invariant_to_shifting_and_scaling_the_logits():
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 10
    targets = (labels + 3) % 10
    for scale, shift in ((2.0, 0.0), (0.5, 3.0), (7.0, -11.0)):
        torch.testing.assert_close(
            dlr_loss(scale * logits + shift, labels), dlr_loss(logits, labels)
        )
        torch.testing.assert_close(
            dlr_loss(scale * logits + shift, labels, targets), dlr_loss(logits, labels, targets)
        )
    assert math.isfinite(float(dlr_loss(logits, labels).sum()))


def _hyperplane_cases():
    """Sizes and a seed for hyperplane problems: N points in [0, 1]^D, a share ``faces`` of their
    coordinates at the box's faces, normals with a share ``zeros`` of zero entries."""
    return st.fixed_dictionaries(
        {
            "n": st.integers(1, 5),
            "d": st.integers(1, 40),
            "seed": st.integers(0, 2**16),
            "zeros": st.floats(0.0, 0.5),
            "faces": st.floats(0.0, 0.6),
        }
    )


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@FAST
@given(case=_hyperplane_cases())
def test_fab_projection_is_feasible_and_no_longer_than_a_known_feasible_step(norm, case):
    generator = torch.Generator().manual_seed(case["seed"])
    n, d = case["n"], case["d"]
    points = torch.rand(n, d, generator=generator, dtype=torch.float64)
    at_face = torch.rand(n, d, generator=generator, dtype=torch.float64) < case["faces"]
    points = torch.where(at_face, points.round(), points)
    normals = torch.randn(n, d, generator=generator, dtype=torch.float64)
    normals[torch.rand(n, d, generator=generator) < case["zeros"]] = 0.0
    target = torch.rand(n, d, generator=generator, dtype=torch.float64)  # a box point on it
    offsets = (normals * target).sum(dim=1)
    project = project_linf if norm == "Linf" else project_l2
    delta = project(points, normals, offsets)
    moved = points + delta
    assert float(moved.min()) >= 0.0 and float(moved.max()) <= 1.0
    scale = 1.0 + normals.abs().sum(dim=1)
    torch.testing.assert_close((normals * moved).sum(dim=1) / scale, offsets / scale)
    assert torch.all(delta[normals == 0] == 0), "a coordinate the hyperplane ignores moved"
    # Minimal: no longer than the step to the known point of the hyperplane in the box.
    size = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    known = target - points
    known_size = known.abs().amax(dim=1) if norm == "Linf" else known.norm(dim=1)
    assert torch.all(size <= known_size + 1e-9)
