"""Early stopping's confidence sequence (safetycheck.core.sequential) stated as invariants, its
time-uniform coverage checked by simulation (with and without replacement), and the attack sweep's
stopping rule: a prefix of the images, the reason recorded, nothing changed without a rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betaln

from safetycheck.core.sequential import (
    confidence_sequence,
    log_mixture_martingale,
    sequential_verdict,
)
from safetycheck.measures.attacks.fgsm import FGSM
from safetycheck.measures.robustness import robust_accuracy_sweep

ALPHA = 0.01
SEQUENCES = 1_000


@st.composite
def counts(draw):
    trials = draw(st.integers(0, 5_000))
    return draw(st.integers(0, trials)), trials


@settings(max_examples=300, deadline=None)
@given(counts(), st.sampled_from([0.001, 0.01, 0.05, 0.2]))
def test_the_interval_holds_the_estimate_and_is_where_the_martingale_stays_below_1_over_alpha(
    observed, alpha
):
    successes, trials = observed
    low, high = confidence_sequence(successes, trials, alpha)
    assert 0.0 <= low <= high <= 1.0
    if trials == 0:
        assert (low, high) == (0.0, 1.0)
        return
    estimate = successes / trials
    assert low <= estimate <= high
    level = math.log(1 / alpha)
    for edge, outside in ((low, low - 1e-6), (high, high + 1e-6)):
        if 0.0 < edge < 1.0:
            assert log_mixture_martingale(successes, trials, edge) == pytest.approx(level, abs=1e-4)
        if 0.0 < outside < 1.0:
            assert log_mixture_martingale(successes, trials, outside) >= level - 1e-4
    # a smaller alpha never gives a narrower interval
    wider = confidence_sequence(successes, trials, alpha / 10)
    assert wider[0] <= low + 1e-12 and wider[1] >= high - 1e-12


@settings(max_examples=200, deadline=None)
@given(counts(), st.floats(0.0, 1.0), st.sampled_from(["min", "max"]))
def test_a_verdict_is_given_only_where_the_whole_interval_agrees(observed, threshold, bound):
    successes, trials = observed
    low, high = confidence_sequence(successes, trials, ALPHA)
    verdict = sequential_verdict(successes, trials, threshold, bound, ALPHA)
    if bound == "min":
        expected = "pass" if low >= threshold else "fail" if high < threshold else None
    else:
        expected = "pass" if high <= threshold else "fail" if low > threshold else None
    assert verdict == expected
    if verdict is not None and trials:
        estimate = successes / trials
        assert (estimate >= threshold if bound == "min" else estimate <= threshold) == (
            verdict == "pass"
        )


def test_thresholds_no_image_can_change_are_decided_before_any_image():
    assert sequential_verdict(0, 0, 0.0, "min", ALPHA) == "pass"
    assert sequential_verdict(0, 0, 1.0, "max", ALPHA) == "pass"
    assert sequential_verdict(0, 0, 0.5, "min", ALPHA) is None
    assert sequential_verdict(0, 0, math.nan, "min", ALPHA) is None
    with pytest.raises(ValueError, match="bound"):
        sequential_verdict(1, 2, 0.5, "above", ALPHA)
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence(1, 2, 1.0)
    with pytest.raises(ValueError, match="successes"):
        confidence_sequence(3, 2, ALPHA)


def ever_excludes(draws: np.ndarray, share: float) -> np.ndarray:
    """(sequences,) bool: whether the sequence excluded ``share`` at any step, from the
    martingale at ``share`` along each row of ``draws`` (sequences, steps) of 0/1."""
    successes = np.cumsum(draws, axis=1)
    trials = np.arange(1, draws.shape[1] + 1)
    log_m = (
        betaln(1 + successes, 1 + trials - successes)
        - betaln(1, 1)
        - successes * math.log(share)
        - (trials - successes) * math.log1p(-share)
    )
    return (log_m >= math.log(1 / ALPHA)).any(axis=1)


@pytest.mark.parametrize("share", [0.5, 0.9, 0.99])
def test_coverage_holds_at_every_step_at_once_with_and_without_replacement(share):
    """Over 1,000 sequences of 1,000 images the share is ever excluded at most ``alpha`` of the
    time, within three Monte-Carlo errors: for independent draws, and for a seeded order of a
    fixed set of 1,000 images (how a sweep meets its images; the sequence looks at a prefix)."""
    rng = np.random.default_rng(int(share * 100))
    independent = rng.random((SEQUENCES, 1_000)) < share
    population = np.zeros(1_000, dtype=bool)
    population[: round(share * 1_000)] = True
    shuffled = np.stack([rng.permutation(population) for _ in range(SEQUENCES)])
    error = 3 * math.sqrt(ALPHA * (1 - ALPHA) / SEQUENCES)
    for draws in (independent, shuffled):
        assert ever_excludes(draws, share).mean() <= ALPHA + error


def linear_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()


def test_a_sweep_with_a_stopping_rule_scores_a_prefix_and_says_why():
    model = linear_model()
    images = torch.rand(250, 1, 28, 28)
    labels = model(images).argmax(1)  # every image clean-correct
    attacks = [("fgsm", lambda eps: FGSM(eps=eps))]
    full = robust_accuracy_sweep(model, images, labels, [0.01, 0.3], attacks)
    assert full.stopped == {} and full.n == 250 and full.planned == 250
    seen = []

    def stop(sweep):
        seen.append(sweep.n)
        return {0.01: "enough", 0.3: "enough"} if sweep.n >= 200 else {}

    early = robust_accuracy_sweep(model, images, labels, [0.01, 0.3], attacks, stop=stop, block=100)
    assert seen == [100, 200] and early.stopped == {0.01: "enough", 0.3: "enough"}
    assert early.n == 200 and early.planned == 250 and early.scored(0.3) == 200
    broken = 0  # broken_by counts the images first broken at each eps
    for eps in (0.01, 0.3):
        assert torch.equal(early.robust[eps], full.robust[eps][:200])
        broken += sum(early.broken_by[eps].values())
        assert broken == int((~early.robust[eps]).sum())
        assert early.accuracy(eps) == int(full.robust[eps][:200].sum()) / 200
    # The largest eps stops alone once known; a smaller one never stops before the larger ones
    # (its survivors are the larger ones' candidates).
    top = robust_accuracy_sweep(
        model, images, labels, [0.01, 0.3], attacks, stop=lambda s: {0.3: "known"}, block=100
    )
    assert top.stopped == {0.3: "known"} and (top.scored(0.3), top.scored(0.01)) == (100, 250)
    bottom = robust_accuracy_sweep(
        model, images, labels, [0.01, 0.3], attacks, stop=lambda s: {0.01: "known"}, block=100
    )
    assert bottom.stopped == {} and bottom.scored(0.01) == bottom.scored(0.3) == 250
    never = robust_accuracy_sweep(
        model, images, labels, [0.01, 0.3], attacks, stop=lambda s: {}, block=100
    )
    assert never.stopped == {} and never.n == 250
    assert all(torch.equal(never.robust[e], full.robust[e]) for e in (0.01, 0.3))
