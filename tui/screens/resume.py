"""Resume a stored run from its last checkpoint for more steps."""

from __future__ import annotations

from typing import Any

from cnnprobe.config import ConfigError
from cnnprobe.options import option, resume_steps
from tui.screens.form_dialog import FormDialog
from tui.widgets.field import Field, option_field


class ResumeScreen(FormDialog):
    """Answers {"steps"} for `resume_run`."""

    TITLE_TEXT = "Resume from the last checkpoint"
    OK_LABEL = "Resume"

    def __init__(self, record: Any) -> None:
        super().__init__(f"{record.id[:8]} ({record.task}/{record.model} {record.resolution}) "
                         f"stopped at step {record.steps_done} ({record.status}). The optimizer "
                         "and the data stream continue where they were.")
        self.record = record

    def fields(self) -> list[Field]:
        rec = self.record
        return [option_field(option("resume", "steps"),
                             resume_steps(rec.config, rec.steps_done, rec.status), "int")]

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        steps = option("resume", "steps")
        if values["steps"] < steps.bounds[0]:
            raise ConfigError("steps", values["steps"], steps.allowed.removesuffix(", or unset"))
        return values
