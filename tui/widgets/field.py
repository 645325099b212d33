"""One labelled config setting, its control, and the engine's error for it under it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static

from cnnprobe.config import ConfigError, Setting

# How the text of an Input becomes a config value.
KINDS = ("int", "opt_int", "float", "str", "opt_str", "choice", "bool")


def option_list(values: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


class Field(Vertical):
    """A form row for one config key such as `task.height`; shows its ConfigError in place."""

    def __init__(self, key: str, label: str, control: Widget, kind: str, *,
                 help: str = "", id: str | None = None) -> None:
        assert kind in KINDS, kind
        super().__init__(id=id or "f-" + key.replace(".", "-"), classes="field")
        self.key = key
        self.kind = kind
        self.label = label
        self.control = control
        self.help = help
        self.error = ""

    def compose(self) -> ComposeResult:
        # A two-column grid (label, control) with the error spanning both under them.
        yield Label(self.label, classes="field-label")
        yield self.control
        yield Static("", classes="field-error", markup=False)

    def on_mount(self) -> None:
        if self.help:
            self.control.tooltip = self.help

    # -- value
    def value(self) -> Any:
        """The control's value as the config wants it; ConfigError if it can't be parsed."""
        c = self.control
        if isinstance(c, Checkbox):
            return bool(c.value)
        if isinstance(c, Select):
            return None if c.value is Select.NULL else c.value
        assert isinstance(c, Input)
        text = c.value.strip()
        if self.kind in ("opt_int", "opt_str") and not text:
            return None
        if self.kind in ("int", "opt_int"):
            try:
                return int(text.replace("_", "").replace(",", ""))
            except ValueError:
                raise ConfigError(self.key, text, "a whole number") from None
        if self.kind == "float":
            try:
                return float(text)
            except ValueError:
                raise ConfigError(self.key, text, "a number such as 0.001 or 1e-3") from None
        return text

    def set_value(self, value: Any) -> None:
        c = self.control
        if isinstance(c, Checkbox):
            c.value = bool(value)
        elif isinstance(c, Select):
            c.value = Select.NULL if value is None else value
        else:
            assert isinstance(c, Input)
            c.value = "" if value is None else (f"{value:g}" if isinstance(value, float)
                                                else str(value))

    # -- error
    def set_error(self, message: str | None) -> None:
        if (message or "") == self.error:
            return
        self.error = message or ""
        self.set_class(bool(message), "-invalid")
        self.query_one(".field-error", Static).update(self.error)


def text_input(value: Any = "", placeholder: str = "", *, id: str | None = None) -> Input:
    text = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    return Input(text, placeholder=placeholder, compact=True,
                 id=id, select_on_focus=True)


def choice(values: tuple[str, ...] | list[str] | list[tuple[str, str]], value: str, *,
           id: str | None = None) -> Select:
    opts = [(v, v) if isinstance(v, str) else v for v in values]
    return Select(opts, value=value, allow_blank=False, compact=True, id=id)


def option_field(st: Setting, value: Any, kind: str = "") -> Field:
    """A dialog's row for one command option (cnnprobe.options): its label and help from
    the option's single definition, keyed by its bare name (what the dialog answers)."""
    return Field(st.name, st.label, text_input(value), kind or st.kind, help=st.help_text)


def setting_field(st: Setting, value: Any, *, choices: list[str] | None = None) -> Field:
    """The form row of one config setting, from its single definition (config.setting):
    label, help, choices or checkbox text, placeholder. `choices` overrides the setting's
    (the devices this machine has)."""
    if st.kind == "bool":
        control: Widget = Checkbox(st.check, bool(value))
    elif st.choices or choices:
        control = choice(list(choices or st.choices), value)
    else:
        control = text_input(value, st.placeholder)
    kind = "choice" if choices else ("str" if st.kind == "str" else st.kind)
    return Field(st.key, st.label, control, kind, help=st.help_text)
