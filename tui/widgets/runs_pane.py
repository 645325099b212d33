"""The runs pane: the store's runs, newest first unless sorted otherwise, optionally
filtered; the cursor row is the run the plots show.

Built for stores of thousands of runs: the table (`RunsTable`) draws only the lines on
screen, a store poll that changed nothing does nothing, and one that changed cells but not
which rows show or their order redraws those rows only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Static

from cnnprobe.shown import shown
from cnnprobe.store.query import (
    DEFAULT_SORT,
    SORT_KEYS,
    filter_runs,
    final_mae,
    searchable,
    sort_runs,
)
from tui.scheduler import Marks
from tui.widgets.runs_table import Cell, Column, RunsTable

STATUS_STYLE = {"running": "bold cyan", "finished": "green", "failed": "bold red",
                "cancelled": "yellow", "interrupted": "magenta", "skipped": "dim", "queued": "dim"}
COLUMNS = (("mark", "★"), ("status", "status"), ("name", "name"), ("task", "task"),
           ("model", "model"), ("res", "res"), ("mae", "MAE"), ("when", "when"), ("id", "id"))
SORTABLE = tuple(key for key, _ in COLUMNS)  # every column; "mark": marked runs first
NAME_WIDTH = (8, 32)  # the name column takes the room left, within these bounds
MARKS = {"baseline": "◆", "marked": "★", "": " "}
FILTER_HELP = "filter: words, or status:failed model:resnet tag:x study:y name: res: id:, !not"

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


class RunFilter(Input):
    """The one-line filter above the table: live as typed; enter or down goes to the
    table keeping it, escape clears it."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False),
                Binding("down", "leave", "To the table", show=False)]

    class Closed(Message):
        """The user is done with the filter (cleared or kept); the table takes focus."""

    def action_clear(self) -> None:
        self.value = ""
        self.post_message(self.Closed())

    def action_leave(self) -> None:
        self.post_message(self.Closed())

    def on_blur(self) -> None:
        if not self.value.strip() and self.parent is not None:  # nothing to keep showing
            self.parent.display = False


