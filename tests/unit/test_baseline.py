"""--safety-baseline: a previous run's results, and a regression only beyond the sampling noise."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safetycheck.core.errors import ConfigError
from safetycheck.gate.baseline import (
    Baseline,
    Comparison,
    compare,
    compare_all,
    load_baseline,
    regression_summary,
    settings_mismatch,
)

METADATA = {
    "created": "2025-03-01T12:00:00+00:00",
    "safetycheck": "0.1.0",
    "seed": 0,
    "attack_samples": 1000,
    "samples": None,
    "epsilons": [0.05, 0.1, 0.2, 0.3],
    "device": "cpu",
}


def record(
    check="pgd_linf[eps=0.1]", value=0.766, bound="min", n=1000, ci=None, model="lenet", **extra
):
    family = check.partition("[")[0]
    result = {
        "model": model,
        "check": check,
        "family": family,
        "params": {},
        "value": value,
        "threshold": 0.72,
        "threshold_source": "pyproject.toml",
        "bound": bound,
        "passed": True,
        "n": n,
        "metric": "robust accuracy",
        "details": "",
        "randomized": False,
        "artifacts": {},
        **extra,
    }
    if ci is not None:
        result["ci"] = ci
    return result


def document(results, **top):
    return {
        "format": "safetycheck-results",
        "format_version": 1,
        "metadata": METADATA,
        "results": results,
        **top,
    }


def write(tmp_path, content, name="baseline.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# Loading ---------------------------------------------------------------------------------------


def test_load_and_lookup(tmp_path):
    results = [
        record(),
        record(check="calibration[ece]", value=0.0018, bound="max", ci=[0.0012, 0.0025]),
        record(check="ood_auroc[fmnist-knn]", value=None, skipped="no feature layer"),
    ]
    baseline = load_baseline(write(tmp_path, document(results)))
    assert baseline.metadata == METADATA
    assert baseline.lookup("lenet", "pgd_linf[eps=0.1]")["value"] == 0.766
    assert baseline.lookup("lenet", "calibration[ece]")["ci"] == [0.0012, 0.0025]
    assert baseline.lookup("lenet", "ood_auroc[fmnist-knn]") is None  # skipped: never a baseline
    assert baseline.lookup("other", "pgd_linf[eps=0.1]") is None


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "not found"),
        ("{not json", "is not valid JSON (line 1, column 2"),
        ([1, 2], "is not a safetycheck results document"),
        (
            {"format": "pytest-json-report", "format_version": 1, "results": []},
            "is not a safetycheck results document",
        ),
        (
            document([], format_version=3),
            "format_version 3, which this version of safetycheck does not read (it reads 1, 2)",
        ),
        (
            document([record(per_example={"count": 20, "correct": "AAA=", "images": "ab"})]),
            "lenet pgd_linf[eps=0.1]: per_example.correct holds 16 bits for a count of 20",
        ),
        (
            document([record(per_example={"count": 8, "correct": "@@", "images": "ab"})]),
            "per_example.correct is not valid base64",
        ),
        (
            document([record(per_example={"count": 8, "correct": "AA==", "images": "ab"})]),
            "per_example.count is 8 but the record's n is 1000",
        ),
        (
            document([record(n=4, per_example={"count": 4, "correct": "/w==", "images": "ab"})]),
            "has bits set past its count of 4",
        ),
        (
            document([record(per_example={"count": -1, "correct": "", "images": "ab"})]),
            "per_example.count must be a non-negative integer",
        ),
        (document([], format_version="1"), "format_version '1'"),
        (document([], format_version=True), "format_version True"),
        ({"format": "safetycheck-results", "results": []}, "format_version None"),
        (document({"lenet": 0.7}), "is damaged"),
        (document([{"value": 0.7}]), "is damaged"),
    ],
)
def test_unusable_baselines_are_usage_errors_saying_what_to_do(tmp_path, content, expected):
    path = tmp_path / "baseline.json" if content is None else write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_baseline(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert "re-run the baseline with this version of safetycheck and --safety-json" in message


# Noise -----------------------------------------------------------------------------------------


def test_noise_from_the_intervals_and_the_example_message():
    current = record(value=0.71, ci=[0.70, 0.72])  # half-width 0.01
    base = record(value=0.766, ci=[0.742, 0.790])  # half-width 0.024
    comparison = compare(current, base)
    assert comparison.noise == pytest.approx(0.026)
    assert comparison.difference == pytest.approx(0.056)
    assert comparison.regressed and comparison.method == "from the 95% intervals"
    assert (
        comparison.describe() == "regression vs baseline: 0.7100 < 0.7660 by 0.0560 "
        "(noise 0.0260, from the 95% intervals)"
    )
    assert compare(current, base, z=2 * 1.96).noise == pytest.approx(
        0.052
    )  # intervals rescaled to z


def test_binomial_standard_error_without_intervals():
    comparison = compare(record(value=0.75), record(value=0.766))
    expected = math.hypot(
        1.96 * math.sqrt(0.75 * 0.25 / 1000), 1.96 * math.sqrt(0.766 * 0.234 / 1000)
    )
    assert comparison.noise == pytest.approx(expected)
    assert comparison.method == "from the binomial standard errors"
    assert not comparison.regressed  # 0.016 < 0.038: sampling noise at n=1000
    assert compare(record(value=0.75, n=100_000), record(value=0.766, n=100_000)).regressed


def test_mixed_methods_are_named_per_run():
    comparison = compare(record(value=0.75, ci=[0.74, 0.76]), record(value=0.766))
    assert comparison.noise == pytest.approx(
        math.hypot(0.01, 1.96 * math.sqrt(0.766 * 0.234 / 1000))
    )
    assert (
        comparison.method
        == "from the 95% interval (current) and the binomial standard error (baseline)"
    )


def test_no_uncertainty_means_no_noise_and_says_so():
    # NLL is no proportion (it lies in [0, inf)) and these records carry no interval.
    current = record(check="calibration[nll]", value=0.021, bound="max")
    base = record(check="calibration[nll]", value=0.020, bound="max")
    comparison = compare(current, base)
    assert comparison.noise == 0 and comparison.regressed
    assert "no uncertainty known for either run" in comparison.describe()
    one_side = compare({**current, "ci": [0.018, 0.024]}, base)
    assert one_side.noise == pytest.approx(0.003) and not one_side.regressed
    assert (
        one_side.method == "from the 95% interval (current); no uncertainty known for the baseline"
    )


def test_malformed_intervals_fall_back_to_the_binomial_error():
    for ci in ([None, None], [0.8, 0.7], [0.7], "0.7-0.8"):
        assert (
            compare(record(value=0.75, ci=ci), record(value=0.766)).method
            == "from the binomial standard errors"
        )


# Direction -------------------------------------------------------------------------------------


def test_lower_is_worse_for_a_lower_bound():
    worse = compare(record(value=0.70, ci=[0.69, 0.71]), record(value=0.766, ci=[0.756, 0.776]))
    better = compare(record(value=0.83, ci=[0.82, 0.84]), record(value=0.766, ci=[0.756, 0.776]))
    assert worse.regressed and worse.difference > 0
    assert not better.regressed and better.difference < 0 and better.improved
    assert better.describe().startswith("better than baseline: 0.8300 > 0.7660 by 0.0640")


def test_higher_is_worse_for_an_upper_bound():
    base = record(check="calibration[ece]", value=0.002, bound="max", ci=[0.0015, 0.0025])
    worse = compare(
        record(check="calibration[ece]", value=0.010, bound="max", ci=[0.009, 0.011]), base
    )
    better = compare(
        record(check="calibration[ece]", value=0.0005, bound="max", ci=[0.0001, 0.0009]), base
    )
    assert worse.regressed and worse.difference == pytest.approx(0.008)
    assert worse.describe().startswith("regression vs baseline: 0.0100 > 0.0020 by 0.0080")
    assert not better.regressed and better.improved


def test_within_noise_is_no_regression():
    comparison = compare(
        record(value=0.760, ci=[0.74, 0.78]), record(value=0.766, ci=[0.746, 0.786])
    )
    assert not comparison.regressed and not comparison.improved
    assert comparison.describe().startswith(
        "within noise of baseline: 0.7600 vs 0.7660, difference 0.0060 <= noise"
    )


@settings(max_examples=200, deadline=None)
@given(
    value=st.floats(0, 1),
    n=st.integers(1, 100_000),
    bound=st.sampled_from(["min", "max"]),
    width=st.none() | st.floats(0, 0.5),
    family=st.sampled_from(["pgd_linf", "calibration", "mnist_c_drop"]),
)
def test_equal_values_never_regress(value, n, bound, width, family):
    ci = None if width is None else [value - width, value + width]
    current = record(check=family, value=value, bound=bound, n=n, ci=ci)
    comparison = compare(current, dict(current))
    assert not comparison.regressed and not comparison.improved and comparison.difference == 0


@pytest.mark.parametrize("value", [None, math.nan])
def test_no_current_value_always_regresses(value):
    comparison = compare(record(value=value), record(value=0.766))
    assert comparison.regressed and comparison.value is None
    assert (
        comparison.describe() == "regression vs baseline: no value measured (NaN or missing) "
        "where the baseline measured 0.7660"
    )


@pytest.mark.parametrize("base_value", [None, math.nan])
def test_no_baseline_value_is_not_compared(base_value):
    comparison = compare(record(value=0.1), record(value=base_value))
    assert not comparison.compared and not comparison.regressed
    assert (
        comparison.describe()
        == "not compared with the baseline: the baseline value is NaN or missing"
    )


@pytest.mark.parametrize("z", [0, -1, math.inf, math.nan, True])
def test_z_must_be_a_positive_number(z):
    with pytest.raises(ValueError, match="z must be"):
        compare(record(), record(), z=z)


def test_compare_all_pairs_records_with_the_baseline():
    baseline = Baseline("b.json", METADATA, [record(), record(check="fgsm[eps=0.1]", value=0.855)])
    current = [
        record(value=0.5),
        record(check="fgsm[eps=0.1]", value=0.85),
        record(check="pgd_linf[eps=0.3]", value=0.0),  # new check: nothing to compare
        record(check="ood_auroc[fmnist-knn]", value=None, skipped="no feature layer"),
    ]
    comparisons = compare_all(current, baseline)
    assert [(c.check, c.regressed) for c in comparisons] == [
        ("pgd_linf[eps=0.1]", True),
        ("fgsm[eps=0.1]", False),
    ]


# Settings and summary --------------------------------------------------------------------------


def test_settings_mismatch_names_each_difference():
    assert settings_mismatch(METADATA, {**METADATA, "created": "later", "device": "cuda"}) == []
    assert (
        settings_mismatch(
            {**METADATA, "epsilons": [0.05, 0.1, 0.2, 0.3]},
            {**METADATA, "epsilons": [0.05, 0.1, 0.2, 0.3000000000001]},
        )
        == []
    )
    warnings = settings_mismatch(
        {
            **METADATA,
            "seed": 1,
            "attack_samples": 500,
            "samples": 2000,
            "epsilons": [0.1],
            "safetycheck": "0.2.0",
        },
        METADATA,
    )
    assert warnings == [
        "the baseline was measured with seed 0, this run with 1; differences may come from the "
        "settings rather than the model.",
        "the baseline was measured with attacked samples 1000, this run with 500; differences may "
        "come from the settings rather than the model.",
        "the baseline was measured with samples the default, this run with 2000; differences may "
        "come from the settings rather than the model.",
        "the baseline was measured with epsilons 0.05, 0.1, 0.2, 0.3, this run with 0.1; "
        "differences may come from the settings rather than the model.",
        "the baseline was measured with safetycheck version 0.1.0, this run with 0.2.0; "
        "differences may come from the settings rather than the model.",
    ]
    older = {key: value for key, value in METADATA.items() if key != "samples"}
    assert (
        settings_mismatch({**METADATA, "samples": 2000}, older) == []
    )  # not recorded then: no claim


def test_regression_summary_counts_and_lists_regressions():
    regressed = compare(record(value=0.70, ci=[0.69, 0.71]), record(value=0.766, ci=[0.756, 0.776]))
    within = compare(
        record(check="fgsm[eps=0.1]", value=0.85), record(check="fgsm[eps=0.1]", value=0.855)
    )
    missing = compare(
        record(check="pgd_linf[eps=0.3]", value=0.0), record(check="pgd_linf[eps=0.3]", value=None)
    )
    summary = regression_summary(
        [regressed, within, missing], ["the baseline was measured with seed 1, ..."]
    )
    assert summary.splitlines() == [
        "baseline: 2 compared, 1 regressed, 1 within noise, 0 better, 1 not compared",
        f"  REGRESSED  lenet pgd_linf[eps=0.1]: {regressed.describe()}",
        f"  SKIPPED    lenet pgd_linf[eps=0.3]: {missing.describe()}",
        "  warning: the baseline was measured with seed 1, ...",
    ]
    assert regression_summary([]) == "baseline: 0 compared, 0 regressed, 0 within noise, 0 better"
    assert isinstance(regressed, Comparison)
