"""Overfitting statistics: PSR, DSR, expected maximum Sharpe, PBO by CSCV, degradation.

Pure functions: numpy arrays or floats in, floats (or frozen results) out.

Conventions used throughout:
- Sharpe inside every formula is PER PERIOD (per bar: daily for daily data), not annualised:
  ``mean(r) / std(r, ddof=1)`` of simple per-bar returns, no risk-free rate.
  Annualised Sharpe = per-period × √periods_per_year; helpers taking annualised figures say so in their names.
- Kurtosis is NON-excess (a normal distribution has 3). Skewness and kurtosis are the moment (biased, ddof=0)
  estimators, as in Bailey & López de Prado.

References:
- Bailey, D. H. & López de Prado, M. (2012). "The Sharpe Ratio Efficient Frontier". Journal of Risk 15(2). (PSR)
- Bailey, D. H. & López de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
  Overfitting and Non-Normality". Journal of Portfolio Management 40(5). (expected max Sharpe, DSR)
- Bailey, D. H., Borwein, J., López de Prado, M. & Zhu, Q. J. (2017). "The Probability of Backtest Overfitting".
  Journal of Computational Finance 20(4); SSRN working paper 2015. (PBO by CSCV)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist
from typing import Literal

import numpy as np

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """Probability that the true per-period Sharpe exceeds ``sr_benchmark`` (PSR, Bailey & López de Prado 2012).

    PSR = Φ( (SR − SR*) · √(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4 · SR²) )
    with SR, SR* per period, T = n_obs returns, γ3 = skew, γ4 = non-excess kurtosis (normal = 3).
    """
    if n_obs < 2:
        raise ValueError(f"PSR needs at least 2 observations, got n_obs={n_obs}")
    variance_term = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if not variance_term > 0.0:
        # Impossible for real data (Pearson: kurtosis ≥ 1 + skew²): catches mixed-up inputs such as excess kurtosis.
        raise ValueError(
            f"inconsistent moments (skew={skew}, kurtosis={kurtosis}, sr={sr}): "
            "1 - skew*sr + (kurtosis-1)/4*sr^2 <= 0; "
            "kurtosis must be non-excess (normal = 3)"
        )
    z = (sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return _NORMAL.cdf(z)


def expected_max_sharpe(n_trials: int, var_trials: float) -> float:
    """Expected maximum Sharpe of ``n_trials`` unskilled trials (true Sharpe 0), in the units of ``var_trials``.

    E[max SR] ≈ √V · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e))), γ = Euler–Mascheroni constant
    (Bailey & López de Prado 2014, eq. for SR0). V is the variance of the trials' Sharpe ratios: a per-period
    variance gives a per-period answer, an annualised one an annualised answer. One trial involves no selection: 0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if var_trials < 0.0 or not math.isfinite(var_trials):
        raise ValueError(f"var_trials must be a finite variance >= 0, got {var_trials}")
    if n_trials == 1:
        return 0.0
    z_n = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z_ne = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(var_trials) * ((1.0 - EULER_GAMMA) * z_n + EULER_GAMMA * z_ne)


def deflated_sharpe_ratio(
    sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, var_trials: float
) -> float:
    """Deflated Sharpe Ratio: PSR against the expected best Sharpe of ``n_trials`` unskilled trials (per-period inputs).

    DSR = PSR(SR* = expected_max_sharpe(n_trials, var_trials)), Bailey & López de Prado (2014). ``sr`` and
    ``var_trials`` are per period (``deflated_sharpe_ratio_annualised`` takes annual ones); n_obs = returns behind sr.
    """
    sr0 = expected_max_sharpe(n_trials, var_trials)
    return probabilistic_sharpe_ratio(sr, sr0, n_obs, skew, kurtosis)


