"""A study's verdict from its per-seed numbers: which variants learned at all, and which are
clearly better than which on the study's metric. Torch-free, plain math (no scipy).

The rules (docs/measurement.md, "Study verdicts"):

- **Learned at all.** A trial learned when its validation R² is at least `LEARNED_R2`
  (0.5: its squared error is at most half the mean guess's on the same labels). A variant
  learned when every finished seed did; it "did not learn" when none did and is
  "unstable" otherwise. Only variants that learned are ranked: a model that learned
  nothing has a flat error everywhere, which wins any ratio of errors (resolution,
  distractors), and naming a winner among models that all lost to the mean guess answers
  nothing.
- **Paired comparisons.** Every variant of a study runs on the same seeds, so two variants
  are compared seed by seed: the difference of the metric at each seed both finished,
  its mean, a t-based 95% interval and a two-sided paired t-test p-value.
- **Multiple comparisons.** All pairs of ranked variants are tested at once; Holm's
  step-down adjustment keeps the chance of any false "clearly better" at 5% (family-wise).
- **Ties.** Identical numbers at every seed are "no difference"; fewer than two paired
  seeds give no comparison at all ("too few paired seeds"), never a winner.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

LEARNED_R2 = 0.5
ALPHA = 0.05
HIGHER_IS_BETTER_SUFFIXES = ("r2", "accuracy")


def higher_is_better(metric: str) -> bool:
    """R² and accuracy (and metrics built on them: heldout_r2, resolution_min_r2...)."""
    return metric.endswith(HIGHER_IS_BETTER_SUFFIXES)


def metric_range(metric: str) -> tuple[float, float]:
    """Where a metric's values can lie: an interval of its mean is clipped to it (no
    metric named: anywhere)."""
    if not metric:
        return -math.inf, math.inf
    if metric.endswith("accuracy"):
        return 0.0, 1.0
    if metric.endswith("r2"):
        return -math.inf, 1.0
    return 0.0, math.inf  # errors, ratios of errors, counts of steps


# -- Student's t distribution, for any degrees of freedom
def _t_pdf(x: float, df: int) -> float:
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(c - (df + 1) / 2 * math.log1p(x * x / df))


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for T ~ t(df): Simpson's rule on the density over x = tan(θ), which
    maps [0, |t|] to a finite angle and keeps the integrand smooth for any t."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    top = math.atan(abs(t))
    steps = 2000
    h = top / steps
    total = 0.0
    for i in range(steps + 1):
        theta = i * h
        x = math.tan(theta)
        f = _t_pdf(x, df) / math.cos(theta) ** 2
        total += f * (1 if i in (0, steps) else 4 if i % 2 else 2)
    central = total * h / 3  # P(0 <= T <= |t|)
    return min(1.0, max(0.0, 1.0 - 2.0 * central))


@lru_cache(maxsize=256)
def t_critical(df: int, alpha: float = ALPHA) -> float:
    """The two-sided critical value: P(|T| >= c) = alpha (bisection on t_two_sided_p)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > alpha:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if t_two_sided_p(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


# -- learned at all
@dataclass
class Learned:
    """Whether a variant learned: how many of its finished seeds reached LEARNED_R2."""

    status: str  # "learned", "did not learn", "unstable", "no trials"
    learned: int
    n: int
    r2: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "learned": self.learned, "n": self.n, "r2": self.r2,
                "threshold_r2": LEARNED_R2}

    def words(self) -> str:
        r2 = ", ".join(f"{v:.2f}" for v in self.r2)
        return f"R² {r2}" if self.r2 else "no finished seed"


def learned_status(r2_by_seed: dict[int, float]) -> Learned:
    """The judgement from each finished seed's validation R² (NaN counts as not learned)."""
    values = [r2_by_seed[s] for s in sorted(r2_by_seed)]
    ok = sum(1 for v in values if v is not None and math.isfinite(v) and v >= LEARNED_R2)
    n = len(values)
    status = ("no trials" if n == 0 else "learned" if ok == n else
              "did not learn" if ok == 0 else "unstable")
    return Learned(status, ok, n, [float(v) for v in values])


# -- paired comparisons
@dataclass
class Comparison:
    """a minus b on the metric over the seeds both finished."""

    a: str
    b: str
    n: int
    diff: float
    ci95: tuple[float, float]
    p: float
    p_holm: float = math.nan
    better: str | None = None  # the clearly better one, or None

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "n": self.n, "diff": self.diff,
                "ci95": list(self.ci95), "p": self.p, "p_holm": self.p_holm,
                "better": self.better}


def paired(a: str, b: str, va: dict[int, float], vb: dict[int, float]) -> Comparison:
    seeds = sorted(set(va) & set(vb))
    d = [va[s] - vb[s] for s in seeds]
    n = len(d)
    if n == 0:
        return Comparison(a, b, 0, math.nan, (math.nan, math.nan), math.nan)
    mean = statistics.fmean(d)
    if n < 2:
        return Comparison(a, b, n, mean, (math.nan, math.nan), math.nan)
    sd = statistics.stdev(d)
    if sd == 0:
        p = 1.0 if mean == 0 else 0.0  # identical at every seed, or a constant gap
        return Comparison(a, b, n, mean, (mean, mean), p)
    se = sd / math.sqrt(n)
    half = t_critical(n - 1) * se
    return Comparison(a, b, n, mean, (mean - half, mean + half),
                      t_two_sided_p(mean / se, n - 1))


