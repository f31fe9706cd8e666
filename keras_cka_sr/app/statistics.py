"""Paired statistics of the main job's tables, in pure Python (no SciPy at run time):
Student's t distribution, the paired t-test and interval, Holm's step-down adjustment and
the smallest effect a paired study can detect."""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """A paired comparison (treatment minus baseline, one difference per seed).

    `half_width` is the half-width of the 95% t-interval of the mean difference; `p` the
    two-sided p-value of the paired t-test (mean 0); `mde80` the smallest true mean
    difference the study detects with 80% power at a two-sided 0.05 level. All three are NaN
    for fewer than 2 pairs; with a zero spread `p` is 0 (or 1 for a zero mean)."""

    n: int
    mean: float
    std: float
    half_width: float
    p: float
    mde80: float


def paired_test(differences: Sequence[float]) -> PairedTest:
    """The paired t-test, 95% interval and detectable effect of `differences`."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"`differences` must be a non-empty 1-D sequence; got shape {d.shape}.")
    n, mean = len(d), float(d.mean())
    if n < 2:
        return PairedTest(n, mean, 0.0, math.nan, math.nan, math.nan)
    df = n - 1
    std = float(d.std(ddof=1))
    se = std / math.sqrt(n)
    t975 = t_quantile(0.975, df)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = 2.0 * t_sf(abs(mean) / se, df)
    return PairedTest(n, mean, std, t975 * se, p, minimum_detectable_effect(std, n))


def format_estimate(mean: float, interval: Sequence[float], digits: int) -> str:
    """`+mean [+low, +high]` with `digits` decimals; the mean alone when the interval is not
    finite (fewer than 2 pairs)."""
    if not all(v is not None and math.isfinite(v) for v in interval):
        return f"{mean:+.{digits}f}"
    low, high = interval
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def minimum_detectable_effect(std: float, n: int, power: float = 0.8, alpha: float = 0.05):
    """The smallest true mean difference a two-sided paired t-test on `n` pairs with spread
    `std` detects with probability `power` at level `alpha`:
    `(t(1 - alpha/2, n-1) + t(power, n-1)) * std / sqrt(n)` (the usual approximation of
    the noncentral t; a little optimistic for very few pairs)."""
    if n < 2:
        return math.nan
    df = n - 1
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * std / math.sqrt(n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN entries stay NaN and do
    not count as comparisons): the family-wise error rate of rejecting every adjusted p <
    alpha is at most alpha."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    indexed.sort()
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"`df` must be > 0; got {df}.")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(q: float, df: float) -> float:
    """The `q` quantile of Student's t with `df` degrees of freedom (bisection to 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"`q` must be in (0, 1); got {q}.")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_sf(high, df) > 1.0 - q:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_sf(middle, df) > 1.0 - q:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a
