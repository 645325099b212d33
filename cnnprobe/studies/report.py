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

from cnnprobe.measurement import describe
from cnnprobe.store import RunStore
from cnnprobe.studies.plan import StudyPlan
from cnnprobe.studies.stored import metric_prefix, trial_metrics, trial_records
from cnnprobe.studies.verdict import (
    Comparison,
    Learned,
    learned_status,
    metric_range,
    verdict_text,
)

# Two-sided 95% Student t critical values by degrees of freedom (1..30); 1.96 beyond.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
# Metrics without units compare across a study's pixel and normalized variants: R² and
# accuracy (and metrics built on them, heldout_r2, resolution_min_r2) and this ratio.
UNITLESS_SUFFIXES = ("r2", "accuracy", "resolution_ratio")
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


def summarise(values: list[float], metric: str = "") -> Summary:
    """Mean, sample SD, n and the t-based 95% interval of the mean (NaN values dropped),
    the interval clipped to where `metric` can lie (an R² never above 1, an error never
    below 0). With fewer than two values there is no interval (NaN): too few seeds."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return Summary(math.nan, math.nan, 0, (math.nan, math.nan))
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if n > 1 else 0.0
    half = (T95[n - 2] if n - 1 <= len(T95) else 1.96) * std / math.sqrt(n) if n > 1 else \
        math.nan
    if math.isnan(half):
        return Summary(mean, std, n, (math.nan, math.nan))
    lo, hi = metric_range(metric)
    return Summary(mean, std, n, (max(lo, mean - half), min(hi, mean + half)))


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
    learned: dict[str, Learned] = field(default_factory=dict)  # label -> learned at all?
    comparisons: dict[str, list[Comparison]] = field(default_factory=dict)  # group -> pairs
    notes: list[str] = field(default_factory=list)  # what the numbers cover, in words
    controls: str = ""  # the plan's design: what is held fixed, what else differs
    parameters: dict[str, list[int]] = field(default_factory=dict)  # label -> counts seen
    # label -> how its trials' final metrics were made (measurement.describe), distinct
    measured: dict[str, list[str]] = field(default_factory=dict)

    def measured_lines(self) -> list[str]:
        """'measured with: WHAT' per distinct description, naming the variants when they
        differ: which weights, BatchNorm statistics and input normalisation every number
        of the report comes from."""
        by_text: dict[str, list[str]] = {}
        for label, texts in self.measured.items():
            for text in texts:
                by_text.setdefault(text, []).append(label)
        if len(by_text) == 1:
            return [f"final metrics measured with: {next(iter(by_text))}"]
        return [f"final metrics of {', '.join(labels)} measured with: {text}"
                for text, labels in by_text.items()]
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
                "notes": list(self.notes), "controls": self.controls,
                "measured_with": self.measured_lines(),
                "comparisons": {g: [c.as_dict() for c in cs]
                                for g, cs in self.comparisons.items()},
                "unreadable": self.unreadable,
                "sweep_metrics": {k: self.sweep_metric(k) for k in self.sweep_kinds()},
                "variants": {v: {"task": self.tasks.get(v, ""),
                                 "learned": (self.learned[v].as_dict() if v in self.learned
                                             else None),
                                 "parameters": self.parameters.get(v, []),
                                 "measured": self.measured.get(v, []),
                                 "metrics": {m: s.as_dict() for m, s in ms.items()},
                                 "statuses": self.statuses[v], "runs": self.runs[v],
                                 "sweeps": sweeps(v),
                                 "evaluations": {
                                     setting: {m: s.as_dict() for m, s in ms2.items()}
                                     for setting, ms2 in self.evaluations.get(v, {}).items()}}
                             for v, ms in self.variants.items()}}


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


def _shared_min_r2(sweeps: dict[str, dict[int, dict[str, dict[float, dict[str, float]]]]],
                   labels: list[str]) -> tuple[dict[str, dict[int, float]], list[float],
                                                dict[str, list[float]]]:
    """Per trial, its lowest R² over the resolution sizes every variant of the group has:
    R² is the error relative to the mean guess at that size, so it compares pixel and
    normalized variants alike and a model that learned nothing cannot win it (R² about 0
    everywhere). Returns (label -> seed -> value, the shared sizes, label -> sizes it has
    that others lack)."""
    sizes_of = {label: {p for trial in sweeps.get(label, {}).values()
                        for p in trial.get("resolution", {})} for label in labels}
    having = [sizes for sizes in sizes_of.values() if sizes]
    shared = sorted(set.intersection(*having)) if having else []
    out: dict[str, dict[int, float]] = {}
    for label in labels:
        for seed, trial in sweeps.get(label, {}).items():
            points = trial.get("resolution", {})
            r2s = [points[p].get("r2") for p in shared if p in points]
            r2s = [v for v in r2s if v is not None and math.isfinite(v)]
            if shared and len(r2s) == len(shared):
                out.setdefault(label, {})[seed] = min(r2s)
    extra = {label: sorted(sizes - set(shared)) for label, sizes in sizes_of.items()
             if sizes - set(shared)}
    return out, shared, extra


def study_report(store: RunStore, plan: StudyPlan, *, command: str = "") -> StudyReport:
    """The report of a study from its stored trials: their final metrics, sweeps and saved
    re-evaluations (finished trials only), whether each variant learned at all, and a
    verdict over every variant from paired, Holm-adjusted comparisons (verdict.py).
    `command` (the one that reproduces it) is kept as given."""
    stored = trial_records(store, plan.name)
    # label -> seed -> ... : every number stays with its seed, so variants pair by seed.
    per: dict[str, dict[int, dict[str, float]]] = {}
    per_sweep: dict[str, dict[int, dict[str, dict[float, dict[str, float]]]]] = {}
    per_eval: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    task_of: dict[str, str] = {}
    units_of: dict[str, str] = {}
    statuses: dict[str, dict[str, int]] = {}
    runs: dict[str, list[str]] = {}
    parameters: dict[str, list[int]] = {}
    measured: dict[str, list[str]] = {}
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
        if rec.parameters and rec.parameters not in parameters.setdefault(trial.variant, []):
            parameters[trial.variant].append(rec.parameters)
        if rec.status == "finished":
            how = describe(rec.measured)
            if how not in measured.setdefault(trial.variant, []):
                measured[trial.variant].append(how)
            per[trial.variant][trial.seed] = {
                m: v for m, v in trial_metrics(store, rec, unreadable).items()
                if m not in NOT_METRICS}
            per_sweep.setdefault(trial.variant, {})[trial.seed] = _trial_sweeps(store, rec.id)
            per_eval.setdefault(trial.variant, {})[trial.seed] = _trial_evaluations(store,
                                                                                    rec.id)
    labels = list(task_of)
    # Metrics of different tasks, or in other units (pixels vs normalized), are not
    # comparable: one verdict per group. Unitless metrics compare across units.
    unitless = plan.metric.endswith(UNITLESS_SUFFIXES)
    group_of = {label: task_of[label] if unitless or len(set(
        units_of.values())) == 1 else f"{task_of[label]}, {units_of[label]} units"
        for label in labels}
    groups = sorted(set(group_of.values()))
    notes: list[str] = []
    for group in groups:
        members = [label for label in labels if group_of[label] == group]
        min_r2, shared, extra = _shared_min_r2(per_sweep, members)
        for label, seeds in min_r2.items():
            for seed, value in seeds.items():
                per[label][seed]["resolution_min_r2"] = value
        if extra:
            where = f" ({group})" if len(groups) > 1 else ""
            notes.append(f"resolution sweeps{where} cover different sizes: "
                         f"resolution_min_r2 compares only the sizes every variant has ("
                         f"{', '.join(str(int(p)) for p in shared) or 'none'}); also swept: "
                         + "; ".join(f"{label} {', '.join(str(int(p)) for p in ps)}"
                                     for label, ps in extra.items()))
    learned = {label: learned_status({seed: ms.get("r2", math.nan)
                                      for seed, ms in per.get(label, {}).items()})
               for label in labels}

    def collect(by_seed: dict[int, dict[str, float]]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for seed in sorted(by_seed):
            for m, v in by_seed[seed].items():
                out.setdefault(m, []).append(v)
        return out

    summaries = {label: {m: summarise(vs, m) for m, vs in collect(per[label]).items()}
                 for label in labels}
    sweeps: dict[str, dict[str, dict[float, dict[str, Summary]]]] = {}
    for label, by_seed in per_sweep.items():
        gathered: dict[str, dict[float, dict[str, list[float]]]] = {}
        for seed in sorted(by_seed):
            for kind, points in by_seed[seed].items():
                for point, values in points.items():
                    for m, v in values.items():
                        gathered.setdefault(kind, {}).setdefault(point, {}).setdefault(
                            m, []).append(v)
        sweeps[label] = {kind: {point: {m: summarise(vs, m) for m, vs in ms.items()}
                                for point, ms in sorted(points.items())}
                         for kind, points in gathered.items()}
    evaluations: dict[str, dict[str, dict[str, Summary]]] = {}
    for label, by_seed in per_eval.items():
        gathered_ev: dict[str, dict[str, list[float]]] = {}
        for seed in sorted(by_seed):
            for setting, values in by_seed[seed].items():
                for m, v in values.items():
                    gathered_ev.setdefault(setting, {}).setdefault(m, []).append(v)
        evaluations[label] = {setting: {m: summarise(vs, m) for m, vs in ms.items()}
                              for setting, ms in gathered_ev.items()}
    verdicts: dict[str, str] = {}
    comparisons: dict[str, list[Comparison]] = {}
    for group in groups:
        members = [label for label in labels if group_of[label] == group]
        values = {label: {seed: ms[plan.metric] for seed, ms in per[label].items()
                          if plan.metric in ms and ms[plan.metric] is not None
                          and math.isfinite(ms[plan.metric])} for label in members}
        key = "" if len(groups) == 1 else group
        verdicts[key], comparisons[key] = verdict_text(
            plan.metric, values, {label: learned[label] for label in members})
    return StudyReport(plan.name, plan.question, plan.metric, summaries, statuses, verdicts,
                       missing, runs, sweeps, evaluations, tuple(plan.seeds), plan.source,
                       command, task_of, learned, comparisons, notes,
                       controls=plan.controls, parameters=parameters, measured=measured,
                       unreadable=unreadable)
