"""Every key of the lab, in one table."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class HelpScreen(ModalScreen[None]):
    """The key table; Escape, F1 or ? closes it."""

    BINDINGS = [Binding("escape,f1,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table("key", "action", "where", box=None, padding=(0, 2, 0, 0))
        for key, action, where in self.rows:
            table.add_row(key, action, where)
        with VerticalScroll(classes="dialog help"):
            yield Label("cnnprobe-tui keys (ctrl+p: command palette)", classes="dialog-title")
            yield Static(table)
            yield Static("Fields: type to edit, tab/shift+tab to move, esc to leave a field "
                         "so letter keys act. Mouse works everywhere too.", classes="dim")
