"""The TUI driven by keys, as a user would: the form, training, stop, queue, sweeps, export,
resume, fine-tune, delete, compare, failure, quit. Tiny runs (32 px, a few steps, CPU)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.runs import train_run
from cnnprobe.store import RunStore
from tui.app import CnnprobeApp, build_parser, key_table
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.queue_or_stop import QueueOrStopScreen
from tui.widgets.field import Field
from tui.widgets.plots import ComparePlot, ErrorsPlot, LossPlot, SweepPlot
from tui.widgets.task_pane import TaskPane

WIDE = (140, 42)


def tiny(steps: int = 8, **train) -> RunConfig:
    """32x32 distance with seednet on the CPU: a run of a few steps takes well under 1 s."""
    opts = {"batch_size": 16, "steps": steps, "eval_every": max(1, min(steps // 2, 200)),
            "val_size": 64, "lr": 1e-3, "device": "cpu", **train}
    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     model=ModelConfig(name="seednet"), train=TrainConfig(**opts))


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def stored_run(root: Path, steps: int = 8, **task) -> str:
    """A finished run in the store, trained headless (the CLI's path)."""
    cfg = tiny(steps)
    if task:
        cfg = RunConfig(task=TaskConfig(**{**cfg.task.__dict__, **task}), model=cfg.model,
                        train=cfg.train)
    with RunStore(root) as store:
        run_id, result = train_run(store, cfg)
    assert result.status == "finished"
    return run_id


def records(root: Path):
    with RunStore(root) as store:
        return store.list_runs()


async def press_live(pilot, *keys: str) -> None:
    """Keys while a run trains. pilot.press waits for the process to go idle, which a
    training thread never lets happen (a second a key); this sends each key and gives the
    app a moment, as a user's keystrokes arrive."""
    for key in keys:
        pilot.app.simulate_key(key)
        await pilot.pause(0.05)


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


async def settle(app, pilot) -> None:
    """The forms filled in, every worker done and every message they posted handled."""
    for _ in range(200):
        if app.forms_filled:
            break
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


async def test_pick_task_fix_an_invalid_field_then_train(store_dir):
    app = CnnprobeApp(store_dir, config=tiny(8), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("1")  # pressed as the lab opens: acts once the forms are in
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "task-list")
        await pilot.press("down")  # distance -> area
        assert app.query_one(TaskPane).task_name == "area"
        await pilot.press("tab")  # the height field, its text selected
        assert isinstance(app.focused, Input)
        await pilot.press("2")
        height = app.query_one("#f-task-height", Field)
        assert height.error.startswith("task.height=2 is not allowed: an integer from 4")
        assert height.query_one(".field-error").display
        await pilot.press("ctrl+r")  # refused: nothing starts
        await settle(app, pilot)
        assert not app.lab.active and records(store_dir) == []
        await pilot.press("backspace", "3", "2")
        assert height.error == ""
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        loss = app.query_one(LossPlot)
        assert [r["step"] for r in loss.view.train_history] == list(range(1, 9))
        assert loss.has_data()
        log = app.log_pane.text()
        assert "finished train area/seednet 32x32" in log
        (rec,) = records(store_dir)
        assert (rec.status, rec.task, rec.resolution) == ("finished", "area", "32x32")
        assert f"MAE {rec.metrics['mae']:.4g}" in log
        assert app.runs.selected_id == rec.id
        await pilot.press("escape", "3", "l", "plus")  # log scale, more smoothing: still draws
        assert loss.log_scale and loss.smoothing == 0.9 and loss.has_data()
        assert "could not be drawn" not in str(loss.render())
        assert "log, smoothing 0.9" in str(loss.render())


async def test_stop_mid_run_stores_it_cancelled_with_metrics_and_checkpoint(store_dir):
    app = CnnprobeApp(store_dir, config=tiny(5000, eval_every=1000), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await press_live(pilot, "ctrl+r")
        await wait_for(pilot, lambda: app.lab.active and app.lab.viewed_job.step >= 10)
        await wait_for(pilot, lambda: "samples/s" in app.status.text)  # a throttled refresh
        assert "ETA" in app.status.text and "cpu" in app.status.text
        await press_live(pilot, "ctrl+s")
        await settle(app, pilot)
        (rec,) = records(store_dir)
        assert rec.status == "cancelled"
        assert 10 <= rec.steps_done < 5000
        assert "mae" in rec.metrics
        with RunStore(store_dir) as store:
            assert store.load_checkpoint(rec.id, "last").step == rec.steps_done
        assert f"cancelled train distance/seednet 32x32 ({rec.id[:8]}) at step " \
            f"{rec.steps_done}" in app.log_pane.text()


async def test_second_training_asks_to_queue_or_stop(store_dir):
    app = CnnprobeApp(store_dir, config=tiny(5000, eval_every=1000), watch_store=False)

    def asking() -> bool:
        return isinstance(app.screen, QueueOrStopScreen)

    async with app.run_test(size=WIDE) as pilot:
        await press_live(pilot, "ctrl+r")
        await wait_for(pilot, lambda: app.lab.active and app.lab.viewed_job.step >= 3)
        first = app.lab.viewed_job
        await press_live(pilot, "ctrl+r")
        await wait_for(pilot, asking)
        await press_live(pilot, "escape")  # no destructive action on escape: nothing changes
        await wait_for(pilot, lambda: not asking())
        assert app.lab.queue == [] and not first.cancel.is_set()
        await press_live(pilot, "ctrl+r")
        await wait_for(pilot, asking)
        await press_live(pilot, "q")
        await wait_for(pilot, lambda: len(app.lab.queue) == 1)
        assert not first.cancel.is_set()
        await wait_for(pilot, lambda: "1 queued" in app.status.text)
        await press_live(pilot, "ctrl+r")
        await wait_for(pilot, asking)
        await press_live(pilot, "s")  # stop the first; both queued ones follow, in turn
        await wait_for(pilot, lambda: app.lab.viewed_job is not first and app.lab.active)
        assert first.cancel.is_set() and len(app.lab.queue) == 1
        second = app.lab.viewed_job
        await press_live(pilot, "ctrl+s")
        await wait_for(pilot, lambda: app.lab.viewed_job not in (first, second) and app.lab.active)
        await press_live(pilot, "ctrl+s")
        await settle(app, pilot)
        assert not app.lab.active and not app.lab.queue
        runs = records(store_dir)
        assert [r.status for r in runs] == ["cancelled"] * 3
        assert runs[1].created_at >= runs[2].finished_at  # one at a time on the device


async def test_failed_run_is_logged_notified_and_stored(store_dir):
    cfg = tiny(30, lr=1e30, loss="mse")
    app = CnnprobeApp(store_dir, config=cfg, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        (rec,) = records(store_dir)
        assert rec.status == "failed" and "loss became nan" in rec.reason
        assert f"failed train distance/seednet 32x32 ({rec.id[:8]})" in app.log_pane.text()
        assert any(n.severity == "error" and "loss became nan" in n.message
                   for n in app._notifications)
        await pilot.click("#f-train-lr Input")  # the app goes on: fix it and train again
        await pilot.press("end", "ctrl+u", *"0.001")
        assert app.focused.value == "0.001"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert [r.status for r in records(store_dir)] == ["finished", "failed"]


async def test_unreadable_weights_are_marked_at_their_field(store_dir, tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"PK\x03\x04 starts like a torch file, is not one")
    cfg = tiny(4)
    cfg = RunConfig(cfg.task, ModelConfig(name="resnet18", pretrained=True,
                                          weights_path=str(bad)), cfg.train)
    app = CnnprobeApp(store_dir, config=cfg, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        weights = app.query_one("#f-model-weights_path", Field)
        assert weights.error == ""  # the file exists: only loading it can tell
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert "not a readable torch state dict" in weights.error
        assert "could not run: model.weights_path=" in app.log_pane.text()
        assert any(n.severity == "error" for n in app._notifications)
        assert not app.lab.active and app.is_running


async def test_resolution_sweep_draws_one_point_per_resolution(store_dir):
    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4")
        assert app.runs.selected_id == run_id
        await pilot.press("s")
        await pilot.press(*"16,24,32", "tab", *"32", "enter")
        await settle(app, pilot)
        with RunStore(store_dir) as store:
            assert store.sweep(run_id, "resolution").table["resolution"].tolist() == [16, 24, 32]
        plot = app.query_one(SweepPlot)
        assert app.plots.active == "sweep" and plot.has_data()
        assert plot.view.sweeps["resolution"]["resolution"].tolist() == [16, 24, 32]
        assert f"resolution sweep of {run_id[:8]}: 3 points" in app.log_pane.text()


async def test_sweep_dialog_reads_sizes_as_the_cli_does(store_dir):
    """One syntax for a resolution list: the dialog offered and read 64-254:10 while the
    CLI reads 64:254:10; now both read start:stop:step."""
    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "s")
        await pilot.pause()
        default = app.screen.query_one("#f-resolutions", Field).query_one(Input).value
        assert default == "16:64:4"  # half to twice the 32 px it was trained at
        await pilot.press("ctrl+u", *"16:32:8", "tab", "ctrl+u", *"32", "enter")
        await settle(app, pilot)
        with RunStore(store_dir) as store:
            assert store.sweep(run_id, "resolution").table["resolution"].tolist() == [16, 24, 32]


async def test_distractor_sweep_and_errors_plot(store_dir):
    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "d")
        await pilot.press("ctrl+u", "2", "tab", *"16", "enter")
        await settle(app, pilot)
        sweep = app.query_one(SweepPlot).view.sweeps["distractors"]
        assert sweep["distractors"].tolist() == [0, 1, 2]
        with RunStore(store_dir) as store:
            assert len(store.sweep(run_id, "distractors").table) == 3
        await pilot.press("left_square_bracket")  # sweep -> errors
        await pilot.pause(0.1)
        assert app.plots.active == "errors"
        errors = app.query_one(ErrorsPlot)
        assert errors.has_data() and len(errors.view.labels) == 64


async def test_export_writes_the_file_and_says_where(store_dir, tmp_path, monkeypatch):
    run_id = stored_run(store_dir)
    monkeypatch.chdir(tmp_path)
    app = CnnprobeApp(store_dir, watch_store=False)
    target = tmp_path / "out" / "run.json"
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "e")
        await pilot.press("enter", "down", "enter")  # format: md -> json
        await pilot.press("tab", *"out/run.json", "enter")
        await settle(app, pilot)
        assert target.is_file()
        assert json.loads(target.read_text())["id"] == run_id
        assert f"exported {run_id[:8]} as json: {target}" in app.log_pane.text()


async def test_resume_and_finetune_a_stored_run(store_dir):
    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "c")
        await pilot.press("ctrl+u", "4", "enter")
        await settle(app, pilot)
        (rec,) = records(store_dir)
        assert (rec.id, rec.steps_done, rec.resumed_at) == (run_id, 12, [8])
        await pilot.press("f")
        await pilot.press(*"24", "tab", *"24", "tab", "ctrl+u", "4", "enter")
        await settle(app, pilot)
        tuned, parent = records(store_dir)
        assert (tuned.kind, tuned.parent_id, tuned.resolution) == ("finetune", run_id, "24x24")
        assert (tuned.status, tuned.steps_done) == ("finished", 4)
        assert app.runs.selected_id == tuned.id