def deflated_sharpe_ratio_annualised(
    sr_annual: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
    n_trials: int,
    var_trials_annual: float,
    periods_per_year: float,
) -> float:
    """DSR from an annualised Sharpe and an annualised cross-trial Sharpe variance (converted to per period first).

    SR per period = SR_annual / √ppy; variance per period = V_annual / ppy.
    """
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year}")
    return deflated_sharpe_ratio(
        sr_annual / math.sqrt(periods_per_year),
        n_obs,
        skew,
        kurtosis,
        n_trials,
        var_trials_annual / periods_per_year,
    )


@dataclass(frozen=True)
class SharpeMoments:
    """Per-period Sharpe (ddof=1), skewness and non-excess kurtosis (ddof=0 moments), and the number of returns used."""

    sr: float
    skew: float
    kurtosis: float
    n_obs: int


def sharpe_moments(returns: np.ndarray) -> SharpeMoments:
    """Per-period Sharpe, skewness and non-excess kurtosis of simple per-bar returns; NaNs (pct_change's first) dropped.

    sr = mean / std(ddof=1) (the product's Sharpe before × √ppy); skew = m3 / m2^1.5, kurtosis = m4 / m2² with central
    moments m_k = mean((r − mean)^k) (ddof=0). Zero variance gives sr = 0, skew = 0, kurtosis = 3 (treated as normal).
    """
    r = np.asarray(returns, dtype=float).ravel()
    r = r[~np.isnan(r)]
    if r.size < 3:
        raise ValueError(f"need at least 3 non-NaN returns, got {r.size}")
    if not np.all(np.isfinite(r)):
        raise ValueError("returns contain infinite values")
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    if m2 == 0.0:
        return SharpeMoments(sr=0.0, skew=0.0, kurtosis=3.0, n_obs=int(r.size))
    sr = float(r.mean() / r.std(ddof=1))
    skew = float(np.mean(centred**3) / m2**1.5)
    kurtosis = float(np.mean(centred**4) / m2**2)
    return SharpeMoments(sr=sr, skew=skew, kurtosis=kurtosis, n_obs=int(r.size))


@dataclass(frozen=True)
class PBOResult:
    """Probability of backtest overfitting and the distribution of the CSCV logits.

    pbo: share of combinations whose in-sample best trial ranks at or below the out-of-sample median (logit ≤ 0).
    logits: λ_c = ln(ω_c / (1 − ω_c)), ω_c = out-of-sample rank of the in-sample best / (N + 1), one per combination.
    prob_oos_loss: share of combinations where the in-sample best has a negative out-of-sample metric.
    """

    pbo: float
    logits: np.ndarray
    logit_mean: float
    logit_median: float
    prob_oos_loss: float
    n_combinations: int
    n_trials: int
    n_blocks: int


