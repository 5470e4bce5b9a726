"""The statistics behind `rerule study`'s verdict: does the paired hard-case gain grow with the measured hard ratio,
pooled over world sets, and how large a growth could the design have detected?

The trend is an ordinary least-squares slope of the gain on the measured early hard ratio with one intercept per
replicate (a replicate fixed effect). Replicates nest in world sets, so this contains the world-set fixed effect and
also takes out each world's own offset: the slope is estimated from how the gain moves across levels *within* a
world, and the levels of one world are not counted as independent evidence about the worlds' general level. The
slope's t-test has n − replicates − 1 degrees of freedom.

Power: with that design (the measured hard ratios, the replicates) and the residual SD observed, the t statistic of
a true slope β follows a noncentral t with noncentrality β / SE(β); the detectable slope is the β at which a
two-sided test at α rejects with probability 80% (scipy.stats.nct)."""

from __future__ import annotations

import math
from collections import defaultdict

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80


def within_slope(points: list[tuple], with_power: bool = True) -> dict:
    """points: (group, x, y). OLS slope of y on x with one intercept per group, its standard error, t-test
    (two-sided p), 95% interval, residual SD and (with_power) the slope detectable at 80% power. Fields are None
    where the design cannot estimate them (x constant within every group, or no residual degrees of freedom)."""
    by_group = defaultdict(list)
    for g, x, y in points:
        by_group[g].append((float(x), float(y)))
    xd, yd = [], []
    for rows in by_group.values():  # the within transformation: the fixed effects' least squares
        mx, my = sum(x for x, _ in rows) / len(rows), sum(y for _, y in rows) / len(rows)
        xd += [x - mx for x, _ in rows]
        yd += [y - my for _, y in rows]
    n, df = len(xd), len(xd) - len(by_group) - 1
    sxx = sum(v * v for v in xd)
    out = {"n": n, "groups": len(by_group), "df": df, "slope": None, "se": None, "p_value": None, "lo": None,
           "hi": None, "residual_sd": None, "detectable_slope": None}
    if sxx <= 1e-15 or df < 1:
        return out
    slope = sum(a * b for a, b in zip(xd, yd)) / sxx
    sd = math.sqrt(sum((b - slope * a) ** 2 for a, b in zip(xd, yd)) / df)
    se = sd / math.sqrt(sxx)
    half = stats.t.ppf(1 - ALPHA / 2, df) * se
    p = float(2 * stats.t.sf(abs(slope / se), df)) if se > 0 else (0.0 if slope else 1.0)
    return {**out, "slope": slope, "se": se, "p_value": p, "lo": slope - half, "hi": slope + half, "residual_sd": sd,
            "detectable_slope": detectable_slope(se, df) if with_power else None}


def power_of(noncentrality: float, df: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided t-test at `alpha` rejects when the t statistic is noncentral t(df, δ)."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    upper, lower = float(stats.nct.sf(crit, df, noncentrality)), float(stats.nct.cdf(-crit, df, noncentrality))
    # The wrong-direction tail is below 1e-15 wherever scipy's series fails (NaN) for a large noncentrality.
    return upper + (lower if math.isfinite(lower) else 0.0)


def detectable_slope(se: float, df: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true slope a two-sided test at `alpha` detects with probability `power`, given the slope's
    standard error `se` under the design (noncentrality = slope / se)."""
    hi = 1.0
    while power_of(hi, df, alpha) < power:  # power grows with the noncentrality: bracket the root, then solve
        hi *= 2
    delta = optimize.brentq(lambda d: power_of(d, df, alpha) - power, 0.0, hi, xtol=1e-10)
    return delta * se
