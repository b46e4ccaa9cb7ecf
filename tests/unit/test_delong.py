"""The paired OOD AUROC gate (issue #21): each image's misranking counts, DeLong's paired test on
them against an independent pairwise implementation, the stored ranking's validation, and the
gate's error rates by simulation (1,000 simulated pairs of runs, through the ``compare`` that a
``--safety-baseline`` run uses). The figures printed with ``-s`` are README's "How sure is the
gate?"."""

from __future__ import annotations

import base64
import json
import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from safetycheck.core.errors import ConfigError
from safetycheck.core.per_example import PerExampleRanking, decode_ranking
from safetycheck.gate.baseline import compare, holm_on_records, load_baseline
from safetycheck.gate.paired import delong_regression
from safetycheck.measures.ood_metrics import auroc_confidence_interval, misranked_counts

ALPHA = 0.05
SIMULATED_PAIRS = 1_000

scores = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(inside=scores, outside=scores)
def test_the_counts_give_sklearns_auroc_from_either_side(inside, outside):
    """Whatever the scores and ties: AUROC = 1 - sum / (2 N_in N_out) from either side's counts,
    each count at most twice the other side's size."""
    in_counts, out_counts = misranked_counts(inside, outside)
    pairs = 2 * len(inside) * len(outside)
    assert in_counts.sum() == out_counts.sum()
    assert in_counts.max() <= 2 * len(outside) and out_counts.max() <= 2 * len(inside)
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    expected = roc_auc_score(labels, np.r_[inside, outside])
    assert 1 - in_counts.sum() / pairs == pytest.approx(expected, abs=1e-12)


def pairwise_delong_z(base_in, base_out, now_in, now_out) -> float:
    """DeLong's z from the (N_in, N_out) kernel matrices, written independently of the gate's:
    psi = 1 for a correctly ordered pair, 1/2 for a tie; the structural components and their
    2 x 2 covariance matrices as in DeLong et al. (1988), eq. (4)-(5)."""
    components_in, components_out, areas = [], [], []
    for inside, outside in ((base_in, base_out), (now_in, now_out)):
        psi = (inside[:, None] > outside[None, :]) + 0.5 * (inside[:, None] == outside[None, :])
        components_in.append(psi.mean(axis=1))
        components_out.append(psi.mean(axis=0))
        areas.append(psi.mean())
    s10, s01 = np.cov(np.stack(components_in)), np.cov(np.stack(components_out))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / len(base_in) + contrast @ s01 @ contrast / len(base_out)
    if not variance > 0:
        return math.nan  # every image moved alike: the gate's special case, tested below
    return (areas[0] - areas[1]) / math.sqrt(variance)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(3, 60), n_out=st.integers(3, 60))
def test_delong_z_is_the_pairwise_formulas(seed, n_in, n_out):
    rng = np.random.default_rng(seed)
    latent_in, latent_out = rng.normal(1, 1, n_in), rng.normal(0, 1, n_out)
    # Rounded, so that ties occur within and across the sets.
    base_in, base_out = np.round(latent_in + rng.normal(0, 0.5, n_in), 1), np.round(latent_out, 1)
    now_in = np.round(latent_in + rng.normal(0, 0.5, n_in), 1)
    now_out = np.round(latent_out + rng.normal(0, 0.5, n_out), 1)
    test = delong_regression(
        *misranked_counts(base_in, base_out), *misranked_counts(now_in, now_out)
    )
    expected = pairwise_delong_z(base_in, base_out, now_in, now_out)
    if math.isfinite(expected) and math.isfinite(test.z):
        assert test.z == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert 0.0 <= test.p_value <= 1.0