def holm(comparisons: list[Comparison], higher: bool, alpha: float = ALPHA) -> None:
    """Holm's step-down adjustment over the testable comparisons, in place; each
    comparison significant after it names its better variant."""
    tested = sorted((c for c in comparisons if math.isfinite(c.p)), key=lambda c: c.p)
    m = len(tested)
    running = 0.0
    for i, c in enumerate(tested):
        running = max(running, min(1.0, (m - i) * c.p))
        c.p_holm = running
    for c in tested:
        if c.p_holm < alpha and c.diff != 0:
            a_better = c.diff > 0 if higher else c.diff < 0
            c.better = c.a if a_better else c.b


def compare_all(metric: str, values: dict[str, dict[int, float]]) -> list[Comparison]:
    """Every pair of variants in `values` (label -> seed -> metric), Holm-adjusted."""
    labels = list(values)
    out = [paired(a, b, values[a], values[b])
           for i, a in enumerate(labels) for b in labels[i + 1:]]
    holm(out, higher_is_better(metric))
    return out


# -- the verdict in words
def _fmt(x: float) -> str:
    return f"{x:.4g}"


def verdict_text(metric: str, values: dict[str, dict[int, float]],
                 learned: dict[str, Learned]) -> tuple[str, list[Comparison]]:
    """The verdict over every variant of one comparable group, and the comparisons behind
    it. `values`: label -> seed -> the metric (finished seeds); `learned`: label -> gate."""
    have = {label: v for label, v in values.items() if v}
    if not have and not any(g.n for g in learned.values()):
        return f"no finished trial has {metric} yet", []
    parts: list[str] = []
    failed = [label for label, g in learned.items() if g.status == "did not learn"]
    unstable = [label for label, g in learned.items() if g.status == "unstable"]
    ranked = {label: v for label, v in have.items()
              if learned.get(label) is not None and learned[label].status == "learned"}
    if failed:
        parts.append("did not learn (validation R² below "
                     f"{LEARNED_R2} in every seed, not ranked): " + "; ".join(
                         f"{label} ({learned[label].words()})" for label in failed))
    if unstable:
        parts.append("learned in some seeds only (not ranked): " + "; ".join(
            f"{label} ({learned[label].learned} of {learned[label].n}: "
            f"{learned[label].words()})" for label in unstable))
    if not ranked:
        parts.insert(0, "no variant learned: nothing to rank" if learned else
                     f"no finished trial has {metric} yet")
        return ". ".join(parts), []
    higher = higher_is_better(metric)
    order = sorted(ranked, key=lambda label: statistics.fmean(ranked[label].values()),
                   reverse=higher)
    if len(order) == 1:
        only = order[0]
        parts.insert(0, f"{only} is the only variant that learned ({metric} "
                        f"{_fmt(statistics.fmean(ranked[only].values()))}): nothing to "
                        "compare it with")
        return ". ".join(parts), []
    comparisons = compare_all(metric, {label: ranked[label] for label in order})
    m = sum(1 for c in comparisons if math.isfinite(c.p))
    clear_any = any(c.better for c in comparisons)
    lines = []
    for i, label in enumerate(order, 1):
        mine = [c for c in comparisons if label in (c.a, c.b)]
        beats = [c.b if c.a == label else c.a for c in mine if c.better == label]
        loses = [c.b if c.a == label else c.a for c in mine if c.better not in (None, label)]
        same = [c.b if c.a == label else c.a for c in mine
                if c.better is None and math.isfinite(c.p)]
        few = [c.b if c.a == label else c.a for c in mine if not math.isfinite(c.p)]
        xs = list(ranked[label].values())
        sd = statistics.stdev(xs) if len(xs) > 1 else math.nan
        what = [f"{i}. {label} {_fmt(statistics.fmean(xs))} ± "
                f"{'-' if math.isnan(sd) else f'{sd:.2g}'} (n={len(xs)})"]
        if beats:
            what.append("clearly better than " + ", ".join(beats))
        if loses:
            what.append("clearly worse than " + ", ".join(loses))
        if same and clear_any:
            what.append("no clear difference from " + (
                "any other" if len(same) == len(order) - 1 else ", ".join(same)))
        if few:
            what.append("too few paired seeds to compare with " + ", ".join(few))
        lines.append("; ".join(what))
    word = "higher" if higher else "lower"
    how = (f"paired by seed, Holm-adjusted over {m} comparison{'s' if m != 1 else ''} "
           f"at {ALPHA:.0%}")
    if m and not clear_any:
        how = f"no clear difference between any two of them ({how})"
    elif not m:
        how = "too few paired seeds to compare any two of them"
    head = (f"ranked by {metric} ({word} is better) among the variants that learned; "
            f"{how}: " + " | ".join(lines))
    return ". ".join([head, *parts]), comparisons
