"""The Ray backend on the CPU (one local Ray instance for the session): the same trials and
metrics as the local backend, a killed worker retried, a stop that stores the trials in
flight as cancelled, and a missing `ray` said in one line."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from cnnprobe.cli import main
from cnnprobe.config import ConfigError
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan, plan_from_dict
from cnnprobe.studies.runner import run_study, trial_records


def long_plan(name: str, steps: int = 2000):
    return plan_from_dict({"name": name, "seeds": 2,
                           "base": {"task.height": 16, "task.width": 16,
                                    "train.steps": steps, "train.batch_size": 8,
                                    "train.val_size": 16, "train.device": "cpu"}},
                          source="test")


def trial_worker_pids() -> list[int]:
    """Ray names a worker process after the task it runs: ray::cnnprobe-trial."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::cnnprobe-trial"):
            out.append(int(proc.name))
    return out


def once_each(store: RunStore, plan) -> dict:
    keys = Counter(t.split(":", 1)[1] for r in store.list_runs(tag=f"study:{plan.name}")
                   for t in r.tags if t.startswith("trial:"))
    assert set(keys) == {t.key for t in plan.trials()} and set(keys.values()) == {1}
    return trial_records(store, plan.name)


def test_ray_trials_equal_local_ones(tmp_path, ray_instance):
    plan = builtin_plan("distractors", "smoke", seeds=2)  # 4 trials with sweeps
    with RunStore(tmp_path / "local") as local, RunStore(tmp_path / "ray") as remote:
        run_study(local, plan)
        steps = {}
        progress = run_study(remote, plan, backend="ray",
                             on_step=lambda t, s, n: steps.__setitem__(t.key, s))
        assert len(progress.trained) == 4 and not progress.failed
        assert steps == {t.key: t.config.train.total_steps for t in plan.trials()}
        a, b = once_each(local, plan), once_each(remote, plan)
        for key, rec in a.items():
            other = b[key]
            assert other.status == "finished" and other.tags == rec.tags
            assert other.metrics == pytest.approx(rec.metrics, rel=1e-5, abs=1e-6)
            assert other.pid != os.getpid()  # trained in a Ray worker
            sa = local.sweep(rec.id, "distractors").table
            sb = remote.sweep(other.id, "distractors").table
            assert sb["mae"].tolist() == pytest.approx(sa["mae"].tolist(), rel=1e-5)
            # The imported run is a whole run: its weights load and re-evaluate the same.
            assert remote.load_checkpoint(other.id, "last").step == rec.steps_done
        again = run_study(remote, plan, backend="ray")
        assert again.trained == [] and len(again.kept) == 4


def test_a_killed_ray_worker_is_retried_and_the_study_completes(tmp_path, ray_instance):
    plan = long_plan("killed", steps=600)
    killed: list[int] = []

    def on_step(trial, step, total):
        if step >= 20 and not killed:
            pids = trial_worker_pids()
            if pids:
                killed.append(pids[0])
                os.kill(pids[0], signal.SIGKILL)

    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", on_step=on_step, max_retries=2)
        assert killed, "no Ray trial worker was found to kill"
        assert len(progress.trained) == 2 and not progress.failed
        records = once_each(store, plan)
        assert {r.status for r in records.values()} == {"finished"}
        assert all(r.pid not in killed for r in records.values())


def test_a_trial_whose_worker_dies_past_its_retries_is_stored_failed(tmp_path,
                                                                     ray_instance):
    plan = long_plan("doomed", steps=600)
    plan.seeds = (0,)
    killed: list[int] = []

    def on_step(trial, step, total):
        pids = [p for p in trial_worker_pids() if p not in killed]
        if step >= 10 and pids:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", on_step=on_step, max_retries=0)
        assert killed and len(progress.failed) == 1
        (rec,) = trial_records(store, "doomed").values()
        assert rec.status == "failed" and "Ray worker failed 1 time (" in rec.reason
        # The study can be run again: the failed trial is kept unless --retry-failed.
        assert run_study(store, plan, backend="ray").trained == []