def test_an_identical_ranking_has_p_one_and_a_uniform_loss_p_zero():
    inside, outside = np.arange(10.0), np.arange(10.0) - 3
    counts = misranked_counts(inside, outside)
    same = delong_regression(*counts, *counts)
    assert (same.difference, same.z, same.p_value) == (0.0, 0.0, 1.0)
    # Both OOD images moved above both in-distribution ones: every image lost alike, no variance.
    perfect = misranked_counts(np.array([2.0, 3.0]), np.array([0.0, 1.0]))
    reversed_ = misranked_counts(np.array([0.5, 0.6]), np.array([1.0, 1.1]))
    loss = delong_regression(*perfect, *reversed_)
    assert (loss.difference, loss.z, loss.p_value) == (1.0, math.inf, 0.0)
    with pytest.raises(ValueError, match="same images"):
        delong_regression(*counts, counts[0][:5], counts[1])
    with pytest.raises(ValueError, match="2 images per side"):
        delong_regression(np.array([0]), np.array([0, 1]), np.array([0]), np.array([0, 1]))


def ranking_record(inside, outside, images: str = "same", check="ood_auroc[fmnist-msp]") -> dict:
    in_counts, out_counts = misranked_counts(inside, outside)
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    value = float(roc_auc_score(labels, np.r_[inside, outside]))
    low, high = auroc_confidence_interval(inside, outside, n_resamples=200)
    return {
        "model": "m",
        "check": check,
        "family": "ood_auroc",
        "bound": "min",
        "value": value,
        "n": len(inside) + len(outside),
        "ci": [low, high],
        "per_example": PerExampleRanking(in_counts, out_counts, images, 0).encode(),
    }


def simulated_scores(rng: np.random.Generator, n: int, worse: float = 0.0):
    """One pair of runs of a detector on the same n in-distribution and n OOD images: each image
    has a latent score (in N(2, 1), OOD N(0, 1)) that both runs see with their own noise (SD 0.5:
    another seed of an equally good model, the null hypothesis); ``worse`` lifts the second run's
    OOD scores by that much (a worse detector)."""
    latent_in, latent_out = rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n)
    base = latent_in + rng.normal(0, 0.5, n), latent_out + rng.normal(0, 0.5, n)
    now = latent_in + rng.normal(0, 0.5, n), latent_out + rng.normal(0, 0.5, n) + worse
    return base, now


def flagged(worse: float, n: int = 2_000, seed: int = 0) -> tuple[float, float]:
    """Shares of SIMULATED_PAIRS flagged by DeLong's paired test at ALPHA and by the unpaired
    rule (the two bootstrap intervals in quadrature)."""
    rng = np.random.default_rng(seed)
    paired = unpaired = 0
    for index in range(SIMULATED_PAIRS):
        (base_in, base_out), (now_in, now_out) = simulated_scores(rng, n, worse)
        test = delong_regression(
            *misranked_counts(base_in, base_out), *misranked_counts(now_in, now_out)
        )
        paired += test.p_value <= ALPHA
        if index < 200:  # the bootstrap intervals are the slow part: 200 pairs tell the story
            unpaired += compare(
                ranking_record(now_in, now_out), ranking_record(base_in, base_out)
            ).regressed * (SIMULATED_PAIRS / 200)
    return paired / SIMULATED_PAIRS, unpaired / SIMULATED_PAIRS


def test_an_equally_good_detector_is_flagged_at_most_alpha_of_the_time():
    paired, unpaired = flagged(worse=0.0, seed=1)
    print(f"\nOOD AUROC, equally good detector: DeLong flags {paired:.3f}, unpaired {unpaired:.3f}")
    assert paired <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATED_PAIRS)
    assert unpaired <= ALPHA


@pytest.mark.parametrize(
    ("worse", "paired_at_least", "unpaired_at_most"), [(0.05, 0.45, 0.1), (0.1, 0.9, 0.45)]
)
def test_a_slightly_worse_detector_is_caught_by_delong_far_more_often_than_by_the_intervals(
    worse, paired_at_least, unpaired_at_most
):
    """OOD scores lifted by ``worse`` (AUROC 0.897 less about 0.006 or 0.012, 2,000 images per
    side). The bounds are the measured rates less about three Monte-Carlo errors (README states
    them)."""
    paired, unpaired = flagged(worse=worse, seed=2)
    print(f"\nOOD AUROC, OOD scores lifted {worse}: DeLong catches {paired:.3f}, "
          f"unpaired {unpaired:.3f}")  # fmt: skip
    assert paired >= paired_at_least and unpaired <= unpaired_at_most


