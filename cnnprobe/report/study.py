"""A study's report as files and text: Markdown (the question, per-variant statistics,
sweep tables, verdicts, the command that reproduces it, plots), JSON and CSV, and the
text plots with error bars that `cnnprobe study show` prints.

Everything here takes the plain data of `StudyReport.as_dict()` (cnnprobe/studies/
report.py computes it; studies sit above the report package, so this module never
imports them). Torch-free; plotext draws the sweep curves without colour codes.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from cnnprobe.report.files import ExportError, targets, write_files
from cnnprobe.report.formatting import counted, num, slug, to_json
from cnnprobe.report.markdown import (
    PLOT_HEIGHT,
    PLOT_WIDTH,
    _code,
    _plotext_lock,
    md_line,
    table,
)
from cnnprobe.shown import shown

FORMATS = ("md", "json", "csv")
# `study show`'s columns (beside the study's own metric)
SHOWN_METRICS = ("mae", "mean_guess_mae", "rmse", "r2", "accuracy", "heldout_mae",
                 "heldout_mean_guess_mae", "heldout_r2")
CSV_COLUMNS = ("variant", "kind", "point", "metric", "mean", "std", "n", "ci_low", "ci_high")
MARKERS = "●■▲◆✚✖★◉▼◇"  # one per variant on a sweep plot (plotext draws no colour here)
LABEL_WIDTH = 44  # longer variant labels in the error-bar plot lose their middle


# -- numbers
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ok(s: dict[str, Any] | None) -> bool:
    """A summary with at least one value."""
    return bool(s) and s.get("n", 0) > 0 and _finite(s.get("mean"))


def mean_sd(s: dict[str, Any] | None, *, n: bool = True) -> str:
    """'4.37 ± 0.52 (2)', or '-' for no value."""
    if not _ok(s):
        return "-"
    sd = num(s["std"], 2) if _finite(s.get("std")) else "-"
    return f"{num(s['mean'])} ± {sd}" + (f" ({s['n']})" if n else "")


def interval(s: dict[str, Any] | None) -> str:
    """'[3.1, 5.6]', or '-' where there is none (fewer than two seeds)."""
    ci = (s or {}).get("ci95") or [None, None]
    if not _ok(s) or not (_finite(ci[0]) and _finite(ci[1])):
        return "-"
    return f"[{num(ci[0], 3)}, {num(ci[1], 3)}]"


def learned_cell(v: dict[str, Any]) -> str:
    """'yes (3/3)', 'no (0/3)', 'some (2/3)' from a variant's learned judgement, or '-'."""
    g = v.get("learned") or {}
    if not g.get("n"):
        return "-"
    word = {"learned": "yes", "did not learn": "no"}.get(g["status"], "some")
    return f"{word} ({g['learned']}/{g['n']})"


def final_metrics(data: dict[str, Any]) -> list[str]:
    """Every final metric any variant has: the study's metric first."""
    names = list(dict.fromkeys(m for v in data["variants"].values() for m in v["metrics"]))
    return sorted(names, key=lambda m: m != data["metric"])


def sweep_kinds(data: dict[str, Any]) -> list[str]:
    return list(data.get("sweep_metrics") or {})


def sweep_points(data: dict[str, Any], kind: str) -> list[Any]:
    """Every swept value any variant has, in order."""
    return sorted({p["point"] for v in data["variants"].values()
                   for p in v.get("sweeps", {}).get(kind, [])})


def _point_stats(variant: dict[str, Any], kind: str, metric: str) -> dict[Any, dict]:
    return {p["point"]: p["metrics"].get(metric) for p in variant.get("sweeps", {}).get(kind, [])}


def evaluation_settings(data: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(s for v in data["variants"].values()
                              for s in v.get("evaluations", {})))


