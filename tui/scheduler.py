"""The lab's policy, in plain Python: one training per device, a queue per device, which
run the user is looking at, how a running job's events become its view and log lines, the
runs marked for Compare and its baseline (`Marks`), what waits for the engine to load
(`EngineGate`), and the study the Studies screen runs (`start_study`, `stop_study`).

No Textual here: the lab controller (tui/lab.py) shows what this decides and forwards keys
to it, and tests/test_scheduler.py tests it without a terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnprobe.events import EvaluationEvent, RunStarted, StepEvent
from tui.jobs import RunIdKnown, SweepJob, TrainJob
from tui.run_view import RunView

if TYPE_CHECKING:
    from cnnprobe.studies.live import StudyState
    from cnnprobe.studies.plan import StudyPlan


class Marks:
    """The runs marked for the Compare tab, in the order marked, and its baseline (the run
    Compare draws the others against). The Runs pane shows them; Compare draws `compared`."""

    def __init__(self) -> None:
        self.marked: list[str] = []
        self.baseline: str | None = None

    @property
    def compared(self) -> list[str]:
        """The runs the Compare tab draws: the baseline first, then the marked ones."""
        rest = [m for m in self.marked if m != self.baseline]
        return ([self.baseline] if self.baseline else []) + rest

    def toggle_mark(self, run_id: str) -> bool:
        """Mark or unmark a run; True when it is now marked."""
        if run_id in self.marked:
            self.marked.remove(run_id)
            return False
        self.marked.append(run_id)
        return True

    def toggle_baseline(self, run_id: str) -> tuple[bool, str | None]:
        """Pin a run as the baseline (unpinning another), or unpin it: (whether it is the
        baseline now, the run that was the baseline before)."""
        old, self.baseline = self.baseline, None if self.baseline == run_id else run_id
        return self.baseline == run_id, old

    def forget(self, run_id: str) -> bool:
        """A deleted run leaves the marks and the baseline; True when Compare changed."""
        was = run_id in self.compared
        if run_id in self.marked:
            self.marked.remove(run_id)
        if self.baseline == run_id:
            self.baseline = None
        return was


class EngineGate:
    """What waits for the engine (torch, the trainer) to load after the first frame: each
    training, resume or fine-tune asked for meanwhile starts once it has, in order, or is
    dropped (and said) when it cannot load."""

    def __init__(self) -> None:
        self.ready = False
        self.error = ""
        self.waiting: list[tuple[str, Callable[[], None]]] = []

    def ask(self, what: str, start: Callable[[], None]) -> str:
        """"now" (loaded: run `start` now), "refused" (it failed to load), or "waiting"
        (`start` is kept for `loaded`)."""
        if self.ready:
            return "now"
        if self.error:
            return "refused"
        self.waiting.append((what, start))
        return "waiting"

    def loaded(self) -> list[Callable[[], None]]:
        """The engine is in: what waited, to start now, in the order asked."""
        self.ready = True
        waiting, self.waiting = self.waiting, []
        return [start for _, start in waiting]

    def failed(self, error: str) -> list[str]:
        """The engine could not load: what waited is dropped; returns what it was."""
        self.error = error
        waiting, self.waiting = self.waiting, []
        return [what for what, _ in waiting]


@dataclass
class Merged:
    """What merging a job's pending events changed: whether its plots need a redraw, the
    log lines to show (text, style), and the run id if it became known."""

    changed: bool = False
    log: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None


class Scheduler:
    """Trainings by device (one running, the rest queued in order), sweeps, and the view."""

    def __init__(self) -> None:
        self.active: dict[str, TrainJob] = {}  # device -> its running training
        self.queue: list[TrainJob] = []
        self.sweeps: dict[int, SweepJob] = {}
        self.views: dict[str, RunView] = {}  # finished runs' data, by id
        self.viewed_job: TrainJob | None = None
        self.viewed_id: str | None = None
        self.quitting = False
        self.marks = Marks()
        self.engine = EngineGate()
        # The study of the Studies screen: its live state and the flag that stops it.
        self.study: StudyState | None = None
        self.study_cancel: threading.Event | None = None

    # -- trainings
    def running_on(self, device: str) -> TrainJob | None:
        """The training holding `device`, if any: a new one there must queue or stop it."""
        return self.active.get(device)

    def start(self, job: TrainJob) -> None:
        """`job` holds its device from now; a resume's view starts from its run's history."""
        if job.device in self.active:
            raise RuntimeError(f"{job.device} is busy with {self.active[job.device].title}")
        job.start_clock()
        self.active[job.device] = job
        if job.kind == "resume" and job.parent_id in self.views:
            parent = self.views[job.parent_id]
            job.view.train_history = list(parent.train_history)
            job.view.val_history = list(parent.val_history)
        self.view_job(job)

    def enqueue(self, job: TrainJob) -> int:
        """Queue `job` behind the others; returns its place among its device's jobs."""
        self.queue.append(job)
        return sum(1 for j in self.queue if j.device == job.device)

    def replace_running(self, job: TrainJob) -> TrainJob | None:
        """Put `job` first in line on its device and stop the one running there (returned)."""
        self.queue.insert(0, job)
        running = self.active.get(job.device)
        if running is not None:
            running.cancel.set()
        return running

    def finish(self, job: TrainJob) -> None:
        """`job` ended (or could not start): its device is free."""
        if self.active.get(job.device) is job:
            del self.active[job.device]

    def next_for(self, device: str) -> TrainJob | None:
        """The queued job to start on a free `device` (taken off the queue), or None."""
        if self.quitting or device in self.active:
            return None
        nxt = next((j for j in self.queue if j.device == device), None)
        if nxt is not None:
            self.queue.remove(nxt)
        return nxt

    def to_stop(self) -> list[Any]:
        """What ctrl+s stops: the viewed training if it runs, else every training; and every
        sweep. Only those not already stopping."""
        viewed = self.viewed_job
        jobs: list[Any] = [viewed] if viewed is not None and viewed in self.active.values() \
            else list(self.active.values())
        return [j for j in [*jobs, *self.sweeps.values()] if not j.cancel.is_set()]

    def stop_everything(self) -> int:
        """Drop the queue and stop every training and sweep; returns how many were queued."""
        dropped = len(self.queue)
        self.queue.clear()
        for job in [*self.active.values(), *self.sweeps.values()]:
            job.cancel.set()
        self.stop_study()
        return dropped

    @property
    def study_running(self) -> bool:
        return self.study is not None and not self.study.done

    def start_study(self, plan: StudyPlan) -> tuple[StudyState, threading.Event]:
        """The Studies screen's study: its live state and the flag that stops it. One at a
        time: RuntimeError while one runs."""
        from cnnprobe.studies.live import StudyState

        if self.study_running:
            raise RuntimeError(f"study {self.study.plan.name} is running")
        self.study, self.study_cancel = StudyState(plan), threading.Event()
        return self.study, self.study_cancel

    def stop_study(self) -> bool:
        """Stop the running study's trials at their next step; False when none runs."""
        if not self.study_running or self.study_cancel is None:
            return False
        self.study_cancel.set()
        return True

    @property
    def busy(self) -> bool:
        return bool(self.active or self.sweeps or self.study_running)

    # -- sweeps
    def add_sweep(self, job: SweepJob) -> None:
        self.sweeps[job.number] = job

    def end_sweep(self, job: SweepJob) -> None:
        self.sweeps.pop(job.number, None)

    # -- what is shown
    def view_job(self, job: TrainJob) -> None:
        self.viewed_job, self.viewed_id = job, job.run_id

    def live_job(self, run_id: str) -> TrainJob | None:
        return next((j for j in self.active.values() if j.run_id == run_id), None)

    def status_job(self) -> TrainJob | None:
        """The training the status line describes: the viewed one if it runs, else any."""
        if self.viewed_job in self.active.values():
            return self.viewed_job
        return next(iter(self.active.values()), None)

    # -- a running job's events
    @staticmethod
    def merge(job: TrainJob) -> Merged:
        """Move the events the trainer sent since the last call into the job and its view."""
        out = Merged()
        for ev in job.events.drain():
            if isinstance(ev, StepEvent):
                job.step, job.samples_per_s, job.total_steps = (ev.step, ev.samples_per_s,
                                                                ev.total_steps)
                job.view.train_history.append(ev.row())
                out.changed = True
            elif isinstance(ev, EvaluationEvent):
                job.view.val_history.append({"step": ev.step, **ev.metrics})
                if ev.evaluation is not None:  # Predictions and Errors follow the run
                    job.view.predictions = ev.evaluation.predictions
                    job.view.labels = ev.evaluation.labels
                    job.view.evaluated += 1
                best = " best" if ev.is_best else ""
                r2 = ev.metrics.get("r2", float("nan"))
                out.log.append((f"step {ev.step}: val MAE {ev.metrics['mae']:.4g}, "
                                f"R² {r2:.3f}{best}", "info"))
                out.changed = True
            elif isinstance(ev, RunStarted):
                job.total_steps, job.step, job.device_name = (ev.total_steps, ev.start_step,
                                                              ev.device_name)
                out.log.append((f"{job.title}: {ev.total_steps} steps on {ev.device} "
                                f"({ev.device_name}), {ev.parameters:,} parameters", "info"))
            elif isinstance(ev, RunIdKnown):
                job.run_id = job.view.run_id = out.run_id = ev.run_id
                out.log.append((f"run {ev.run_id[:8]} recorded in the store", "dim"))
        if out.changed:
            job.view.touch()
        return out
