"""The overfitting statistics against hand-computed values and constructed return matrices."""

from __future__ import annotations

import math
import time
from itertools import combinations, pairwise

import numpy as np
import pytest

from autotrade.engine.stats import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_annualised,
    degradation,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe_ratio,
    sharpe_moments,
)


def test_psr_normal_returns_matches_hand_computation() -> None:
    # SR = 0.1 per period, SR* = 0, T = 101, skew 0, kurtosis 3:
    # variance term = 1 - 0*0.1 + (3-1)/4 * 0.01 = 1.005, sqrt = 1.0024969
    # z = 0.1 * sqrt(100) / 1.0024969 = 0.9975093;  Phi(0.9975093) = 0.8407413
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(0.8407413, abs=1e-7)


def test_psr_penalises_negative_skew_and_fat_tails() -> None:
    # SR = 0.2, SR* = 0, T = 26, skew -1, kurtosis 5:
    # variance term = 1 - (-1)(0.2) + (5-1)/4 * 0.04 = 1.24, sqrt = 1.1135529
    # z = 0.2 * sqrt(25) / 1.1135529 = 0.8980265;  Phi(0.8980265) = 0.8154143
    fat = probabilistic_sharpe_ratio(0.2, 0.0, 26, -1.0, 5.0)
    assert fat == pytest.approx(0.8154143, abs=1e-7)
    assert fat < probabilistic_sharpe_ratio(0.2, 0.0, 26, 0.0, 3.0)


def test_psr_is_one_half_at_the_benchmark() -> None:
    assert probabilistic_sharpe_ratio(0.05, 0.05, 500, -2.0, 9.0) == pytest.approx(0.5)


def test_psr_rejects_excess_kurtosis_mixup_and_too_few_observations() -> None:
    # Excess kurtosis -2 passed as non-excess 1 with positive skew: 1 - 3*0.5 + 0 < 0.
    with pytest.raises(ValueError, match="non-excess"):
        probabilistic_sharpe_ratio(0.5, 0.0, 100, 3.0, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)


def test_expected_max_sharpe_matches_the_paper_example() -> None:
    # N = 100, V = 0.5 (annual): Phi^-1(0.99) = 2.3263479, Phi^-1(1 - 1/(100e)) = 2.6802104
    # sqrt(0.5) * (0.4227843 * 2.3263479 + 0.5772157 * 2.6802104) = 0.7071068 * 2.5306 = 1.7894065 (annual)
    assert expected_max_sharpe(100, 0.5) == pytest.approx(1.7894065, abs=1e-6)
    z1, z2 = 2.3263479, 2.6802104
    assert expected_max_sharpe(100, 0.5) == pytest.approx(
        math.sqrt(0.5) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2), abs=1e-6
    )


def test_expected_max_sharpe_grows_with_trials_and_is_zero_for_one() -> None:
    values = [expected_max_sharpe(n, 1.0) for n in (1, 2, 5, 10, 50, 100, 1000)]
    assert values[0] == 0.0
    assert all(a < b for a, b in pairwise(values))
    # Two trials: 0.5772157 * Phi^-1(1 - 1/(2e)) = 0.5772157 * 0.9004 = 0.5197 (exact E[max of 2 N(0,1)] = 0.5642).
    assert values[1] == pytest.approx(0.5197, abs=1e-3)


def test_expected_max_sharpe_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match="var_trials"):
        expected_max_sharpe(10, -0.1)


