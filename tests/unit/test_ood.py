"""OOD detection: metric known answers and scikit-learn agreement, scores, feature extraction
(with and without ``features()``, ensembles, no feature layer), image-set validation, the
``ood_auroc`` family, and the example LeNet on real Fashion-MNIST and KMNIST."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

import safetycheck.checks.ood  # noqa: F401  (registers ood_auroc)
from safetycheck.checks import check_id, families
from safetycheck.core.errors import ConfigError, DataError
from safetycheck.core.registry import CheckSkipped
from safetycheck.io.data import LabelledImages, load_split
from safetycheck.io.models import Ensemble
from safetycheck.measures.ood import (
    IN_DISTRIBUTION,
    ModelOOD,
    OODSet,
    OODSettings,
    as_ood_images,
    load_ood_set,
    load_user_set,
)
from safetycheck.measures.ood_metrics import (
    auroc,
    auroc_bootstrap,
    auroc_confidence_interval,
    fpr_at_tpr,
    ood_metrics,
    operating_point,
    roc_curve_data,
    weighted_auroc,
)
from safetycheck.measures.ood_scores import (
    KNN,
    Mahalanobis,
    ViM,
    energy,
    max_logit,
    member_outputs,
    model_outputs,
    msp,
    odin,
)

# ---------------------------------------------------------------------------------------------
# Metrics


def test_perfectly_separated_scores_give_auroc_one_and_zero_fpr():
    inside, outside = np.array([5.0, 6.0, 7.0, 8.0]), np.array([1.0, 2.0, 3.0])
    m = ood_metrics(inside, outside, n_resamples=50)
    assert m.auroc == 1.0 and m.aupr_in == 1.0 and m.aupr_out == 1.0
    assert m.fpr_at_95_tpr == 0.0
    assert m.auroc_ci == (1.0, 1.0)


def test_identical_scores_give_auroc_one_half():
    assert auroc(np.full(50, 3.0), np.full(70, 3.0)) == 0.5


def test_sign_flip_gives_one_minus_auroc():
    rng = np.random.default_rng(1)
    inside, outside = (
        rng.normal(1.0, 1.0, 300).round(1),
        rng.normal(0.0, 1.0, 200).round(1),
    )  # with ties
    value = auroc(inside, outside)
    assert 0.6 < value < 0.9
    assert auroc(-inside, -outside) == pytest.approx(1.0 - value, abs=1e-12)


def test_raw_scores_are_never_squashed():
    # Energies far from 0: a sigmoid would map them all to 1.0 and give AUROC 0.5.
    inside, outside = np.array([-1000.0, -1001.0, -1002.0]), np.array([-1003.0, -1004.0])
    assert auroc(inside, outside) == 1.0
    assert auroc(np.array([5e4, 5e4 + 1]), np.array([5e4 - 1])) == 1.0


@settings(max_examples=25, derandomize=True, deadline=None)
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    st.lists(st.integers(-5, 5), min_size=1, max_size=40),
)
def test_metrics_agree_with_scikit_learn(inside, outside):
    inside, outside = np.array(inside, float), np.array(outside, float)
    labels, scores = np.r_[np.ones(inside.size), np.zeros(outside.size)], np.r_[inside, outside]
    m = ood_metrics(inside, outside, n_resamples=20)
    assert m.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m.aupr_in == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert m.aupr_out == pytest.approx(average_precision_score(1 - labels, -scores), abs=1e-12)
    # FPR95 from its definition: the highest threshold keeping >= 95% of in-distribution inputs.
    threshold = max(t for t in np.unique(inside) if (inside >= t).mean() >= 0.95)
    assert m.fpr_at_95_tpr == pytest.approx((outside >= threshold).mean(), abs=1e-12)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=60),
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.9, 0.95, 1.0]),
)
def test_the_operating_point_is_a_detector_that_runs_at_it(inside, outside, tpr):
    """The threshold is what a deployment applies (accept a score >= it): it keeps at least
    ``tpr`` of the in-distribution inputs, no higher threshold does, and the FPR is exactly the
    share of OOD inputs it accepts; all equal to scikit-learn's roc_curve vertex within 1e-6."""
    from sklearn.metrics import roc_curve

    inside, outside = np.array(inside), np.array(outside)
    point = operating_point(inside, outside, tpr)
    assert (inside >= point.threshold).mean() == pytest.approx(point.tpr, abs=1e-12)
    assert point.tpr >= tpr - 1e-12
    assert (outside >= point.threshold).mean() == pytest.approx(point.fpr, abs=1e-12)
    assert all((inside >= t).mean() < tpr for t in np.unique(inside) if t > point.threshold)
    labels = np.r_[np.ones(inside.size), np.zeros(outside.size)]
    fprs, tprs, thresholds = roc_curve(labels, np.r_[inside, outside], drop_intermediate=False)
    first = int(np.argmax(tprs >= tpr))
    assert abs(point.fpr - fprs[first]) <= 1e-6 and abs(point.threshold - thresholds[first]) <= 1e-6