async def test_finetune_dialog_marks_a_bad_size_at_the_field(store_dir):
    stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "f", "2", "enter")
        field = app.screen.query_one("#f-height", Field)
        assert field.error.startswith("height=2 is not allowed")
        await pilot.press("escape")
        await settle(app, pilot)
        assert len(records(store_dir)) == 1


@pytest.mark.parametrize("key,words", [
    ("s", "at its last weights (those of its final metrics)"),  # it said "best checkpoint"
    ("f", "starts from {id}'s last weights (those of its final metrics)"),
])
async def test_sweep_and_finetune_dialogs_say_which_weights(store_dir, key, words):
    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("4", key)
        await pilot.pause()
        body = app.screen.body  # the dialog's text above its fields
        assert words.format(id=run_id[:8]) in body and "best" not in body
        await pilot.press("escape")


@pytest.mark.parametrize("key,words", [
    ("b", "select a run in Runs (4) to pin it as the Compare baseline"),  # "... baseline it"
    ("s", "select a run in Runs (4) to sweep it"),
])
async def test_a_key_without_a_selected_run_says_what_to_do(store_dir, key, words):
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("4", key)
        await pilot.pause()
        assert [n.message for n in app._notifications] == [words]


async def test_delete_asks_first_and_escape_keeps_the_run(store_dir):
    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert [r.id for r in records(store_dir)] == [run_id]
        await pilot.press("delete", "y")
        assert records(store_dir) == []
        assert app.runs.table.row_count == 0
        assert f"deleted run {run_id[:8]}" in app.log_pane.text()


