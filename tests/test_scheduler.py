"""The lab's scheduling policy without a terminal: one training per device, queues, stop,
quit, what is viewed, and how trainer events become a job's view and log lines."""

from __future__ import annotations

import numpy as np
import pytest

from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.events import EvaluationEvent, RunStarted, StepEvent
from cnnprobe.results import Evaluation
from tui.jobs import RunIdKnown, SweepJob, TrainJob
from tui.run_view import RunView
from tui.scheduler import Scheduler


def job(device: str = "cpu", kind: str = "train", **kw) -> TrainJob:
    cfg = RunConfig(TaskConfig(height=16, width=16), train=TrainConfig(steps=10))
    return TrainJob(kind, cfg, device, **kw)


def test_one_training_per_device_and_a_queue_per_device():
    lab = Scheduler()
    a, b, c = job("cpu"), job("cpu"), job("cuda:0")
    assert lab.running_on("cpu") is None
    lab.start(a)
    assert lab.running_on("cpu") is a and lab.viewed_job is a
    with pytest.raises(RuntimeError, match="busy"):
        lab.start(b)
    assert lab.enqueue(b) == 1
    lab.start(c)  # another device runs at once
    assert lab.active == {"cpu": a, "cuda:0": c}
    assert lab.next_for("cpu") is None  # a still holds it
    lab.finish(a)
    assert lab.next_for("cpu") is b and lab.queue == []
    assert lab.next_for("cpu") is None


def test_queue_keeps_order_and_device():
    lab = Scheduler()
    lab.start(job("cpu"))
    first, other, second = job("cpu"), job("cuda:0"), job("cpu")
    assert [lab.enqueue(j) for j in (first, other, second)] == [1, 1, 2]
    lab.finish(lab.active["cpu"])
    assert lab.next_for("cpu") is first
    assert lab.next_for("cuda:0") is other
    assert lab.queue == [second]


def test_replace_running_stops_it_and_goes_first():
    lab = Scheduler()
    running, waiting, urgent = job(), job(), job()
    lab.start(running)
    lab.enqueue(waiting)
    assert lab.replace_running(urgent) is running and running.cancel.is_set()
    lab.finish(running)
    assert lab.next_for("cpu") is urgent


def test_stop_targets_the_viewed_training_else_all_and_every_sweep():
    lab = Scheduler()
    a, b = job("cpu"), job("cuda:0")
    lab.start(a)
    lab.start(b)  # now viewed
    sweep = SweepJob("r1", "resolution")
    lab.add_sweep(sweep)
    assert lab.to_stop() == [b, sweep]
    lab.viewed_job = None
    assert lab.to_stop() == [a, b, sweep]
    a.cancel.set()
    assert lab.to_stop() == [b, sweep]  # already stopping: not again
    lab.end_sweep(sweep)
    assert lab.busy and sweep not in lab.to_stop()


def test_quitting_drops_the_queue_stops_everything_and_starts_nothing():
    lab = Scheduler()
    running = job()
    lab.start(running)
    lab.enqueue(job())
    lab.enqueue(job())
    lab.quitting = True
    assert lab.stop_everything() == 2 and lab.queue == [] and running.cancel.is_set()
    lab.finish(running)
    lab.enqueue(job())
    assert lab.next_for("cpu") is None and not lab.busy


def test_a_resume_starts_from_its_runs_history_and_status_follows_the_view():
    lab = Scheduler()
    parent = RunView("r1", RunConfig(), status="cancelled")
    parent.train_history = [{"step": 1, "loss": 2.0}]
    parent.val_history = [{"step": 1, "mae": 3.0}]
    lab.views["r1"] = parent
    other = job("cuda:0")
    lab.start(other)
    resume = job("cpu", kind="resume", parent_id="r1")
    lab.start(resume)
    assert resume.view.train_history == parent.train_history
    assert resume.view.train_history is not parent.train_history
    assert lab.status_job() is resume
    lab.viewed_job = None
    assert lab.status_job() is other


def test_merge_moves_events_into_the_view_and_says_what_to_log():
    j = job()
    j.events(RunStarted(10, 0, "cpu", "EPYC", 1234))
    j.events.note(RunIdKnown("abcdef0123"))
    j.events(StepEvent(1, 10, 0.5, 100.0, 16, 0.1))
    ev = Evaluation(np.array([1.0, 2.0]), np.array([1.5, 2.0]), {"mae": 0.25, "r2": 0.9})
    j.events(EvaluationEvent(1, ev.metrics, True, None, ev))
    version = j.view.version
    merged = Scheduler.merge(j)
    assert merged.changed and merged.run_id == "abcdef0123" == j.run_id == j.view.run_id
    assert (j.step, j.total_steps, j.samples_per_s, j.device_name) == (1, 10, 100.0, "EPYC")
    assert j.view.train_history == [{"step": 1, "loss": 0.5, "samples_per_s": 100.0,
                                     "elapsed_s": 0.1}]
    assert j.view.val_history == [{"step": 1, "mae": 0.25, "r2": 0.9}]
    assert list(j.view.labels) == [1.5, 2.0] and j.view.version == version + 1
    assert [t for t, _ in merged.log] == [
        "train distance/seednet 16x16: 10 steps on cpu (EPYC), 1,234 parameters",
        "run abcdef01 recorded in the store", "step 1: val MAE 0.25, R² 0.900 best"]
    again = Scheduler.merge(j)
    assert not again.changed and again.log == [] and again.run_id is None