def test_fpr_at_95_tpr_on_a_constructed_example():
    inside = np.arange(1.0, 21.0)  # keeping 19 of 20 (95%) puts the threshold at 2
    outside = np.array([0.5, 1.5, 2.0, 2.5, 10.0])  # 2.0, 2.5 and 10 pass it
    assert fpr_at_tpr(inside, outside) == pytest.approx(3 / 5)
    assert fpr_at_tpr(inside, outside, tpr=1.0) == pytest.approx(
        4 / 5
    )  # threshold 1 lets 1.5 in too


def test_bootstrap_resample_auroc_is_exact():
    rng = np.random.default_rng(2)
    inside, outside = rng.normal(1, 1, 30).round(1), rng.normal(0, 1, 25).round(1)
    w, v = rng.integers(0, 4, (3, 30)), rng.integers(0, 4, (3, 25))
    got = weighted_auroc(inside, outside, w, v)
    for b in range(3):
        expected = roc_auc_score(
            np.r_[np.ones(30), np.zeros(25)],
            np.r_[inside, outside],
            sample_weight=np.r_[w[b], v[b]],
        )
        assert got[b] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(3)
    inside, outside = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    low, high = auroc_confidence_interval(inside, outside, n_resamples=300, seed=7)
    assert (low, high) == auroc_confidence_interval(inside, outside, n_resamples=300, seed=7)
    assert low < auroc(inside, outside) < high
    # The normal-theory standard error of AUROC (Hanley & McNeil 1982) is about 0.017 here.
    assert 0.03 < high - low < 0.1
    assert np.std(auroc_bootstrap(inside, outside, 300, seed=7)) == pytest.approx(0.017, rel=0.35)


def test_roc_curve_data_is_json_serialisable_and_downsampled():
    rng = np.random.default_rng(4)
    inside, outside = rng.normal(2, 1, 5000), rng.normal(0, 1, 5000)
    curve = roc_curve_data(inside, outside, max_points=200)
    json.dumps(curve)
    assert 2 < len(curve["fpr"]) == len(curve["tpr"]) <= 200
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0) and (
        curve["fpr"][-1],
        curve["tpr"][-1],
    ) == (1.0, 1.0)
    assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(curve["auroc"], abs=0.005)


@pytest.mark.parametrize(
    "inside, outside, error, words",
    [
        ([], [1.0], DataError, "in-distribution scores are empty"),
        ([1.0], np.array([]), DataError, "out-of-distribution scores are empty"),
        ([1.0, float("nan")], [0.0], DataError, "non-finite"),
        (np.ones((2, 2)), [0.0], ConfigError, "1-D"),
        (["a"], [0.0], ConfigError, "real numbers"),
    ],
)
def test_bad_scores_are_clear_errors(inside, outside, error, words):
    with pytest.raises(error, match=words):
        ood_metrics(inside, outside)


# ---------------------------------------------------------------------------------------------
# Scores


def test_logit_scores_known_values():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-50.0, -60.0]])
    assert msp(logits).tolist() == pytest.approx(
        [0.5, 1 / (1 + math.exp(-10)), 1 / (1 + math.exp(-10))]
    )
    assert max_logit(logits).tolist() == [0.0, 10.0, -50.0]
    assert energy(logits).tolist() == pytest.approx(
        [math.log(2), 10 + math.log1p(math.exp(-10)), -50 + math.log1p(math.exp(-10))]
    )
    assert energy(logits, temperature=2.0)[0].item() == pytest.approx(2 * math.log(2))
    with pytest.raises(ConfigError, match="temperature"):
        energy(logits, temperature=0.0)
    with pytest.raises(ConfigError, match=r"\(N, C\)"):
        msp(torch.zeros(3))