async def test_marked_runs_overlay_in_compare(store_dir):
    first = stored_run(store_dir)
    second = stored_run(store_dir, height=24, width=24)
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("4", "m", "down", "m")
        await pilot.press(*["right_square_bracket"] * 4)  # loss -> compare
        await settle(app, pilot)
        plot = app.query_one(ComparePlot)
        assert app.plots.active == "compare"
        assert [v.run_id for v in plot.views] == [second, first]
        assert plot.has_data()


async def test_quit_during_a_run_stops_it_and_stores_it_cancelled(store_dir):
    app = CnnprobeApp(store_dir, config=tiny(5000, eval_every=1000), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await press_live(pilot, "ctrl+r")
        await wait_for(pilot, lambda: app.lab.active and app.lab.viewed_job.step >= 5)
        (worker,) = [w for w in app.workers if w.group == "train"]
        job = app.lab.viewed_job
        await press_live(pilot, "ctrl+q")
        await wait_for(pilot, lambda: worker.is_finished, timeout=20)
    assert job.cancel.is_set() and worker.is_finished
    assert app.return_code == 0
    (rec,) = records(store_dir)
    assert rec.status == "cancelled" and 5 <= rec.steps_done < 5000


async def test_a_store_that_cannot_be_opened_is_shown_not_raised(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    app = CnnprobeApp(not_a_folder, config=tiny(4), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        message = str(app.query_one("#runs-message").render())
        assert "could not be opened" in message and "is a file, not a folder" in message
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not app.lab.active and app.is_running


async def test_narrow_terminal_shows_one_pane_at_a_time(store_dir):
    app = CnnprobeApp(store_dir, config=tiny(4), watch_store=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.screen.has_class("-narrow")
        shown = [p for p in ("#setup", "#plots", "#runs", "#log") if app.query_one(p).display]
        assert shown == ["#setup"] and app.query_one("#pane-tabs").display
        await pilot.press("4")
        assert app.query_one("#runs").display and not app.query_one("#setup").display
        assert app.focused.id == "runs-table"
        await pilot.resize_terminal(160, 48)
        await pilot.pause(0.1)
        assert not app.screen.has_class("-narrow")
        assert all(app.query_one(p).display for p in ("#setup", "#plots", "#runs", "#log"))


async def test_a_plot_tab_key_shows_its_plot_and_repaints_the_strip_only(store_dir,
                                                                         monkeypatch):
    """Plot tabs scroll a strip of plots (tui/widgets/plots_pane.py). Each key shows its
    plot, and none repaints the whole screen, even right after a layout pass (a status
    update while a run trains makes one): that full repaint cost ~240 ms of UI thread."""
    from textual._compositor import Compositor

    from tui.widgets.plots import PredictionsPlot
    from tui.widgets.plots_pane import PlotStrip

    full = []
    render_full_update = Compositor.render_full_update

    def counted(self, *args, **kw):
        full.append(1)
        return render_full_update(self, *args, **kw)

    monkeypatch.setattr(Compositor, "render_full_update", counted)
    app = CnnprobeApp(store_dir, config=tiny(4), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        strip = app.query_one(PlotStrip)
        for tab, kind in (("predictions", PredictionsPlot), ("errors", ErrorsPlot),
                          ("sweep", SweepPlot), ("compare", ComparePlot), ("loss", LossPlot)):
            app.status.update(f"before {tab}")  # a layout pass, as a training's status makes
            await pilot.pause()
            full.clear()
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert app.plots.active == tab
            x, y = strip.content_region.x + 8, strip.content_region.y + 4
            under, _ = app.screen.get_widget_at(x, y)
            assert under is app.query_one(kind) or app.query_one(kind) in under.ancestors
            assert not full, f"the key to {tab} repainted the whole screen"
        app.status.update("keys in a row")
        await pilot.pause()
        full.clear()
        await pilot.press("right_square_bracket", "left_square_bracket", "right_square_bracket")
        await pilot.pause()
        assert app.plots.active == "predictions" and not full
        text = "".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "predictions" in text  # the strip shows the plot it scrolled to


async def test_a_title_too_long_for_its_plot_is_cut_not_left_out(store_dir):
    """plotext leaves out a title longer than the plot: the Predictions title (run label,
    what it shows, n) was missing beside the describe() table at 140 columns."""
    from tui.widgets.plots import PredictionsPlot

    run_id = stored_run(store_dir)
    app = CnnprobeApp(store_dir, config=tiny(4), watch_store=False)
    async with app.run_test(size=(140, 42)) as pilot:
        await settle(app, pilot)
        await wait_for(pilot, lambda: app.plots.view is not None
                       and app.plots.view.run_id == run_id)
        app.plots.set_tab("predictions")
        await wait_for(pilot, lambda: app.query_one(PredictionsPlot).has_data())
        await pilot.pause()
        text = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert f"{run_id[:8]} distance/seednet" in text and "…" in text


async def test_every_action_has_a_key_in_help_and_an_entry_in_the_palette(store_dir):
    app = CnnprobeApp(store_dir, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for needed in ("Train", "Stop the run", "Resolution sweep", "Distractor sweep",
                       "Resume run", "Fine-tune at another resolution", "Export run",
                       "Mark for compare", "Delete run", "Help", "Quit", "Plot: Loss",
                       "Plot: Compare", "Focus Runs pane", "Previous plot tab"):
            assert needed in titles
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        keys = {row[0] for row in key_table()}
        assert {"ctrl+r / f5", "ctrl+s", "s", "d", "c", "f", "e", "m", "delete",
                "ctrl+q"} <= keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_live_loss_curve_extends_its_smoothing_without_recomputing():
    plot = LossPlot()
    view = tiny_view()
    rows = [{"step": i, "loss": 10.0 / i} for i in range(1, 51)]
    view.train_history.extend(rows[:20])
    plot.smoothed(view)
    view.train_history.extend(rows[20:])
    _, live = plot.smoothed(view)
    fresh = LossPlot()
    _, whole = fresh.smoothed(view)
    assert live == pytest.approx(whole) and len(live) == 50
    ema, a = 0.0, plot.smoothing
    for r in rows:
        ema = a * ema + (1 - a) * r["loss"]
    assert live[-1] == pytest.approx(ema / (1 - a**50))


def tiny_view():
    from tui.run_view import RunView

    return RunView("x" * 32, tiny(8))


async def test_a_run_loaded_while_the_tabs_are_gone_is_ignored(store_dir):
    """A worker's RunLoaded can arrive while the app closes and the plot tabs are already
    unmounted (seen in CI): it must not raise NoMatches."""
    from textual.widgets import Tabs

    from tui.messages import RunLoaded
    from tui.widgets.plots_pane import PlotStrip

    app = CnnprobeApp(store_dir, config=tiny(4), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        view = tiny_view()
        view.status = "finished"
        app.lab.viewed_id = view.run_id
        await app.plots.query_one(PlotStrip).remove()
        await app.plots.query_one(Tabs).remove()
        app.post_message(RunLoaded(view))
        await pilot.pause(0.1)
        assert app.is_running and app.lab.views[view.run_id] is view


def test_store_flag_parses():
    args = build_parser().parse_args(["--store", "/tmp/x", "--theme", "light"])
    assert (args.store, args.theme, args.preset) == ("/tmp/x", "light", "quick")


async def test_a_batchnorm_run_says_how_its_numbers_were_made(store_dir):
    """plaincnn: the form offers the input normalisation and precise BN; the log and the
    Predictions tab name the weights, the recalibrated BatchNorm and the normalisation."""
    cfg = RunConfig(task=TaskConfig(name="distance", height=16, width=16),
                    model=ModelConfig(name="plaincnn", depth=2, width=4),
                    train=TrainConfig(batch_size=16, steps=6, eval_every=3, val_size=32,
                                      lr=1e-3, device="cpu", bn_samples=64))
    app = CnnprobeApp(store_dir, config=cfg, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)  # the forms fill in after the first frame
        assert app.query_one("#f-model-input_norm", Field).display
        assert app.query_one("#f-train-precise_bn", Field).display
        assert app.query_one("#f-task-allow_coincident", Field).display  # a distance task
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        (rec,) = records(store_dir)
        assert rec.config.model.input_norm == "task"
        assert rec.measured["batchnorm"] == "recalibrated" and rec.measured["bn_samples"] == 64
        log = app.log_pane.text()
        assert "last weights (step 6) · BatchNorm recalibrated on 64 training samples" in log
        assert "input standardised with the task's statistics" in log
        from tui.widgets.plots import describe_table

        caption = describe_table(app.lab.views[rec.id]).caption
        assert caption == "last @ 6 · BN recalibrated · norm task"
    app = CnnprobeApp(store_dir, config=tiny(4), watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        # seednet reads raw coordinates: no normalisation to choose
        assert not app.query_one("#f-model-input_norm", Field).display
