"""Snapshots of the main screen at 80x24 (light theme) and 160x48 (dark), with fixed data.

Each snapshot is kept twice under tests/snapshots/: the screen as plain text (a readable
diff when it changes) and Textual's SVG screenshot (colours, i.e. the theme). After an
intended change to the screen, rewrite them with

    CNNPROBE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_tui_snapshots.py

and look at the SVGs before committing. (pytest-textual-snapshot is not used: its syrupy
pin wants an older pytest than this project's.)
"""

from __future__ import annotations

import difflib
import io
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig, apply_preset
from cnnprobe.results import Sweep
from cnnprobe.store import RunRecord
from tui import app as app_module
from tui.system import GpuSample, SystemSnapshot
from tui.widgets import log_pane, runs_pane, system_line

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("CNNPROBE_UPDATE_SNAPSHOTS") == "1"
T0 = 1_750_000_000.0  # the fixed "now" of these screens


def record(i: int, task: str, model: str, size: int, status: str, mae: float | None) -> RunRecord:
    cfg = RunConfig(task=TaskConfig(name=task, height=size, width=size),
                    model=ModelConfig(name=model),
                    train=TrainConfig(batch_size=64, steps=600, eval_every=100, device="cpu"))
    return RunRecord(id=f"{i:x}" * 32, name=f"{task}-{model}-{size}", status=status, reason="",
                     config=cfg, seed=0, created_at=T0 - 3600 * i, finished_at=T0 - 3000 * i,
                     device="cpu", device_name="cpu", versions={}, wall_time_s=60.0,
                     samples_seen=38400, steps_done=600 if status == "finished" else 250,
                     metrics={} if mae is None else {"mae": mae, "rmse": mae * 1.3, "r2": 0.9})


class FixedStore:
    """The store API the TUI reads, over fixed, seeded data."""

    def __init__(self) -> None:
        self.records = [record(1, "distance", "seednet", 64, "finished", 2.314),
                        record(2, "distance", "resnet18", 128, "cancelled", 4.87),
                        record(3, "count", "plaincnn", 64, "failed", None)]
        rng = np.random.default_rng(0)
        steps = np.arange(1, 601)
        self.loss = 18 * np.exp(-steps / 120) + 2 + rng.normal(0, 0.6, len(steps))
        self.labels = rng.uniform(0, 90, 1024)
        self.preds = self.labels + rng.normal(0, 1 + self.labels / 30, 1024)

    def list_runs(self, **_):
        return list(self.records)

    def get(self, run_id):
        return next(r for r in self.records if r.id == run_id)

    def train_history(self, run_id):
        return [{"step": int(s), "loss": float(v), "samples_per_s": 5000.0, "elapsed_s": s / 10}
                for s, v in zip(range(1, 601), self.loss, strict=True)]

    def val_history(self, run_id):
        return [{"step": s, "mae": 16 * np.exp(-s / 130) + 2.2, "rmse": 3.0, "r2": 0.9}
                for s in range(100, 601, 100)]

    def predictions(self, run_id):
        return self.preds, self.labels

    def sweep(self, run_id, kind):
        if kind != "resolution":
            return None
        res = list(range(32, 129, 8))
        mae = [2.3 + 0.002 * (r - 64) ** 2 for r in res]
        return Sweep(pd.DataFrame({"resolution": res, "mae": mae}), pd.DataFrame())

    def sweep_table(self, run_id, kind):
        sweep = self.sweep(run_id, kind)
        return None if sweep is None else sweep.table


def screen_text(app) -> str:
    """The screen as plain text (from the compositor, as export_screenshot renders it)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      color_system=None, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def check_snapshot(app, name: str) -> None:
    text = screen_text(app)
    svg = app.export_screenshot(title="cnnprobe-tui")
    txt_path, svg_path = SNAPSHOTS / f"{name}.txt", SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        txt_path.write_text(text)
        svg_path.write_text(svg)
        return
    if not txt_path.exists():
        pytest.fail(f"no snapshot {txt_path}: run with CNNPROBE_UPDATE_SNAPSHOTS=1")
    want = txt_path.read_text()
    if text != want:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), text.splitlines(),
                                              "snapshot", "now", lineterm=""))
        pytest.fail(f"screen {name} changed:\n{diff}")
    assert svg == svg_path.read_text(), f"{name}: same text, different styles (theme?)"


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    """Colour settings a user's or CI's environment may carry change the SVG, not the app."""
    for var in ("NO_COLOR", "FORCE_COLOR", "COLORTERM", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(var, raising=False)


class FixedMachine:
    """The system line's sampler, always the same machine: one GPU, a busy process."""

    def sample(self, run=None):
        gib = 2**30
        gpu = GpuSample(0, "NVIDIA H200", 87, int(31.2 * gib), 141 * gib, 64, 250, 700)
        return SystemSnapshot((gpu,), proc_cpu_pct=103, proc_rss=int(2.1 * gib),
                              host_cpu_pct=45, ram_used=int(12.3 * gib), ram_total=24 * gib,
                              run=run)


@pytest.fixture
def fixed_clocks(monkeypatch):
    monkeypatch.setattr(runs_pane, "clock", lambda: T0 + 120)
    monkeypatch.setattr(log_pane, "clock", lambda: time.gmtime(T0))
    monkeypatch.setattr(system_line, "make_sampler", FixedMachine)


async def ready(app, pilot) -> None:
    """Everything on screen: workers done, the newest run plotted, the footer composed."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        if app.plots.view is not None and app.screen.query("FooterKey") and \
                app.engine_ready:
            break
    await pilot.pause(0.3)


async def open_app(size: tuple[int, int], theme: str):
    app = app_module.CnnprobeApp("/fixed/store", theme=theme, watch_store=False,
                                 store=FixedStore(), config=apply_preset(RunConfig(), "quick"),
                                 engine_loader=lambda: None)  # "loaded in 0.0s", every time
    return app, app.run_test(size=size)


async def test_main_screen_80x24_light(fixed_clocks):
    app, running = await open_app((80, 24), "textual-light")
    async with running as pilot:
        await ready(app, pilot)
        check_snapshot(app, "main-80x24-light")
        await pilot.press("3")  # the plots tab of the narrow layout
        await ready(app, pilot)
        check_snapshot(app, "plots-80x24-light")


async def test_main_screen_160x48_dark(fixed_clocks):
    app, running = await open_app((160, 48), "textual-dark")
    async with running as pilot:
        await ready(app, pilot)
        check_snapshot(app, "main-160x48-dark")


@pytest.mark.parametrize("width", [80, 91, 100, 120, 133, 160, 200])
async def test_the_footer_ends_with_the_palette_key_at_every_width(fixed_clocks, width):
    """The compact footer's palette key, docked right, ended one cell short: the keys
    scrolled under it showed through in the last column ("^p palettee", issue 12)."""
    app, running = await open_app((width, 30), "textual-dark")
    async with running as pilot:
        await ready(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        assert footer.endswith("▏^p palette"), repr(footer[-20:])
        assert len(footer) == width
