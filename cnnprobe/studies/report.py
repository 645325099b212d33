"""A study's numbers: per variant the mean, SD, n and 95% interval of every final metric,
of every metric at each point of its stored sweeps (resolution, distractors) and of its
saved re-evaluations, and a verdict computed from them (never written by hand).
Torch-free; the writers of its files (Markdown, JSON, CSV, plots) are in
cnnprobe/report/study.py and take `StudyReport.as_dict()`."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cnnprobe.store import RunStore
from cnnprobe.studies.plan import StudyPlan
from cnnprobe.studies.runner import metric_prefix, trial_metrics, trial_records

# Two-sided 95% Student t critical values by degrees of freedom (1..30); 1.96 beyond.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
HIGHER_IS_BETTER = ("r2", "accuracy")
# Metrics without units: they compare across a study's pixel and normalized variants.
UNITLESS = ("r2", "accuracy", "resolution_ratio")
STUDY_FORMAT = "cnnprobe.study/1"
NOT_METRICS = ("n",)  # sample counts, not measurements


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
    # label -> sweep kind -> swept value (a resolution, a distractor count) -> metric -> summary
    sweeps: dict[str, dict[str, dict[float, dict[str, Summary]]]] = field(
        default_factory=dict)
    # label -> re-evaluation setting ("64x64, 3 distractors") -> metric -> summary
    evaluations: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    source: str = ""  # the plan file, or "built-in study NAME (SCALE)"
    command: str = ""  # the command that reproduces the study, when the caller knows it
    tasks: dict[str, str] = field(default_factory=dict)  # label -> task name
    # one line per damaged trial file (file, run, the command that rewrites it): the
    # numbers made from it are left out, the rest of the report stands
    unreadable: list[str] = field(default_factory=list)

    def sweep_kinds(self) -> list[str]:
        """The sweep kinds any variant has, in a fixed order."""
        return sorted({k for by_kind in self.sweeps.values() for k in by_kind}, reverse=True)

    def sweep_metric(self, kind: str) -> str:
        """The metric a sweep is read by: the study's when its tables hold it, else mae."""
        held = {m for by_kind in self.sweeps.values()
                for point in by_kind.get(kind, {}).values() for m in point}
        return self.metric if self.metric in held else "mae"

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data: what `study show --json` prints and the exports write."""
        def sweeps(label: str) -> dict[str, list[dict[str, Any]]]:
            return {kind: [{"point": point, "metrics": {m: s.as_dict() for m, s in ms.items()}}
                           for point, ms in sorted(points.items())]
                    for kind, points in self.sweeps.get(label, {}).items()}

        return {"format": STUDY_FORMAT, "name": self.name, "question": self.question,
                "metric": self.metric, "source": self.source, "seeds": list(self.seeds),
                "command": self.command, "verdicts": self.verdicts, "missing": self.missing,
                "unreadable": self.unreadable,
                "sweep_metrics": {k: self.sweep_metric(k) for k in self.sweep_kinds()},
                "variants": {v: {"task": self.tasks.get(v, ""),
                                 "metrics": {m: s.as_dict() for m, s in ms.items()},
                                 "statuses": self.statuses[v], "runs": self.runs[v],
                                 "sweeps": sweeps(v),
                                 "evaluations": {
                                     setting: {m: s.as_dict() for m, s in ms2.items()}
                                     for setting, ms2 in self.evaluations.get(v, {}).items()}}
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


def _plain(value: Any) -> Any:
    """A numpy scalar as plain Python."""
    return value.item() if hasattr(value, "item") else value


def _number(value: Any) -> float | None:
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def evaluation_setting(options: dict[str, Any]) -> str:
    """A re-evaluation's setting in words: "64x64", "32x32, 3 distractors, heldout",
    "fine-tuned at 75x75"."""
    size = f"{options.get('height')}x{options.get('width')}"
    if options.get("kind") == "finetune":
        return f"fine-tuned at {size}"
    parts = [size]
    if options.get("distractors"):
        parts.append(f"{options['distractors']} distractors")
    if options.get("region", "train") != "train":
        parts.append(str(options["region"]) + (f" ({options['quadrant']})"
                                               if options.get("quadrant") else ""))
    if options.get("which", "last") != "last":
        parts.append(f"{options['which']} weights")
    return ", ".join(parts)


def _trial_sweeps(store: RunStore, run_id: str) -> dict[str, dict[float, dict[str, float]]]:
    """kind -> swept value -> metric -> value, from the run's stored sweep tables."""
    out: dict[str, dict[float, dict[str, float]]] = {}
    for info in store.sweeps(run_id):
        kind = info["kind"]
        table = store.sweep_table(run_id, kind)  # from the index: its samples file unread
        if table is None:
            continue
        for row in table.to_dict(orient="records"):
            point = _plain(row.get(kind))
            if _number(point) is None:
                continue
            values = {m: _number(v) for m, v in row.items()
                      if m != kind and m not in NOT_METRICS}
            out.setdefault(kind, {})[point] = {m: v for m, v in values.items() if v is not None}
    return out


