"""The lab controller: what the lab does with runs (train, stop, queue, sweep, resume,
fine-tune, export, mark, delete, quit), as an object the app holds (`app.controller`).

The app composes the widgets and routes keys and messages here. What runs where, what
waits (for a device, for the engine), what is marked and which study runs is decided by
`tui.scheduler.Scheduler` (`app.lab`: plain Python, unit tested without a terminal); this
shows its decisions through the app's panes, dialogs and workers. Worker bodies only call
the service layer (`cnnprobe.runs`, `cnnprobe.admission`) and post messages; everything
that touches a widget happens here, on the UI thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.worker import Worker, WorkerState

from cnnprobe.config import ConfigError, RunConfig
from cnnprobe.measurement import describe
from cnnprobe.shown import shown
from cnnprobe.stopping import STOP_SIGNALS, detach_if_hung_up, exit_code, signal_name
from tui.jobs import RunIdKnown, SweepJob, TrainJob
from tui.messages import CompareLoaded, Exported, RunLoaded, SweepEnded, TrainingEnded
from tui.run_view import RunView
from tui.scheduler import Scheduler
from tui.widgets.plots import LazyPlot

if TYPE_CHECKING:
    from textual.app import App

EXIT_GUARD_S = 15.0  # after a SIGTERM/SIGHUP, the UI's time to close once the work stopped
REFRESH_S = 0.5  # the UI merges trainer events and redraws the progress line this often
PLOT_EVERY_S = 1.0  # and redraws a live plot at most this often (bench/bench_tui.py),
# or less often when a figure costs more: its CPU time at most this share of the interval,
# so watching a run takes a bounded slice of the training thread's time, whatever the plot.
PLOT_CPU_SHARE = 0.02


def plot_interval(last_cost_s: float) -> float:
    """Seconds between live redraws of a plot whose last redraw took `last_cost_s` of CPU."""
    return max(PLOT_EVERY_S, last_cost_s / PLOT_CPU_SHARE)


def metrics_line(metrics: dict[str, float]) -> str:
    parts = [f"MAE {metrics['mae']:.4g}"] if "mae" in metrics else []
    for key, label in (("rmse", "RMSE"), ("max_error", "max err"), ("r2", "R²"),
                       ("accuracy", "acc"), ("heldout_mae", "held-out MAE")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.4g}")
    return ", ".join(parts)


class LabController:
    """The lab's actions on runs, for the app that holds it (`app`: the lab's App, which
    gives its panes as `log_pane`, `plots`, `runs`, `status`, its store and `lab_is_up`)."""

    def __init__(self, app: App[None], lab: Scheduler) -> None:
        self.app: Any = app  # the cnnprobe app: its panes and store, beside Textual's App
        self.lab = lab
        self.worker_jobs: dict[Worker, Any] = {}
        self._memory = ("", 0.0)
        self._plotted_at = 0.0
        self._warned: set[str] = set()
        self.stop_signal: int | None = None  # SIGTERM or SIGHUP, once one has come
        # Set by run_app (the real process, not a Pilot test): after a stop by a signal the
        # process is ended once the work is stored, however the UI or the interpreter's
        # shutdown fares (a hung-up terminal can leave Textual's driver waiting).
        self.hard_exit = False
        self.stopped_runs: list[str] = []  # the runs training when it came
        self._signal_handlers: dict[int, Any] = {}  # signal -> the handler it had
        self._lab_closed = threading.Event()  # set when the app has unmounted

    # -- training
    def submit(self, job: TrainJob) -> None:
        """Start a training now, or ask whether to queue it or stop the one on its device."""
        running = self.lab.running_on(job.device)
        if running is None:
            self.start_training(job)
            return

        def answer(choice: str | None) -> None:
            if choice == "queue":
                place = self.lab.enqueue(job)
                self.app.log_pane.event(f"queued {job.title} (#{place} on {job.device})")
            elif choice == "stop":
                stopped = self.lab.replace_running(job)
                if stopped is not None:
                    self.app.log_pane.event(f"stopping {stopped.title}; {job.title} starts next",
                                        "warn")
            self.start_next(job.device)  # the running one may have ended while we asked
            self.update_status()

        current = f"{running.title}, step {running.step}/{running.total_steps or '?'}"
        from tui.screens.queue_or_stop import QueueOrStopScreen  # on use: the lab paints first

        self.app.push_screen(QueueOrStopScreen(job.device, current, job.title), answer)

    def start_training(self, job: TrainJob) -> None:
        self.lab.start(job)
        self.app.plots.show(job.view)
        self.app.log_pane.event(f"starting {job.title} on {job.device}")
        worker = self._train_worker(job)
        self.worker_jobs[worker] = job
        self.update_status()

    def _train_worker(self, job: TrainJob) -> Worker:
        return self.app.run_worker(lambda: self._train(job), thread=True, exit_on_error=False,
                                   group="train", description="training")

    def _train(self, job: TrainJob) -> None:
        from cnnprobe.runs import finetune_run, resume_run, train_run

        def created(run_id: str) -> None:
            job.events.note(RunIdKnown(run_id))

        callbacks = [job.events]
        with self.app.worker_store() as store:  # this thread's own connection
            if job.kind == "train":
                run_id, result = train_run(store, job.admission or job.config, callbacks,
                                           job.cancel, on_created=created)
            elif job.kind == "resume":
                created(job.parent_id)  # a resume continues the same record
                run_id, result = resume_run(store, job.parent_id, job.extra_steps, callbacks,
                                            job.cancel)
            else:
                run_id, result = finetune_run(store, job.parent_id, height=job.height,
                                              width=job.width, steps=job.steps, lr=job.lr,
                                              callbacks=callbacks, cancel=job.cancel,
                                              on_created=created)
        self.app.post_message(TrainingEnded(job, run_id, result))

    def apply_events(self, job: TrainJob) -> bool:
        """Merge what the trainer sent since the last tick; True when the plots changed."""
        merged = self.lab.merge(job)
        for text, style in merged.log:
            self.app.log_pane.event(text, style)
        if merged.run_id is not None:
            self.app.refresh_runs(select=merged.run_id if self.lab.viewed_job is job else None)
        return merged.changed

    def tick(self) -> None:
        """The throttle: a few times a second, merge events and redraw what is shown."""
        if not self.app.lab_is_up():  # shutting down
            return
        redraw = False
        for job in list(self.lab.active.values()):
            if self.apply_events(job) and job is self.lab.viewed_job:
                redraw = True
        for sweep in list(self.lab.sweeps.values()):
            if self.apply_sweep_rows(sweep) and sweep.run_id == self.lab.viewed_id:
                redraw = True
        now = time.monotonic()
        if redraw and now - self._plotted_at >= plot_interval(LazyPlot.last_cost_s):
            self._plotted_at = now
            self.app.plots.redraw()
        if self.lab.busy:
            self.update_status()

    def update_status(self) -> None:
        job = self.lab.status_job()
        memory = ""
        if job is not None and job.device.startswith("cuda"):
            text, at = self._memory
            if time.monotonic() - at > 1.0:  # once a second is plenty
                from cnnprobe.admission import device_memory  # loaded: a CUDA job runs

                text = device_memory(job.device)
                self._memory = (text, time.monotonic())
            memory = text
        engine = ""
        gate = self.lab.engine
        if gate.error:
            engine = "engine failed to load: see the Log pane"
        elif not gate.ready:
            waiting = len(gate.waiting)
            engine = "loading the engine (torch)…" + (f" {waiting} waiting to start"
                                                     if waiting else "")
        self.app.status.show(job, queued=len(self.lab.queue), sweeps=len(self.lab.sweeps),
                             memory=memory, engine=engine)

    # -- the engine, loaded after the first paint (app._load_engine)
    def after_engine(self, what: str, start: Callable[[], None]) -> None:
        """Run `start` now if the engine has loaded, else as soon as it has (said once)."""
        answer = self.lab.engine.ask(what, start)
        if answer == "now":
            start()
        elif answer == "refused":
            self.app.notify(self.lab.engine.error, severity="error", timeout=8)
        else:
            self.app.notify(f"the engine is still loading (torch); {what} starts as soon as "
                            "it has", timeout=4)
            self.app.log_pane.event(f"waiting for the engine: {what}")
            self.update_status()

    def engine_loaded(self, seconds: float) -> None:
        self.app.log_pane.event(f"engine loaded in {seconds:.1f}s: training keys are ready")
        from tui.widgets.model_pane import ModelPane, device_choices

        for pane in self.app.screen_main.query(ModelPane):
            pane.set_devices(device_choices())
        self.app.revalidate()  # now with the memory check and the device
        for start in self.lab.engine.loaded():
            start()
        self.update_status()

    def engine_failed(self, reason: str) -> None:
        error = (f"the engine could not load ({reason}); training needs a working torch: "
                 "reinstall it (make install)")
        dropped = self.lab.engine.failed(error)
        self.app.log_pane.event(error, "error")
        self.app.notify(error, severity="error", timeout=10)
        if dropped:
            self.app.log_pane.event(f"not started: {', '.join(dropped)}", "warn")
        self.update_status()

    def training_ended(self, message: TrainingEnded) -> None:
        job, result = message.job, message.result
        self.apply_events(job)
        self.finish_job(job)
        view = job.view
        view.run_id, view.status, view.reason = message.run_id, result.status, result.reason
        view.metrics = dict(result.final_metrics)
        view.measured = dict(result.measured)
        if result.evaluation is not None:
            view.predictions = result.evaluation.predictions
            view.labels = result.evaluation.labels
        view.evaluated += 1  # the final metrics and how they were measured, too
        view.touch()
        self.lab.views[message.run_id] = view
        done = f"{job.title} ({message.run_id[:8]})"
        if result.status == "finished":
            self.app.log_pane.event(f"finished {done}: {result.steps_done} steps in "
                                f"{result.wall_time_s:.1f}s; {metrics_line(view.metrics)} "
                                f"({describe(view.measured)})", "good")
            self.app.notify(f"{done} finished: {metrics_line(view.metrics)}", timeout=4)
        elif result.status == "cancelled":
            metrics = metrics_line(view.metrics) or "no metrics yet"
            self.app.log_pane.event(f"cancelled {done} at step {result.steps_done}; stored with "
                                f"{metrics}", "warn")
        else:
            self.app.log_pane.event(f"failed {done} at step {result.steps_done}: {result.reason}",
                                "error")
            self.app.notify(f"{done} failed: {result.reason}", severity="error", timeout=10)
        self.app.refresh_runs(select=message.run_id if self.lab.viewed_job is job else None)
        if self.lab.viewed_job is job:
            self.app.plots.redraw()
        self.start_next(job.device)

    def finish_job(self, job: TrainJob) -> None:
        self.lab.finish(job)
        self.update_status()

    def start_next(self, device: str) -> None:
        nxt = self.lab.next_for(device)
        if nxt is not None:
            self.start_training(nxt)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        job = self.worker_jobs.get(event.worker)
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            reason = str(error) if isinstance(error, ConfigError) else \
                f"{type(error).__name__}: {error}"
            what = job.title if job is not None else event.worker.description
            self.app.log_pane.event(f"{what} could not run: {reason}", "error")
            self.app.notify(f"{what}: {reason}", severity="error", timeout=10)
            if isinstance(job, TrainJob):
                if isinstance(error, ConfigError) and job.kind == "train":
                    self.app.show_config_error(error)
                self.finish_job(job)
                self.app.refresh_runs()
                self.start_next(job.device)
            elif isinstance(job, SweepJob):
                self.lab.end_sweep(job)
                self.update_status()
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.worker_jobs.pop(event.worker, None)

    def stop(self) -> None:
        """Stop the viewed run (else every run) at its next step; sweeps too."""
        if not self.lab.busy:
            self.app.notify("nothing is running", timeout=2)
            return
        for job in self.lab.to_stop():
            job.cancel.set()
            self.app.log_pane.event(f"stopping {job.title} at the next step", "warn")

    # -- viewing
    def view_job(self, job: TrainJob) -> None:
        self.lab.view_job(job)
        self.app.plots.show(job.view)

    def live_job(self, run_id: str) -> TrainJob | None:
        return self.lab.live_job(run_id)

    def view_run(self, run_id: str) -> None:
        if run_id == self.lab.viewed_id and (self.lab.viewed_job is None
                                         or self.lab.viewed_job.run_id == run_id):
            return
        live = self.live_job(run_id)
        if live is not None:
            self.view_job(live)
            return
        self.lab.viewed_job, self.lab.viewed_id = None, run_id
        cached = self.lab.views.get(run_id)
        rec = self.app.runs.record(run_id)
        if rec is not None and rec.config_warning and run_id not in self._warned:
            self._warned.add(run_id)
            self.app.log_pane.event(f"{run_id[:8]}: {rec.config_warning}", "warn")
        if cached is not None and (rec is None or rec.status == cached.status):
            self.app.plots.show(cached)
        else:
            self.load_run(run_id)

    def load_run(self, run_id: str) -> Worker:
        """Read a stored run's view in a thread (the newest asked for wins)."""
        return self.app.run_worker(lambda: self._load(run_id), thread=True,
                                   exit_on_error=False, exclusive=True, group="load",
                                   description="load")

    def _load(self, run_id: str) -> None:
        with self.app.worker_store() as store:
            view = RunView.from_store(store, store.get(run_id))
        self.app.post_message(RunLoaded(view))

    def run_loaded(self, message: RunLoaded) -> None:
        view = message.view
        if view.status != "running":
            self.lab.views[view.run_id] = view
        if not self.app.lab_is_up():  # arrived while the app closes: nothing to draw on
            return
        for line in view.unreadable:
            self.app.log_pane.event(line, "warn")
        if self.lab.viewed_id == view.run_id and self.lab.viewed_job is None:
            self.app.plots.show(view)

    # -- run actions on the selected run
    def selected_record(self, verb: str, *, idle: bool = True):
        """The selected run, or None with a line that says what to do; `verb` is what to
        do to it ("sweep"), with {it} where the run goes when not at the end."""
        run_id = self.app.runs.selected_id
        rec = self.app.runs.record(run_id) if run_id else None
        todo = verb.format(it="it") if "{it}" in verb else f"{verb} it"
        if rec is None:
            self.app.notify(f"select a run in Runs (4) to {todo}", severity="warning", timeout=3)
            return None
        if idle and (rec.status == "running" or self.live_job(rec.id)):
            self.app.notify(f"{rec.id[:8]} is still running: stop it (ctrl+s) or wait to {todo}",
                            severity="warning", timeout=4)
            return None
        return rec

    def sweep(self, kind: str) -> None:
        rec = self.selected_record("sweep")
        if rec is None:
            return

        def go(values: dict | None) -> None:
            if values:
                job = SweepJob(rec.id, kind, values.get("resolutions"),
                               values.get("max_distractors", 8), values["n"])
                self.lab.add_sweep(job)
                if self.lab.viewed_id == rec.id:
                    self.app.plots.set_tab("sweep")
                self.app.log_pane.event(f"starting {job.title}")
                self.worker_jobs[self._sweep_worker(job)] = job
                self.update_status()

        from tui.screens.sweep import SweepScreen  # on use: the lab paints first

        self.app.push_screen(SweepScreen(rec, kind), go)

    def _sweep_worker(self, job: SweepJob) -> Worker:
        return self.app.run_worker(lambda: self._sweep(job), thread=True, exit_on_error=False,
                                   group="sweep", description="sweep")

    def _sweep(self, job: SweepJob) -> None:
        from cnnprobe.runs import sweep_run
        kw: dict[str, Any] = {"n": job.n, "cancel": job.cancel, "on_row": job.rows}
        if job.kind == "resolution":
            kw["resolutions"] = job.resolutions
        else:
            kw["max_distractors"] = job.max_distractors
        with self.app.worker_store() as store:
            sweep = sweep_run(store, job.run_id, job.kind, **kw)
        self.app.post_message(SweepEnded(job, sweep))

    def apply_sweep_rows(self, job: SweepJob) -> bool:
        """Each swept value's metrics as it is done: the Sweep plot grows point by point."""
        rows = job.rows.drain()
        view = self.lab.views.get(job.run_id)
        if not rows or view is None:
            return False
        import pandas as pd

        job.done.extend(rows)
        view.sweeps[job.kind] = pd.DataFrame(job.done)
        view.swept += 1
        view.touch()
        return True

    def sweep_ended(self, message: SweepEnded) -> None:
        job, sweep = message.job, message.sweep
        table = sweep.table
        self.lab.end_sweep(job)
        self.update_status()
        key = job.kind
        if sweep.cancelled:
            self.app.log_pane.event(f"{job.title} stopped after {len(table)} points; not saved",
                                "warn")
        elif len(table):
            worst = table.loc[table["mae"].idxmax()]
            best = table.loc[table["mae"].idxmin()]
            self.app.log_pane.event(f"{job.title}: {len(table)} points, MAE {best['mae']:.4g} at "
                                f"{key} {best[key]:g} to {worst['mae']:.4g} at {worst[key]:g}",
                                "good")
        view = self.lab.views.get(job.run_id)
        if view is not None:
            if len(table) and not sweep.cancelled:
                view.sweeps[job.kind] = table
            elif sweep.cancelled:  # the stored sweep (if any) is what stands
                self.load_run(job.run_id)
            view.swept += 1
            view.touch()
        if self.lab.viewed_id == job.run_id:
            if view is None:
                self.load_run(job.run_id)
            self.app.plots.set_tab("sweep")
            self.app.plots.redraw()
        if job.run_id in self.lab.marks.compared:
            self.load_compare()

    def resume(self) -> None:
        rec = self.selected_record("resume")
        if rec is None:
            return

        def go(values: dict | None) -> None:
            if values:
                self._submit_stored(rec, "resume", rec.config, extra_steps=values["steps"])

        from tui.screens.resume import ResumeScreen  # on use: the lab paints first

        self.app.push_screen(ResumeScreen(rec), go)

    def finetune(self) -> None:
        rec = self.selected_record("fine-tune")
        if rec is None:
            return

        def go(values: dict | None) -> None:
            if values:
                from dataclasses import replace

                c = rec.config
                cfg = replace(c, task=replace(c.task, height=values["height"],
                                              width=values["width"]),
                              train=replace(c.train, steps=values["steps"],
                                            lr=values["lr"] or c.train.lr))
                self._submit_stored(rec, "finetune", cfg, height=values["height"],
                                    width=values["width"], steps=values["steps"],
                                    lr=values["lr"])

        from tui.screens.finetune import FinetuneScreen  # on use: the lab paints first

        self.app.push_screen(FinetuneScreen(rec), go)

    def _submit_stored(self, rec: Any, kind: str, cfg: RunConfig,
                       **kw: Any) -> None:
        def start() -> None:
            from cnnprobe.admission import admit, without_download

            try:  # early feedback: the service admits it in full when it starts
                device = admit(without_download(cfg), upto="device").device
            except ConfigError as exc:
                self.app.notify(str(exc), severity="error", timeout=6)
                return
            self.submit(TrainJob(kind, cfg, device, parent_id=rec.id, **kw))

        self.after_engine(f"the {kind} of {rec.id[:8]}", start)

    def export(self) -> None:
        rec = self.selected_record("export", idle=False)
        if rec is None:
            return

        def go(values: dict | None) -> None:
            if values:
                worker = self._export_worker(rec.id, values["format"], values["path"],
                                             values["force"])
                self.worker_jobs[worker] = None

        from tui.screens.export import ExportScreen  # on use: the lab paints first

        self.app.push_screen(ExportScreen(rec), go)

    def _export_worker(self, run_id: str, fmt: str, path: Path | None,
                       force: bool) -> Worker:
        return self.app.run_worker(lambda: self._export(run_id, fmt, path, force), thread=True,
                                   exit_on_error=False, group="export", description="export")

    def _export(self, run_id: str, fmt: str, path: Path | None, force: bool) -> None:
        from cnnprobe.report.export import export_run
        with self.app.worker_store() as store:
            paths = export_run(store, run_id, fmt, path, force=force)
        self.app.post_message(Exported(run_id, fmt, [Path(p).resolve() for p in paths]))

    def export_done(self, message: Exported) -> None:
        self.app.exported = message.paths
        names = ", ".join(str(p) for p in message.paths)
        self.app.log_pane.event(f"exported {message.run_id[:8]} as {message.fmt}: {names}", "good")
        self.app.notify(f"written: {names}", title="export", timeout=8)

    def mark(self) -> None:
        rec = self.selected_record("mark", idle=False)
        if rec is None:
            return
        marks = self.lab.marks
        marked = marks.toggle_mark(rec.id)
        self.app.runs.show_marks(rec.id)
        n = len(marks.marked)
        self.app.notify(f"{rec.id[:8]} {'marked' if marked else 'unmarked'}; {n} marked for "
                    "Compare", timeout=2)
        self.load_compare()

    def baseline(self) -> None:
        """Pin the selected run as the baseline Compare draws the others against, or unpin."""
        rec = self.selected_record("pin {it} as the Compare baseline", idle=False)
        if rec is None:
            return
        marks = self.lab.marks
        pinned, before = marks.toggle_baseline(rec.id)
        self.app.runs.show_marks(before, rec.id)
        others = len([m for m in marks.marked if m != rec.id])
        self.app.notify(f"{rec.id[:8]} is the Compare baseline; {others} marked run(s) drawn "
                    "against it" if pinned else f"{rec.id[:8]} unpinned: no baseline",
                    timeout=3)
        self.load_compare()
        if pinned:
            self.app.plots.set_tab("compare")

    def load_compare(self) -> None:
        self._compare_worker(self.lab.marks.compared)

    def _compare_worker(self, run_ids: list[str]) -> Worker:
        return self.app.run_worker(lambda: self._compare(run_ids), thread=True,
                                   exit_on_error=False, exclusive=True, group="compare",
                                   description="compare")

    def _compare(self, run_ids: list[str]) -> None:
        views = []
        with self.app.worker_store() as store:
            for run_id in run_ids:
                cached = self.lab.views.get(run_id)
                views.append(cached if cached is not None
                             else RunView.from_store(store, store.get(run_id)))
        self.app.post_message(CompareLoaded(views))

    def compare_loaded(self, message: CompareLoaded) -> None:
        if not self.app.lab_is_up():
            return
        self.app.plots.show_compare(message.views, self.lab.marks.baseline)

    def delete(self) -> None:
        rec = self.selected_record("delete")
        if rec is None:
            return

        def go(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.app.store.delete(rec.id)
            except Exception as exc:  # noqa: BLE001 - shown, and the app goes on
                self.app.notify(f"could not delete {rec.id[:8]}: {exc}", severity="error")
                return
            self.lab.views.pop(rec.id, None)
            if self.lab.marks.forget(rec.id):
                self.load_compare()
            self.app.log_pane.event(f"deleted run {rec.id[:8]} ({rec.task}/{rec.model} "
                                f"{rec.resolution})", "warn")
            if self.lab.viewed_id == rec.id:
                self.lab.viewed_id = None
                self.app.plots.show(None)
            self.app.refresh_runs()

        from tui.screens.confirm import ConfirmScreen  # on use: the lab paints first

        self.app.push_screen(ConfirmScreen(f"Delete run {rec.id[:8]} ({shown(rec.name)})?",
                                       f"{rec.task}/{rec.model} {rec.resolution}, {rec.status}. "
                                       "Its record, history, sweeps and weights are removed; "
                                       "this cannot be undone."), go)

    # -- quitting
    def quit(self) -> None:
        """Quit; a running training or sweep is stopped first and stored as cancelled."""
        if not self.lab.busy:
            self.app.exit(return_code=self.quit_code())
            return
        if self.lab.quitting:
            return
        self.lab.quitting = True
        dropped = self.lab.stop_everything()
        self.app.log_pane.event("quitting: stopping the running work at its next step"
                            + (f"; {dropped} queued runs dropped" if dropped else ""), "warn")
        self.app.notify("stopping the run, then quitting…", timeout=5)
        self.app.run_worker(self._exit_when_stopped(), group="quit", exit_on_error=False)

    def quit_code(self) -> int:
        """0, or 128 + the signal that made the app quit."""
        return exit_code(self.stop_signal) if self.stop_signal else 0

    def stop_everything(self) -> None:
        """However the app ends, no training outlives it by more than a step."""
        self.lab.stop_everything()

    async def _exit_when_stopped(self) -> None:
        for worker in self._stopping_workers():
            try:
                await worker.wait()
            except Exception:  # noqa: BLE001 - a failed worker has stopped too
                pass
        self.app.exit(return_code=self.quit_code())

    def _stopping_workers(self) -> list[Worker]:
        return [w for w in list(self.app.workers)
                if w.group in ("train", "sweep", "export", "study")]

    # -- SIGTERM and SIGHUP (cnnprobe/stopping.py): quit as ctrl+q does
    def listen_for_stop_signals(self) -> None:
        """From mount: SIGTERM and SIGHUP (an SSH connection dropped) go the way of ctrl+q,
        through the event loop (Textual installs no handler for them: by default they kill
        the process, and the training with it). Not where the loop cannot take signals (an
        app run outside the main thread, Windows)."""
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, self.stop_signal_received, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._signal_handlers[signum] = previous

    def forget_stop_signals(self) -> None:
        import asyncio
        import signal

        self._lab_closed.set()
        handlers, self._signal_handlers = self._signal_handlers, {}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for signum, previous in handlers.items():
            loop.remove_signal_handler(signum)
            if previous is not None:
                signal.signal(signum, previous)

    def stop_signal_received(self, signum: int) -> None:
        """Stop and store the running work, then quit, as ctrl+q. After a hangup the
        terminal is gone: the app's output goes to /dev/null from then on. Should the UI
        be stuck all the same, a guard thread ends the process once the work has stopped."""
        import signal

        if self.stop_signal is None:
            self.stop_signal = signum
            if signum == getattr(signal, "SIGHUP", None):
                detach_if_hung_up()
            self.stopped_runs = [j.run_id for j in self.lab.active.values() if j.run_id]
            threading.Thread(target=self._exit_guard, args=(self._stopping_workers(),),
                             daemon=True, name="cnnprobe-exit-guard").start()
            if self.app.lab_is_up():
                self.app.log_pane.event(f"{signal_name(signum)}: quitting", "warn")
        self.quit()

    def _exit_guard(self, workers: list[Worker]) -> None:
        while not all(w.is_finished for w in workers):
            if self._lab_closed.wait(0.2) and not self.hard_exit:
                return
        if self.hard_exit:
            # The work is stored. A healthy process has exited long before this daemon
            # thread wakes; one whose UI or shutdown hangs is ended with the same status.
            time.sleep(EXIT_GUARD_S)
            os._exit(self.quit_code())
        if not self._lab_closed.wait(EXIT_GUARD_S):
            os._exit(self.quit_code())  # the work is stored; the UI could not close

    def stopped_message(self) -> str:
        """The line said on the terminal (if one is left) after a stop by a signal."""
        said = f"cnnprobe-tui: stopped by {signal_name(self.stop_signal or 0)}"
        runs = []
        if self.stopped_runs:
            from cnnprobe.store import RunStore

            try:
                with RunStore(self.app.store_root) as store:
                    for run_id in self.stopped_runs:
                        rec = store.get(run_id)
                        runs.append(f"run {run_id[:8]} stored as {rec.status} at step "
                                    f"{rec.steps_done}")
            except Exception:  # noqa: BLE001 - the message must not fail the exit
                runs = [f"run {r[:8]}" for r in self.stopped_runs]
        if not runs:
            return said
        first = self.stopped_runs[0][:8]
        return (f"{said}: {'; '.join(runs)} (`cnnprobe resume {first} --steps N` "
                "continues it)")
