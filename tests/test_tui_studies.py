"""The Studies screen, driven as a user: open it with its key, start a smoke study, watch
its trials finish and the report fill in, open a trial as a run; stop a longer study and
continue it; bad input says one line and stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select, Static

from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.store import RunStore
from cnnprobe.studies.runner import trial_records
from tui.app import CnnprobeApp
from tui.screens.studies import StudiesScreen

WIDE = (160, 48)


def tiny() -> RunConfig:
    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     train=TrainConfig(batch_size=16, steps=4, eval_every=2, val_size=32,
                                       device="cpu"))


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


async def wait_for_study(app, pilot) -> None:
    """Until the study's thread is done and the screen has drawn its end and report."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause(0.6)  # a poll, then the report worker
    await app.workers.wait_for_complete()
    await pilot.pause(0.6)


def cells(table: DataTable, column: str) -> list[str]:
    return [str(table.get_cell(key, column)) for key in table.rows]


async def test_start_a_smoke_study_watch_it_finish_and_open_a_trial(store_dir):
    app = CnnprobeApp(store_dir, config=tiny(), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("escape", "u")
        screen = app.screen
        assert isinstance(screen, StudiesScreen)
        screen.query_one("#study-name", Select).value = "distractors"
        screen.query_one("#study-scale", Select).value = "smoke"
        await pilot.press("ctrl+r")
        await wait_for_study(app, pilot)
        trials = screen.query_one("#study-trials", DataTable)
        assert trials.row_count == 4  # 2 variants x 2 seeds
        assert set(cells(trials, "status")) == {"finished"}
        assert set(cells(trials, "progress")) == {"4/4"}
        status = str(screen.query_one("#study-status", Static).render())
        assert "4 finished" in status and "done" in status and "trained 4" in status
        assert str(screen.query_one("#study-error", Static).render()) == ""
        report = screen.query_one("#study-report", DataTable)
        assert report.row_count == 2
        columns = [str(c.label) for c in report.columns.values()]
        assert columns[:6] == ["variant", "trials", "learned", "distractors_max_mae", "mae",
                               "mean_guess_mae"]
        first = [str(c) for c in report.get_row_at(0)]
        assert first[0] == "distractors=0" and first[1] == "2 finished" and first[2] == "no (0/2)"
        assert "(2)" in first[3]
        verdict = str(screen.query_one("#study-verdict", Static).render())
        lines = verdict.splitlines()
        assert lines[0].startswith("final metrics measured with: last weights (step 4)")
        assert lines[-1].startswith("verdict: no variant learned") and "distractors=3" in verdict
        with RunStore(store_dir) as store:
            stored = trial_records(store, "distractors")
        assert len(stored) == 4 and {r.status for r in stored.values()} == {"finished"}
        # Open the highlighted trial as a run in the lab.
        trials.focus()
        await pilot.press("o")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, StudiesScreen)
        opened = cells(trials, "run")[0]
        assert (app.runs.selected_id or "").startswith(opened)
        # Back again: the finished study is still shown; starting it again trains nothing.
        await pilot.press("escape", "u")
        await pilot.press("ctrl+r")
        await wait_for_study(app, pilot)
        status = str(app.screen.query_one("#study-status", Static).render())
        assert "trained 0, kept 4" in status


async def test_stop_a_study_then_continue_it(store_dir, tmp_path):
    plan = tmp_path / "long.toml"
    plan.write_text('name = "long"\nseeds = 2\n[base]\n"task.height" = 16\n'
                    '"task.width" = 16\n"train.steps" = 3000\n"train.batch_size" = 8\n'
                    '"train.val_size" = 16\n"train.device" = "cpu"\n')
    app = CnnprobeApp(store_dir, config=tiny(), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("escape", "u")
        screen = app.screen
        screen.query_one("#study-plan", Input).value = str(plan)
        await pilot.press("ctrl+r")
        for _ in range(100):  # until the first trial has trained a few steps
            await pilot.pause(0.2)
            rows = app.lab.study.rows()
            if rows[0].step >= 10:
                break
        await pilot.press("ctrl+s")
        await wait_for_study(app, pilot)
        trials = screen.query_one("#study-trials", DataTable)
        assert cells(trials, "status") == ["cancelled", "pending"]
        assert "ctrl+r continues it" in str(screen.query_one("#study-status", Static).render())
        with RunStore(store_dir) as store:
            assert [r.status for r in trial_records(store, "long").values()] == ["cancelled"]


async def test_bad_study_input_says_one_line_and_stores_nothing(store_dir, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[base]\n"task.hieght" = 16\n')
    app = CnnprobeApp(store_dir, config=tiny(), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("escape", "u")
        screen = app.screen
        screen.query_one("#study-workers", Input).value = "0"
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        error = str(screen.query_one("#study-error", Static).render())
        assert "workers" in error and "at least 1" in error
        screen.query_one("#study-workers", Input).value = "1"
        screen.query_one("#study-plan", Input).value = str(bad)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        error = str(screen.query_one("#study-error", Static).render())
        assert "task.hieght" in error and "task.height" in error and "\n" not in error
        screen.query_one("#study-plan", Input).value = str(tmp_path / "missing.toml")
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert "missing.toml" in str(screen.query_one("#study-error", Static).render())
        assert app.is_running and app.lab.study is None
    with RunStore(store_dir) as store:
        assert store.list_runs() == []


async def test_the_timers_are_harmless_once_the_screens_are_gone(store_dir):
    """The tick and the store poll can fire while the app closes, after the last screen
    is gone (seen in CI: ScreenStackError from a tick): they do nothing then."""
    app = CnnprobeApp(store_dir, config=tiny(), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("escape", "u")
    assert not app.screen_stack
    app.controller.tick()
    app.refresh_runs()
