"""A stored run, or several side by side, as plain Python data: every number the store
holds, ready for the JSON, CSV and Markdown writers."""

from __future__ import annotations

import json
from typing import Any

from cnnprobe.measurement import best_of
from cnnprobe.report.formatting import flat_config
from cnnprobe.store import RunStore, UnreadableFile

SUMMARY_FORMAT = "cnnprobe.run/1"
COMPARISON_FORMAT = "cnnprobe.comparison/1"
RECORD_FIELDS = ("id", "name", "kind", "parent_id", "status", "reason", "tags", "note",
                 "created_at", "finished_at", "seed", "device", "device_name", "parameters",
                 "wall_time_s", "samples_seen", "steps_done", "total_steps", "resumed_at",
                 "best_val_mae", "versions", "measured")


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
    out["unreadable"] = []  # one line per damaged file: its part is left out, the rest shown
    try:
        pairs = store.predictions(run_id)
    except UnreadableFile as exc:
        pairs = None
        out["unreadable"].append(str(exc))
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
        try:
            samples = store.sweep(run_id, info["kind"]).samples
        except UnreadableFile as exc:  # the table is in the index: shown without samples
            samples = {}
            out["unreadable"].append(str(exc))
        out["sweeps"][info["kind"]] = {
            **info, "table": store.sweep_table(run_id, info["kind"]).to_dict(orient="records"),
            "samples": {k: v.tolist() for k, v in samples.items()}}
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
    sweep_measured: dict[str, dict[str, Any]] = {}  # kind -> run id -> measured()
    for rec in records:
        for info in store.sweeps(rec.id):
            table = store.sweep_table(rec.id, info["kind"])  # the samples file is not needed
            sweep_measured.setdefault(info["kind"], {})[rec.id] = info["options"].get(
                "measured")
            col = sweeps.setdefault(info["kind"], {})
            for row in table.to_dict(orient="records"):
                col.setdefault(str(row[info["kind"]]), {})[rec.id] = row["mae"]
    same = {k: configs[0].get(k) for k in keys if k not in differ}
    return {"format": COMPARISON_FORMAT, "differences": differ, "metric_names": metrics,
            "common_config": same, "runs": runs, "sweep_mae": sweeps,
            "sweep_measured": sweep_measured}
