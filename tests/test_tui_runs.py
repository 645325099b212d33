"""Many runs in the TUI, driven by keys: `/` filters the runs table live, `o` / `O` and a
click on a header sort it, names show, `b` pins the Compare baseline, and a store poll
that changed nothing leaves the table alone. Runs are fabricated (no training)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from textual.widgets import Input

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.results import Sweep
from cnnprobe.store import RunRecord
from cnnprobe.studies.trial import study_tag
from tui.app import CnnprobeApp, key_table
from tui.widgets import runs_pane
from tui.widgets.plots import ComparePlot, compare_table
from tui.widgets.runs_pane import RunFilter, RunsPane
from tui.widgets.runs_table import RunsTable

WIDE = (160, 48)
T0 = 1_750_000_000.0
README = Path(__file__).resolve().parents[1] / "README.md"
MODELS = ("seednet", "plaincnn", "resnet18")
STATUSES = ("finished", "finished", "failed", "cancelled")


def fake(i: int) -> RunRecord:
    """Run i of a fabricated store: every 4th failed or cancelled, every 5th named by hand,
    every 3rd a trial of a study; run 0 is the newest."""
    model, size = MODELS[i % 3], (32, 64, 128)[i % 3]
    task = ("distance", "count")[i % 2]
    status = STATUSES[i % 4]
    cfg = RunConfig(task=TaskConfig(name=task, height=size, width=size),
                    model=ModelConfig(name=model), train=TrainConfig(device="cpu"))
    tags = [study_tag("pooling"), f"variant:v{i % 2}"] if i % 3 == 0 else []
    mae = None if status == "failed" else round(1 + (i * 37 % 101) / 10, 2)
    return RunRecord(id=f"{i:06d}" + "f" * 26,
                     name=f"exp-{i}" if i % 5 == 0 else f"{task}-{model}-{size}",
                     status=status, reason="", config=cfg, seed=i, created_at=T0 - 60 * i,
                     finished_at=T0 - 60 * i + 30, device="cpu", device_name="cpu",
                     versions={}, wall_time_s=30.0, samples_seen=100, steps_done=10,
                     metrics={} if mae is None else {"mae": mae}, tags=tags)


class FakeStore:
    """The store API the TUI reads, over fabricated runs with histories and sweeps."""

    def __init__(self, n: int) -> None:
        self.records = [fake(i) for i in range(n)]

    def list_runs(self, **_):
        return list(self.records)

    def get(self, run_id):
        return next(r for r in self.records if r.id == run_id)

    def _scale(self, run_id) -> float:
        return self.get(run_id).metrics.get("mae", 5.0)

    def train_history(self, run_id):
        return [{"step": s, "loss": self._scale(run_id) + 10 / s} for s in range(1, 41)]

    def val_history(self, run_id):
        return [{"step": s, "mae": self._scale(run_id) + 4 / s} for s in (10, 20, 30, 40)]

    def predictions(self, run_id):
        return None

    def sweep(self, run_id, kind):
        if kind != "resolution":
            return None
        res = [32, 48, 64, 96]
        return Sweep(pd.DataFrame({"resolution": res,
                                   "mae": [self._scale(run_id) + r / 100 for r in res]}),
                     pd.DataFrame())

    def sweep_table(self, run_id, kind):
        sweep = self.sweep(run_id, kind)
        return None if sweep is None else sweep.table


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(runs_pane, "clock", lambda: T0 + 5)


async def settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


def open_app(n: int = 40) -> tuple[CnnprobeApp, FakeStore]:
    store = FakeStore(n)
    return CnnprobeApp("/fake/store", store=store, watch_store=False), store


def shown(app) -> list[RunRecord]:
    table = app.runs.table
    return [app.runs.record(k) for k in table.keys]


async def test_slash_filters_the_runs_live_and_escape_clears_it():
    app, store = open_app(40)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        runs, row = app.runs, app.runs.query_one("#runs-filter-row")
        assert runs.table.row_count == 40 and not row.display
        await pilot.press("slash")
        assert isinstance(app.focused, RunFilter) and row.display
        await pilot.press(*"status:failed")
        assert {r.status for r in shown(app)} == {"failed"} and len(shown(app)) == 10
        assert runs.border_title == "4 Runs 10/40"
        assert "10/40" in str(runs.query_one("#runs-count").render())
        field = app.focused
        field.value += " model:resnet"  # AND-ed
        await pilot.pause()
        assert {(r.status, r.model) for r in shown(app)} == {("failed", "resnet18")}
        await pilot.press("enter")  # keeps the filter, the table takes the keys
        assert isinstance(app.focused, RunsTable) and row.display
        assert runs.query_text == "status:failed model:resnet"
        assert app.runs.selected_id == shown(app)[0].id
        await pilot.press("slash")  # back in the field, text kept
        assert isinstance(app.focused, RunFilter) and app.focused.value == runs.query_text
        await pilot.press("escape")
        assert runs.query_text == "" and runs.table.row_count == 40 and not row.display
        assert isinstance(app.focused, RunsTable) and runs.border_title == "4 Runs"
        # a study's trials, a name, a plain word and a negation
        await pilot.press("slash")
        for query, want in (
                ("study:pooling", [r for r in store.records if study_tag("pooling") in r.tags]),
                ("exp-1", [r for r in store.records if r.name in ("exp-10", "exp-15")]),
                ("!status:finished count", [r for r in store.records if r.task == "count"
                                            and r.status != "finished"])):
            field.value = query
            await pilot.pause()
            assert want and shown(app) == want, query
        await pilot.press("escape")
        assert runs.table.row_count == 40
        # in a text field, / is a character
        await pilot.press("1", "tab")
        assert isinstance(app.focused, Input) and not isinstance(app.focused, RunFilter)
        await pilot.press("slash")
        assert not row.display and not isinstance(app.focused, RunFilter)


async def test_sort_by_keys_and_header_clicks_names_and_cursor_keys():
    app, store = open_app(40)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        table = app.runs.table
        assert app.runs.sort == ("when", True)  # newest first
        assert [c.label for c in table.columns][-2] == "when ▼"
        first = app.runs.selected_id
        await pilot.press("4", "o")  # the next column: id, A first
        assert app.runs.sort == ("id", False)
        assert list(table.keys) == sorted(r.id for r in store.records)
        await pilot.press("O")
        assert app.runs.sort == ("id", True)
        assert list(table.keys) == sorted((r.id for r in store.records), reverse=True)
        assert app.runs.selected_id == first  # the cursor stays on its run
        # a click on the MAE header sorts by it, best first; again: worst first
        x = sum(c.width + 2 for c in table.columns[:[c.key for c in table.columns].index("mae")])
        await pilot.click(RunsTable, offset=(x + 2, 0))
        assert app.runs.sort == ("mae", False)
        assert next(c for c in table.columns if c.key == "mae").label == "MAE ▲"
        maes = [r.metrics.get("mae") for r in shown(app)]
        have = [m for m in maes if m is not None]
        assert have == sorted(have) and maes[len(have):] == [None] * (len(maes) - len(have))
        await pilot.click(RunsTable, offset=(x + 2, 0))
        assert app.runs.sort == ("mae", True)
        have = [r.metrics["mae"] for r in shown(app) if "mae" in r.metrics]
        assert have == sorted(have, reverse=True)
        assert shown(app)[-1].status == "failed"  # no MAE: last either way
        # names: a given one plain, a made-up default one dim
        names = {key: row[2] for key, row in zip(table.keys, table.rows, strict=True)}
        given, made = names[store.records[5].id], names[store.records[1].id]
        assert (given.text, given.style) == ("exp-5", "")
        assert (made.text, made.style) == ("count-plaincnn-64", "dim")
        # the cursor keys select runs, and the plots follow
        await pilot.press("end")
        assert app.runs.selected_id == table.keys[-1]
        await settle(app, pilot)
        assert app.lab.viewed_id == table.keys[-1]
        await pilot.press("home", "pagedown")
        assert table.cursor_row > 5
        await pilot.press("pageup", "down")
        assert table.cursor_row == 1


async def test_b_pins_the_baseline_compare_draws_the_others_against():
    app, store = open_app(12)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        base, a, b = store.records[0], store.records[1], store.records[3]
        await pilot.press("4", "down", "m", "down", "down", "m")  # mark runs 1 and 3
        await pilot.press("home", "b")  # pin run 0
        await settle(app, pilot)
        assert app.runs.baseline == base.id and app.runs.compared == [base.id, a.id, b.id]
        assert app.plots.active == "compare"
        plot = app.query_one(ComparePlot)
        assert plot.relative and plot.baseline.run_id == base.id
        assert [v.run_id for v in plot.views] == [base.id, a.id, b.id]
        assert plot.has_data()
        text = str(plot.render())
        assert "val MAE − baseline ◆" in text and "(baseline)" in text
        assert str(app.runs.table.rows[0][0]) == "◆"  # shown distinctly in the table
        # the table under the plot: the baseline first, the others' final MAE as a delta
        table = compare_table(plot.views, base.id)
        cells = [[str(c) for c in col._cells] for col in table.columns]
        assert cells[0] == ["◆", "★", "★"] and cells[4][0] == "baseline"
        delta = a.metrics["mae"] - base.metrics["mae"]
        assert cells[4][1] == f"{delta:+.4g}"
        assert cells[5][1] == f"{100 * delta / base.metrics['mae']:+.1f}%"
        await pilot.press("b")  # again: unpinned, the runs drawn as they are
        await settle(app, pilot)
        assert app.runs.baseline is None and not plot.relative
        assert [v.run_id for v in plot.views] == [a.id, b.id]
        assert str(app.runs.table.rows[0][0]) == " "


async def test_a_store_poll_that_changed_nothing_leaves_the_table_alone():
    app, store = open_app(3000)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        runs: RunsPane = app.runs
        table = runs.table
        assert table.row_count == 3000
        keys = table.keys
        assert runs.set_records(store.list_runs()) is False
        # one run's status changed: that row's cells only, the same rows in the same order
        store.records[2] = RunRecord(**{**store.records[2].__dict__, "status": "finished",
                                        "metrics": {"mae": 0.5}})
        assert runs.set_records(store.list_runs()) is True
        assert table.keys is keys
        assert [str(c) for c in table.rows[2][1:2]] == ["finished"]
        assert str(table.rows[2][6]) == "0.5"
        # a new run on top: the rows change
        store.records.insert(0, fake(-1))
        assert runs.set_records(store.list_runs()) is True
        assert table.keys is not keys and table.keys[0] == fake(-1).id
        await pilot.press("slash", *"model:resnet status:fail")
        assert shown(app) and all(r.model == "resnet18" and r.status == "failed"
                                  for r in shown(app))
        assert runs.border_title == f"4 Runs {len(shown(app)):,}/3,001"
        # selecting a run the filter hides (a trial opened from Studies) clears the filter
        await pilot.press("enter")
        hidden = store.records[1].id  # finished
        assert hidden not in table.keys
        app.refresh_runs(select=hidden)
        await pilot.pause()
        assert runs.query_text == "" and runs.selected_id == hidden


async def test_narrow_terminal_slash_shows_the_runs_pane_with_its_filter():
    app, store = open_app(20)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("slash")
        assert app.query_one("#runs").display and isinstance(app.focused, RunFilter)
        await pilot.press(*"exp")
        assert "4/20" in str(app.runs.query_one("#runs-count").render())


def test_the_readme_key_table_lists_every_key():
    """Each key of the bindings (the help screen's table) is in README's TUI key table."""
    text = README.read_text()
    section = text[text.index("## The lab in the terminal"):text.index("### Looking inside")]
    listed = set(re.findall(r"`([^`]+)`", section))
    for keys, _, _ in key_table():
        first = keys.split(" / ")[0]
        if re.fullmatch(r"[1-5]", first):
            assert "1`–`5" in section
            continue
        assert first in listed, f"README's key table lacks `{first}`"