def _trial_evaluations(store: RunStore, run_id: str) -> dict[str, dict[str, float]]:
    """setting -> metric -> value of the run's saved re-evaluations (the newest of each)."""
    out: dict[str, dict[str, float]] = {}
    for ev in store.evaluations(run_id):
        if metric_prefix(ev["options"]):
            continue  # the study's own evaluations: in the final metrics (finetune_mae...)
        values = {m: _number(v) for m, v in ev["metrics"].items() if m not in NOT_METRICS}
        out[evaluation_setting(ev["options"])] = {m: v for m, v in values.items()
                                                  if v is not None}
    return out


def study_report(store: RunStore, plan: StudyPlan, *, command: str = "") -> StudyReport:
    """The report of a study from its stored trials: their final metrics, sweeps and saved
    re-evaluations (finished trials only). `command` (the one that reproduces it) is kept
    as given."""
    stored = trial_records(store, plan.name)
    per: dict[str, dict[str, list[float]]] = {}
    per_sweep: dict[str, dict[str, dict[float, dict[str, list[float]]]]] = {}
    per_eval: dict[str, dict[str, dict[str, list[float]]]] = {}
    task_of: dict[str, str] = {}
    units_of: dict[str, str] = {}
    statuses: dict[str, dict[str, int]] = {}
    runs: dict[str, list[str]] = {}
    missing = 0
    unreadable: list[str] = []
    for trial in plan.trials():
        per.setdefault(trial.variant, {})
        task_of[trial.variant] = trial.config.task.name
        units_of[trial.variant] = trial.config.task.units
        statuses.setdefault(trial.variant, {})
        runs.setdefault(trial.variant, [])
        rec = stored.get(trial.key)
        if rec is None:
            missing += 1
            continue
        statuses[trial.variant][rec.status] = statuses[trial.variant].get(rec.status, 0) + 1
        runs[trial.variant].append(rec.id)
        if rec.status == "finished":
            for m, v in trial_metrics(store, rec, unreadable).items():
                if m not in NOT_METRICS:
                    per[trial.variant].setdefault(m, []).append(v)
            for kind, points in _trial_sweeps(store, rec.id).items():
                by_point = per_sweep.setdefault(trial.variant, {}).setdefault(kind, {})
                for point, values in points.items():
                    for m, v in values.items():
                        by_point.setdefault(point, {}).setdefault(m, []).append(v)
            for setting, values in _trial_evaluations(store, rec.id).items():
                by_metric = per_eval.setdefault(trial.variant, {}).setdefault(setting, {})
                for m, v in values.items():
                    by_metric.setdefault(m, []).append(v)
    summaries = {label: {m: summarise(vs) for m, vs in ms.items()} for label, ms in per.items()}
    sweeps = {label: {kind: {point: {m: summarise(vs) for m, vs in ms.items()}
                             for point, ms in sorted(points.items())}
                      for kind, points in kinds.items()}
              for label, kinds in per_sweep.items()}
    evaluations = {label: {setting: {m: summarise(vs) for m, vs in ms.items()}
                           for setting, ms in settings.items()}
                   for label, settings in per_eval.items()}
    # Metrics of different tasks, or in other units (pixels vs normalized), are not
    # comparable: one verdict per group. Unitless metrics compare across units.
    group_of = {label: task_of[label] if plan.metric in UNITLESS or len(set(
        units_of.values())) == 1 else f"{task_of[label]}, {units_of[label]} units"
        for label in task_of}
    groups = sorted(set(group_of.values()))
    verdicts = {("" if len(groups) == 1 else group): verdict(
        plan.metric, {v: s for v, s in summaries.items() if group_of[v] == group})
        for group in groups}
    return StudyReport(plan.name, plan.question, plan.metric, summaries, statuses, verdicts,
                       missing, runs, sweeps, evaluations, tuple(plan.seeds), plan.source,
                       command, task_of, unreadable)
