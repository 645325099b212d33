"""Fast start in the TUI (issue 12): the lab is usable while its engine (torch) loads in
the background; a training asked for meanwhile waits and then starts; an engine that cannot
load is said, not raised."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.store import RunStore
from tui.app import CnnprobeApp
from tui.widgets.plots import LossPlot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fabricate import fabricate  # noqa: E402

WIDE = (140, 42)


def tiny() -> RunConfig:
    return RunConfig(task=TaskConfig(name="distance", height=16, width=16),
                     model=ModelConfig(name="seednet"),
                     train=TrainConfig(batch_size=8, steps=6, eval_every=3, val_size=16,
                                       device="cpu"))


async def until(pilot, condition, timeout: float = 30.0) -> None:
    import time

    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out waiting for the app"
        await pilot.pause(0.05)


def status_text(app) -> str:
    return app.status.text


async def test_the_lab_is_usable_before_the_engine_has_loaded(tmp_path):
    root = tmp_path / "store"
    ids = fabricate(root, 30)
    gate = threading.Event()
    app = CnnprobeApp(root, config=tiny(), watch_store=False, engine_loader=gate.wait)
    try:
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: len(app.runs.records) == 30)
            assert not app.engine_ready
            assert "loading the engine (torch)" in status_text(app)
            # the newest run's stored loss curve is drawn, with no engine
            await until(pilot, lambda: app.plots.view is not None
                        and app.plots.view.run_id == ids[-1])
            await until(pilot, lambda: app.query_one(LossPlot).has_data())
            await pilot.press("4", "down")  # the next run: its plots load too
            await until(pilot, lambda: app.plots.view is not None
                        and app.plots.view.run_id == ids[-2])
            await pilot.press("slash", *"fake-0003")  # the filter works too
            await until(pilot, lambda: list(app.runs.table.keys) == [ids[3]])
            await pilot.press("escape")
            await until(pilot, lambda: app.runs.table.row_count == 30)
            assert not app.engine_ready
            gate.set()
            await until(pilot, lambda: app.engine_ready)
            assert "loading the engine" not in status_text(app)
            assert "engine loaded in" in app.log_pane.text()
    finally:
        gate.set()


async def test_a_training_asked_for_while_loading_waits_then_starts(tmp_path):
    root = tmp_path / "store"
    gate = threading.Event()
    app = CnnprobeApp(root, config=tiny(), watch_store=False, engine_loader=gate.wait)
    try:
        async with app.run_test(size=WIDE) as pilot:
            await pilot.press("ctrl+r")
            await pilot.pause(0.2)
            assert not app.lab.active  # nothing started, nothing stored
            assert "1 waiting to start" in status_text(app)
            assert "waiting for the engine: training seednet on distance" in \
                app.log_pane.text()
            with RunStore(root) as store:
                assert store.list_runs() == []
            gate.set()
            await until(pilot, lambda: app.engine_ready)
            await until(pilot, lambda: not app.lab.active and "finished train" in
                        app.log_pane.text(), timeout=60)
            with RunStore(root) as store:
                (rec,) = store.list_runs()
            assert rec.status == "finished" and rec.steps_done == 6
    finally:
        gate.set()


async def test_an_engine_that_cannot_load_is_said_and_nothing_starts(tmp_path):
    root = tmp_path / "store"

    def broken() -> None:
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    app = CnnprobeApp(root, config=tiny(), watch_store=False, engine_loader=broken)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: bool(app.engine_error))
        assert "libtorch_cpu.so" in app.engine_error and "make install" in app.engine_error
        assert "engine failed to load" in status_text(app)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert app.is_running and not app.lab.active
    with RunStore(root) as store:
        assert store.list_runs() == []


async def test_the_forms_fill_in_after_the_first_frame_and_read_as_the_config_until_then(
        tmp_path):
    """The first frame has the layout, the runs and the status, not the forms' fields
    (~120 widgets, the bulk of first-paint time); they mount right after it. Until then
    the form reads as the config the lab opened with, and a pane key waits for them."""
    from cnnprobe.models import validate_run
    from tui.widgets.field import Field

    fabricate(tmp_path / "store", 5)

    class HeldForms(CnnprobeApp):
        CSS_PATH = str(Path(__file__).resolve().parents[1] / "tui" / "app.tcss")
        held = True

        async def _fill_forms(self) -> None:
            if not self.held:  # the test fills them when it is ready
                await super()._fill_forms()

    cfg = RunConfig(task=TaskConfig(name="count", height=24, width=20),
                    model=ModelConfig(name="plaincnn", depth=2, width=4),
                    train=TrainConfig(batch_size=8, steps=6, lr=0.003, device="cpu"))
    app = HeldForms(tmp_path / "store", config=cfg, watch_store=False,
                    engine_loader=lambda: None)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: len(app.runs.records) == 5)
        assert not app.forms_filled and not app.query(Field)
        assert "loading the engine" in status_text(app)  # the engine waits for the forms
        want = validate_run(cfg, memory=False)  # "auto" settings resolved, as read_config does
        read, errors = app.read_config()
        assert errors == {} and read == want
        await pilot.press("1")  # waits for the task pane's fields
        await pilot.pause(0.2)
        assert app.focused is None or app.focused.id != "task-list"
        app.held = False
        await app._fill_forms()
        await until(pilot, lambda: app.forms_filled and app.focused is not None
                    and app.focused.id == "task-list")  # the "1" pressed before
        assert app.query_one("#f-task-height", Field).value() == 24
        assert app.query_one("#f-train-lr", Field).value() == 0.003
        assert app.query_one("#f-task-count_min", Field).display  # a count task's options
        read, errors = app.read_config()
        assert errors == {} and read == want
        await until(pilot, lambda: app.engine_ready)


async def test_an_edit_that_arrives_after_the_forms_are_gone_is_dropped(tmp_path):
    """A form's Edited goes out a frame after its burst of changes, so it can arrive while
    the lab closes and the panes are being removed (CI saw NoMatches from the test above,
    ending right after the forms filled): there is nothing to validate, and no error."""
    from tui.widgets.form_pane import FormPane
    from tui.widgets.model_pane import ModelPane
    from tui.widgets.task_pane import TaskPane

    app = CnnprobeApp(tmp_path / "store", config=tiny(), watch_store=False,
                      engine_loader=lambda: None)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: app.forms_filled)
        model = app.query_one(ModelPane)
        await app.query_one(TaskPane).remove()  # as when the lab closes
        model.post_message(FormPane.Edited())
        await pilot.pause(0.2)
        assert app.is_running and app.return_code is None