def test_training_steps_redraw_the_loss_plot_only_and_an_evaluation_the_others():
    """A plot-tab key during training rebuilds a plot only if what it shows changed: the
    loss at every merge of steps; predictions, errors and the compared curves at a
    validation; the sweeps when a sweep moves."""
    from tui.widgets.plots import ComparePlot, ErrorsPlot, LossPlot, PredictionsPlot, SweepPlot

    j = job()
    plots = {cls: cls() for cls in (LossPlot, PredictionsPlot, ErrorsPlot, SweepPlot)}
    compare = ComparePlot()

    def redrawn() -> set[str]:
        out = {cls.__name__ for cls, plot in plots.items() if plot.show(j.view)}
        return out | ({"ComparePlot"} if compare.show_many([j.view]) else set())

    assert redrawn() == {"LossPlot", "PredictionsPlot", "ErrorsPlot", "SweepPlot",
                         "ComparePlot"}  # the first show draws all
    j.events(StepEvent(1, 10, 0.5, 100.0, 16, 0.1))
    Scheduler.merge(j)
    assert redrawn() == {"LossPlot"}
    ev = Evaluation(np.array([1.0, 2.0]), np.array([1.5, 2.0]), {"mae": 0.25, "r2": 0.9})
    j.events(StepEvent(2, 10, 0.4, 100.0, 32, 0.2))
    j.events(EvaluationEvent(2, ev.metrics, True, None, ev))
    Scheduler.merge(j)
    assert redrawn() == {"LossPlot", "PredictionsPlot", "ErrorsPlot", "ComparePlot"}
    j.view.swept += 1  # as a sweep's rows arrive (lab.apply_sweep_rows)
    j.view.touch()
    assert redrawn() == {"LossPlot", "SweepPlot", "ComparePlot"}


# -- marks and the baseline (the Runs pane shows them; Compare draws `compared`)
def test_marks_keep_their_order_and_the_baseline_comes_first():
    lab = Scheduler()
    marks = lab.marks
    assert [marks.toggle_mark(r) for r in ("a", "b", "c")] == [True, True, True]
    assert marks.toggle_baseline("b") == (True, None)
    assert marks.compared == ["b", "a", "c"]
    assert marks.toggle_baseline("c") == (True, "b")  # pinning another unpins the first
    assert marks.compared == ["c", "a", "b"]
    assert marks.toggle_mark("a") is False and marks.compared == ["c", "b"]
    assert marks.toggle_baseline("c") == (False, "c") and marks.baseline is None
    assert marks.compared == ["b", "c"]


@pytest.mark.parametrize(("marked", "baseline", "gone", "changed", "left"), [
    (["a", "b"], None, "a", True, ["b"]),
    (["a"], "b", "b", True, ["a"]),  # a deleted baseline is unpinned
    (["a"], None, "z", False, ["a"]),  # not compared: Compare stays as it is
])
def test_a_deleted_run_leaves_the_marks(marked, baseline, gone, changed, left):
    marks = Scheduler().marks
    for r in marked:
        marks.toggle_mark(r)
    if baseline:
        marks.toggle_baseline(baseline)
    assert marks.forget(gone) is changed and marks.compared == left


# -- what waits for the engine (torch) to load
def test_the_engine_gate_keeps_what_was_asked_until_it_loads():
    gate = Scheduler().engine
    started = []
    assert gate.ask("train a", lambda: started.append("a")) == "waiting"
    assert gate.ask("resume b", lambda: started.append("b")) == "waiting"
    assert started == [] and [w for w, _ in gate.waiting] == ["train a", "resume b"]
    for start in gate.loaded():
        start()
    assert started == ["a", "b"] and gate.waiting == [] and gate.ready
    assert gate.ask("train c", lambda: None) == "now"


def test_the_engine_gate_drops_what_waited_when_it_cannot_load():
    gate = Scheduler().engine
    gate.ask("train a", lambda: None)
    assert gate.failed("no torch") == ["train a"] and gate.waiting == []
    assert gate.ask("train b", lambda: None) == "refused" and gate.error == "no torch"


# -- the Studies screen's study
def test_one_study_at_a_time_stopped_by_its_flag():
    from cnnprobe.studies.builtin import BUILTIN, builtin_plan

    lab = Scheduler()
    assert lab.stop_study() is False  # none runs
    plan = builtin_plan(next(iter(BUILTIN)))
    state, cancel = lab.start_study(plan)
    assert lab.study is state and lab.study_cancel is cancel and lab.study_running and lab.busy
    with pytest.raises(RuntimeError, match="is running"):
        lab.start_study(plan)
    assert lab.stop_study() is True and cancel.is_set()
    assert lab.stop_everything() == 0  # a quit stops the study too