def test_mahalanobis_knn_vim_rank_a_far_point_below_training_points():
    generator = torch.Generator().manual_seed(0)
    means = torch.eye(10, 16) * 6
    labels = torch.arange(10).repeat(40)
    train = means[labels] + torch.randn(400, 16, generator=generator)
    near, far = means[:5] + 0.1, means[:5] + 30 * torch.randn(5, 16, generator=generator)
    maha = Mahalanobis.fit(train, labels)
    assert (maha.score(near).min() > maha.score(far).max()).item()
    assert maha.score(means[:1]).item() == pytest.approx(
        -((means[0] - maha.means[0]) @ maha.precision @ (means[0] - maha.means[0])).item()
    )
    knn = KNN.fit(train, k=5)
    assert (knn.score(near).min() > knn.score(far).max()).item()
    weight, bias = torch.randn(10, 16, generator=generator), torch.zeros(10)
    vim = ViM.fit(train, train @ weight.T, weight, bias)
    assert vim.principal_dim == 8 and vim.residual_basis.shape == (16, 8)
    assert vim.score(near, near @ weight.T).mean() > vim.score(far, far @ weight.T).mean()
    with pytest.raises(ConfigError, match="KNN k"):
        KNN.fit(train[:3], k=5)


class WithFeatures(nn.Module):
    """features() gives the head's input; a Dropout that eval mode must switch off."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 32),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(32, 12),
            nn.ReLU(),
        )
        self.head = nn.Linear(12, 10)

    def features(self, x):
        return self.trunk(x)

    def forward(self, x):
        return self.head(self.features(x))


class TrunkNamedFeatures(nn.Module):
    """Like torchvision's VGG: ``features`` is a conv trunk submodule, not the penultimate layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.ReLU())
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * 12 * 12, 20), nn.ReLU(), nn.Linear(20, 10)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class NoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 10, 28)

    def forward(self, x):
        return self.conv(x).flatten(1)


class ScaledHead(WithFeatures):
    def forward(self, x):
        return 2.0 * self.head(self.features(x))


def _images(n, seed=0):
    return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


def test_features_come_from_the_features_method_in_eval_mode():
    model = WithFeatures().train()
    images = _images(30)
    out = member_outputs(model, images, batch_size=7)
    assert model.training and model.trunk[3].training  # modes restored
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out.features, model.features(images), atol=1e-6)
        assert torch.allclose(out.logits, model(images), atol=1e-6)
    assert out.feature_source == "features()" and out.features.shape == (30, 12)
    weight, bias = out.head
    assert torch.allclose(out.features.double() @ weight.T + bias, out.logits.double(), atol=1e-5)


def test_features_come_from_the_last_linear_input_without_a_features_method(tiny_model):
    images = _images(20)
    out = member_outputs(tiny_model, images, batch_size=8)
    with torch.no_grad():
        expected = tiny_model[:3](images)
    assert torch.allclose(out.features, expected, atol=1e-6) and out.features.shape == (
        20,
        4 * 12 * 12,
    )
    assert out.feature_source == "input of nn.Linear '3'"
    assert torch.equal(out.head[0], tiny_model[3].weight.double())


def test_a_features_submodule_is_not_mistaken_for_penultimate_features():
    out = member_outputs(TrunkNamedFeatures(), _images(10))
    assert (
        out.features.shape == (10, 20) and out.feature_source == "input of nn.Linear 'classifier.3'"
    )


def test_a_head_that_is_not_the_plain_last_linear_has_no_vim_head():
    out = member_outputs(ScaledHead(), _images(10))
    assert (
        out.features is not None
        and out.head is None
        and "not the output of its last nn.Linear" in out.head_missing
    )


