"""A scrolling pane of config fields that reads into and writes from a RunConfig."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Select

from cnnprobe.config import ConfigError, RunConfig
from tui.widgets.field import Field


class FormPane(VerticalScroll):
    """Base of the task and model panes: fields keyed `section.name`.

    With `fill_later`, the pane composes empty and `fill` mounts its fields: the lab paints
    its first frame (layout, runs, status) without the forms' ~200 widgets, and fills them
    right after it (bench/bench_startup.py). Until then the pane reads as its config."""

    class Edited(Message):
        """A value in the form changed; the app re-validates the whole config."""

    SECTIONS: tuple[str, ...] = ()  # the config sections the pane's fields set
    _field_list: list[Field] | None = None
    _edit_pending = False
    _filling = False

    def __init__(self, cfg: RunConfig, *, fill_later: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self._config = cfg  # shown when filled; what the pane reads as until then
        self.filled = not fill_later

    def compose(self) -> ComposeResult:
        if self.filled:
            yield from self.compose_fields()

    def compose_fields(self) -> ComposeResult:
        """The pane's widgets, from self._config."""
        raise NotImplementedError

    async def fill(self) -> None:
        """Mount the fields (once), then set up what on_mount would have."""
        if self.filled or self._filling:
            return
        self._filling = True
        await self.mount_all(list(self.compose_fields()))
        self.filled = True  # only now: what arrived meanwhile was kept for on_fields_mounted
        self.on_fields_mounted()

    def on_mount(self) -> None:
        if self.filled:
            self.on_fields_mounted()

    def on_fields_mounted(self) -> None:
        """The fields are there (at mount, or when filled)."""

    def fields(self) -> list[Field]:
        """Every field, found once: the fields are fixed at compose, and a CSS query per
        keystroke (and per Changed event at start) cost seconds of startup."""
        if self._field_list is None:
            found = list(self.query(Field))
            if not found:  # not composed yet: ask again next time
                return found
            self._field_list = found
            self._by_key = {f.key: f for f in found}
        return self._field_list

    def field(self, key: str) -> Field | None:
        self.fields()
        return getattr(self, "_by_key", {}).get(key)

    def read_into(self, data: dict[str, dict[str, Any]]) -> list[ConfigError]:
        """Put every shown field's value into `data`; return those that could not be parsed."""
        if not self.filled:
            given = self._config.to_dict()
            for section in self.SECTIONS:
                data[section].update(given[section])
            return []
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
        self._config = cfg
        data = cfg.to_dict()
        for f in self.fields():
            section, name = f.key.split(".", 1)
            if name in data[section]:
                f.set_value(data[section][name])

    def show_errors(self, errors: dict[str, str]) -> None:
        for f in self.fields():
            f.set_error(errors.get(f.key))

    def _edited(self) -> None:
        """Changes arrive in bursts (every control says Changed when mounted, a preset sets
        many): one Edited after the burst, so the app re-validates once."""
        if self._edit_pending:
            return
        self._edit_pending = True
        self.call_after_refresh(self._flush_edited)

    def _flush_edited(self) -> None:
        self._edit_pending = False
        self.edited()
        self.post_message(self.Edited())

    def edited(self) -> None:
        """A subclass's own reaction to an edit, once per burst (ModelPane: visibility)."""

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._edited()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._edited()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._edited()
