"""A small modal form: fields, a check that names the bad field, OK and Cancel."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from cnnprobe.config import ConfigError
from tui.widgets.field import Field


class FormDialog(ModalScreen[dict[str, Any] | None]):
    """Subclasses give `fields()` and `check(values)`; Enter submits, Escape cancels."""

    TITLE_TEXT = ""
    OK_LABEL = "OK"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, body: str = "") -> None:
        super().__init__()
        self.body = body

    def fields(self) -> list[Field]:
        raise NotImplementedError

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validate and complete the values; raise ConfigError naming the field."""
        return values

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.TITLE_TEXT, classes="dialog-title", markup=False)
            if self.body:
                yield Static(self.body, classes="dialog-body", markup=False)
            yield from self.fields()
            yield Static("", id="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.OK_LABEL} (enter)", variant="primary", id="ok",
                             compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        first = self.query(Field).first()
        first.control.focus()

    def values(self) -> dict[str, Any]:
        return {f.key: f.value() for f in self.query(Field) if f.display}

    def submit(self) -> None:
        for f in self.query(Field):
            f.set_error(None)
        self.query_one("#dialog-error", Static).update("")
        try:
            result = self.check(self.values())
        except ConfigError as exc:
            target = next((f for f in self.query(Field) if f.key == exc.field), None)
            if target is not None:
                target.set_error(str(exc))
                target.control.focus()
            else:
                self.query_one("#dialog-error", Static).update(str(exc))
            return
        self.dismiss(result)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
