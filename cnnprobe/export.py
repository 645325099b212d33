"""Exports of stored runs: one run's summary, or several runs side by side, as Markdown,
JSON or CSV files under exports/ (or --out). An existing file is never overwritten
unless asked (`force`); each file appears whole or not at all.

JSON is strict: non-finite numbers (an undefined R², an infinite best MAE) become null.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from cnnprobe.checkpoints import atomic_write
from cnnprobe.measurement import best_of
from cnnprobe.store import RunStore

FORMATS = ("md", "json", "csv")
DEFAULT_DIR = Path("exports")
SUMMARY_FORMAT = "cnnprobe.run/1"
COMPARISON_FORMAT = "cnnprobe.comparison/1"
RECORD_FIELDS = ("id", "name", "kind", "parent_id", "status", "reason", "tags", "note",
                 "created_at", "finished_at", "seed", "device", "device_name", "parameters",
                 "wall_time_s", "samples_seen", "steps_done", "total_steps", "resumed_at",
                 "best_val_mae", "versions", "measured")


class ExportError(Exception):
    """An export could not be written; the message says which path and what to do."""


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """{"task": {"height": 32}} -> {"task.height": 32}."""
    return {f"{section}.{k}": v for section, values in config.items() for k, v in values.items()}


def run_summary(store: RunStore, run_id: str) -> dict[str, Any]:
    """Every number the store holds about one run, as plain Python."""
    rec = store.get(run_id)
    out: dict[str, Any] = {"format": SUMMARY_FORMAT}
    out.update({k: getattr(rec, k) for k in RECORD_FIELDS})
    out["config"] = rec.config.to_dict()
    out["metrics"] = rec.metrics
    out["train_history"] = store.train_history(run_id)
    out["val_history"] = store.val_history(run_id)
    out["best_validation"] = best_of(out["val_history"])  # the `best` checkpoint's row
    pairs = store.predictions(run_id)
    out["predictions"] = None
    out["describe"] = None
    if pairs is not None:
        import pandas as pd

        p, y = pairs
        frame = pd.DataFrame({"prediction": p, "label": y, "error": abs(p - y)})
        out["predictions"] = {k: v.tolist() for k, v in frame.items()}
        out["describe"] = frame.describe().to_dict()
    out["sweeps"] = {}
    for info in store.sweeps(run_id):
        sweep = store.sweep(run_id, info["kind"])
        out["sweeps"][info["kind"]] = {
            **info, "table": sweep.table.to_dict(orient="records"),
            "samples": {k: v.tolist() for k, v in sweep.samples.items()}}
    out["evaluations"] = store.evaluations(run_id)
    info, probes = store.probes_info(run_id), store.probes(run_id)
    out["probes"] = None if info is None or probes is None else {
        **info, "table": probes.to_dict(orient="records")}
    return out


def comparison(store: RunStore, run_ids: list[str]) -> dict[str, Any]:
    """Runs side by side: the config settings that differ, then the final metrics."""
    records = [store.get(r) for r in run_ids]
    configs = [flat_config(r.config.to_dict()) for r in records]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    differ = [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]
    metrics = list(dict.fromkeys(k for r in records for k in r.metrics))
    runs = []
    for rec, cfg in zip(records, configs, strict=True):
        runs.append({"id": rec.id, "name": rec.name, "status": rec.status, "kind": rec.kind,
                     "parent_id": rec.parent_id, "steps_done": rec.steps_done,
                     "samples_seen": rec.samples_seen, "wall_time_s": rec.wall_time_s,
                     "config": {k: cfg.get(k) for k in differ},
                     "metrics": {k: rec.metrics.get(k) for k in metrics},
                     "measured": rec.measured, "best_val_mae": rec.best_val_mae})
    sweeps: dict[str, dict[str, dict[str, float]]] = {}
    for rec in records:
        for info in store.sweeps(rec.id):
            table = store.sweep(rec.id, info["kind"]).table
            col = sweeps.setdefault(info["kind"], {})
            for row in table.to_dict(orient="records"):
                col.setdefault(str(row[info["kind"]]), {})[rec.id] = row["mae"]
    same = {k: configs[0].get(k) for k in keys if k not in differ}
    return {"format": COMPARISON_FORMAT, "differences": differ, "metric_names": metrics,
            "common_config": same, "runs": runs, "sweep_mae": sweeps}


# -- encodings
def finite(value: Any) -> Any:
    """Non-finite floats to None, everywhere in a structure (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return finite(value.item())
    return value


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(finite(data), indent=2, allow_nan=False) + "\n"


def _csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows, columns=columns).to_csv(buf, index=False)
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


