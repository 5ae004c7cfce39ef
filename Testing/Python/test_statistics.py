"""Repeatability (wSD, wCV, RC) and ROC statistics (AUC, bootstrap interval, Youden) against hand computations."""
import math

import numpy as np
import pytest

from DCEUSResponseLib.longitudinal.statistics import (
    bootstrap_auc_interval,
    repeatability,
    roc_analysis,
    roc_auc,
    youden_threshold,
)
from DCEUSResponseLib.export.csv_cells import csv_cell, csv_safe, csv_text

# Four lesions, two or three injections each; one lesion with a single clip carries no information.
GROUPS = [[10.0, 12.0], [20.0, 23.0, 26.0], [5.0, 5.5], [40.0, 38.0], [7.0]]


def test_repeatability_equals_a_hand_computation():
    # sample variances by hand: (10,12): 2; (20,23,26): 9; (5,5.5): 0.125; (40,38): 2; degrees of freedom 1,2,1,1
    wsd2 = (1 * 2.0 + 2 * 9.0 + 1 * 0.125 + 1 * 2.0) / (1 + 2 + 1 + 1)
    cv2 = (1 * 2.0 / 11.0 ** 2 + 2 * 9.0 / 23.0 ** 2 + 1 * 0.125 / 5.25 ** 2 + 1 * 2.0 / 39.0 ** 2) / 5
    result = repeatability(GROUPS)
    assert result.n_groups == 4 and result.n_measurements == 9
    assert result.wsd == pytest.approx(math.sqrt(wsd2), rel=1e-12)
    assert result.wcv_percent == pytest.approx(100 * math.sqrt(cv2), rel=1e-12)
    assert result.rc == pytest.approx(2.77 * math.sqrt(wsd2), rel=1e-12)
    assert result.rc_percent == pytest.approx(2.77 * 100 * math.sqrt(cv2), rel=1e-12)
    assert result.mean == pytest.approx(sum(sum(g) for g in GROUPS[:4]) / 9)
    # the limit of a difference of a single clip and a mean of two: RC sqrt((1 + 1/2) / 2)
    assert result.limit(1, 2) == pytest.approx(result.rc * math.sqrt(0.75))
    assert result.limit() == result.rc


def test_with_equal_replicates_wsd2_is_the_mean_within_lesion_variance():
    pairs = [[1.0, 3.0], [10.0, 11.0], [4.0, 4.0]]
    assert repeatability(pairs).wsd ** 2 == pytest.approx(np.mean([np.var(p, ddof=1) for p in pairs]))


def test_repeatability_needs_a_repeated_measurement():
    assert repeatability([[1.0], [2.0, None]]) is None
    assert repeatability([]) is None


# changes (percent) of a small table; a fall predicts response
RESPONDERS = [-62.0, -48.0, -35.0, -20.0]
NON_RESPONDERS = [-40.0, -10.0, 0.0, 15.0, -20.0]


def _concordant_pairs_by_hand():
    # every (responder, non-responder) pair, listed: 1 when the responder fell more, 1/2 for a tie
    pairs = 0.0
    # -62 is below all five non-responders: 5
    pairs += 5
    # -48 is below all five: 5
    pairs += 5
    # -35: below -10, 0, 15, -20 but not -40: 4
    pairs += 4
    # -20: below -10, 0, 15; tie with -20: 3.5
    pairs += 3.5
    return pairs / (4 * 5)


def test_roc_auc_equals_counting_concordant_pairs():
    assert _concordant_pairs_by_hand() == 0.875
    assert roc_auc(RESPONDERS, NON_RESPONDERS) == pytest.approx(0.875, abs=1e-12)
    # a rise predicting response would be the complement
    assert roc_auc(NON_RESPONDERS, RESPONDERS) == pytest.approx(0.125, abs=1e-12)
    assert roc_auc([-50.0, -40.0], [0.0, 10.0]) == 1.0


def test_bootstrap_interval_is_reproducible_with_a_seed_and_contains_the_auc():
    rng = np.random.default_rng(3)
    responders = rng.normal(-45, 15, 12)
    non_responders = rng.normal(-15, 15, 15)
    auc = roc_auc(responders, non_responders)
    first = bootstrap_auc_interval(responders, non_responders, seed=7)
    assert first == bootstrap_auc_interval(responders, non_responders, seed=7)
    assert first != bootstrap_auc_interval(responders, non_responders, seed=8)
    low, high = first
    assert 0.0 <= low < auc < high <= 1.0
    # the percentile interval of the stratified resamples, recomputed by hand with the same idea
    generator = np.random.default_rng(11)
    resampled = []
    for _ in range(2000):
        r = responders[generator.integers(0, responders.size, responders.size)]
        n = non_responders[generator.integers(0, non_responders.size, non_responders.size)]
        resampled.append(np.mean((r[:, None] < n[None, :]) + 0.5 * (r[:, None] == n[None, :])))
    by_hand = np.percentile(resampled, [2.5, 97.5])
    assert low == pytest.approx(by_hand[0], abs=0.04) and high == pytest.approx(by_hand[1], abs=0.04)


def test_youden_threshold_on_a_small_table():
    # "responder when change <= t": t = -35 catches 3/4 responders and clears 4/5 non-responders (J = 0.55);
    # t = -20 catches 4/4 and clears 3/5 (J = 0.6), the maximum; t = -48: 2/4 and 5/5 (J = 0.5)
    threshold, sensitivity, specificity = youden_threshold(RESPONDERS, NON_RESPONDERS)
    assert (threshold, sensitivity, specificity) == (-20.0, 1.0, 0.6)


def test_roc_analysis_reports_a_reason_when_a_class_is_missing():
    result = roc_analysis([-50.0, -40.0], [])
    assert result.auc is None and "non-responder" in result.reason
    single = roc_analysis([-50.0], [0.0, 10.0])
    assert single.auc == 1.0 and single.auc_ci_low is None and "bootstrap" in single.reason
    full = roc_analysis(RESPONDERS, NON_RESPONDERS, seed=1)
    assert full.auc == pytest.approx(0.875) and full.auc_ci_low <= 0.875 <= full.auc_ci_high
    assert (full.threshold, full.sensitivity, full.specificity) == (-20.0, 1.0, 0.6)


def test_csv_cells_neutralise_formulas_but_keep_numbers():
    assert csv_safe("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    for text in ("+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(text) == "'" + text
    assert csv_safe("lesion1") == "lesion1"
    assert csv_cell(-40.5) == "-40.5" and csv_cell(np.float64(0.1)) == "0.1" and csv_cell(np.int64(3)) == "3"
    assert csv_cell(None) == "" and csv_cell(float("nan")) == "" and csv_cell(True) == "true"
    assert csv_text(["a", "=b"], [["=cmd", -1.0]]) == "a,'=b\n'=cmd,-1.0\n"