def test_compare_pairs_by_delong_and_falls_back_where_the_images_differ():
    rng = np.random.default_rng(0)
    (base_in, base_out), (now_in, now_out) = simulated_scores(rng, 500, worse=1.0)
    base, now = ranking_record(base_in, base_out), ranking_record(now_in, now_out)
    paired = compare(now, base, level=ALPHA)
    assert paired.regressed and paired.paired is not None and paired.paired.z > 3
    assert "DeLong's paired test" in paired.describe() and "1000 images" in paired.describe()
    other = compare(ranking_record(now_in, now_out, images="other"), base, level=ALPHA)
    assert other.paired is None
    assert "unpaired: the two runs scored different images" in other.method
    older = dict(base, per_example=None)
    fallback = compare(now, older, level=ALPHA)
    assert fallback.paired is None and "the baseline has no per-image ranking" in fallback.method


def test_holm_over_a_whole_run_names_delongs_test():
    records = [
        {"model": "m", "check": f"c{i}", "baseline": {"p_value": p, "alpha": 0.05,
         "regressed": False, "test": "DeLong", "z": 2.2}}
        for i, p in enumerate([0.014, 0.02])
    ]  # fmt: skip
    newly = holm_on_records(records)
    assert len(newly) == 2 and "DeLong's paired test, z = 2.20" in newly[0]["baseline"]["message"]


def write_baseline(tmp_path, record: dict):
    path = tmp_path / "base.json"
    document = {"format": "safetycheck-results", "format_version": 2, "metadata": {},
                "results": [record]}  # fmt: skip
    path.write_text(json.dumps(document))
    return path


def test_a_ranking_round_trips_and_keeps_no_scores():
    inside, outside = np.array([0.9, 0.8, 0.8, 0.1]), np.array([0.8, 0.2, 0.0])
    record = ranking_record(inside, outside)
    got_in, got_out, images = decode_ranking(record["per_example"], "here")
    assert (got_in.tolist(), got_out.tolist(), images) == ([0, 1, 1, 4], [4, 2, 0], "same")
    assert set(record["per_example"]) == {"count", "positives", "misranked", "images", "seed"}


def damaged(record: dict, **changes) -> dict:
    return dict(record, per_example=dict(record["per_example"], **changes))


def packed(counts) -> str:
    return base64.b64encode(zlib.compress(np.asarray(counts, "<u4").tobytes())).decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"misranked": "not base64!"}, "per_example.misranked is not base64 zlib data"),
        ({"misranked": base64.b64encode(b"plain").decode()}, "not base64 zlib data"),
        ({"misranked": packed([0, 1, 1])}, "holds 3 numbers for a count of 7"),
        ({"misranked": packed([0, 1, 1, 4, 4, 2, 1])}, "its two sides disagree"),
        ({"positives": 0}, "per_example.positives must lie between 0 and count"),
        ({"positives": "4"}, "per_example.positives must be an integer"),
        ({"count": 8}, "holds 7 numbers for a count of 8"),
    ],
)
def test_a_damaged_ranking_is_a_usage_error_naming_the_file_and_field(tmp_path, changes, message):
    record = ranking_record(np.array([0.9, 0.8, 0.8, 0.1]), np.array([0.8, 0.2, 0.0]))
    path = write_baseline(tmp_path, damaged(record, **changes))
    with pytest.raises(ConfigError, match=message) as error:
        load_baseline(path)
    assert str(path) in str(error.value) and "re-run the baseline" in str(error.value)


def test_an_edited_auroc_or_count_is_a_usage_error(tmp_path):
    record = ranking_record(np.array([0.9, 0.8, 0.8, 0.1]), np.array([0.8, 0.2, 0.0]))
    load_baseline(write_baseline(tmp_path, record))  # the untouched record loads
    with pytest.raises(ConfigError, match="is not the AUROC of its per_example ranking"):
        load_baseline(write_baseline(tmp_path, dict(record, value=0.99)))
    with pytest.raises(ConfigError, match="per_example.count is 7 but the record's n is 9"):
        load_baseline(write_baseline(tmp_path, dict(record, n=9)))