def _synthetic_ood(model, scores, **extra):
    """A ModelOOD on synthetic sets: no real data needed."""
    generator = torch.Generator().manual_seed(5)
    train = LabelledImages(
        _images(200, seed=1), torch.randint(0, 10, (200,), generator=generator), "synthetic"
    )
    sets = {
        IN_DISTRIBUTION: OODSet(IN_DISTRIBUTION, _images(60, seed=2), "in"),
        "other": OODSet("other", _images(40, seed=3) * 0.2, "out"),
    }
    settings = OODSettings(
        sets=("uniform",), scores=scores, knn_k=5, knn_bank=100, bootstrap=20, **extra
    )
    return ModelOOD(model, settings, train=train, image_sets=sets)


def test_a_model_without_a_feature_layer_skips_feature_scores_with_a_reason():
    ood = _synthetic_ood(NoLinear(), ("msp", "mahalanobis", "knn", "vim"))
    for score in ("mahalanobis", "knn", "vim"):
        result = ood.result("other", score)
        assert (
            result.metrics is None
            and "neither a features(x) method nor an nn.Linear" in result.skipped
        )
    assert ood.result("other", "msp").metrics is not None
    skipped_vim = _synthetic_ood(ScaledHead(), ("vim", "mahalanobis"))
    assert "ViM needs the linear classification head" in skipped_vim.result("other", "vim").skipped
    assert skipped_vim.result("other", "mahalanobis").metrics is not None


def test_ensemble_scores_average_the_members():
    members = [WithFeatures(), TrunkNamedFeatures()]
    ensemble = Ensemble(members).eval()
    images = _images(25)
    logits, outs = model_outputs(ensemble, images, batch_size=10)
    with torch.no_grad():
        assert torch.allclose(logits, ensemble(images), atol=1e-5)
    scores = ("msp", "energy", "max_logit", "mahalanobis", "knn", "vim")
    ensemble_ood = _synthetic_ood(ensemble, scores)
    singles = [_synthetic_ood(member, scores) for member in members]
    for score in scores[1:]:
        expected = torch.stack([s.scores("other", score).values for s in singles]).mean(dim=0)
        assert torch.allclose(ensemble_ood.scores("other", score).values, expected, atol=1e-6), (
            score
        )
    # MSP is that of the averaged probabilities, the ensemble's own prediction.
    with torch.no_grad():
        expected_msp = F.softmax(
            ensemble(ensemble_ood.images("other").images).double(), dim=1
        ).amax(dim=1)
    assert torch.allclose(ensemble_ood.scores("other", "msp").values, expected_msp, atol=1e-6)


def test_odin_without_perturbation_is_tempered_msp_and_restores_modes():
    model = WithFeatures().train()
    images = _images(12)
    scores = odin(model, images, temperature=1000.0, epsilon=0.0)
    assert model.training
    model.eval()
    with torch.no_grad():
        assert torch.allclose(scores, msp(model(images) / 1000.0), atol=1e-9)
    assert (
        odin(model, images, temperature=1000.0, epsilon=0.01) >= scores - 1e-12
    ).all()  # the step raises MSP
    with pytest.raises(ConfigError, match="epsilon"):
        odin(model, images, epsilon=-1.0)


# ---------------------------------------------------------------------------------------------
# Image sets and settings


def test_user_arrays_are_validated():
    assert torch.equal(
        as_ood_images(np.full((2, 28, 28), 255, np.uint8), "x"), torch.ones(2, 1, 28, 28)
    )
    assert as_ood_images(np.zeros((3, 1, 28, 28), np.float64), "x").dtype == torch.float32
    cases = [
        (np.zeros((2, 32, 32), np.uint8), "shape \\(2, 32, 32\\)"),
        (np.zeros((2, 28, 28, 1), np.uint8), "channels last"),
        (np.zeros((28, 28), np.uint8), "add a leading batch axis"),
        (np.zeros((0, 28, 28), np.uint8), "no images"),
        (np.full((2, 28, 28), 200.0), "divide by 255"),
        (np.full((2, 28, 28), -0.5), "must lie in \\[0, 1\\]"),
        (np.zeros((2, 28, 28), np.int64), "int64"),
        (np.full((2, 28, 28), np.nan), "NaN"),
    ]
    for array, words in cases:
        with pytest.raises(DataError, match=words):
            as_ood_images(array, "my.npy")