# -- plots
def metric_plot(data: dict[str, Any], metric: str | None = None,
                width: int = PLOT_WIDTH, task: str | None = None) -> str | None:
    """One line per variant (of `task`, when given): its mean (●) and ±1 SD (├──┤) on a
    shared axis, then the numbers; None when no variant has the metric."""
    metric = metric or data["metric"]
    rows = [(shown(label), v["metrics"].get(metric)) for label, v in data["variants"].items()
            if task is None or v.get("task") == task]
    have = [s for _, s in rows if _ok(s)]
    if not have:
        return None
    sd = [s["std"] if _finite(s.get("std")) else 0.0 for s in have]
    lo = min(s["mean"] - d for s, d in zip(have, sd, strict=True))
    hi = max(s["mean"] + d for s, d in zip(have, sd, strict=True))
    if hi - lo < 1e-12 * max(1.0, abs(hi)):  # one value: a range around it
        pad = 0.05 * max(1.0, abs(hi))
        lo, hi = lo - pad, hi + pad
    lw = min(LABEL_WIDTH, max(len(label) for label, _ in rows))
    texts = [mean_sd(s) for _, s in rows]
    tw = max(len(t) for t in texts)
    bar_w = max(20, width - lw - tw - 4)

    def col(x: float) -> int:
        return min(bar_w - 1, max(0, round((x - lo) / (hi - lo) * (bar_w - 1))))

    higher = metric in ("r2", "accuracy")
    lines = [f"{metric} by variant{f' ({task})' if task else ''}: ● mean, ├─┤ ±1 SD over "
             f"seeds (n) ({'higher' if higher else 'lower'} is better)"]
    for (label, s), text in zip(rows, texts, strict=True):
        cells = [" "] * bar_w
        if _ok(s):
            d = s["std"] if _finite(s.get("std")) else 0.0
            a, b, m = col(s["mean"] - d), col(s["mean"] + d), col(s["mean"])
            for i in range(a, b + 1):
                cells[i] = "─"
            if b > a:
                cells[a], cells[b] = "├", "┤"
            cells[m] = "●"
        name = label if len(label) <= lw else \
            label[:(lw - 1) // 2] + "…" + label[len(label) - (lw - 1 - (lw - 1) // 2):]
        lines.append(f"{name.ljust(lw)} │{''.join(cells)}│ {text}")
    axis = ["─"] * bar_w
    for i in (0, bar_w // 2, bar_w - 1):
        axis[i] = "┬"
    lines.append(" " * lw + " └" + "".join(axis) + "┘")
    left, mid, right = num(lo, 3), num((lo + hi) / 2, 3), num(hi, 3)
    ticks = [" "] * (bar_w + 2)
    for start, text in ((1, left), (1 + bar_w // 2 - len(mid) // 2, mid),
                        (bar_w + 1 - len(right), right)):
        for i, ch in enumerate(text):
            if 0 <= start + i < len(ticks):
                ticks[start + i] = ch
    lines.append(" " * (lw + 1) + "".join(ticks))
    return "\n".join(line.rstrip() for line in lines)


def sweep_plot(data: dict[str, Any], kind: str, metric: str | None = None) -> str | None:
    """The sweep's metric against the swept value: each variant's mean as a line of its own
    marker, with ±1 SD error bars (shifted a little per variant so they do not overlap);
    None with fewer than two points."""
    import plotext as plt

    metric = metric or (data.get("sweep_metrics") or {}).get(kind, "mae")
    points = sweep_points(data, kind)
    if len(points) < 2:
        return None
    span = float(points[-1] - points[0])
    gap = min(b - a for a, b in zip(points, points[1:], strict=False))
    series = []
    for label, v in data["variants"].items():
        stats = _point_stats(v, kind, metric)
        pts = [(p, s) for p, s in sorted(stats.items()) if _ok(s)]
        if pts:
            series.append((label, pts))
    if not series:
        return None
    with _plotext_lock:
        plt.clear_figure()
        plt.theme("clear")
        plt.plotsize(PLOT_WIDTH, PLOT_HEIGHT + 2)
        for i, (label, pts) in enumerate(series):
            shift = (i - (len(series) - 1) / 2) * gap * 0.08
            xs = [float(p) + shift for p, _ in pts]
            ys = [s["mean"] for _, s in pts]
            errs = [s["std"] if _finite(s.get("std")) else 0.0 for _, s in pts]
            plt.plot(xs, ys, label=shown(label), marker=MARKERS[i % len(MARKERS)])
            if any(e > 0 for e in errs):
                plt.error(xs, ys, yerr=errs)
        plt.xlim(points[0] - 0.05 * span, points[-1] + 0.05 * span)
        plt.xticks([float(p) for p in points], [num(p) for p in points])
        plt.title(f"{metric} by {kind}: mean per variant, bars ±1 SD over seeds")
        plt.xlabel(kind)
        text = plt.uncolorize(plt.build())
        plt.clear_figure()
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def plots(data: dict[str, Any]) -> list[str]:
    """Every plot of the study: its metric by variant (one plot per task when it spans
    several: their metrics do not compare), then each sweep."""
    tasks = list(dict.fromkeys(v.get("task", "") for v in data["variants"].values()))
    out = [metric_plot(data, task=t) for t in tasks] if len(tasks) > 1 else [metric_plot(data)]
    out += [sweep_plot(data, k) for k in sweep_kinds(data)]
    return [p for p in out if p]


# -- Markdown
def sweep_table_rows(data: dict[str, Any], kind: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per variant, one column per swept value, cells
    'mean ± SD (n)' of the sweep's metric."""
    metric = data["sweep_metrics"][kind]
    points = sweep_points(data, kind)
    rows = []
    for label, v in data["variants"].items():
        stats = _point_stats(v, kind, metric)
        if stats:
            rows.append([label, *(mean_sd(stats.get(p)) for p in points)])
    return [f"variant \\ {kind}", *(num(p) for p in points)], rows


def study_markdown(data: dict[str, Any]) -> str:
    """The whole report: question, statistics, sweeps, re-evaluations, verdicts, how to
    reproduce it, plots."""
    metric = data["metric"]
    seeds = data.get("seeds") or []
    parts = [f"# Study {md_line(data['name'])}",
             f"**Question:** {md_line(data['question'] or '(none given)')}",
             *([f"**Design:** {md_line(data['controls'])}"] if data.get("controls") else []),
             f"Plan: {md_line(data.get('source') or 'built-in')}; "
             f"{counted(len(data['variants']), 'variant')} × "
             f"{counted(len(seeds), 'seed')} ({', '.join(str(s) for s in seeds)}); the "
             f"verdict compares `{metric}`. Each cell is the mean ± sample SD over the "
             "finished seeds (n), with the t-based 95% interval of the mean."]
    if data.get("missing"):
        parts.append(f"{data['missing']} trials are not in the store yet: the numbers are "
                     "over the trials that are.")
    if data.get("unreadable"):  # damaged trial files: the numbers made from them left out
        parts += ["## Unreadable files", "\n".join(f"- {line}" for line in data["unreadable"])]
    rows = []
    for label, v in data["variants"].items():
        s = v["metrics"].get(metric)
        status = ", ".join(f"{n} {st}" for st, n in sorted(v["statuses"].items()))
        params = ", ".join(f"{p:,}" for p in v.get("parameters", [])) or "-"
        rows.append([label, status or "none yet", learned_cell(v), params, mean_sd(s),
                     interval(s)])
    parts += [f"## {metric} by variant",
              "Learned: validation R² at least 0.5 in how many of the finished seeds "
              "(docs/measurement.md, \"Study verdicts\"); only variants that learned in "
              "every seed are ranked.",
              table(["variant", "trials", "learned", "parameters",
                     f"{metric}: mean ± SD (n)", "95% interval"], rows)]
    parts += [f"Note: {md_line(note)}." for note in data.get("notes", [])]
    parts += [md_line(line[0].upper() + line[1:]) + "." for line in data.get("measured_with", [])]
    others = [m for m in final_metrics(data) if m != metric]
    if others:
        parts += ["## Every final metric",
                  table(["variant", *others],
                        [[label, *(f"{mean_sd(v['metrics'].get(m))} {interval(v['metrics'].get(m))}"
                                   if _ok(v["metrics"].get(m)) else "-" for m in others)]
                         for label, v in data["variants"].items()])]
    for kind in sweep_kinds(data):
        header, rows = sweep_table_rows(data, kind)
        parts += [f"## {kind.capitalize()} sweep: {data['sweep_metrics'][kind]}",
                  f"Mean ± SD (n) over seeds at each {kind}; every metric, with its 95% "
                  "interval, is in the JSON and CSV exports.", table(header, rows)]
    settings = evaluation_settings(data)
    if settings:
        ev_metric = metric if any(metric in v.get("evaluations", {}).get(s, {})
                                  for v in data["variants"].values() for s in settings) \
            else "mae"
        parts += [f"## Re-evaluations: {ev_metric}",
                  table(["variant", *settings],
                        [[label, *(mean_sd(v.get("evaluations", {}).get(s, {}).get(ev_metric))
                                   for s in settings)]
                         for label, v in data["variants"].items()])]
    parts.append("## Verdict")
    parts += [md_line(f"- {f'**{group}**: ' if group else ''}{text}")
              for group, text in data["verdicts"].items()] or ["No verdict yet."]
    if data.get("command"):
        parts += ["## Reproduce", "Trains only the trials missing from the store, then "
                  "`study show` (same arguments) prints this report:",
                  f"```sh\n{data['command']}\n```"]
    drawn = plots(data)
    if drawn:
        parts += ["## Plots", *(_code(p) for p in drawn)]
    return "\n\n".join(parts) + "\n"


# -- CSV
def _row(variant: str, kind: str, point: Any, metric: str, s: dict[str, Any]) -> dict:
    ci = s.get("ci95") or [None, None]
    return {"variant": variant, "kind": kind, "point": point, "metric": metric,
            "mean": s.get("mean"), "std": s.get("std"), "n": s.get("n"),
            "ci_low": ci[0], "ci_high": ci[1]}


def study_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant × final metric (kind "final"), per variant × sweep kind × swept
    value × metric (kind "resolution", "distractors"; point the value) and per variant ×
    re-evaluation setting × metric (kind "evaluation"; point the setting)."""
    rows = []
    for label, v in data["variants"].items():
        rows += [_row(label, "final", "", m, s) for m, s in v["metrics"].items()]
        for kind, points in v.get("sweeps", {}).items():
            rows += [_row(label, kind, p["point"], m, s) for p in points
                     for m, s in p["metrics"].items()]
        for setting, ms in v.get("evaluations", {}).items():
            rows += [_row(label, "evaluation", setting, m, s) for m, s in ms.items()]
    return rows


def study_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in study_rows(data):
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v))
                             else v) for k, v in row.items()})
    return buf.getvalue()


# -- files
def export_study(data: dict[str, Any], fmt: str = "md", out: str | Path | None = None, *,
                 force: bool = False, stem: str | None = None) -> list[Path]:
    """Write a study's report (as_dict() data) as md, json or csv under exports/ (or
    `out`); never over an existing file unless `force`. Returns the files written."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    if not any(v["runs"] for v in data["variants"].values()):
        how = f": `{data['command']}` runs them" if data.get("command") else ""
        raise ExportError(f"study {data['name']} has no trials in the store yet{how}")
    text = {"md": study_markdown, "json": to_json, "csv": study_csv}[fmt](data)
    where = targets(out, stem or f"study-{slug(data['name'])}", fmt, None)[""]
    return write_files({where: text}, force)