# -- files
def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def _targets(out: str | Path | None, stem: str, ext: str, parts: list[str] | None
             ) -> dict[str, Path]:
    """Where each part goes: a folder (default exports/) gets <stem>[-part].<ext>; a file
    path is used as is, or as the stem of several parts."""
    out_path = Path(out) if out is not None else DEFAULT_DIR
    as_folder = out is None or out_path.is_dir() or str(out).endswith(("/", "\\"))
    if as_folder:
        base = out_path / stem
    else:
        base = out_path.with_suffix("") if out_path.suffix == f".{ext}" else out_path
        if parts is None:
            return {"": out_path}
    if parts is None:
        return {"": base.with_name(f"{base.name}.{ext}")}
    return {p: base.with_name(f"{base.name}-{p}.{ext}") for p in parts}


def write_files(files: dict[Path, str], force: bool = False) -> list[Path]:
    """Write every file or none: all targets are checked before the first is written."""
    if not force:
        taken = [p for p in files if p.exists()]
        if taken:
            raise ExportError(f"{taken[0]} exists: pass --force to overwrite it, or --out "
                              "another path")
    for path in files:
        blocker = next((a for a in (path.parent, *path.parent.parents)
                        if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise ExportError(f"cannot write {path}: {blocker} is a file, not a folder; pass "
                              "--out a writable path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot write to {path.parent} ({exc.strerror or exc}): pass "
                              "--out a writable path") from exc
        if path.is_dir():
            raise ExportError(f"{path} is a folder: pass --out a file name")
    for path, text in files.items():
        try:
            atomic_write(path, lambda f, t=text: f.write(t.encode()))
        except OSError as exc:
            raise ExportError(f"cannot write {path} ({exc.strerror or exc}): pass --out a "
                              "writable path") from exc
    return list(files)


def export_run(store: RunStore, run_id: str, fmt: str = "md", out: str | Path | None = None,
               *, force: bool = False) -> list[Path]:
    """Write one run's summary; returns the files written."""
    from cnnprobe.markdown import summary_markdown

    summary = run_summary(store, run_id)
    stem = f"{run_id[:8]}-{slug(summary['name'])}"
    if fmt == "csv":
        texts = summary_csv(summary)
        if not texts:
            raise ExportError(f"run {run_id[:8]} has no history, sweep, predictions or probes "
                              "yet: nothing to write as CSV")
        where = _targets(out, stem, "csv", list(texts))
        return write_files({where[p]: t for p, t in texts.items()}, force)
    text = to_json(summary) if fmt == "json" else summary_markdown(summary)
    return write_files({_targets(out, stem, _ext(fmt), None)[""]: text}, force)


def export_comparison(store: RunStore, run_ids: list[str], fmt: str = "md",
                      out: str | Path | None = None, *, force: bool = False) -> list[Path]:
    """Write the side-by-side table of several runs; returns the file written."""
    from cnnprobe.markdown import comparison_markdown

    comp = comparison(store, run_ids)
    stem = "compare-" + "-".join(r[:8] for r in run_ids[:4]) + (
        f"-and-{len(run_ids) - 4}-more" if len(run_ids) > 4 else "")
    text = {"json": to_json, "csv": comparison_csv, "md": comparison_markdown}[fmt](comp)
    return write_files({_targets(out, stem, _ext(fmt), None)[""]: text}, force)


def _ext(fmt: str) -> str:
    fmt = "md" if fmt == "markdown" else fmt
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    return fmt


def when(ts: float | None) -> str:
    """A unix time as local 'YYYY-MM-DD HH:MM:SS', or '' for none."""
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