def test_user_sets_from_folders_and_npy_files(tmp_path):
    from PIL import Image

    folder = tmp_path / "letters"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((28, 28), 40 * index, np.uint8), mode="L").save(
            folder / f"{index}.png"
        )
    (folder / "README.txt").write_text("not an image")
    images = load_user_set(folder)
    assert images.shape == (3, 1, 28, 28) and images[2].max().item() == pytest.approx(80 / 255)
    np.save(tmp_path / "set.npy", np.random.default_rng(0).random((4, 28, 28)))
    assert load_user_set(tmp_path / "set.npy").shape == (4, 1, 28, 28)
    ood = load_ood_set("letters", OODSettings(sets=(), user_sets=(("letters", str(folder)),)))
    assert ood.images.shape[0] == 3 and "user set" in ood.description

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "big.png")
    with pytest.raises(DataError, match="big.png is 32x32 pixels"):
        load_user_set(folder)
    (folder / "big.png").unlink()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(
        folder / "colour.png"
    )
    with pytest.raises(DataError, match="colour.png is a RGB image"):
        load_user_set(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no PNG or JPEG"):
        load_user_set(empty)
    with pytest.raises(DataError, match="not found"):
        load_user_set(tmp_path / "missing")
    (tmp_path / "set.csv").write_text("1,2")
    with pytest.raises(DataError, match="neither a folder"):
        load_user_set(tmp_path / "set.csv")


def test_noise_sets_are_seeded_and_valid():
    settings = OODSettings(noise_samples=50)
    for name in ("uniform", "gaussian"):
        first, again = load_ood_set(name, settings, seed=3), load_ood_set(name, settings, seed=3)
        assert torch.equal(first.images, again.images) and first.images.shape == (50, 1, 28, 28)
        assert 0.0 <= first.images.min() and first.images.max() <= 1.0
        assert not torch.equal(first.images, load_ood_set(name, settings, seed=4).images)
    assert (
        load_ood_set("gaussian", settings).images == 1.0
    ).float().mean() > 0.2  # N(0.5, 1) clipped


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown OOD score 'softmax'; choose one of msp"):
        OODSettings(scores=("softmax",))
    with pytest.raises(ConfigError, match="unknown OOD set 'cifar'"):
        OODSettings(sets=("cifar",))
    with pytest.raises(ConfigError, match="is taken or unusable"):
        OODSettings(user_sets=(("fmnist", "x.npy"),))
    with pytest.raises(ConfigError, match="knn_k"):
        OODSettings(knn_k=0)
    with pytest.raises(ConfigError, match="unknown OOD score"):
        _synthetic_ood(NoLinear(), ("msp",)).result("other", "entropy")


def test_the_family_is_registered_with_set_and_score_params():
    from safetycheck.checks import ood as family_module
    from safetycheck.checks.evaluation import RunSettings

    family = families()["ood_auroc"]
    assert family.bound == "min" and family.param_names == ("set", "score")
    ids = [check_id(family.name, params) for params in family.variants(RunSettings())]
    assert "ood_auroc[fmnist-msp]" in ids and "ood_auroc[kmnist-energy]" in ids
    from safetycheck.gate.thresholds import parse_check_key

    assert parse_check_key("ood_auroc[kmnist-energy]", "t.toml", "k") == (
        "ood_auroc",
        "ood_auroc[kmnist-energy]",
    )
    with pytest.raises(ConfigError, match="did you mean 'energy'"):
        parse_check_key("ood_auroc[kmnist-enrgy]", "t.toml", "k")
    assert len(ids) == len(family_module.ood_settings(RunSettings()).all_sets) * 6


# ---------------------------------------------------------------------------------------------
# The example LeNet on real data


@pytest.fixture(scope="module")
def lenet_ood(lenet, mnist_test, data_root):
    """The LeNet's OOD work on seeded subsets (1500 per set, detectors fitted on 3000)."""
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:1500]
    sets = {IN_DISTRIBUTION: OODSet(IN_DISTRIBUTION, mnist_test.images[order], "MNIST test subset")}
    for name, dataset in (("fmnist", "fashion_mnist"), ("kmnist", "kmnist")):
        sets[name] = OODSet(
            name, load_split(dataset, "test", root=data_root).images[order], f"{dataset} subset"
        )
    settings = OODSettings(fit_samples=3000, knn_bank=3000, bootstrap=200)
    return ModelOOD(lenet, settings, root=data_root, image_sets=sets)


