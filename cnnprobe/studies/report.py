"""A study's numbers: per variant the mean, SD, n and 95% interval of every final metric,
and a verdict computed from them (never written by hand). Torch-free."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cnnprobe.store import RunStore
from cnnprobe.studies.plan import StudyPlan
from cnnprobe.studies.runner import trial_records

# Two-sided 95% Student t critical values by degrees of freedom (1..30); 1.96 beyond.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
HIGHER_IS_BETTER = ("r2", "accuracy")


@dataclass
class Summary:
    """One metric of one variant over its seeds."""

    mean: float
    std: float
    n: int
    ci95: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "ci95": list(self.ci95)}


def summarise(values: list[float]) -> Summary:
    """Mean, sample SD, n and the t-based 95% interval of the mean (NaN values dropped)."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return Summary(math.nan, math.nan, 0, (math.nan, math.nan))
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if n > 1 else 0.0
    half = (T95[n - 2] if n - 1 <= len(T95) else 1.96) * std / math.sqrt(n) if n > 1 else \
        math.nan
    return Summary(mean, std, n, (mean - half, mean + half))


@dataclass
class StudyReport:
    name: str
    question: str
    metric: str
    variants: dict[str, dict[str, Summary]]  # label -> metric -> summary
    statuses: dict[str, dict[str, int]]  # label -> status -> trials
    verdicts: dict[str, str]  # task -> verdict among the variants on that task ("": all)
    missing: int = 0  # trials of the plan not in the store
    runs: dict[str, list[str]] = field(default_factory=dict)  # label -> run ids

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "question": self.question, "metric": self.metric,
                "verdicts": self.verdicts, "missing": self.missing,
                "variants": {v: {"metrics": {m: s.as_dict() for m, s in ms.items()},
                                 "statuses": self.statuses[v], "runs": self.runs[v]}
                             for v, ms in self.variants.items()}}


def verdict(metric: str, variants: dict[str, dict[str, Summary]]) -> str:
    """Which variant is best on `metric`, and whether its lead over the next is larger than
    the seeds' spread (its 95% interval clear of the next one's)."""
    ranked = [(label, ms[metric]) for label, ms in variants.items()
              if metric in ms and ms[metric].n > 0 and math.isfinite(ms[metric].mean)]
    if not ranked:
        return f"no finished trial has {metric} yet"
    higher = metric in HIGHER_IS_BETTER
    ranked.sort(key=lambda item: -item[1].mean if higher else item[1].mean)
    best, b = ranked[0]
    word = "highest" if higher else "lowest"
    if len(ranked) == 1:
        return f"{best} has the {word} {metric} ({b.mean:.4g} ± {b.std:.2g}, n={b.n}); " \
               "no other variant to compare with"
    second, s = ranked[1]
    lead = abs(s.mean - b.mean)
    clear = (b.ci95[1] < s.ci95[0]) if not higher else (b.ci95[0] > s.ci95[1])
    how = ("larger than the seeds' spread (95% intervals do not overlap)" if clear else
           "within the seeds' spread (95% intervals overlap, or too few seeds)")
    return (f"{best} has the {word} {metric}: {b.mean:.4g} ± {b.std:.2g} (n={b.n}) vs "
            f"{second} {s.mean:.4g} ± {s.std:.2g} (n={s.n}); the lead of {lead:.3g} is {how}")


def study_report(store: RunStore, plan: StudyPlan) -> StudyReport:
    """The report of a study from its stored trials."""
    stored = trial_records(store, plan.name)
    per: dict[str, dict[str, list[float]]] = {}
    task_of: dict[str, str] = {}
    statuses: dict[str, dict[str, int]] = {}
    runs: dict[str, list[str]] = {}
    missing = 0
    for trial in plan.trials():
        per.setdefault(trial.variant, {})
        task_of[trial.variant] = trial.config.task.name
        statuses.setdefault(trial.variant, {})
        runs.setdefault(trial.variant, [])
        rec = stored.get(trial.key)
        if rec is None:
            missing += 1
            continue
        statuses[trial.variant][rec.status] = statuses[trial.variant].get(rec.status, 0) + 1
        runs[trial.variant].append(rec.id)
        if rec.status == "finished":
            for m, v in rec.metrics.items():
                if m != "n":
                    per[trial.variant].setdefault(m, []).append(v)
    summaries = {label: {m: summarise(vs) for m, vs in ms.items()} for label, ms in per.items()}
    # Metrics of different tasks are not comparable: one verdict per task.
    tasks = sorted(set(task_of.values()))
    verdicts = {("" if len(tasks) == 1 else task): verdict(
        plan.metric, {v: s for v, s in summaries.items() if task_of[v] == task})
        for task in tasks}
    return StudyReport(plan.name, plan.question, plan.metric, summaries, statuses, verdicts,
                       missing, runs)
