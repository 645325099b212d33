"""The task pane: the probe tasks with a line each, and the chosen task's options."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Checkbox, OptionList
from textual.widgets.option_list import Option

from cnnprobe.config import QUADRANTS, SPLITS, UNITS, ConfigError, RunConfig, TaskConfig
from cnnprobe.tasks import task_table
from tui.widgets.field import Field, choice, text_input
from tui.widgets.form_pane import FormPane


class TaskPane(FormPane):
    """Which probe task, at which resolution, with which encoding and distractors."""

    BORDER_TITLE = "1 Task"

    def __init__(self, task: TaskConfig, **kw: Any) -> None:
        super().__init__(**kw)
        self.task_name = task.name
        self._initial = task

    def compose(self) -> ComposeResult:
        t = self._initial
        rows = task_table()
        options = [Option(Text.assemble((f"{r['name']:<9}", "bold"), r["description"]),
                          id=r["name"]) for r in rows]
        yield OptionList(*options, id="task-list")
        yield Field("task.height", "height px", text_input(t.height), "int",
                    help="image height in pixels (4-4096)")
        yield Field("task.width", "width px", text_input(t.width), "int",
                    help="image width in pixels (4-4096)")
        yield Field("task.coord_channels", "coord chans", Checkbox("x/y channels",
                    t.coord_channels), "bool",
                    help="add the x/(W+1) and y/(H+1) coordinate channels")
        yield Field("task.units", "units", choice(UNITS, t.units), "choice",
                    help="pixels, or normalized: one pixel = 1/(W+1) along x, 1/(H+1) along y")
        yield Field("task.allow_coincident", "A == B", Checkbox("allowed", t.allow_coincident),
                    "bool", help="distance: let the two points fall on one pixel (notebook)")
        yield Field("task.distractors", "distractors", text_input(t.distractors), "int",
                    help="extra objects of another kind during training (0-64)")
        yield Field("task.eval_distractors", "eval distr.",
                    text_input(t.eval_distractors, "as training"), "opt_int",
                    help="extra objects during evaluation; empty: as in training")
        yield Field("task.split", "split", choice(SPLITS, t.split), "choice",
                    help="uniform, or quadrant: training never uses the held-out quadrant")
        yield Field("task.heldout_quadrant", "held out", choice(QUADRANTS, t.heldout_quadrant),
                    "choice", help="the quadrant no training sample touches")
        yield Field("task.count_min", "count min", text_input(t.count_min), "int")
        yield Field("task.count_max", "count max", text_input(t.count_max), "int")
        yield Field("task.object_min", "object min", text_input(t.object_min), "int",
                    help="smallest object side/diameter in pixels")
        yield Field("task.object_max", "object max", text_input(t.object_max, "0 = auto"),
                    "int", help="largest object side/diameter; 0: min(H, W) // 8")

    def on_mount(self) -> None:
        self.select_task(self.task_name)
        self.update_visibility()

    def select_task(self, name: str) -> None:
        opts = self.query_one("#task-list", OptionList)
        opts.highlighted = opts.get_option_index(name)
        self.task_name = name

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id and event.option.id != self.task_name:
            self.task_name = event.option.id
            self.update_visibility()
            self._edited()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()

    def _edited(self) -> None:
        self.update_visibility()
        super()._edited()

    def update_visibility(self) -> None:
        """Show the options that matter for the chosen task; the rest keep their values."""
        values = {}
        for key in ("task.split", "task.distractors"):
            f = self.field(key)
            try:
                values[key] = f.value() if f else None
            except ConfigError:
                values[key] = None
        shapes = self.task_name in ("locate", "count") or bool(values["task.distractors"])
        shown = {
            "task.heldout_quadrant": values["task.split"] == "quadrant",
            "task.count_min": self.task_name == "count",
            "task.count_max": self.task_name == "count",
            "task.object_min": shapes,
            "task.object_max": shapes,
            "task.allow_coincident": self.task_name == "distance",
        }
        for key, visible in shown.items():
            f = self.field(key)
            if f is not None:
                f.display = visible

    def read_into(self, data: dict[str, dict[str, Any]]) -> list[ConfigError]:
        data["task"]["name"] = self.task_name
        return super().read_into(data)

    def write(self, cfg: RunConfig) -> None:
        self.select_task(cfg.task.name)
        super().write(cfg)
        self.update_visibility()

    def show_errors(self, errors: dict[str, str]) -> None:
        super().show_errors(errors)
        self.query_one("#task-list").set_class("task.name" in errors, "-invalid")