def test_dsr_paper_example_is_0_90() -> None:
    # Bailey & Lopez de Prado (2014): N = 100 trials, T = 1250 daily returns, best annual SR 2.5,
    # cross-trial annual SR variance 0.5, skew -3, kurtosis 10, 250 periods per year.
    # SR per period = 2.5 / sqrt(250) = 0.1581139; SR0 = 1.7894065 / sqrt(250) = 0.1131720
    # variance term = 1 + 3 * 0.1581139 + (10-1)/4 * 0.1581139^2 = 1.5305916, sqrt = 1.2371708
    # z = (0.1581139 - 0.1131720) * sqrt(1249) / 1.2371708 = 1.2838160;  Phi(1.2838160) = 0.9003968
    dsr = deflated_sharpe_ratio_annualised(2.5, 1250, -3.0, 10.0, 100, 0.5, 250)
    assert dsr == pytest.approx(0.9004, abs=0.0005)
    per_period = deflated_sharpe_ratio(2.5 / math.sqrt(250), 1250, -3.0, 10.0, 100, 0.5 / 250)
    assert per_period == pytest.approx(dsr, abs=1e-12)


def test_dsr_with_one_trial_is_psr_against_zero() -> None:
    assert deflated_sharpe_ratio(0.05, 1000, -0.5, 6.0, 1, 0.3) == pytest.approx(
        probabilistic_sharpe_ratio(0.05, 0.0, 1000, -0.5, 6.0)
    )


def test_sharpe_moments_match_hand_computation() -> None:
    # r = [0.01, -0.02, 0.03, 0.0, NaN]: NaN dropped, n = 4, mean = 0.005
    # deviations 0.005, -0.025, 0.025, -0.005; m2 = (2.5e-5 + 6.25e-4 + 6.25e-4 + 2.5e-5) / 4 = 3.25e-4
    # std(ddof=1) = sqrt(1.3e-3 / 3) = 0.0208167 -> sr = 0.005 / 0.0208167 = 0.2401922
    # m3 = (1.25e-7 - 1.5625e-5 + 1.5625e-5 - 1.25e-7) / 4 = 0 -> skew 0
    # m4 = (6.25e-10 + 3.90625e-7 * 2 + 6.25e-10) / 4 = 1.956250e-7 -> kurtosis = 1.95625e-7 / 1.05625e-7 = 1.8520710
    moments = sharpe_moments(np.array([0.01, -0.02, 0.03, 0.0, np.nan]))
    assert moments.n_obs == 4
    assert moments.sr == pytest.approx(0.2401922, abs=1e-7)
    assert moments.skew == pytest.approx(0.0, abs=1e-12)
    assert moments.kurtosis == pytest.approx(1.8520710, abs=1e-7)


def test_sharpe_moments_of_a_flat_series_are_zero_sharpe_normal_shape() -> None:
    moments = sharpe_moments(np.zeros(10))
    assert (moments.sr, moments.skew, moments.kurtosis, moments.n_obs) == (0.0, 0.0, 3.0, 10)


def test_sharpe_moments_reject_short_or_infinite_series() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        sharpe_moments(np.array([0.01, np.nan, 0.02]))
    with pytest.raises(ValueError, match="infinite"):
        sharpe_moments(np.array([0.01, np.inf, 0.02, 0.0]))


def test_pbo_is_zero_when_one_trial_dominates_every_block() -> None:
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0, 0.01, size=(800, 10))
    returns[:, 0] += 0.01  # per-period Sharpe about 1 in every block, the others about 0
    result = pbo_cscv(returns)
    assert result.pbo == 0.0
    assert result.n_combinations == 12_870
    # In-sample best is always trial 0 and out-of-sample it ranks 10 of 10: logit = ln((10/11) / (1/11)) = ln 10.
    assert np.allclose(result.logits, math.log(10.0))
    assert result.prob_oos_loss == 0.0


def test_pbo_is_about_one_half_for_pure_noise_trials() -> None:
    # Unskilled trials: the in-sample winner's out-of-sample rank is uniform, so PBO averages 0.5. One seed's PBO
    # varies widely (the 12,870 combinations share data), so average eight seeded matrices.
    pbos = [pbo_cscv(np.random.default_rng(seed).normal(0.0, 0.01, size=(800, 20))).pbo for seed in range(8)]
    assert 0.4 < float(np.mean(pbos)) < 0.65


