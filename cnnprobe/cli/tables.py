"""How the command line shows runs, metrics and sweeps: rich tables on a terminal, JSON
for scripts."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from cnnprobe.report.formatting import ago, finite, num, r2_bar
from cnnprobe.shown import shown
from cnnprobe.store import RunRecord

RUN_REF_HELP = ("run id, name, 'latest', or a unique id prefix of 4 or more characters (a "
                "reference that could mean two runs is refused, listing them)")

STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red",
                "cancelled": "yellow", "interrupted": "magenta", "skipped": "dim"}


def print_json(data: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become null."""
    print(json.dumps(finite(data), indent=2, allow_nan=False))


def warn(message: str) -> None:
    """One line on stderr for something left out that did not stop the command (a damaged
    file of one run in a report of several): `cnnprobe: warning: ...`."""
    print(f"cnnprobe: warning: {message}", file=sys.stderr)


def literal(text: Any, *, newlines: bool = False) -> str:
    """Text from the store for a Rich markup string or table cell: control characters as
    visible escapes (`shown`), and `[bold]` shown as typed, not read as markup."""
    return escape(shown(text, newlines=newlines))


def status_text(rec: RunRecord) -> str:
    style = STATUS_STYLE.get(rec.status, "")
    return f"[{style}]{rec.status}[/{style}]" if style else literal(rec.status)


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
    """The shortest prefix of at least `length` that tells each listed run apart: one more
    character than it shares with its neighbours in sorted order (n log n for any count)."""
    ids = sorted({r.id for r in records})

    def shared(a: str, b: str) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    out = {}
    for k, rid in enumerate(ids):
        common = max(shared(rid, ids[k - 1]) if k else 0,
                     shared(rid, ids[k + 1]) if k + 1 < len(ids) else 0)
        out[rid] = rid[:min(len(rid), max(length, common + 1))]
    return out


RUN_COLUMNS = ("id", "name", "status", "task/model", "size", "steps", "MAE", "created", "tags")
RIGHT = frozenset({"size", "steps", "MAE"})
# On a narrow terminal these give way, in this order, down to their minimum widths.
SHRINK = (("tags", 4), ("name", 10), ("task/model", 10))


class RunsTable:
    """One line per run, laid out in plain Python and written as segments: Rich's Table
    measures every cell of every row, which took 15 s for 3,000 runs; this takes a few
    milliseconds (bench/bench_startup.py). On a narrow terminal the tags, then the name,
    then task/model give way (with an ellipsis); a line still too long is cropped."""

    def __init__(self, records: list[RunRecord], title: str = "runs") -> None:
        self.records = records
        self.title = title

    def rows(self) -> list[list[str]]:
        ids = short_ids(self.records)
        rows = []
        for r in self.records:
            steps = (f"{r.steps_done}/{r.total_steps}" if r.status == "running"
                     else str(r.steps_done))
            mae = r.metrics.get("mae", r.best_val_mae)  # stopped early: the best so far
            # * marks a best-so-far MAE (selected on validation), not a final metric
            star = "*" if "mae" not in r.metrics and mae is not None else ""
            rows.append([ids[r.id], shown(r.name), r.status, shown(f"{r.task}/{r.model}"),
                         r.resolution, steps, num(mae) + star, ago(r.created_at, short=True),
                         shown(",".join(r.tags))])
        return rows

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.cells import cell_len, set_cell_size
        from rich.segment import Segment
        from rich.style import Style

        rows = self.rows()
        widths = [max([cell_len(col), *(cell_len(row[i]) for row in rows)])
                  for i, col in enumerate(RUN_COLUMNS)]
        gap = 2
        over = sum(widths) + gap * (len(widths) - 1) - options.max_width
        for col, least in SHRINK:
            if over <= 0:
                break
            i = RUN_COLUMNS.index(col)
            cut = min(over, max(0, widths[i] - max(least, cell_len(col))))
            widths[i] -= cut
            over -= cut
        total = min(options.max_width, sum(widths) + gap * (len(widths) - 1))

        def cell(text: str, i: int) -> str:
            w = widths[i]
            if cell_len(text) > w:
                text = set_cell_size(text, w - 1) + "…"
            return text.rjust(w) if RUN_COLUMNS[i] in RIGHT else set_cell_size(text, w)

        def line(cells: list[tuple[str, Style | None]]) -> list[Segment]:
            out: list[Segment] = []
            used = 0
            for k, (text, style) in enumerate(cells):
                piece = ("  " if k else "") + text
                if used + cell_len(piece) > total:
                    piece = set_cell_size(piece, total - used)
                out.append(Segment(piece, style))
                used += cell_len(piece)
                if used >= total:
                    break
            return [*out, Segment.line()]

        italic, bold = Style(italic=True), Style(bold=True)
        yield Segment(set_cell_size(shown(self.title).center(total), total), italic)
        yield Segment.line()
        yield from line([(cell(col, i), bold) for i, col in enumerate(RUN_COLUMNS)])
        yield Segment("─" * total)
        yield Segment.line()
        styles = {k: Style.parse(v) for k, v in STATUS_STYLE.items()}
        for rec, row in zip(self.records, rows, strict=True):
            yield from line([(cell(text, i), styles.get(rec.status) if i == 2 else None)
                             for i, text in enumerate(row)])


def runs_table(records: list[RunRecord], title: str = "runs") -> RunsTable:
    """The runs as a table for the terminal (see RunsTable)."""
    return RunsTable(records, title)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(literal(k), num(v))
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
        table.add_row(str(r["depth"]), literal(r["layer"]), literal(r["module"]),
                      literal(r["kind"]),
                      str(r["features"]), _fixed(r["r2"]), r2_bar(r["r2"]), num(r["mae"]))
    return table
