"""The main job's statistics against SciPy (test-only) and against their definitions."""

import math

import numpy as np
import pytest

from keras_cka_sr.app import statistics

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29, 200])
def test_t_tail_and_quantiles_match_scipy(df):
    for t in (-4.0, -0.5, 0.0, 0.7, 2.5, 12.0):
        assert statistics.t_sf(t, df) == pytest.approx(
            scipy_stats.t.sf(t, df), rel=1e-10, abs=1e-14
        )
    for q in (0.2, 0.8, 0.975, 0.999):
        assert statistics.t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)


def test_paired_test_matches_scipys_paired_t_test():
    rng = np.random.default_rng(0)
    treated, base = rng.normal(0.91, 0.01, 7), rng.normal(0.90, 0.01, 7)
    result = statistics.paired_test(treated - base)
    assert result.p == pytest.approx(scipy_stats.ttest_rel(treated, base).pvalue, rel=1e-9)
    low, high = scipy_stats.t.interval(
        0.95, 6, loc=np.mean(treated - base), scale=scipy_stats.sem(treated - base)
    )
    assert result.mean - result.half_width == pytest.approx(low, rel=1e-9)
    assert result.mean + result.half_width == pytest.approx(high, rel=1e-9)


def test_one_pair_has_no_interval_p_or_mde():
    result = statistics.paired_test([0.01])
    assert result.n == 1 and result.mean == 0.01
    assert math.isnan(result.half_width) and math.isnan(result.p) and math.isnan(result.mde80)


def test_zero_spread_gives_an_exact_p():
    assert statistics.paired_test([0.02, 0.02, 0.02]).p == 0.0
    assert statistics.paired_test([0.0, 0.0]).p == 1.0


def test_bad_differences_are_refused():
    with pytest.raises(ValueError, match="differences"):
        statistics.paired_test([])
    with pytest.raises(ValueError, match="q"):
        statistics.t_quantile(1.0, 3)


def test_holm_by_hand():
    adjusted = statistics.holm([0.01, 0.04, 0.03, math.nan, 0.5])
    # Sorted 0.01, 0.03, 0.04, 0.5 (m = 4): 4 x 0.01, 3 x 0.03, max(2 x 0.04, 0.09), 0.5.
    assert adjusted[:3] == pytest.approx([0.04, 0.09, 0.09])
    assert math.isnan(adjusted[3]) and adjusted[4] == pytest.approx(0.5)
    assert statistics.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_minimum_detectable_effect_has_80_percent_power_by_simulation():
    n, std = 10, 1.0
    effect = statistics.minimum_detectable_effect(std, n)
    rng = np.random.default_rng(1)
    samples = rng.normal(effect, std, size=(4000, n))
    p = scipy_stats.ttest_1samp(samples, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.03)


def test_format_estimate_gives_the_interval_or_the_mean_alone():
    assert statistics.format_estimate(0.5, [-0.25, 1.25], 2) == "+0.50 [-0.25, +1.25]"
    assert statistics.format_estimate(-0.004, [float("nan"), float("nan")], 3) == "-0.004"
