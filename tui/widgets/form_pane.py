"""A scrolling pane of config fields that reads into and writes from a RunConfig."""

from __future__ import annotations

from typing import Any

from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Select

from cnnprobe.config import ConfigError, RunConfig
from tui.widgets.field import Field


class FormPane(VerticalScroll):
    """Base of the task and model panes: fields keyed `section.name`."""

    class Edited(Message):
        """A value in the form changed; the app re-validates the whole config."""

    def fields(self) -> list[Field]:
        return list(self.query(Field))

    def field(self, key: str) -> Field | None:
        for f in self.fields():
            if f.key == key:
                return f
        return None

    def read_into(self, data: dict[str, dict[str, Any]]) -> list[ConfigError]:
        """Put every shown field's value into `data`; return those that could not be parsed."""
        errors = []
        for f in self.fields():
            if not f.display:  # options of another task or model keep their defaults
                continue
            section, name = f.key.split(".", 1)
            try:
                data[section][name] = f.value()
            except ConfigError as exc:
                errors.append(exc)
        return errors

    def write(self, cfg: RunConfig) -> None:
        data = cfg.to_dict()
        for f in self.fields():
            section, name = f.key.split(".", 1)
            if name in data[section]:
                f.set_value(data[section][name])

    def show_errors(self, errors: dict[str, str]) -> None:
        for f in self.fields():
            f.set_error(errors.get(f.key))

    def _edited(self) -> None:
        self.post_message(self.Edited())

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._edited()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._edited()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._edited()
