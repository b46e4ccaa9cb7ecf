"""The ``certified`` family on real MNIST and the zoo: the certified lower bound never exceeds the
empirical upper bound (PGD, APGD) nor clean accuracy, no certified image is ever broken by an
attack (soundness), and what cannot be certified is skipped with its reason, never passed."""

import pytest
import torch

from safetycheck.checks import families
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.errors import SafetyCheckError
from safetycheck.core.registry import CheckSkipped
from safetycheck.io.models import ModelUnderTest
from safetycheck.measures.attacks import APGD, PGD
from safetycheck.measures.robustness import SweepResult

pytestmark = pytest.mark.real_data
EPSILONS = (0.05, 0.1)


@pytest.fixture(scope="module")
def ibp_model():
    from example_models.small_cnn import safety_model

    return safety_model()


def _evaluation(model, data_root, samples=200, epsilons=EPSILONS, name="m") -> ModelEvaluation:
    settings = RunSettings(attack_samples=samples, epsilons=epsilons, data_root=data_root)
    return ModelEvaluation(ModelUnderTest(name, model, "test"), settings)


def test_certified_lies_below_the_attacks_and_clean_accuracy(ibp_model, data_root):
    evaluation = _evaluation(ibp_model, data_root)
    registry = families()
    clean = float(evaluation.clean_correct[evaluation.attack_indices].float().mean())
    previous = {"ibp": 1.0, "crown": 1.0}
    for eps in EPSILONS:
        pgd = registry["pgd_linf"].measure(evaluation, {"eps": eps}).value
        for method in ("ibp", "crown"):
            certified = registry["certified"].measure(evaluation, {"method": method, "eps": eps})
            assert certified.n == 200 and f"certified by {method}" in certified.details
            assert certified.value <= pgd <= clean, (method, eps, certified.value, pgd, clean)
            assert certified.value <= previous[method]  # monotone in eps
            previous[method] = certified.value
    # The IBP-trained model is what the family is for: non-trivial certificates at eps 0.1.
    assert previous["ibp"] > 0.8


@pytest.mark.parametrize("method, eps, samples", [("ibp", 0.1, 300), ("crown", 0.1, 100)])
def test_no_certified_image_is_ever_broken(ibp_model, mnist_test, method, eps, samples):
    """Soundness on real images of the IBP-trained zoo model: PGD with restarts and APGD-CE and
    -DLR find nothing among the images the bounds certify."""
    from safetycheck.measures.certified import certify

    index = torch.randperm(10_000, generator=torch.Generator().manual_seed(7))[:samples]
    images, labels = mnist_test.images[index], mnist_test.labels[index]
    certified = certify(ibp_model, images, labels, eps, method=method).certified
    assert int(certified.sum()) > samples // 2
    images, labels = images[certified], labels[certified]
    for attack in (
        PGD(eps=eps, steps=40, restarts=2),
        APGD(eps=eps, loss="ce", steps=50),
        APGD(eps=eps, loss="dlr", steps=50),
    ):
        assert not bool(attack(ibp_model, images, labels).fooled.any()), attack


def test_lenet_certificates_at_a_tiny_radius_are_sound(lenet, mnist_test):
    """The undefended LeNet (max pooling) certifies by full CROWN only at tiny radii; those
    certificates hold against PGD too."""
    from safetycheck.measures.certified import certify

    images, labels = mnist_test.images[:12], mnist_test.labels[:12]
    result = certify(lenet, images, labels, 0.005, method="crown")
    assert result.method == "crown" and int(result.certified.sum()) >= 6
    chosen = result.certified
    attack = PGD(eps=0.005, steps=40, restarts=2)
    assert not bool(attack(lenet, images[chosen], labels[chosen]).fooled.any())


def test_an_unsupported_layer_is_a_skip_with_its_name(data_root):
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
    ).eval()
    evaluation = _evaluation(model, data_root, samples=20)
    with pytest.raises(CheckSkipped, match=r"not certifiable: 2 \(Tanh\)"):
        families()["certified"].measure(evaluation, {"method": "ibp", "eps": 0.05})


def test_a_randomised_model_is_not_certified(ibp_model, data_root):
    evaluation = _evaluation(ibp_model, data_root, samples=20)
    evaluation.mut.randomized = True
    with pytest.raises(CheckSkipped, match="not certifiable: the model is randomised"):
        families()["certified"].measure(evaluation, {"method": "crown", "eps": 0.05})


def test_a_certificate_that_an_attack_of_the_run_contradicts_is_an_error(ibp_model, data_root):
    """If an attack sweep of the same run broke a certified image, one of the two is wrong: the
    check says so instead of reporting either number."""
    evaluation = _evaluation(ibp_model, data_root, samples=20)
    n = len(evaluation.attack_indices)
    everything_broken = SweepResult(
        epsilons=[0.05],
        clean_correct=torch.ones(n, dtype=torch.bool),
        robust={0.05: torch.zeros(n, dtype=torch.bool)},
    )
    evaluation.sweep("bogus", lambda ev: everything_broken)
    with pytest.raises(SafetyCheckError, match="were broken by the bogus attacks"):
        families()["certified"].measure(evaluation, {"method": "ibp", "eps": 0.05})
