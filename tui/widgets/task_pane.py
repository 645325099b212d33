"""The task pane: the probe tasks with a line each, and the chosen task's options."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from cnnprobe.config import ConfigError, RunConfig, settings
from cnnprobe.tasks import task_table
from tui.widgets.field import setting_field
from tui.widgets.form_pane import FormPane


class TaskPane(FormPane):
    """Which probe task, at which resolution, with which encoding and distractors."""

    BORDER_TITLE = "1 Task"

    SECTIONS = ("task",)

    def __init__(self, cfg: RunConfig, **kw: Any) -> None:
        super().__init__(cfg, **kw)
        self.task_name = cfg.task.name

    def compose_fields(self) -> ComposeResult:
        t = self._config.task
        rows = task_table()
        options = [Option(Text.assemble((f"{r['name']:<9}", "bold"), r["description"]),
                          id=r["name"]) for r in rows]
        yield OptionList(*options, id="task-list")
        for st in settings("task"):
            if st.form:
                yield setting_field(st, getattr(t, st.name))

    def on_fields_mounted(self) -> None:
        self.select_task(self.task_name)
        self.update_visibility()

    def select_task(self, name: str) -> None:
        self.task_name = name
        if self.filled:
            opts = self.query_one("#task-list", OptionList)
            opts.highlighted = opts.get_option_index(name)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id and event.option.id != self.task_name:
            self.task_name = event.option.id
            self.update_visibility()
            self._edited()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()

    def edited(self) -> None:
        self.update_visibility()

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
        errors = super().read_into(data)
        data["task"]["name"] = self.task_name
        return errors

    def write(self, cfg: RunConfig) -> None:
        self.select_task(cfg.task.name)
        super().write(cfg)
        self.update_visibility()

    def show_errors(self, errors: dict[str, str]) -> None:
        super().show_errors(errors)
        if self.filled:
            self.query_one("#task-list").set_class("task.name" in errors, "-invalid")
