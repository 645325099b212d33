"""How the command line shows runs, metrics and sweeps: rich tables on a terminal, JSON
for scripts."""

from __future__ import annotations

import json
import math
from typing import Any

from rich import box
from rich.table import Table

from cnnprobe.report.formatting import ago, finite, num, r2_bar
from cnnprobe.store import RunRecord

STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red",
                "cancelled": "yellow", "interrupted": "magenta", "skipped": "dim"}


def print_json(data: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become null."""
    print(json.dumps(finite(data), indent=2, allow_nan=False))


def status_text(rec: RunRecord) -> str:
    style = STATUS_STYLE.get(rec.status, "")
    return f"[{style}]{rec.status}[/{style}]" if style else rec.status


def record_json(rec: RunRecord) -> dict[str, Any]:
    """A run record as plain data (config as nested dicts)."""
    data = {k: getattr(rec, k) for k in (
        "id", "name", "kind", "parent_id", "status", "reason", "tags", "note", "created_at",
        "finished_at", "seed", "device", "device_name", "parameters", "versions", "wall_time_s",
        "samples_seen", "steps_done", "total_steps", "resumed_at", "best_val_mae", "metrics",
        "host", "pid")}
    data["config"] = rec.config.to_dict()
    data["task"], data["model"], data["resolution"] = rec.task, rec.model, rec.resolution
    return data


def short_ids(records: list[RunRecord], length: int = 8) -> dict[str, str]:
    """The shortest prefix of at least `length` that tells each listed run apart."""
    ids = [r.id for r in records]
    out = {}
    for rid in ids:
        n = length
        while n < len(rid) and any(o != rid and o.startswith(rid[:n]) for o in ids):
            n += 1
        out[rid] = rid[:n]
    return out


def runs_table(records: list[RunRecord], title: str = "runs") -> Table:
    """One line per run; on a narrow terminal the name and tags give way first."""
    ids = short_ids(records)
    rows = []
    for r in records:
        steps = f"{r.steps_done}/{r.total_steps}" if r.status == "running" else str(r.steps_done)
        mae = r.metrics.get("mae", r.best_val_mae)  # stopped early: the best so far
        rows.append([ids[r.id], r.name, r.status, f"{r.task}/{r.model}", r.resolution,
                     steps, num(mae), ago(r.created_at, short=True), ",".join(r.tags)])
    header = ["id", "name", "status", "task/model", "size", "steps", "MAE", "created", "tags"]
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, col in enumerate(header):
        flexible = col in ("name", "tags", "task/model")
        width = max([len(col), *(len(row[i]) for row in rows)])
        table.add_column(col, justify="right" if col in ("size", "steps", "MAE") else "left",
                         no_wrap=not flexible, overflow="ellipsis",
                         min_width=min(width, 10) if flexible else width)
    for r, row in zip(records, rows, strict=True):
        row[2] = status_text(r)
        table.add_row(*row)
    return table


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, num(v))
    return table


def frame_table(df: Any, title: str) -> Table:
    """A pandas DataFrame as a rich table, numbers right-aligned."""
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="right")
    for row in df.itertuples(index=False):
        table.add_row(*(num(v.item() if hasattr(v, "item") else v) for v in row))
    return table


def describe_table(evaluation: Any, title: str = "predictions") -> Table:
    """The predictions' describe() (with the labels and errors beside them)."""
    import pandas as pd

    frame = pd.DataFrame({"prediction": evaluation.predictions, "label": evaluation.labels,
                          "error": evaluation.errors}).describe()
    table = Table(title=title)
    table.add_column("")
    for col in frame.columns:
        table.add_column(col, justify="right")
    for stat, row in frame.iterrows():
        table.add_row(str(stat), *(num(float(v)) for v in row))
    return table


def _fixed(value: Any, places: int = 3) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return num(value)
    return f"{value:.{places}f}".replace("-0.000", "0.000")


def probes_table(rows: list[dict[str, Any]], title: str) -> Table:
    """Per-layer linear probes: depth, layer, module, kind, features, R² (with a bar), MAE."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("#", "right"), ("layer", "left"), ("module", "left"),
                         ("kind", "left"), ("features", "right"), ("R²", "right"),
                         ("", "left"), ("MAE", "right")):
        table.add_column(col, justify=justify, no_wrap=col != "layer")
    for r in rows:
        table.add_row(str(r["depth"]), str(r["layer"]), str(r["module"]), str(r["kind"]),
                      str(r["features"]), _fixed(r["r2"]), r2_bar(r["r2"]), num(r["mae"]))
    return table
