"""The runs pane: the store's runs, newest first; the cursor row is the run the plots show."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

STATUS_STYLE = {"running": "bold cyan", "finished": "green", "failed": "bold red",
                "cancelled": "yellow", "interrupted": "magenta", "skipped": "dim", "queued": "dim"}
COLUMNS = (("mark", "★"), ("status", "status"), ("task", "task"), ("model", "model"),
           ("res", "res"), ("mae", "MAE"), ("when", "when"), ("id", "id"))

clock: Callable[[], float] = time.time  # tests pin it for stable snapshots


def when(created_at: float, now: float | None = None) -> str:
    """How long ago, as a person reads a run list: 42s, 5m, 3h, then the date."""
    age = (clock() if now is None else now) - created_at
    if age < 60:
        return f"{max(0, int(age))}s ago"
    if age < 3600:
        return f"{int(age // 60)}m ago"
    if age < 86400:
        return f"{int(age // 3600)}h ago"
    return time.strftime("%b %d", time.localtime(created_at))


class RunsPane(Vertical):
    """A table of stored runs; m marks runs for Compare, the cursor selects."""

    BORDER_TITLE = "4 Runs"

    class Selected(Message):
        """The cursor moved to another run."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.records: list = []
        self.marked: list[str] = []
        self._signature: tuple = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-message", markup=False)
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def set_message(self, text: str) -> None:
        msg = self.query_one("#runs-message", Static)
        msg.update(text)
        msg.display = bool(text)

    @property
    def selected_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key
        except Exception:  # noqa: BLE001 - an empty or shrinking table has no cursor row
            return None
        return str(key.value) if key.value is not None else None

    def set_records(self, records: Iterable) -> bool:
        """Show these records (newest first); rebuilds only when something changed."""
        records = list(records)
        signature = tuple((r.id, r.status, r.metrics.get("mae"), r.id in self.marked)
                          for r in records) + (int(clock() // 30),)
        if signature == self._signature:
            return False
        self._signature = signature
        self.records = records
        table = self.table
        keep = self.selected_id
        # A rebuild is not the user moving the cursor: only a changed selection is news.
        with self.prevent(DataTable.RowHighlighted):
            table.clear()
            for r in records:
                mae = r.metrics.get("mae")
                table.add_row(
                    "★" if r.id in self.marked else " ",
                    Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                    r.task, r.model, r.resolution,
                    f"{mae:.3g}" if mae is not None else "-",
                    when(r.created_at), r.id[:8], key=r.id)
            if keep is not None and keep in {r.id for r in records}:
                table.move_cursor(row=table.get_row_index(keep), animate=False)
        now = self.selected_id
        if now is not None and now != keep:
            self.post_message(self.Selected(now))
        self.set_message("" if records else "no runs yet: set up a task and model, then ctrl+r")
        return True

    def select(self, run_id: str) -> None:
        """Put the cursor on a run (which then shows in the plots)."""
        table = self.table
        try:
            row = table.get_row_index(run_id)
        except Exception:  # noqa: BLE001 - not in the table (yet)
            return
        if row != table.cursor_row:
            table.move_cursor(row=row, animate=False)

    def toggle_mark(self, run_id: str) -> bool:
        """Mark or unmark a run for Compare; True when it is now marked."""
        if run_id in self.marked:
            self.marked.remove(run_id)
            marked = False
        else:
            self.marked.append(run_id)
            marked = True
        try:
            self.table.update_cell(run_id, "mark", "★" if marked else " ")
        except Exception:  # noqa: BLE001 - a row deleted meanwhile
            pass
        return marked

    def record(self, run_id: str):
        return next((r for r in self.records if r.id == run_id), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Selected(str(event.row_key.value)))
