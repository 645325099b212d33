"""Markdown renderings of run summaries and comparisons (see export.py), with text plots
of the loss curve, the sweeps and the linear probes drawn by plotext, without colour codes."""

from __future__ import annotations

import math
import threading
from typing import Any

from cnnprobe.measurement import describe
from cnnprobe.report.formatting import flat_config, when
from cnnprobe.shown import shown

PLOT_WIDTH, PLOT_HEIGHT = 78, 18
MAX_POINTS = 2000  # plotext draws one character cell per point at best; more is waste
_plotext_lock = threading.Lock()  # plotext keeps one global figure


def fmt(value: Any) -> str:
    """A table cell: integers whole, floats to 6 significant digits, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return md_line(value).replace("|", "\\|")


def md_line(text: Any) -> str:
    """Text from the store on one line of Markdown: a line break becomes a space, any other
    control character a visible escape (cnnprobe.shown)."""
    return shown(str(text).replace("\r\n", " ").replace("\n", " "))


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(fmt(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_plot(series: list[tuple[str, list[float], list[float]]], title: str, xlabel: str,
              ylabel: str = "", ylim: tuple[float, float] | None = None,
              xticks: list[float] | None = None) -> str:
    """Line plot of (label, xs, ys) series as plain text (y axis spanning `ylim`, ticks at
    `xticks`, when given)."""
    import plotext as plt

    with _plotext_lock:
        plt.clear_figure()
        plt.theme("clear")
        plt.plotsize(PLOT_WIDTH, PLOT_HEIGHT)
        for label, xs, ys in series:
            pts = [(x, y) for x, y in zip(xs, ys, strict=True)
                   if y is not None and math.isfinite(y)]
            step = max(1, len(pts) // MAX_POINTS)
            pts = pts[::step]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], label=label,
                         marker="braille")
        if ylim is not None:
            plt.ylim(*ylim)
        if xticks is not None:
            plt.xticks(xticks)
        plt.title(title)
        plt.xlabel(xlabel)
        if ylabel:
            plt.ylabel(ylabel)
        text = plt.uncolorize(plt.build())
        plt.clear_figure()
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def _code(text: str) -> str:
    return f"```text\n{shown(text, newlines=True)}\n```"


def loss_plot(summary: dict[str, Any]) -> str | None:
    hist = summary["train_history"]
    if len(hist) < 2:
        return None
    series = [("train loss", [r["step"] for r in hist], [r["loss"] for r in hist])]
    val = summary["val_history"]
    if summary["config"]["train"]["loss"] == "l1" and len(val) > 1:  # same units as the loss
        series.append(("val MAE", [r["step"] for r in val], [r["mae"] for r in val]))
    return text_plot(series, f"{summary['config']['train']['loss']} loss", "step")


def sweep_plot(kind: str, rows: list[dict[str, Any]]) -> str | None:
    if len(rows) < 2:
        return None
    return text_plot([("MAE", [r[kind] for r in rows], [r["mae"] for r in rows])],
                     f"MAE by {kind}", kind)


def probe_plot(rows: list[dict[str, Any]]) -> str | None:
    """R² of each layer's linear probe against its depth (the input is depth 0); values
    below -1 (a read-out worse than guessing the mean) are drawn at -1."""
    if len(rows) < 2:
        return None
    r2 = [r["r2"] for r in rows]
    low = any(v is not None and v < -1 for v in r2)
    ys = [None if v is None else max(v, -1.0) for v in r2]
    finite = [v for v in ys if v is not None and math.isfinite(v)]
    bottom = min([0.0, *finite])
    depths = [r["depth"] for r in rows]
    ticks = depths if len(depths) <= 16 else None  # whole depths, while they fit
    return text_plot([("R²", depths, ys)],
                     "linear probe R² by layer depth" + (" (below -1 drawn at -1)" if low else ""),
                     "layer depth (0 = input)", ylim=(bottom, 1.0), xticks=ticks)


def probes_markdown(probes: dict[str, Any]) -> list[str]:
    """The "Linear probes" section: how they were made, the table, the R² plot."""
    o, rows = probes["options"], probes["table"]
    layers = o.get("layers", "all")
    how = (f"{str(o.get('which', '?')).capitalize()} checkpoint (step {o.get('step')}) at "
           f"{o.get('height')}x{o.get('width')}; a ridge read-out of each layer's pooled "
           f"activations (per channel max and mean) fitted on {o.get('n_train')} samples and "
           f"scored on {o.get('n_test')} others (seed {o.get('seed')}); layers: "
           f"{fmt(layers) if isinstance(layers, list) else layers}; made "
           f"{when(probes.get('created_at'))}. Measured with: {describe(o.get('measured'))}.")
    header = [c for c in ("depth", "layer", "module", "kind", "features", "r2", "mae", "alpha")
              if rows and c in rows[0]]
    parts = ["## Linear probes", how, table(header, [[r.get(c) for c in header] for r in rows])]
    plot = probe_plot(rows)
    if plot:
        parts.append(_code(plot))
    return parts


def summary_markdown(s: dict[str, Any]) -> str:
    """One run: record, config, final metrics, describe(), history, plots, sweeps, probes."""
    cfg = s["config"]
    parts = [f"# {md_line(s['name'])}",
             md_line(f"Run `{s['id']}`: {cfg['task']['name']} with {cfg['model']['name']} at "
                  f"{cfg['task']['height']}x{cfg['task']['width']}, **{s['status']}**"
                  + (f" ({s['reason']})" if s["reason"] else "") + ".")]
    if s.get("unreadable"):  # damaged files: their parts are left out below
        parts += ["## Unreadable files",
                  "\n".join(f"- {md_line(line)}" for line in s["unreadable"])]
    v = s["versions"]
    record = [["id", s["id"]], ["name", s["name"]], ["kind", s["kind"]],
              ["parent", s["parent_id"]], ["status", s["status"]], ["reason", s["reason"]],
              ["tags", s["tags"]], ["note", s["note"]], ["created", when(s["created_at"])],
              ["finished", when(s["finished_at"])], ["wall time (s)", s["wall_time_s"]],
              ["steps", f"{s['steps_done']} of {s['total_steps']}"],
              ["resumed at step", s["resumed_at"]], ["samples seen", s["samples_seen"]],
              ["seed", s["seed"]], ["device", f"{s['device']} ({s['device_name']})"],
              ["parameters", s["parameters"]], ["torch", v.get("torch")],
              ["torchvision", v.get("torchvision")], ["cnnprobe", v.get("cnnprobe")],
              ["git commit", v.get("git_commit")], ["torch threads", v.get("threads")],
              ["deterministic algorithms", v.get("deterministic_algorithms")]]
    parts += ["## Record", table(["field", "value"], [r for r in record if r[1] not in
                                                       (None, "", [])])]
    parts += ["## Configuration",
              table(["setting", "value"], [[k, val] for k, val in flat_config(cfg).items()])]
    if s["metrics"]:
        parts += ["## Final metrics", f"Measured with: {describe(s.get('measured'))}.",
                  table(["metric", "value"], [[k, val] for k, val in s["metrics"].items()])]
        best = s.get("best_validation")
        if best and best["step"] != s["steps_done"]:
            parts.append(f"Best validation (the `best` checkpoint): MAE {fmt(best['mae'])}, "
                         f"R² {fmt(best.get('r2'))} at step {best['step']}.")
    if s["describe"]:
        cols = list(s["describe"])
        stats = list(s["describe"][cols[0]])
        parts += ["## Predictions (describe())",
                  table(["", *cols], [[st, *(s["describe"][c][st] for c in cols)]
                                      for st in stats])]
    if s["val_history"]:
        names = [k for k in s["val_history"][0] if k != "step"]
        parts += ["## Validation history",
                  table(["step", *names], [[r["step"], *(r.get(k) for k in names)]
                                           for r in s["val_history"]])]
    plot = loss_plot(s)
    if plot:
        parts += ["## Loss curve", _code(plot)]
    for kind, sweep in s["sweeps"].items():
        rows = sweep["table"]
        names = [k for k in (rows[0] if rows else {}) if k != kind]
        opts = ", ".join(f"{k} {fmt(val)}" for k, val in sweep["options"].items()
                         if k not in ("resolutions", "measured"))
        parts += [f"## {kind.capitalize()} sweep", f"Checkpoint and samples: {opts}. Measured "
                  f"with: {describe(sweep['options'].get('measured'))}.",
                  table([kind, *names], [[r[kind], *(r.get(k) for k in names)] for r in rows])]
        plot = sweep_plot(kind, rows)
        if plot:
            parts.append(_code(plot))
    if s.get("probes"):
        parts += probes_markdown(s["probes"])
    if s["evaluations"]:
        rows = [[when(e["created_at"]), e["options"].get("which"),
                 (e["options"].get("measured") or {}).get("batchnorm", "not recorded"),
                 f"{e['options'].get('height')}x{e['options'].get('width')}",
                 e["options"].get("distractors"), e["options"].get("region"),
                 e["options"].get("n"), e["metrics"].get("mae"), e["metrics"].get("r2")]
                for e in s["evaluations"]]
        parts += ["## Re-evaluations", table(["when", "checkpoint", "batchnorm", "size",
                                              "distractors", "region", "n", "mae", "r2"], rows)]
    return "\n\n".join(parts) + "\n"


def comparison_markdown(c: dict[str, Any]) -> str:
    """Runs as columns; the config settings that differ, then the metrics."""
    runs = c["runs"]
    header = ["", *(f"{r['name']} (`{r['id'][:8]}`)" for r in runs)]
    rows = [["status", *(r["status"] for r in runs)],
            ["steps", *(r["steps_done"] for r in runs)],
            ["wall time (s)", *(r["wall_time_s"] for r in runs)]]
    rows += [[k, *(r["config"][k] for r in runs)] for k in c["differences"]]
    rows += [["measured with", *(describe(r.get("measured")) for r in runs)]]
    rows += [[f"**{m}**", *(r["metrics"].get(m) for r in runs)] for m in c["metric_names"]]
    rows += [["**best val mae** (selected on validation)", *(r["best_val_mae"] for r in runs)]]
    parts = [f"# Comparison of {len(runs)} runs",
             "Settings that differ between the runs, then their final metrics.",
             table(header, rows)]
    for kind, by_value in c["sweep_mae"].items():
        values = sorted(by_value, key=float)
        parts += [f"## {kind.capitalize()} sweep MAE",
                  table([kind, *header[1:]],
                        [[val, *(by_value[val].get(r["id"]) for r in runs)] for val in values])]
    if c["common_config"]:
        parts += ["## Settings they share",
                  table(["setting", "value"], [[k, v] for k, v in c["common_config"].items()])]
    return "\n\n".join(parts) + "\n"
