"""The Activations screen driven by keys: layers, samples, channels, normalisation, probes,
export, a damaged checkpoint, narrow terminals. Tiny stored runs (32 px, 20 steps, CPU)."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from textual.app import App
from textual.worker import WorkerFailed

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.runs import train_run
from cnnprobe.store import RunStore
from tui.screens.activations import ActivationsScreen
from tui.widgets.activation_view import ActivationView, grid_layout
from tui.widgets.probe_table import ProbePlot, ProbeTable

WIDE = (140, 42)
TITLE = re.compile(r"(?:^| )(\d+) -?\d")  # a tile's title: "12 -0.3..1.2"


def tiny(model: str) -> RunConfig:
    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     model=ModelConfig(name=model),
                     train=TrainConfig(batch_size=16, steps=20, eval_every=10, val_size=64,
                                       lr=1e-3, device="cpu"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str | Path]:
    """A store with a seednet run (vector layers), a plaincnn run (maps) and a plaincnn run
    whose last checkpoint is garbage."""
    root = tmp_path_factory.mktemp("act") / "store"
    with RunStore(root) as store:
        ids = {m: train_run(store, tiny(m))[0] for m in ("seednet", "plaincnn")}
        ids["damaged"] = train_run(store, tiny("plaincnn"), name="damaged")[0]
        store.checkpoint_path(ids["damaged"], "last").write_bytes(b"not a checkpoint" * 64)
    return {"root": root, **ids}


@pytest.fixture
def store_copy(runs, tmp_path) -> Path:
    """A private copy of the store, for tests that write probes into it."""
    root = tmp_path / "store"
    shutil.copytree(runs["root"], root)
    return root


class Host(App[None]):
    """The smallest app that shows the screen, as the lab's `a` key will."""

    def __init__(self, root: Path, run_id: str, **kw) -> None:
        super().__init__()
        self.store = RunStore(root)
        self.run_id, self.kw = run_id, {"truecolor": True, "n_train": 64, "n_test": 32, **kw}

    def on_mount(self) -> None:
        self.push_screen(ActivationsScreen(self.store, self.run_id, **self.kw))

    def on_unmount(self) -> None:
        self.store.close()


async def settle(app, pilot) -> None:
    """Every worker done and every message they posted handled (a failed worker is
    expected in some tests: the screen shows it, which is what they check)."""
    for _ in range(2):
        try:
            await app.workers.wait_for_complete()
        except WorkerFailed:
            pass
        await pilot.pause(0.05)


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def view_text(app) -> str:
    return app.screen.query_one(ActivationView).render().plain


def titles(app) -> set[int]:
    return {int(m) for line in view_text(app).splitlines() for m in TITLE.findall(line)}


def screen_text(app) -> str:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      color_system=None, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def test_layers_channels_normalisation_and_samples(runs):
    app = Host(runs["root"], runs["plaincnn"])
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert text_of(app, "#act-layer").startswith("layer 0/15  input  input  3×32×32")
        assert titles(app) == {0, 1, 2}  # the input's three channels
        assert "▀" in view_text(app)  # half blocks in true colour

        await pilot.press("j")  # the model's input normalisation: what the convs see
        assert "input_norm  InputNorm  3×32×32" in text_of(app, "#act-layer")
        assert titles(app) == {0, 1, 2}
        await pilot.press("j")
        assert "blocks.0  Conv2d  32×32×32" in text_of(app, "#act-layer")
        assert titles(app) == set(range(32))
        await pilot.press("minus")
        assert titles(app) == set(range(16))
        assert "channels 0-15 of 32 (up to 16)" in text_of(app, "#act-settings")
        await pilot.press("pagedown")
        assert titles(app) == set(range(16, 32))
        await pilot.press("plus")
        assert titles(app) == set(range(32))

        before = app.screen.query_one(ActivationView).render()
        assert "norm: per-channel" in text_of(app, "#act-settings")
        await pilot.press("n")
        assert "norm: per-layer" in text_of(app, "#act-settings")
        after = app.screen.query_one(ActivationView).render()
        assert after.plain.splitlines()[0] == before.plain.splitlines()[0]  # same titles
        assert after.spans != before.spans  # other colours

        await pilot.press("r", "c")
        assert "resample: area · magma" in text_of(app, "#act-settings")
        await pilot.press("k", "k")
        assert text_of(app, "#act-layer").startswith("layer 0/15  input")

        assert "validation sample 0 of 64" in text_of(app, "#act-run")
        await pilot.press("right_square_bracket")
        await settle(app, pilot)
        assert "validation sample 1 of 64" in text_of(app, "#act-run")
        await pilot.press("left_square_bracket", "left_square_bracket")
        await settle(app, pilot)
        assert "validation sample 63 of 64" in text_of(app, "#act-run")  # wraps around
        assert text_of(app, "#act-layer").startswith("layer 0/15  input")  # kept the layer
        await pilot.press("q")
        assert not isinstance(app.screen, ActivationsScreen)


async def test_vector_layers_are_bars_and_no_truecolor_falls_back_to_shades(runs):
    app = Host(runs["root"], runs["seednet"], truecolor=None, sample=None, seed=3)
    async with app.run_test(size=WIDE) as pilot:  # headless: 16 colours
        await settle(app, pilot)
        assert "fresh draw (seed 3)" in text_of(app, "#act-run")
        await pilot.press("right_square_bracket")
        await settle(app, pilot)
        assert "fresh draw (seed 4)" in text_of(app, "#act-run")
        assert "shades (no true colour)" in text_of(app, "#act-settings")
        assert "▀" not in view_text(app)
        assert set(view_text(app)) & set("░▒▓█")
        await pilot.press("end")
        await pilot.press("k")  # fc7: 128 values
        assert "fc7  Linear  128" in text_of(app, "#act-layer")
        assert "128 values as bars" in text_of(app, "#act-settings")
        assert set(view_text(app)) & set("▁▂▃▄▅▆▇█")


