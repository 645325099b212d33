"""A study's stored trials, read back: which studies the store holds, a study's trials by
key, and a trial's numbers (its final metrics, its fine-tune's and held-out evaluation's,
and those derived from its stored predictions and sweeps). Read-only, torch-free; the
report (`studies.report`) and `cnnprobe study list` read through here, the runner too."""

from __future__ import annotations

import math
from typing import Any

from cnnprobe.config import ConfigError
from cnnprobe.store import RunRecord, RunStore, UnreadableFile
from cnnprobe.studies.trial import study_tag


def stored_studies(store: RunStore) -> dict[str, dict[str, int]]:
    """Every study with trials in the store: name -> trials by status."""
    out: dict[str, dict[str, int]] = {}
    for rec in store.list_runs():
        if not any(t.startswith("trial:") for t in rec.tags):
            continue  # a trial's fine-tune is not a trial
        for tag in rec.tags:
            if tag.startswith("study:"):
                counts = out.setdefault(tag.split(":", 1)[1], {})
                counts[rec.status] = counts.get(rec.status, 0) + 1
    return dict(sorted(out.items()))


def trial_records(store: RunStore, name: str) -> dict[str, RunRecord]:
    """The study's stored trials by trial key (the newest record of a key wins)."""
    out: dict[str, RunRecord] = {}
    for rec in reversed(store.list_runs(tag=study_tag(name))):
        key = next((t.split(":", 1)[1] for t in rec.tags if t.startswith("trial:")), None)
        if key is not None:
            out[key] = rec
    return out


def trial_metrics(store: RunStore, rec: RunRecord,
                  unreadable: list[str] | None = None) -> dict[str, float]:
    """A finished trial's numbers: its final metrics, `finetune_*` from its fine-tune and
    `heldout_*` from a held-out-quadrant evaluation of a uniform-split trial. A damaged
    file of the trial leaves out the numbers made from it; its line goes to `unreadable`."""
    out = {k: v for k, v in (rec.metrics or {}).items() if k != "n"}
    for ev in store.evaluations(rec.id):
        prefix = metric_prefix(ev.get("options", {}))
        if prefix:
            out.update({prefix + k: v for k, v in ev.get("metrics", {}).items() if k != "n"})
    out.update(_derived_metrics(store, rec, unreadable))
    return out


def _derived_metrics(store: RunStore, rec: RunRecord,
                     unreadable: list[str] | None = None) -> dict[str, float]:
    """Numbers computed from what the trial stored:

    - `mean_guess_mae`: the MAE of always predicting the mean of its validation labels,
      the baseline every MAE of the trial is to be read against (R² is 1 - MSE over this
      guess's MSE);
    - `resolution_ratio`: its worst MAE over the resolution sweep over its MAE at the
      size it was trained at (1 = no loss anywhere; unitless);
    - `distractors_max_mae`: its worst MAE over the distractor sweep."""
    out: dict[str, float] = {}
    try:
        stored = store.predictions(rec.id)
    except UnreadableFile as exc:  # the trial's other metrics stand; the caller hears it
        stored = None
        if unreadable is not None:
            unreadable.append(str(exc))
    if stored is not None and len(stored[1]):
        labels = stored[1].astype("float64").reshape(len(stored[1]), -1)
        out["mean_guess_mae"] = float(abs(labels - labels.mean(axis=0)).mean())
    table = store.sweep_table(rec.id, "resolution")  # the index's table: no samples file
    if table is not None and len(table):
        rows = {int(r["resolution"]): float(r["mae"]) for r in table.to_dict("records")}
        at = rows.get(rec.config.task.height)
        if at and math.isfinite(at) and at > 0:
            out["resolution_ratio"] = max(rows.values()) / at
    table = store.sweep_table(rec.id, "distractors")
    if table is not None and len(table):
        out["distractors_max_mae"] = float(table["mae"].max())
    return out


def metric_prefix(options: dict[str, Any]) -> str | None:
    """The prefix under which a study's own evaluation (see _evaluate) joins a trial's
    metrics; None for any other saved evaluation."""
    if options.get("kind") == "finetune":
        return "finetune_"
    if options.get("quadrant") and options.get("region") == "heldout":
        return "heldout_"
    return None


def study_scales(store: RunStore, name: str,
                 stored: dict[str, RunRecord] | None = None) -> dict[str, int]:
    """Of a built-in study, its stored trials by the scale whose plan names them (scales
    without any left out); {} for a study that is not built in (a plan file's)."""
    from cnnprobe.studies.builtin import BUILTIN, SCALES, builtin_plan

    if name not in BUILTIN:
        return {}
    stored = trial_records(store, name) if stored is None else stored
    if not stored:
        return {}
    seeds = min(max(rec.config.train.seed for rec in stored.values()) + 1, 100)
    out: dict[str, int] = {}
    for scale in SCALES:
        try:
            keys = {t.key for t in builtin_plan(name, scale, seeds=seeds).trials()}
        except ConfigError:  # more trials than a plan may hold: not this scale's seeds
            continue
        found = sum(1 for key in stored if key in keys)
        if found:
            out[scale] = found
    return out