def test_a_ray_trial_holds_its_cpus_while_it_trains(tmp_path, ray_instance):
    """With --cpus-per-trial 2 on 2 CPUs the trials run one after the other. A task that
    read the stop flag with ray.get gave its CPUs back while it waited, and Ray started the
    next trial beside it (it did here, every run, before the reads went through futures)."""
    plan = long_plan("serial", steps=600)
    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", cpus_per_trial=2)
        assert len(progress.trained) == 2
        first, second = sorted(once_each(store, plan).values(), key=lambda r: r.created_at)
        assert first.finished_at - first.created_at > 1.0  # long enough to poll the flag
        assert second.created_at >= first.finished_at, (first.finished_at,
                                                          second.created_at)


def test_stopping_a_ray_study_stores_trials_in_flight_as_cancelled(tmp_path, ray_instance):
    plan = long_plan("stopped", steps=5000)
    cancel = threading.Event()

    def on_step(trial, step, total):
        if step >= 20:
            cancel.set()

    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", cancel=cancel, on_step=on_step,
                             cpus_per_trial=2)  # one at a time: the second is queued
        assert progress.cancelled
        recs = list(trial_records(store, "stopped").values())
        statuses = [r.status for r in recs]
        # the queued one never started: not stored
        assert statuses == ["cancelled"], [(r.status, r.steps_done, r.pid) for r in recs]


def test_ray_options_and_a_missing_ray_are_one_line(tmp_path, monkeypatch, capsys):
    plan = builtin_plan("distractors", "smoke", seeds=1)
    with RunStore(tmp_path) as store:
        with pytest.raises(ConfigError, match="--max-retries"):
            run_study(store, plan, backend="ray", max_retries=-1)
        with pytest.raises(ConfigError, match="--backend"):
            run_study(store, plan, backend="spark")
        monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
        with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
            run_study(store, plan, backend="ray")
        assert store.list_runs() == []
    code = main(["--store", str(tmp_path), "study", "run", "distractors", "--scale", "smoke",
                 "--backend", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "[ray]" in err and len(err.splitlines()) == 1


async def test_the_studies_screen_runs_a_study_on_ray(tmp_path, ray_instance):
    from textual.widgets import DataTable, Input, Select, Static

    from tui.app import CnnprobeApp
    from tui.screens.studies import StudiesScreen

    app = CnnprobeApp(tmp_path / "store", watch_store=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("escape", "u")
        screen = app.screen
        assert isinstance(screen, StudiesScreen)
        screen.query_one("#study-name", Select).value = "distractors"
        screen.query_one("#study-backend", Select).value = "ray"
        screen.query_one("#study-seeds", Input).value = "1"
        await pilot.press("ctrl+r")
        for _ in range(600):
            await pilot.pause(0.2)
            if app.lab.study is not None and app.lab.study.done:
                break
        await app.workers.wait_for_complete()
        await pilot.pause(1.0)
        status = str(screen.query_one("#study-status", Static).render())
        with RunStore(tmp_path / "store") as store:
            reasons = [r.reason for r in store.list_runs() if r.status != "finished"]
        assert "trained 2" in status, (status, reasons)
        trials = screen.query_one("#study-trials", DataTable)
        assert [str(trials.get_cell(k, "status")) for k in trials.rows] == ["finished"] * 2
    with RunStore(tmp_path / "store") as store:
        assert len(trial_records(store, "distractors")) == 2


def test_ray_init_gets_real_file_descriptors_under_the_tui(monkeypatch):
    """Textual replaces sys.stdout/stderr with objects whose fileno() is -1, and ray.init
    fails on those ("file.fileno() is not a valid file descriptor"), seen in tmux."""
    from cnnprobe.studies.ray_backend import _streams_with_descriptors

    class Captured:  # as Textual's capture
        def write(self, text):
            return len(text)

        def flush(self):
            pass

        def fileno(self):
            return -1

    monkeypatch.setattr(sys, "stdout", Captured())
    monkeypatch.setattr(sys, "stderr", Captured())
    with _streams_with_descriptors():
        os.fstat(sys.stdout.fileno())
        os.fstat(sys.stderr.fileno())
    assert isinstance(sys.stdout, Captured)
