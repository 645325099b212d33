"""A study in progress as plain data: one row per trial with its status and training
progress, fed by `run_study`'s callbacks from any thread and read by a UI at its own pace.
Torch-free; the TUI's Studies screen draws it, and tests read it directly."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from cnnprobe.studies.plan import StudyPlan, Trial

# How run_study's outcomes read in the grid ("failed: reason" -> "failed").
_FINAL = ("finished", "failed", "skipped", "cancelled", "interrupted")


@dataclass(frozen=True)
class TrialRow:
    """One trial as the grid shows it."""

    key: str
    variant: str
    seed: int
    status: str = "pending"  # pending, training, finished, failed, skipped, cancelled, ...
    step: int = 0
    total: int = 0
    run_id: str | None = None
    metric: float | None = None
    reason: str = ""


class StudyState:
    """The trials of one study run and what has happened to each; thread-safe.

    `version` grows with every change, so a reader redraws only when it moved."""

    def __init__(self, plan: StudyPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._rows: dict[str, TrialRow] = {
            t.key: TrialRow(t.key, t.variant, t.seed, total=t.config.train.total_steps)
            for t in plan.trials()}
        self.version = 0
        self.finished_version = 0  # grows when a trial ends: the report is worth redrawing
        self.done = False
        self.error = ""  # the one line that stopped the study, if something did
        self.summary = ""

    def _set(self, key: str, **changes: Any) -> None:
        with self._lock:
            self._rows[key] = replace(self._rows[key], **changes)
            self.version += 1
            if changes.get("status") in _FINAL or changes.get("status") == "kept":
                self.finished_version += 1

    def on_trial(self, trial: Trial, what: str, rec: Any) -> None:
        status, _, reason = what.partition(": ")
        changes: dict[str, Any] = {"status": status, "reason": reason}
        if rec is not None:
            changes["run_id"] = rec.id
            changes["metric"] = (rec.metrics or {}).get(self.plan.metric)
            if status in ("kept", "running elsewhere"):
                changes["status"] = rec.status if status == "kept" else "running elsewhere"
                changes["step"] = rec.steps_done
            if changes["status"] == "finished":
                changes["step"] = self._rows[trial.key].total
        self._set(trial.key, **changes)

    def on_step(self, trial: Trial, step: int, total: int) -> None:
        self._set(trial.key, step=step, total=total)

    def rows(self) -> list[TrialRow]:
        with self._lock:
            return list(self._rows.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows():
            out[row.status] = out.get(row.status, 0) + 1
        return out

    def fraction(self) -> float:
        """Training steps done over all steps of the study (kept trials count as done)."""
        rows = self.rows()
        total = sum(r.total for r in rows) or 1
        return sum(r.total if r.status == "finished" else min(r.step, r.total)
                   for r in rows) / total
