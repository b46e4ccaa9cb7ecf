"""Agreement of our FAB-T with torchattacks' ``FAB(multi_targeted=True)`` on real MNIST, on the
example LeNet and on the PGD-trained zoo model ``pgd_at_0.3``.

With one restart FAB draws no random numbers (restart 0 starts at the clean point), so the two
implementations run the same deterministic algorithm on the same images: they can only part ways
where rounding tips a near-tie (a projection landing exactly on a kink, two logits equal), or where
ours is stronger by construction (it also checks the point after each backward step). Their robust
accuracies are not two samples of a random attack, and there is no sampling noise to allow for:
the tolerance is one point, 3 of the 300 images, and it bounds the images on which the two
verdicts differ, which bounds the accuracy gap too.

The budget: AutoAttack's standard FAB-T (100 steps, the 9 most likely wrong classes) costs up to
a second per robust image on a CPU core, for each implementation: minutes per case. On the CPU
the test runs the same algorithm on 15 steps and the 2 most likely wrong classes; where a GPU is
available, the standard budget. Measured at the standard budget on one (shared) CPU core, on these
300 images (robust accuracy ours / torchattacks, ms per image ours / torchattacks), the verdicts
differing on 0 images in every case:

    LeNet        Linf 0.1   0.7600 / 0.7600     832 / 1053
    LeNet        Linf 0.2   0.0200 / 0.0200      36 /  189
    pgd_at_0.3   Linf 0.1   0.9367 / 0.9367    1065 / 1113
    pgd_at_0.3   Linf 0.3   0.7767 / 0.7767     641 /  999
    LeNet        L2   1.5   0.4567 / 0.4567     395 /  607

Ours is the cheaper for leaving the batch at its first in-ball success, where torchattacks finishes
every step of a target run. The figures at the test's budget are printed with ``-s``.
"""

import copy
import time

import pytest
import torch

from safetycheck.measures.attacks import FAB

torchattacks = pytest.importorskip("torchattacks")

pytestmark = pytest.mark.real_data
N = 300
TOLERANCE = 3  # images on which the verdicts may differ: one point of 300
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (steps, target classes): AutoAttack's standard budget on a GPU, a CPU-sized one elsewhere.
STEPS, TARGETS = (100, 9) if DEVICE == "cuda" else (15, 2)


@pytest.fixture(scope="module")
def batch(mnist_test):
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(mnist_test.labels), generator=generator)[:N]
    return mnist_test.images[index].to(DEVICE), mnist_test.labels[index].to(DEVICE)


@pytest.fixture(scope="module")
def models(lenet):
    from example_models.zoo import load

    # A copy: the session's LeNet stays on the CPU for the other tests.
    return {"lenet": copy.deepcopy(lenet).to(DEVICE), "pgd_at_0.3": load("pgd_at_0.3").to(DEVICE)}


def _ours(model, images, labels, norm, eps):
    start = time.perf_counter()
    result = FAB(eps, norm=norm, steps=STEPS, n_target_classes=TARGETS, seed=0)(
        model, images, labels
    )
    return result, time.perf_counter() - start


def _reference(model, images, labels, norm, eps):
    attack = torchattacks.FAB(
        model,
        norm=norm,
        eps=eps,
        steps=STEPS,
        n_restarts=1,
        multi_targeted=True,
        n_classes=TARGETS + 1,  # torchattacks attacks the n_classes - 1 most likely wrong ones
        seed=0,
    )
    start = time.perf_counter()
    adversarial = attack(images, labels)
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        robust = model(adversarial).argmax(dim=1) == labels
    return robust, elapsed


def _distance(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "Linf" else flat.norm(dim=1)


@pytest.mark.parametrize(
    "model_name, norm, eps",
    [
        ("lenet", "Linf", 0.1),
        # LeNet is undefended: at 0.3 nothing survives, 0.2 still leaves a few percent.
        ("lenet", "Linf", 0.2),
        ("pgd_at_0.3", "Linf", 0.1),
        ("pgd_at_0.3", "Linf", 0.3),
        ("lenet", "L2", 1.5),
    ],
)
def test_fab_t_agrees_with_torchattacks(models, batch, model_name, norm, eps):
    model, (images, labels) = models[model_name], batch
    result, ours_seconds = _ours(model, images, labels, norm, eps)
    reference_robust, reference_seconds = _reference(model, images, labels, norm, eps)
    ours_robust = ~result.fooled
    ours, reference = float(ours_robust.float().mean()), float(reference_robust.float().mean())
    differing = int((ours_robust != reference_robust).sum())
    print(
        f"FAB-T-{norm} eps={eps:g} on {model_name} ({STEPS} steps, {TARGETS} targets, n={N}, "
        f"{DEVICE}): robust accuracy ours {ours:.4f}, torchattacks {reference:.4f}, "
        f"{differing} images differ; ms per image: ours {1000 * ours_seconds / N:.1f}, "
        f"torchattacks {1000 * reference_seconds / N:.1f}"
    )

    distance = _distance(result.adversarial - images, norm)
    assert float(distance.max()) <= eps + 1e-6, f"a point left the ball: {float(distance.max())}"
    assert float(result.adversarial.min()) >= 0 and float(result.adversarial.max()) <= 1
    with torch.no_grad():
        misclassified = model(result.adversarial).argmax(dim=1) != labels
    assert bool(misclassified[result.fooled].all()), "a sample reported fooled is classified right"
    assert 0.01 < reference < 0.99, f"eps={eps} does not discriminate on {model_name}"
    assert differing <= TOLERANCE, (
        f"the verdicts differ on {differing} of {N} images: ours {ours:.4f}, "
        f"torchattacks {reference:.4f}"
    )
    assert ours <= reference + TOLERANCE / N, (
        f"our FAB-T leaves {ours:.4f} robust, torchattacks' {reference:.4f}"
    )