class RunsPane(Vertical):
    """A table of stored runs; m marks runs for Compare, b pins the baseline, / filters,
    o / O sort, the cursor selects."""

    BORDER_TITLE = "4 Runs"
    DEFAULT_CSS = """
    RunsPane #runs-filter-row {
        height: 1;
    }
    RunsPane #runs-filter {
        width: 1fr;
    }
    RunsPane #runs-count {
        width: 14;
        color: $text-muted;
        text-align: right;
    }
    """
    BINDINGS = [
        Binding("o", "sort_next", "Sort", id="runs.sort",
                tooltip="runs: sort by the next column (or click a column's header)"),
        Binding("O", "sort_reverse", "Reverse", id="runs.reverse", show=False,
                tooltip="runs: reverse the order (or click the sorted column's header again)"),
    ]

    class Selected(Message):
        """The cursor moved to another run."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self, marks: Marks | None = None, **kw) -> None:
        super().__init__(**kw)
        self.records: list = []  # every run, as the store lists them (newest first)
        self.shown: list = []  # the rows of the table: filtered and sorted
        # What is marked and the baseline: the lab's policy (tui.scheduler.Marks), shown here.
        self.marks = marks if marks is not None else Marks()
        self.query_text = ""
        self.sort: tuple[str, bool] = DEFAULT_SORT
        self._by_id: dict[str, object] = {}
        self._search: dict[str, dict] = {}  # id -> its searchable values (query.py)
        self._signature: tuple = ()
        self._bucket = -1
        self._rows: dict[str, tuple[Cell, ...]] = {}  # every run's cells
        self._stamps: dict[str, tuple] = {}  # what each run's cells were made from
        self._content: dict[str, int] = {}  # each column's widest cell among all runs
        self._displayed: dict[str, tuple[Cell, ...]] = {}  # what the table shows
        self._table_ids: list[str] = []  # its rows, in order
        self._layout: tuple = ()  # column widths and labels the table was built with

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-message", markup=False)
        with Horizontal(id="runs-filter-row"):
            yield RunFilter(placeholder=FILTER_HELP, id="runs-filter", compact=True)
            yield Static("", id="runs-count", markup=False)
        yield RunsTable([Column(key, label, len(label)) for key, label in COLUMNS],
                        id="runs-table")

    def on_mount(self) -> None:
        self.query_one("#runs-filter-row").display = False

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def set_message(self, text: str) -> None:
        msg = self.query_one("#runs-message", Static)
        msg.update(text)
        msg.display = bool(text)

    @property
    def selected_id(self) -> str | None:
        table = self.table
        return table.row_key(table.cursor_row)

    @property
    def marked(self) -> list[str]:
        return self.marks.marked

    @property
    def baseline(self) -> str | None:
        return self.marks.baseline

    @property
    def compared(self) -> list[str]:
        """The runs the Compare tab draws: the baseline first, then the marked ones."""
        return self.marks.compared

    # -- data
    def set_records(self, records: Iterable) -> bool:
        """Show these records; does nothing when nothing shown changed (a store poll of an
        idle store), updates changed cells only when the rows stay the same."""
        records = list(records)
        signature = tuple((r.id, r.status, r.metrics.get("mae"), r.name, tuple(r.tags))
                          for r in records)
        bucket = int(clock() // 30)  # the "when" column moves on
        self.records = records  # fresh objects even when unchanged: record() reads them
        self._by_id = {r.id: r for r in records}
        if signature == self._signature and bucket == self._bucket:
            return False
        if signature != self._signature:
            self._search.clear()
        self._signature, self._bucket = signature, bucket
        self._compute_rows()
        self._update()
        self.set_message("" if records else "no runs yet: set up a task and model, then ctrl+r")
        return True

    def record(self, run_id: str | None):
        return self._by_id.get(run_id) if run_id else None

    def _values(self, record) -> dict:
        # Kept until the store's list changes (set_records): a filter keystroke over
        # thousands of runs lower-cases nothing again.
        values = self._search.get(record.id)
        if values is None:
            values = self._search[record.id] = searchable(record)
        return values

    def visible(self, records: list) -> list:
        """These records filtered by the query and ordered by the sort column."""
        shown = filter_runs(records, self.query_text, self._values)
        column, descending = self.sort
        if column == "mark":  # the baseline, then the marked runs in the order marked
            place = {run_id: i for i, run_id in enumerate(self.compared)}
            flagged = sorted((r for r in shown if r.id in place), key=lambda r: place[r.id])
            rest = [r for r in shown if r.id not in place]
            return rest + flagged if descending else flagged + rest
        if (column, descending) == DEFAULT_SORT:
            return shown  # the store's order already
        return sort_runs(shown, column, descending)

    def mark_of(self, run_id: str) -> str:
        if run_id == self.baseline:
            return MARKS["baseline"]
        return MARKS["marked"] if run_id in self.marked else MARKS[""]

    def cells(self, r, ago: str | None = None) -> tuple[Cell, ...]:
        """A run's row; `ago`: its "when", if already known."""
        mae = final_mae(r)
        named = r.has_given_name  # a given name stands out, a made one not
        return (Cell(self.mark_of(r.id), "bold"),
                Cell(shown(r.status), STATUS_STYLE.get(r.status, "")),
                Cell(shown(r.name), "" if named else "dim"),  # never a control character
                Cell(shown(r.task)), Cell(shown(r.model)), Cell(r.resolution),
                Cell(f"{mae:.3g}" if mae is not None else "-", "", "right"),
                Cell(ago if ago is not None else when(r.created_at)), Cell(r.id[:8]))

    def _labels(self) -> dict[str, str]:
        column, descending = self.sort
        arrow = " ▼" if descending else " ▲"
        return {key: label + (arrow if key == column else "") for key, label in COLUMNS}

    def _widths(self, labels: dict[str, str]) -> dict[str, int]:
        """Each column as wide as its widest cell among all runs (typing a filter does not
        make the columns jump) or its label; the name takes the room left, and the table
        scrolls sideways for the rest."""
        widths = {key: max(self._content.get(key, 0), len(labels[key])) for key, _ in COLUMNS}
        names = widths["name"]
        room = (self.content_region.width or 66) - 2  # a vertical scrollbar
        padding = 2 * RunsTable.PADDING
        before_mae = sum(widths[k] + padding for k in ("mark", "status", "task", "model", "res",
                                                       "mae")) + padding
        lo, hi = NAME_WIDTH
        widths["name"] = max(min(lo, names), min(names, hi, room - before_mae))
        return widths

    def _update(self, *, rebuild: bool = False) -> None:
        """Bring the table in line with records, query, sort and marks: the cells that
        changed when the same rows show in the same order, else the whole table."""
        shown = self.visible(self.records)
        ids = [r.id for r in shown]
        labels = self._labels()
        layout = (tuple(self._widths(labels).items()), tuple(labels.values()))
        self.shown = shown
        if not rebuild and layout == self._layout and ids == self._table_ids:
            self._update_cells(ids)
        else:
            self._rebuild(ids, dict(layout[0]), labels)
            self._layout = layout
        self._displayed = {i: self._rows[i] for i in ids}
        self._show_count()

    def _compute_rows(self) -> None:
        """Every run's cells (made again only for runs whose cells changed), and each
        column's widest."""
        old, stamps = self._rows, self._stamps
        rows, new_stamps, made = {}, {}, []
        for r in self.records:
            stamp = (r.status, r.metrics.get("mae"), r.name, when(r.created_at))
            row = old.get(r.id)
            if row is None or stamps.get(r.id) != stamp:
                row = self.cells(r, stamp[3])
                made.append(row)
            rows[r.id], new_stamps[r.id] = row, stamp
        gone = len(rows) < len(old) or any(i not in rows for i in old)
        self._rows, self._stamps = rows, new_stamps
        keys = [key for key, _ in COLUMNS]
        content = dict.fromkeys(keys, 0) if gone or not self._content else self._content
        for row in rows.values() if gone else made:
            for key, cell in zip(keys, row, strict=True):
                if len(cell.text) > content[key]:
                    content[key] = len(cell.text)
        self._content = content

    def _update_cells(self, ids: list[str]) -> None:
        table = self.table
        for run_id in ids:
            row = self._rows[run_id]
            if self._displayed.get(run_id) != row:
                table.update_row(run_id, row)

    def _rebuild(self, ids: list[str], widths: dict[str, int], labels: dict[str, str]) -> None:
        table = self.table
        keep = self.selected_id
        table.set_columns([Column(key, labels[key], widths[key]) for key, _ in COLUMNS])
        table.set_rows(ids, [self._rows[i] for i in ids])
        self._table_ids = ids
        # A rebuild is not the user moving the cursor: only a changed selection is news.
        now = self.selected_id
        if now is not None and now != keep:
            self.post_message(self.Selected(now))

    def _show_count(self) -> None:
        total, n = len(self.records), len(self.shown)
        filtered = bool(self.query_text.strip())
        self.border_title = self.BORDER_TITLE + (f" {n:,}/{total:,}" if filtered else "")
        # a fixed width: a keystroke's new count needs no layout of the screen
        self.query_one("#runs-count", Static).update(f"{n:,}/{total:,}" if filtered else "",
                                                     layout=False)

    def on_resize(self, event: events.Resize) -> None:
        if self.records:
            self._update()  # the name column takes the room there is

    def select(self, run_id: str) -> None:
        """Put the cursor on a run (which then shows in the plots); a filter that hides it
        is cleared."""
        table = self.table
        if run_id in self._by_id and run_id not in self._displayed and self.query_text:
            self.query_one(RunFilter).value = ""
            self.set_query("")
            self.query_one("#runs-filter-row").display = False
        try:
            row = table.get_row_index(run_id)
        except KeyError:  # not in the table (yet)
            return
        if row != table.cursor_row:
            table.move_cursor(row=row)

    # -- marks and the baseline
    def _refresh_mark(self, run_id: str) -> None:
        row = self._rows.get(run_id)
        if row is None:
            return
        cell = Cell(self.mark_of(run_id), "bold")
        self._rows[run_id] = (cell, *row[1:])
        if self.sort[0] == "mark":  # the order changes too
            self._update()
        elif run_id in self._displayed:  # else filtered out
            self._displayed[run_id] = self._rows[run_id]
            self.table.update_row(run_id, self._rows[run_id])

    def show_marks(self, *run_ids: str | None) -> None:
        """Redraw the mark cell of these runs (their marks changed in `self.marks`)."""
        for run_id in dict.fromkeys(r for r in run_ids if r):
            self._refresh_mark(run_id)

    # -- filter
    def open_filter(self) -> None:
        """Show the filter line and put the cursor in it."""
        self.query_one("#runs-filter-row").display = True
        self.query_one(RunFilter).focus()

    def set_query(self, text: str) -> None:
        if text == self.query_text:
            return
        self.query_text = text
        self._update()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            event.stop()
            self.set_query(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "runs-filter":
            event.stop()
            self._close_filter()

    def on_run_filter_closed(self, event: RunFilter.Closed) -> None:
        event.stop()
        self._close_filter()

    def _close_filter(self) -> None:
        field = self.query_one(RunFilter)
        self.set_query(field.value)  # an escape's clearing lands before its Changed
        self.query_one("#runs-filter-row").display = bool(field.value.strip())
        self.table.focus()

    # -- sort
    def sort_by(self, column: str, descending: bool | None = None) -> None:
        """Sort by a column: a new column in its natural direction (A first, smallest
        MAE first, newest first), the same column again reversed."""
        if column not in SORTABLE:
            return
        if descending is None:
            now, was = self.sort
            default = SORT_KEYS[column][1] if column in SORT_KEYS else False
            descending = (not was) if now == column else default
        self.sort = (column, descending)
        self._update(rebuild=True)

    def action_sort_next(self) -> None:
        column = self.sort[0]
        self.sort_by(SORTABLE[(SORTABLE.index(column) + 1) % len(SORTABLE)])
        self._say_sort()

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort[0], not self.sort[1])
        self._say_sort()

    def _say_sort(self) -> None:
        column, descending = self.sort
        label = dict(COLUMNS)[column]
        self.notify(f"runs sorted by {label} {'▼' if descending else '▲'}", timeout=2)

    def on_runs_table_header_selected(self, event: RunsTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_key)

    def on_runs_table_row_highlighted(self, event: RunsTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Selected(event.row_key))