def test_pbo_is_near_one_when_in_sample_winners_reverse() -> None:
    # Each trial earns +d in 8 of the 16 blocks and -d in the others (zero total drift), plus small noise: for any
    # split the out-of-sample drift is minus the in-sample drift, so the in-sample winner is an out-of-sample loser.
    rng = np.random.default_rng(3)
    n_trials, block = 12, 50
    returns = rng.normal(0.0, 0.001, size=(16 * block, n_trials))
    for j in range(n_trials):
        good = rng.choice(16, size=8, replace=False)
        drift = np.full(16, -0.002)
        drift[good] = 0.002
        returns[:, j] += np.repeat(drift, block)
    result = pbo_cscv(returns)
    assert result.pbo > 0.95
    assert result.logit_median < 0.0
    assert result.prob_oos_loss > 0.95


def test_pbo_matches_a_direct_computation_with_flat_trials_and_uneven_blocks() -> None:
    rng = np.random.default_rng(11)
    returns = rng.normal(0.0004, 0.01, size=(203, 5))
    returns[:90, 2] = 0.0  # out of the market for the first blocks: flat unions score Sharpe exactly 0
    returns[:, 4] = returns[:, 3]  # identical trials tie and share their average rank
    result = pbo_cscv(returns, n_blocks=8)
    starts = np.linspace(0, 203, 9).round().astype(int)
    expected = []
    for chosen in combinations(range(8), 4):
        mask = np.zeros(203, dtype=bool)
        for b in chosen:
            mask[starts[b] : starts[b + 1]] = True
        is_sr, oos_sr = _sharpe_columns(returns[mask]), _sharpe_columns(returns[~mask])
        best = int(np.argmax(is_sr))
        rank = (oos_sr < oos_sr[best]).sum() + ((oos_sr == oos_sr[best]).sum() + 1) / 2
        omega = rank / 6
        expected.append(math.log(omega / (1 - omega)))
    assert result.n_combinations == 70
    assert np.allclose(result.logits, expected, atol=1e-9)
    assert result.pbo == pytest.approx(np.mean(np.array(expected) <= 0))


def _sharpe_columns(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0, ddof=1)
    flat = x.max(axis=0) == x.min(axis=0)
    return np.where(flat, 0.0, x.mean(axis=0) / np.where(flat, 1.0, std))


def test_pbo_on_mean_metric_runs_and_agrees_on_a_dominant_trial() -> None:
    returns = np.random.default_rng(5).normal(0.0, 0.01, size=(320, 4))
    returns[:, 1] += 0.02
    assert pbo_cscv(returns, metric="mean").pbo == 0.0


def test_pbo_is_fast_for_fifty_trials_over_twenty_years() -> None:
    returns = np.random.default_rng(1).normal(0.0, 0.01, size=(5000, 50))
    start = time.perf_counter()
    pbo_cscv(returns)
    assert time.perf_counter() - start < 3.0  # about 0.2 s on a shared 2-core machine


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((100,), {}, "2-D"),
        ((100, 1), {}, "at least 2 trials"),
        ((31, 4), {}, "at least 2 \\* n_blocks = 32"),
        ((100, 4), {"n_blocks": 7}, "even"),
        ((100, 4), {"metric": "sortino"}, "metric"),
    ],
)
def test_pbo_rejects_bad_inputs(shape: tuple[int, ...], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pbo_cscv(np.zeros(shape), **kwargs)


def test_pbo_rejects_missing_values() -> None:
    returns = np.zeros((64, 3))
    returns[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pbo_cscv(returns)


def test_degradation_reports_differences_between_windows() -> None:
    result = degradation(1.2, 0.7, 0.1)
    assert result.val_minus_train == pytest.approx(-0.5)
    assert result.test_minus_val == pytest.approx(-0.6)
    assert degradation(1.0, 0.5).test_minus_val is None
