"""Calibration metrics, bootstrap intervals, temperature scaling, reliability data and the
``calibration`` check family: agreement with torchmetrics, hand-computed answers, edge cases,
bad input, and the real trained LeNet-5 on the real MNIST test set."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.errors import ConfigError, DataError, ModelContractError
from safetycheck.measures import calibration as cal
from safetycheck.measures.calibration import (
    METRICS,
    bootstrap_interval,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
    rms_calibration_error,
)

torchmetrics_classification = pytest.importorskip("torchmetrics.classification")  # the dev extra

FAST = settings(
    max_examples=30, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NORMS = {
    "l1": expected_calibration_error,
    "l2": rms_calibration_error,
    "max": maximum_calibration_error,
}


def logits_for(probabilities) -> torch.Tensor:
    """Logits whose softmax is ``probabilities`` (rows summing to 1)."""
    return torch.log(torch.as_tensor(probabilities, dtype=torch.float64))


def random_problem(seed: int, count: int, classes: int, scale: float = 3.0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(count, classes, generator=generator) * scale
    labels = torch.randint(classes, (count,), generator=generator)
    return logits, labels


def distance_to_bin_edges(logits, n_bins: int) -> float:
    """How far the top softmax probabilities lie from every equal-width bin edge, 1.0 included."""
    confidence = torch.softmax(logits.double(), dim=1).amax(dim=1)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    return float((confidence[:, None] - edges[None, 1:]).abs().min())


def top_two_gap(logits) -> float:
    top = torch.as_tensor(logits).double().topk(2, dim=1).values
    return float((top[:, 0] - top[:, 1]).min())


def torchmetrics_error(logits, labels, n_bins: int, norm: str) -> float:
    # torchmetrics guesses logits vs probabilities from the value range (logits all inside [0, 1]
    # would be taken as probabilities), so it is given the probabilities themselves.
    metric = torchmetrics_classification.MulticlassCalibrationError(
        num_classes=logits.shape[1], n_bins=n_bins, norm=norm
    )
    return float(
        metric(torch.softmax(torch.as_tensor(logits).double(), dim=1), torch.as_tensor(labels))
    )


# --- agreement with torchmetrics ----------------------------------------------------------------


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize(
    "seed, count, classes, n_bins",
    [
        (0, 1000, 10, 15),
        (1, 2000, 10, 15),
        (2, 500, 3, 5),
        (3, 37, 2, 10),
        (4, 1, 10, 15),
        (5, 300, 10, 1),
    ],
)
def test_agrees_with_torchmetrics_on_random_logits(seed, count, classes, n_bins, norm):
    logits, labels = random_problem(seed, count, classes)
    # The two implementations bin identically only away from bin edges (float32 there, float64
    # here).
    assert distance_to_bin_edges(logits, n_bins) > 1e-6 and top_two_gap(logits) > 1e-4
    ours = NORMS[norm](logits, labels, n_bins=n_bins)
    assert ours == pytest.approx(torchmetrics_error(logits, labels, n_bins, norm), abs=1e-6)


@FAST
@given(
    data=st.data(), classes=st.integers(2, 10), count=st.integers(1, 60), n_bins=st.integers(1, 20)
)
def test_agrees_with_torchmetrics_on_drawn_inputs(data, classes, count, n_bins):
    # Distinct values in [-13, -1]: never mistaken for probabilities, top confidences below
    # 1 - 1e-5.
    drawn = data.draw(
        arrays(np.float32, (count, classes), elements=st.floats(-6, 6, width=32), unique=True)
    )
    logits = torch.from_numpy(drawn) - 7
    labels = torch.from_numpy(
        data.draw(arrays(np.int64, (count,), elements=st.integers(0, classes - 1)))
    )
    assume(distance_to_bin_edges(logits, n_bins) > 1e-6 and top_two_gap(logits) > 1e-4)
    for norm, ours in NORMS.items():
        assert ours(logits, labels, n_bins=n_bins) == pytest.approx(
            torchmetrics_error(logits, labels, n_bins, norm), abs=1e-6
        )


# --- binning edge cases -------------------------------------------------------------------------


def test_confidence_exactly_one_falls_in_the_last_bin_not_an_extra_one():
    # Sample 0: confidence exactly 1.0 (exp(-1000) underflows), wrong; sample 1: confidence 0.95,
    # right.
    logits = torch.tensor([[0.0, 1000.0], [math.log(19.0), 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    diagram = reliability_diagram(logits, labels, n_bins=15)
    assert len(diagram.count) == 15 and diagram.count[-1] == 2 and sum(diagram.count) == 2
    assert diagram.mean_confidence[-1] == pytest.approx(0.975) and diagram.accuracy[-1] == 0.5
    # One shared bin gives |0.5 - 0.975|; a separate bin for confidence 1.0 would give
    # (1 + 0.05) / 2.
    assert expected_calibration_error(logits, labels) == pytest.approx(0.475, abs=1e-12)
    assert maximum_calibration_error(logits, labels) == pytest.approx(0.475, abs=1e-12)


def test_equal_width_bins_place_zero_one_and_exact_edges():
    confidence = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.9999, 1.0], dtype=torch.float64)
    assert cal._equal_width_bins(confidence, 5).tolist() == [0, 0, 1, 2, 4, 4]
    assert cal._equal_width_bins(confidence, 1).tolist() == [0] * 6


def test_equal_mass_bins_hold_sizes_differing_by_at_most_one():
    confidence = torch.rand(103, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bins = cal._equal_mass_bins(confidence, 10)
    sizes = torch.bincount(bins, minlength=10)
    assert int(sizes.max() - sizes.min()) <= 1 and int(sizes.sum()) == 103
    order = confidence.argsort()
    assert bool(
        (bins[order].diff() >= 0).all()
    )  # bins are consecutive runs of the sorted confidences


def test_one_sample():
    logits = logits_for([[0.7, 0.2, 0.1]])
    for binning in ("equal_width", "equal_mass"):
        assert expected_calibration_error(logits, [0], binning=binning) == pytest.approx(0.3)
        assert rms_calibration_error(logits, [0], binning=binning) == pytest.approx(0.3)
        assert maximum_calibration_error(logits, [1], binning=binning) == pytest.approx(0.7)
    assert brier_score(logits, [0]) == pytest.approx(0.09 + 0.04 + 0.01)
    assert negative_log_likelihood(logits, [0]) == pytest.approx(-math.log(0.7))


def test_empty_bins_carry_no_weight_and_read_as_none():
    logits = logits_for([[0.55, 0.45], [0.56, 0.44], [0.95, 0.05]])
    labels = torch.tensor([0, 1, 0])
    diagram = reliability_diagram(logits, labels, n_bins=10)
    filled = [k for k, c in enumerate(diagram.count) if c]
    assert filled == [5, 9] and diagram.count[5] == 2
    assert all(
        diagram.accuracy[k] is None and diagram.mean_confidence[k] is None
        for k in range(10)
        if k not in filled
    )
    expected = (2 / 3) * abs(0.5 - 0.555) + (1 / 3) * abs(1 - 0.95)
    assert expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(expected)
    # More bins than samples: equal-mass bins leave some empty, each sample alone in its bin.
    assert expected_calibration_error(
        logits, labels, n_bins=10, binning="equal_mass"
    ) == pytest.approx((abs(1 - 0.55) + abs(0 - 0.56) + abs(1 - 0.95)) / 3)
    assert sum(c == 0 for c in reliability_diagram(logits, labels, 10, "equal_mass").count) == 7


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_all_correct_and_all_wrong(binning):
    logits, _ = random_problem(7, 400, 10)
    predicted = logits.argmax(dim=1)
    mean_confidence = float(torch.softmax(logits.double(), 1).amax(1).mean())
    # Every bin's accuracy is 1 (or 0), so the ECE telescopes to 1 - mean confidence (or to it).
    assert expected_calibration_error(logits, predicted, binning=binning) == pytest.approx(
        1 - mean_confidence
    )
    assert expected_calibration_error(
        logits, (predicted + 1) % 10, binning=binning
    ) == pytest.approx(mean_confidence)
    assert maximum_calibration_error(logits, (predicted + 1) % 10, binning=binning) <= 1.0


def calibrated_predictions(count: int, seed: int, classes: int = 10):
    """A perfectly calibrated predictor: the top class, at confidence c, is right with probability
    c."""
    generator = torch.Generator().manual_seed(seed)
    confidence = 1 / classes + (1 - 1 / classes) * torch.rand(
        count, generator=generator, dtype=torch.float64
    )
    predicted = torch.randint(classes, (count,), generator=generator)
    probabilities = ((1 - confidence) / (classes - 1))[:, None].repeat(1, classes)
    probabilities[torch.arange(count), predicted] = confidence
    right = torch.rand(count, generator=generator, dtype=torch.float64) < confidence
    other = (predicted + torch.randint(1, classes, (count,), generator=generator)) % classes
    return logits_for(probabilities), torch.where(right, predicted, other)


def test_perfectly_calibrated_predictor_ece_shrinks_with_the_sample():
    def mean_ece(count):
        return np.mean(
            [expected_calibration_error(*calibrated_predictions(count, seed)) for seed in range(5)]
        )

    small, medium, large = mean_ece(100), mean_ece(1000), mean_ece(20000)
    assert small > medium > large
    assert large < 0.015 and small > 3 * large  # the bias shrinks about as 1 / sqrt(N)


# --- Brier and NLL known answers, invariances ---------------------------------------------------


def test_brier_and_nll_known_answers():
    uniform = torch.zeros(4, 5)
    assert brier_score(uniform, [0, 1, 2, 3]) == pytest.approx(1 - 1 / 5)
    assert negative_log_likelihood(uniform, [0, 1, 2, 3]) == pytest.approx(math.log(5))
    certain = torch.tensor([[0.0, 1000.0]])
    assert brier_score(certain, [1]) == pytest.approx(0.0, abs=1e-12)
    assert negative_log_likelihood(certain, [1]) == pytest.approx(0.0, abs=1e-12)
    assert brier_score(certain, [0]) == pytest.approx(2.0)
    assert negative_log_likelihood(certain, [0]) == pytest.approx(
        1000.0
    )  # finite: log-softmax, not log(0)


@FAST
@given(
    data=st.data(), classes=st.integers(2, 6), count=st.integers(1, 30), shift=st.floats(-1e3, 10)
)
def test_metrics_ignore_a_constant_added_to_each_row(data, classes, count, shift):
    logits = (
        torch.from_numpy(
            data.draw(arrays(np.float64, (count, classes), elements=st.floats(-8, 8), unique=True))
        )
        - 20
    )
    labels = torch.from_numpy(
        data.draw(arrays(np.int64, (count,), elements=st.integers(0, classes - 1)))
    )
    assume(top_two_gap(logits) > 1e-6)  # a near-tie's arg-max may flip when the shift rounds
    for metric in (
        expected_calibration_error,
        rms_calibration_error,
        brier_score,
        negative_log_likelihood,
    ):
        assert metric(logits + shift, labels) == pytest.approx(metric(logits, labels), abs=1e-9)


def test_numpy_input_and_log_probabilities_give_the_same_values():
    logits, labels = random_problem(8, 200, 10)
    log_probabilities = torch.log_softmax(logits.double(), dim=1)
    for metric in (
        expected_calibration_error,
        maximum_calibration_error,
        brier_score,
        negative_log_likelihood,
    ):
        value = metric(logits, labels)
        assert metric(logits.numpy(), labels.numpy()) == pytest.approx(value, abs=1e-12)
        assert metric(log_probabilities, labels) == pytest.approx(value, abs=1e-12)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logits, labels, error, message",
    [
        (
            torch.softmax(torch.randn(5, 10), dim=1),
            torch.zeros(5, dtype=torch.long),
            ModelContractError,
            "look like probabilities",
        ),
        (
            torch.tensor([[0.0, float("nan")], [1.0, 0.0]]),
            torch.tensor([0, 1]),
            ModelContractError,
            "1 NaN and 0 infinite",
        ),
        (
            torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]),
            torch.tensor([0, 1]),
            ModelContractError,
            "first: row 1",
        ),
        (torch.randn(10), torch.zeros(10, dtype=torch.long), ModelContractError, "2-D float array"),
        (
            torch.ones(3, 10, dtype=torch.long),
            torch.zeros(3, dtype=torch.long),
            ModelContractError,
            "2-D float array",
        ),
        (torch.randn(0, 10), torch.zeros(0, dtype=torch.long), ModelContractError, "no sample"),
        (
            torch.randn(3, 1),
            torch.zeros(3, dtype=torch.long),
            ModelContractError,
            "fewer than 2 classes",
        ),
        (
            torch.randn(3, 10),
            torch.zeros(4, dtype=torch.long),
            ModelContractError,
            "3 rows but there are 4 labels",
        ),
        (torch.randn(3, 10), torch.zeros(3), DataError, "1-D integer"),
        (torch.randn(3, 10), torch.tensor([0, 10, 2]), DataError, "range over 0..10"),
        (torch.randn(3, 10), torch.tensor([-1, 0, 2]), DataError, "range over -1..2"),
    ],
)
def test_bad_input_is_refused_with_a_message(logits, labels, error, message):
    for function in (
        expected_calibration_error,
        brier_score,
        negative_log_likelihood,
        fit_temperature,
    ):
        with pytest.raises(error, match=message):
            function(logits, labels)


def test_bad_parameters_are_config_errors():
    logits, labels = random_problem(9, 50, 10)
    with pytest.raises(ConfigError, match="n_bins must be a positive integer"):
        expected_calibration_error(logits, labels, n_bins=0)
    with pytest.raises(ConfigError, match="binning must be"):
        expected_calibration_error(logits, labels, binning="quantile")
    with pytest.raises(ConfigError, match="unknown calibration metric 'ace'"):
        bootstrap_interval(logits, labels, "ace")
    with pytest.raises(ConfigError, match="resamples must be"):
        bootstrap_interval(logits, labels, resamples=1)
    with pytest.raises(ConfigError, match="confidence must lie"):
        calibration_report(logits, labels, confidence=95)
    with pytest.raises(ConfigError, match="temperature bounds"):
        fit_temperature(logits, labels, bounds=(2.0, 1.0))
    with pytest.raises(DataError, match="at least 2 samples"):
        calibration_report(logits[:1], labels[:1])


# --- bootstrap ----------------------------------------------------------------------------------


def test_vectorised_bootstrap_replicates_equal_the_metrics_on_explicit_resamples():
    logits, labels = random_problem(10, 300, 10)
    predictions = cal._predictions(logits, labels)
    index = torch.randint(300, (4, 300), generator=torch.Generator().manual_seed(1))
    weights = torch.zeros(4, 300, dtype=torch.float64).scatter_add_(
        1, index, torch.ones(4, 300, dtype=torch.float64)
    )
    for n_bins in (15, 7, 500):
        replicates = cal._weighted_metrics(predictions, weights, n_bins)
        for row in range(4):
            explicit = cal._predictions(logits[index[row]], labels[index[row]])
            for name, spec in METRICS.items():
                assert float(replicates[name][row]) == pytest.approx(
                    float(spec.compute(explicit, n_bins)), abs=1e-12
                ), name


def test_bootstrap_interval_is_seeded_and_brackets_a_smooth_metric():
    logits, labels = random_problem(11, 500, 10)
    first = bootstrap_interval(logits, labels, "nll", resamples=200, seed=3)
    assert first == bootstrap_interval(logits, labels, "nll", resamples=200, seed=3)
    assert first != bootstrap_interval(logits, labels, "nll", resamples=200, seed=4)
    assert first.low < negative_log_likelihood(logits, labels) < first.high
    narrow = bootstrap_interval(logits, labels, "nll", resamples=200, seed=3, confidence=0.5)
    assert first.low < narrow.low < narrow.high < first.high


# --- temperature scaling ------------------------------------------------------------------------


def test_temperature_recovers_a_known_overconfidence():
    generator = torch.Generator().manual_seed(12)
    true_logits = torch.randn(6000, 10, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.06)
    assert fit_temperature(true_logits / 2, labels) == pytest.approx(0.5, rel=0.06)


def test_temperature_is_clipped_when_the_likelihood_has_no_minimum():
    logits, _ = random_problem(13, 100, 10)
    assert fit_temperature(logits, logits.argmax(1)) == 0.01  # all right: sharper is always better
    assert (
        fit_temperature(logits, logits.argmin(1)) == 100.0
    )  # all wrong and last: flatter always better


def test_report_gates_the_unscaled_value_and_serialises_to_json():
    logits, labels = random_problem(14, 800, 10)
    report = calibration_report(logits * 3, labels, resamples=100, seed=2)
    assert report.metrics["ece"].value == pytest.approx(
        expected_calibration_error(logits * 3, labels), abs=1e-12
    )
    assert report.metrics["adaptive_ece"].value == pytest.approx(
        expected_calibration_error(logits * 3, labels, binning="equal_mass"), abs=1e-12
    )
    assert (
        report.fit_size + report.holdout_size == 800 and report.temperature > 1
    )  # over-confident input
    assert report.metrics["nll"].holdout_after < report.metrics["nll"].holdout_before
    payload = json.loads(json.dumps(report.to_dict()))
    assert (
        sum(payload["reliability"]["count"]) == 800
        and sum(payload["reliability_after_scaling"]["count"]) == 400
    )
    assert "bootstrap interval" in report.describe(
        "ece"
    ) and "after temperature scaling" in report.describe("brier")


# --- the check family ---------------------------------------------------------------------------


class FakeEvaluation:
    """Just what the calibration family reads from a ModelEvaluation."""

    def __init__(self, logits, labels):
        self.clean_logits = logits
        self.test_set = type("LabelledImages", (), {"labels": labels})()
        self.settings = type("RunSettings", (), {"seed": 0})()
        self._cache = {}
        self.progress = None

    cached = ModelEvaluation.cached

    def describe_test_set(self) -> str:
        return f"all {len(self.clean_logits)} test images"

    def per_example(self, correct, what, subset=None, values=None):
        from safetycheck.core.per_example import PerExample

        return PerExample(correct.bool(), what, 0, values)


def test_family_registers_gated_metrics_and_computes_one_report_per_model(monkeypatch):
    from safetycheck.checks import calibration as family_module
    from safetycheck.checks import check_id, families
    from safetycheck.gate.thresholds import parse_check_key

    family = families()["calibration"]
    assert family.bound == "max"
    ids = [check_id(family.name, params) for params in family.variants(None)]
    assert ids == [
        "calibration[ece]",
        "calibration[adaptive_ece]",
        "calibration[rms]",
        "calibration[brier]",
        "calibration[nll]",
    ]
    assert parse_check_key("calibration[rms]", "t.toml", "thresholds") == (
        "calibration",
        "calibration[rms]",
    )
    with pytest.raises(ConfigError, match="did you mean 'ece'"):
        parse_check_key("calibration[eec]", "t.toml", "thresholds")
    monkeypatch.setattr(family_module, "BOOTSTRAP_RESAMPLES", 50)
    calls = []
    monkeypatch.setattr(
        family_module,
        "calibration_report",
        lambda *a, **k: calls.append(1) or calibration_report(*a, **k),
    )
    logits, labels = random_problem(15, 300, 10)
    evaluation = FakeEvaluation(logits, labels)
    measurements = {p["metric"]: family.measure(evaluation, p) for p in family.variants(None)}
    assert len(calls) == 1
    assert (
        measurements["brier"].value == pytest.approx(brier_score(logits, labels))
        and measurements["brier"].n == 300
    )
    assert (
        "bootstrap interval" in measurements["ece"].details
        and "temperature" in measurements["ece"].details
    )
    for measurement in measurements.values():  # the bootstrap interval travels as the value's noise
        low, high = measurement.ci
        assert low <= high and high >= 0
    reliability = measurements["ece"].artifacts["reliability"]
    assert sum(reliability["count"]) == 300 and len(reliability["bin_lower"]) == len(
        reliability["accuracy"]
    )
    # Each record keeps what its paired bootstrap needs, one value per image.
    assert set(measurements["ece"].per_example.values) == {"confidence"}
    assert set(measurements["nll"].per_example.values) == {"nll"}
    assert all(len(m.per_example.correct) == 300 for m in measurements.values())


# --- the real trained LeNet-5 on the real MNIST test set ----------------------------------------


@pytest.fixture(scope="module")
def lenet_logits(lenet, mnist_test):
    with torch.inference_mode():
        return torch.cat(
            [lenet(mnist_test.images[i : i + 2500]) for i in range(0, len(mnist_test.images), 2500)]
        )


@pytest.mark.real_data
def test_real_lenet_calibration_report(lenet_logits, mnist_test):
    report = calibration_report(lenet_logits, mnist_test.labels, resamples=200, seed=0)
    values = {name: estimate.value for name, estimate in report.metrics.items()}
    # A 99.3%-accurate LeNet-5 is well calibrated on MNIST: small errors, a Brier score near twice
    # its error rate, and NLL of a few hundredths of a nat.
    assert (
        0 < values["ece"] < 0.02 and 0 < values["adaptive_ece"] < 0.02 and 0 < values["rms"] < 0.05
    )
    assert 0.005 < values["brier"] < 0.03 and 0.005 < values["nll"] < 0.1 and 0 < values["mce"] <= 1
    for name, estimate in report.metrics.items():
        assert estimate.interval.low <= estimate.value <= estimate.interval.high, name
    assert report.metrics["nll"].holdout_after <= report.metrics["nll"].holdout_before
    assert 0.5 < report.temperature < 2.0
    assert sum(report.reliability.count) == 10000 and report.reliability.count[-1] > 9000
    assert expected_calibration_error(lenet_logits, mnist_test.labels) == pytest.approx(
        values["ece"], abs=1e-12
    )
