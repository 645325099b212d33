"""Resume a stored run from its last checkpoint for more steps."""

from __future__ import annotations

from typing import Any

from cnnprobe.config import ConfigError
from tui.screens.form_dialog import FormDialog
from tui.widgets.field import Field, text_input


class ResumeScreen(FormDialog):
    """Answers {"extra_steps"} for `resume_run`."""

    TITLE_TEXT = "Resume from the last checkpoint"
    OK_LABEL = "Resume"

    def __init__(self, record: Any) -> None:
        super().__init__(f"{record.id[:8]} ({record.task}/{record.model} {record.resolution}) "
                         f"stopped at step {record.steps_done} ({record.status}). The optimizer "
                         "and the data stream continue where they were.")
        self.record = record

    def fields(self) -> list[Field]:
        default = max(1, self.record.config.train.total_steps - self.record.steps_done) \
            if self.record.status != "finished" else self.record.config.train.total_steps
        return [Field("extra_steps", "more steps", text_input(default), "int")]

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["extra_steps"] < 1:
            raise ConfigError("extra_steps", values["extra_steps"], "an integer of at least 1")
        return values
