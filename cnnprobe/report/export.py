"""Exports of stored runs: one run's summary, or several runs side by side, as Markdown,
JSON or CSV files under exports/ (or --out). An existing file is never overwritten
unless asked (`force`); each file appears whole or not at all.

JSON is strict: non-finite numbers (an undefined R², an infinite best MAE) become null.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnprobe.report.files import ExportError, targets, write_files
from cnnprobe.report.formatting import slug, to_json
from cnnprobe.report.markdown import comparison_markdown, summary_markdown
from cnnprobe.report.summary import comparison, run_summary
from cnnprobe.store import RunStore

FORMATS = ("md", "json", "csv")


# -- encodings
# Counts: written as 512, not 512.0 (a column with a gap, or stored as float, is float).
COUNT_COLUMNS = ("n", "value", "step", "index")


def _csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    import pandas as pd

    buf = io.StringIO()
    frame = pd.DataFrame(rows, columns=columns)
    for col in COUNT_COLUMNS:
        if col in frame and frame[col].dtype.kind == "f":
            values = frame[col].dropna()
            if (values == values.round()).all():
                frame[col] = frame[col].astype("Int64")
    frame.to_csv(buf, index=False)
    return buf.getvalue()


def summary_csv(summary: dict[str, Any]) -> dict[str, str]:
    """CSV texts by part: history (train and validation by step), sweeps, sweep samples,
    predictions, linear probes. Parts with no data are left out."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in summary["train_history"]:
        by_step.setdefault(row["step"], {"step": row["step"]}).update(row)
    for row in summary["val_history"]:
        by_step.setdefault(row["step"], {"step": row["step"]}).update(
            {f"val_{k}": v for k, v in row.items() if k != "step"})
    parts = {}
    if by_step:
        parts["history"] = _csv([by_step[s] for s in sorted(by_step)])
    sweep_rows, sample_rows = [], []
    for kind, sweep in summary["sweeps"].items():
        sweep_rows += [{"kind": kind, "value": r[kind],
                        **{k: v for k, v in r.items() if k != kind}} for r in sweep["table"]]
        samples = sweep["samples"]
        for i in range(len(samples.get(kind, []))):
            sample_rows.append({"kind": kind, "value": samples[kind][i],
                                **{c: samples[c][i] for c in ("label", "prediction", "error")}})
    if sweep_rows:
        parts["sweeps"] = _csv(sweep_rows)
    if sample_rows:
        parts["sweep-samples"] = _csv(sample_rows)
    if summary["predictions"]:
        pred = summary["predictions"]
        parts["predictions"] = _csv([{"index": i, **{k: pred[k][i] for k in pred}}
                                     for i in range(len(pred["prediction"]))])
    if summary.get("probes"):
        parts["probes"] = _csv(summary["probes"]["table"])
    return parts


def comparison_csv(comp: dict[str, Any]) -> str:
    """One row per run: id, name, status, the differing settings, then the metrics."""
    rows = [{"id": r["id"], "name": r["name"], "status": r["status"], "kind": r["kind"],
             "steps_done": r["steps_done"], "samples_seen": r["samples_seen"],
             "wall_time_s": r["wall_time_s"], **r["config"], **r["metrics"],
             "best_val_mae": r["best_val_mae"]} for r in comp["runs"]]
    return _csv(rows)


def export_run(store: RunStore, run_id: str, fmt: str = "md", out: str | Path | None = None,
               *, force: bool = False, warn: Callable[[str], None] | None = None
               ) -> list[Path]:
    """Write one run's summary; returns the files written. A damaged file of the run
    (summary["unreadable"]) leaves its part out and is told to `warn`, one line each."""
    summary = run_summary(store, run_id)
    for line in summary["unreadable"]:
        if warn is not None:
            warn(line)
    stem = f"{run_id[:8]}-{slug(summary['name'])}"
    if fmt == "csv":
        texts = summary_csv(summary)
        if not texts:
            raise ExportError(f"run {run_id[:8]} has no history, sweep, predictions or probes "
                              "yet: nothing to write as CSV")
        where = targets(out, stem, "csv", list(texts))
        return write_files({where[p]: t for p, t in texts.items()}, force)
    text = to_json(summary) if fmt == "json" else summary_markdown(summary)
    return write_files({targets(out, stem, _ext(fmt), None)[""]: text}, force)


def export_comparison(store: RunStore, run_ids: list[str], fmt: str = "md",
                      out: str | Path | None = None, *, force: bool = False) -> list[Path]:
    """Write the side-by-side table of several runs; returns the file written."""
    comp = comparison(store, run_ids)
    stem = "compare-" + "-".join(r[:8] for r in run_ids[:4]) + (
        f"-and-{len(run_ids) - 4}-more" if len(run_ids) > 4 else "")
    text = {"json": to_json, "csv": comparison_csv, "md": comparison_markdown}[fmt](comp)
    return write_files({targets(out, stem, _ext(fmt), None)[""]: text}, force)


def _ext(fmt: str) -> str:
    fmt = "md" if fmt == "markdown" else fmt
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    return fmt


