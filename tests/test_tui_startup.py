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
            assert not app.active  # nothing started, nothing stored
            assert "1 waiting to start" in status_text(app)
            assert "waiting for the engine: training seednet on distance" in \
                app.log_pane.text()
            with RunStore(root) as store:
                assert store.list_runs() == []
            gate.set()
            await until(pilot, lambda: app.engine_ready)
            await until(pilot, lambda: not app.active and "finished train" in
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
        assert app.is_running and not app.active
    with RunStore(root) as store:
        assert store.list_runs() == []