@pytest.mark.parametrize("set_name", ["fmnist", "kmnist"])
def test_lenet_detects_fashion_mnist_and_kmnist(lenet_ood, set_name):
    results = {
        score: lenet_ood.result(set_name, score)
        for score in ("msp", "max_logit", "energy", "mahalanobis", "vim", "knn")
    }
    for score, result in results.items():
        m = result.metrics
        assert result.skipped is None, score
        assert m.auroc_ci[0] <= m.auroc <= m.auroc_ci[1] and m.n_in == m.n_out == 1500
        assert m.auroc > 0.75, (score, m)  # full-set values are 0.88 (ViM, fmnist) to 0.999
        assert 0.0 <= m.fpr_at_95_tpr <= 1.0 and 0.5 < m.aupr_in <= 1.0 and 0.5 < m.aupr_out <= 1.0
    msp_metrics = results["msp"].metrics
    assert (
        msp_metrics.auroc > 0.93
        and msp_metrics.auroc_ci[0] > 0.9
        and msp_metrics.fpr_at_95_tpr < 0.4
    )
    assert results["energy"].metrics.auroc > 0.93 and results["knn"].metrics.auroc > 0.93
    json.dumps(lenet_ood.report())


@pytest.mark.parametrize("set_name", ["fmnist", "kmnist"])
def test_fpr95_on_real_sets_is_scikit_learns_roc_curve_at_95_tpr(lenet_ood, set_name):
    """On every real OOD set and every score: FPR95 and its threshold are the first vertex of
    scikit-learn's ROC curve with TPR >= 0.95, within 1e-6."""
    from sklearn.metrics import roc_curve

    for score in ("msp", "max_logit", "energy", "mahalanobis", "vim", "knn"):
        inside = lenet_ood.scores(IN_DISTRIBUTION, score).values.numpy()
        outside = lenet_ood.scores(set_name, score).values.numpy()
        m = lenet_ood.result(set_name, score).metrics
        labels = np.r_[np.ones(inside.size), np.zeros(outside.size)]
        fprs, tprs, thresholds = roc_curve(labels, np.r_[inside, outside], drop_intermediate=False)
        first = int(np.argmax(tprs >= 0.95))
        assert abs(m.fpr_at_95_tpr - fprs[first]) <= 1e-6, score
        assert abs(m.threshold_at_95_tpr - thresholds[first]) <= 1e-6, score


def test_the_family_measures_lenet_through_a_shared_evaluation(
    lenet, mnist_test, data_root, monkeypatch
):
    from safetycheck.checks import ood as family_module
    from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
    from safetycheck.io.models import ModelUnderTest

    small = OODSettings(
        sets=("uniform",),
        scores=("msp", "knn"),
        fit_samples=1000,
        knn_bank=1000,
        noise_samples=500,
        bootstrap=100,
    )
    monkeypatch.setattr(family_module, "ood_settings", lambda settings: small)
    evaluation = ModelEvaluation(
        ModelUnderTest("lenet", lenet, "test"), RunSettings(data_root=data_root)
    )
    evaluation.__dict__["test_set"] = LabelledImages(
        mnist_test.images[:1000], mnist_test.labels[:1000], "mnist-test"
    )
    family = families()["ood_auroc"]
    assert [p for p in family.variants(evaluation.settings)] == [
        {"set": "uniform", "score": "msp"},
        {"set": "uniform", "score": "knn"},
    ]
    measurement = family.measure(evaluation, {"set": "uniform", "score": "msp"})
    assert (
        measurement.value > 0.9
        and measurement.n == 1500
        and "FPR at 95% TPR" in measurement.details
    )
    assert family_module.model_ood(evaluation) is family_module.model_ood(
        evaluation
    )  # one per model
    assert family.measure(evaluation, {"set": "uniform", "score": "knn"}).value > 0.6

    no_features = ModelEvaluation(
        ModelUnderTest("conv", NoLinear(), "test"), RunSettings(data_root=data_root)
    )
    no_features.__dict__["test_set"] = evaluation.test_set
    with pytest.raises(CheckSkipped, match="knn skipped: the model has neither"):
        family.measure(no_features, {"set": "uniform", "score": "knn"})