async def test_probes_run_in_a_worker_show_a_table_and_plot_and_are_saved(store_copy):
    with RunStore(store_copy) as store:
        run_id = next(r.id for r in store.list_runs() if r.model == "plaincnn"
                      and r.name != "damaged")
        assert store.probes(run_id) is None
    app = Host(store_copy, run_id, export_dir=store_copy.parent / "exports")
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert not app.screen.query_one("#act-probes").display
        await pilot.press("p")
        await settle(app, pilot)
        assert not app.screen.query_one("#act-progress").display
        bar = app.screen.query_one("#act-progress-bar")
        assert (bar.progress, bar.total) == (2, 2)  # one batch of 64 to fit, one to score
        table = app.screen.query_one(ProbeTable)
        layers = len(app.screen.inspection.activations)
        assert table.row_count == layers == 16
        assert app.screen.query_one("#act-probes").display
        assert len(app.screen.query_one(ProbePlot).rows) == layers
        assert "saved with the run" in app.screen.query_one("#act-probes").border_title
        with RunStore(store_copy) as store:
            saved = store.probes(run_id)
        assert saved is not None and len(saved) == layers

        await pilot.press("v")  # table -> only the table
        assert not app.screen.query_one(ProbePlot).display
        assert app.screen.query_one(ProbeTable).display

        await pilot.press("x")
        await settle(app, pilot)
        out = app.screen.exported_to
        assert out is not None and out.parent == store_copy.parent / "exports"
        assert len(list(out.glob("*.png"))) == layers
        assert (out / "activations.npz").exists() and (out / "probes.csv").exists()


async def test_stored_probes_show_on_open_and_escape_stops_running_probes(store_copy):
    with RunStore(store_copy) as store:
        run_id = next(r.id for r in store.list_runs() if r.model == "plaincnn"
                      and r.name != "damaged")
    app = Host(store_copy, run_id, n_train=4096, n_test=1024)  # ~4 s: long enough to stop
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause(0.2)
        await pilot.press("escape")  # stops the probes, keeps the screen
        await settle(app, pilot)
        assert isinstance(app.screen, ActivationsScreen)
        assert app.screen.probe_cancel is None and app.screen.probe_table is None
        with RunStore(store_copy) as store:
            assert store.probes(run_id) is None
        await pilot.press("escape")
        assert not isinstance(app.screen, ActivationsScreen)

    with RunStore(store_copy) as store:  # probes made elsewhere (the CLI) show at once
        from cnnprobe.runs import inspect_run
        inspect_run(store, run_id, sample=0, n_train=64, n_test=32, device="cpu")
    app = Host(store_copy, run_id)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert app.screen.query_one("#act-probes").display
        assert app.screen.query_one(ProbeTable).row_count == 16
        assert "stored with the run" in app.screen.query_one("#act-probes").border_title


async def test_damaged_checkpoint_is_an_error_line_not_a_crash(runs):
    app = Host(runs["root"], runs["damaged"])
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        error = app.screen.query_one("#act-error")
        assert error.display
        assert "last.pt" in str(error.render()) and "corrupt" in str(error.render())
        assert "nothing to show" in view_text(app)
        await pilot.press("j", "n", "x", "p")  # keys on an empty screen do no harm
        await settle(app, pilot)
        assert app.is_running and isinstance(app.screen, ActivationsScreen)
        assert "linear probes could not run" in str(error.render())
        await pilot.press("w")  # the best checkpoint is intact
        await settle(app, pilot)
        assert not error.display
        assert text_of(app, "#act-layer").startswith("layer 0/15  input")
        assert "best checkpoint" in text_of(app, "#act-run")


async def test_narrow_80x24_and_resize(runs):
    app = Host(runs["root"], runs["plaincnn"])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        text = screen_text(app)
        assert "layer 0/15  input  input  3×32×32" in text
        assert "kj Layer [] Sample +- Channels" in text  # the footer
        assert app.screen.has_class("-narrow")
        assert not app.screen.query_one("#act-layers").display
        await pilot.press("j")
        narrow = max(len(line) for line in view_text(app).splitlines())
        assert narrow <= 78
        await pilot.resize_terminal(*WIDE)
        await pilot.pause(0.1)
        assert not app.screen.has_class("-narrow")
        wide = max(len(line) for line in view_text(app).splitlines())
        assert wide != narrow and wide <= WIDE[0] - 34


async def test_screen_keys_are_in_the_command_palette(runs):
    app = Host(runs["root"], runs["plaincnn"])
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.1)
        await pilot.press(*"Activations: Norm")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ActivationsScreen)
        assert "norm: per-layer" in text_of(app, "#act-settings")


def test_grid_layout_fits_the_box():
    # 8 tiles of a square map in 100x30: as large as fits, never wider than the box
    cols, width = grid_layout(8, (32, 32), 100, 30, footnote=False)
    assert cols * ((width - (cols - 1)) // cols) + (cols - 1) <= 100
    rows = -(-8 // cols)
    tile_w = (width - (cols - 1)) // cols
    assert rows * (-(-tile_w // 2) + 1) + (rows - 1) <= 30
    # more tiles than fit: minimum-width tiles across the whole width (the view scrolls)
    assert grid_layout(64, (32, 32), 80, 6, footnote=True) == (9, 80)