def pbo_cscv(returns: np.ndarray, n_blocks: int = 16, metric: Literal["sharpe", "mean"] = "sharpe") -> PBOResult:
    """PBO by combinatorially symmetric cross-validation (Bailey, Borwein, López de Prado & Zhu) over T × N returns.

    Rows are time (per-bar returns, aligned across trials), columns are trials. The rows are cut into ``n_blocks``
    contiguous blocks (sizes differ by at most one); every choice of half the blocks is in-sample, the rest
    out-of-sample: C(16, 8) = 12,870 combinations. Per combination the trial with the best in-sample metric is ranked
    out-of-sample (ties share their average rank). ``metric``: "sharpe" (mean / std ddof=1, per period; zero variance
    → 0) or "mean". Vectorised through per-block sums and sums of squares.
    """
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"returns must be a 2-D array (T bars x N trials), got shape {m.shape}")
    n_bars, n_trials = m.shape
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even number >= 2, got {n_blocks}")
    if n_trials < 2:
        raise ValueError(f"PBO needs at least 2 trials (columns), got {n_trials}")
    if n_bars < 2 * n_blocks:
        raise ValueError(f"PBO needs at least 2 * n_blocks = {2 * n_blocks} rows of returns, got {n_bars}")
    if not np.all(np.isfinite(m)):
        raise ValueError("returns contain NaN or infinite values; align the trials and drop missing rows first")
    if metric not in ("sharpe", "mean"):
        raise ValueError(f"metric must be 'sharpe' or 'mean', got {metric!r}")

    # Centre each trial on its full-sample mean so sums of squares do not cancel catastrophically; added back below.
    col_mean = m.mean(axis=0)
    centred = m - col_mean
    starts = np.linspace(0, n_bars, n_blocks + 1).round().astype(int)
    blocks = _BlockSums(
        length=np.diff(starts).astype(float),
        total=np.add.reduceat(centred, starts[:-1], axis=0),
        squares=np.add.reduceat(centred**2, starts[:-1], axis=0),
        low=np.minimum.reduceat(m, starts[:-1], axis=0),
        high=np.maximum.reduceat(m, starts[:-1], axis=0),
        col_mean=col_mean,
    )

    combos = np.array(list(combinations(range(n_blocks), n_blocks // 2)))
    in_sample = np.zeros((len(combos), n_blocks), dtype=bool)
    np.put_along_axis(in_sample, combos, True, axis=1)
    is_metric = _metric_of_union(in_sample, blocks, metric)
    oos_metric = _metric_of_union(~in_sample, blocks, metric)

    best = np.argmax(is_metric, axis=1)
    chosen = np.take_along_axis(oos_metric, best[:, None], axis=1)  # (C, 1)
    below = (oos_metric < chosen).sum(axis=1)
    tied = (oos_metric == chosen).sum(axis=1)  # includes the chosen trial itself
    rank = below + (tied + 1) / 2.0  # 1-based average rank among N
    omega = rank / (n_trials + 1)
    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        logit_mean=float(np.mean(logits)),
        logit_median=float(np.median(logits)),
        prob_oos_loss=float(np.mean(chosen[:, 0] < 0.0)),
        n_combinations=len(combos),
        n_trials=n_trials,
        n_blocks=n_blocks,
    )


@dataclass(frozen=True)
class _BlockSums:
    """Per-block (S × N) sums of centred returns and their squares, raw min and max; block lengths (S,)."""

    length: np.ndarray
    total: np.ndarray
    squares: np.ndarray
    low: np.ndarray
    high: np.ndarray
    col_mean: np.ndarray


def _metric_of_union(mask: np.ndarray, blocks: _BlockSums, metric: str) -> np.ndarray:
    """Per-combination, per-trial metric (C × N) of the union of the blocks selected by the boolean mask (C × S)."""
    # A union of identical returns (e.g. out of the market throughout) is detected from the raw min/max and gets its
    # exact mean and Sharpe 0: the sums leave rounding noise that would otherwise break ties between such trials.
    low = np.full((mask.shape[0], blocks.low.shape[1]), np.inf)
    high = np.full_like(low, -np.inf)
    for b in range(mask.shape[1]):
        picked = mask[:, b : b + 1]
        low = np.where(picked, np.minimum(low, blocks.low[b]), low)
        high = np.where(picked, np.maximum(high, blocks.high[b]), high)
    flat = low == high

    weights = mask.astype(float)
    n = (weights @ blocks.length)[:, None]
    s = weights @ blocks.total
    mean_centred = s / n
    mean = np.where(flat, low, mean_centred + blocks.col_mean)
    if metric == "mean":
        return mean
    var = np.clip((weights @ blocks.squares - s * mean_centred) / (n - 1), 0.0, None)
    flat |= var == 0.0
    return np.where(flat, 0.0, mean / np.sqrt(np.where(flat, 1.0, var)))


@dataclass(frozen=True)
class Degradation:
    """A metric across train → validation → test; drops are later minus earlier (negative = it got worse)."""

    train: float
    val: float
    test: float | None
    val_minus_train: float
    test_minus_val: float | None


def degradation(train: float, val: float, test: float | None = None) -> Degradation:
    """How a metric (e.g. annualised Sharpe or total return) changes from train to validation to test (differences).

    Differences, not ratios: ratios of Sharpe ratios explode or flip sign near zero.
    """
    return Degradation(
        train=train,
        val=val,
        test=test,
        val_minus_train=val - train,
        test_minus_val=None if test is None else test - val,
    )
