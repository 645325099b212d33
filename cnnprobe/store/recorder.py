"""The trainer callback that records a run into the store as it trains.

Step rows are buffered and written about once a second (and at every evaluation), so
recording costs the run almost nothing; each write also moves the run's heartbeat.
Checkpoints are written at every evaluation ("last", and "best" when validation MAE
improved) and when the run stops, so a killed run keeps its last complete checkpoint.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from typing import Any

from cnnprobe.config import RunConfig
from cnnprobe.events import Cancelled, EvaluationEvent, Failed, Finished, RunStarted, StepEvent
from cnnprobe.store.checkpoints import write_checkpoint
from cnnprobe.store.files import atomic_write
from cnnprobe.store.index import RunStore


class RunRecorder:
    """Call it with every trainer event of one run; see the module docstring."""

    def __init__(self, store: RunStore, run_id: str, *, config: RunConfig | None = None,
                 flush_every_s: float = 1.0):
        record = store.get(run_id)
        self.store, self.run_id = store, run_id
        self.config = config or record.config
        self.flush_every_s = flush_every_s
        # A resumed run continues the record: its wall time and elapsed axis carry on.
        self.wall_offset = record.wall_time_s
        self._rows: list[dict[str, float]] = []
        self._last_flush = time.monotonic()
        self._saved_step: int | None = None
        self._steps, self._samples, self._elapsed = record.steps_done, record.samples_seen, 0.0

    def __call__(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            self.store.record_start(self.run_id, device=event.device,
                                    device_name=event.device_name,
                                    parameters=event.parameters, total_steps=event.total_steps)
        elif isinstance(event, StepEvent):
            self._steps, self._samples, self._elapsed = (event.step, event.samples_seen,
                                                         event.elapsed_s)
            self._rows.append(event.row(self.wall_offset))
            if time.monotonic() - self._last_flush >= self.flush_every_s:
                self.flush()
        elif isinstance(event, EvaluationEvent):
            self._on_evaluation(event)
        elif isinstance(event, (Finished, Cancelled, Failed)):
            self._on_end(event.result)

    def flush(self, val_rows: Sequence[dict[str, float]] = (), best: float | None = None) -> None:
        """Write buffered step rows (and any validation rows) and move the heartbeat."""
        rows, self._rows = self._rows, []
        self.store.record_progress(self.run_id, rows, val_rows, steps_done=self._steps,
                                   samples_seen=self._samples,
                                   wall_time_s=self.wall_offset + self._elapsed,
                                   best_val_mae=best)
        self._last_flush = time.monotonic()

    def _save(self, which: str, model, optimizer, generator, step: int, samples_seen: int,
              best: float) -> None:
        write_checkpoint(self.store.checkpoint_path(self.run_id, which), run_id=self.run_id,
                         config=self.config, model=model, optimizer=optimizer,
                         generator=generator, step=step, samples_seen=samples_seen,
                         best_val_mae=best)
        if which == "last":
            self._saved_step = step

    def _on_evaluation(self, event: EvaluationEvent) -> None:
        s = event.state
        # History first, then the checkpoint: killed in between, a resume from the older
        # checkpoint drops and redoes the newer rows; the other way round would leave a gap.
        self._steps, self._samples = s.step, s.samples_seen
        self.flush([{"step": event.step, **event.metrics}], best=s.best_val_mae)
        self._save("last", s.model, s.optimizer, s.generator, s.step, s.samples_seen,
                   s.best_val_mae)
        if event.is_best:
            last = self.store.checkpoint_path(self.run_id, "last")
            with open(last, "rb") as src:
                atomic_write(self.store.checkpoint_path(self.run_id, "best"),
                             lambda f: shutil.copyfileobj(src, f))
        evaluation = getattr(event, "evaluation", None)
        if evaluation is not None:
            self.store.save_predictions(self.run_id, evaluation.predictions, evaluation.labels)

    def _on_end(self, result: Any) -> None:
        stopped_cleanly = result.status in ("finished", "cancelled")
        if stopped_cleanly and result.steps_done > 0 and self._saved_step != result.steps_done:
            self._save("last", result.model, result.optimizer, result.generator,
                       result.steps_done, result.samples_seen, result.best_val_mae)
        if stopped_cleanly and result.evaluation is not None:
            self.store.save_predictions(self.run_id, result.evaluation.predictions,
                                        result.evaluation.labels)
        self._steps, self._samples = result.steps_done, result.samples_seen
        self.flush()
        best = result.best_val_mae if math.isfinite(result.best_val_mae) else None
        self.store.record_end(self.run_id, result.status, result.reason,
                              steps_done=result.steps_done, samples_seen=result.samples_seen,
                              wall_time_s=self.wall_offset + result.wall_time_s,
                              metrics=result.final_metrics, best_val_mae=best,
                              measured=result.measured)
