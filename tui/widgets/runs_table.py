"""A table for many rows: draws only the lines on screen, and takes a new set of rows in
the time it takes to store a list.

Textual's DataTable measures every cell of every row it is given and keeps per-row
bookkeeping: putting 3,000 runs in it took about a second, and each keystroke of a filter
that changes the rows would pay that again. Here the columns have widths (set by the
caller), the rows are a list of cells, and a line is drawn when it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


class Cell(NamedTuple):
    """One cell: text, a Rich style, left or right."""

    text: str
    style: str = ""
    justify: str = "left"

    def __str__(self) -> str:
        return self.text


class Column(NamedTuple):
    key: str
    label: str
    width: int  # cells, without the padding of one on each side
    justify: str = "left"


@lru_cache(maxsize=512)
def _style(spec: str) -> Style:
    return Style.parse(spec) if spec else Style()


def fit(text: str, width: int, justify: str = "left") -> str:
    """`text` in exactly `width` cells: cut with an ellipsis, or padded."""
    n = cell_len(text)
    if n > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = " " * (width - n)
    return pad + text if justify == "right" else text + pad


class RunsTable(ScrollView, can_focus=True):
    """Rows of cells under a header that stays put; a row cursor (up, down, page up/down,
    home, end, a click); a click on a header says which column."""

    DEFAULT_CSS = """
    RunsTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .runs-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        &:dark > .runs-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .runs-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .runs-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .runs-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES = {"runs-table--header", "runs-table--even-row", "runs-table--cursor"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "to(0)", "First", show=False),
        Binding("end,ctrl+end", "to(-1)", "Last", show=False),
    ]
    PADDING = 1  # a space either side of each cell

    class RowHighlighted(Message):
        """The cursor moved to another row (by a key, a click or `move_cursor`)."""

        def __init__(self, table: RunsTable, row_key: str, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.cursor_row = cursor_row

        @property
        def control(self) -> RunsTable:
            return self.table

    class HeaderSelected(Message):
        """A column's header was clicked."""

        def __init__(self, table: RunsTable, column_key: str) -> None:
            super().__init__()
            self.table = table
            self.column_key = column_key

        @property
        def control(self) -> RunsTable:
            return self.table

    def __init__(self, columns: Sequence[Column] = (), **kw) -> None:
        super().__init__(**kw)
        self.columns: list[Column] = list(columns)
        self.keys: list[str] = []
        self.rows: list[tuple[Cell, ...]] = []
        self._index: dict[str, int] = {}
        self.cursor_row = 0

    # -- data
    @property
    def row_count(self) -> int:
        return len(self.keys)

    def set_columns(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self._resize()

    def set_rows(self, keys: list[str], rows: list[tuple[Cell, ...]]) -> None:
        """Replace every row. The cursor stays on the row with the same key where it is
        still there, else at the same place; no RowHighlighted is posted for it."""
        old = self.row_key(self.cursor_row)
        self.keys, self.rows = keys, rows
        self._index = {k: i for i, k in enumerate(keys)}
        where = self._index.get(old) if old is not None else None
        self.cursor_row = where if where is not None else \
            max(0, min(self.cursor_row, len(keys) - 1))
        self._resize()
        self.call_after_refresh(self._scroll_to_cursor)

    def update_row(self, key: str, cells: tuple[Cell, ...]) -> None:
        """New cells for one row (drawn again only if it is on screen)."""
        i = self._index.get(key)
        if i is None:
            return
        self.rows[i] = cells
        if 0 <= i - int(self.scroll_offset.y) < self._body_height:
            self.refresh_line(i + 1)  # a virtual line: the header is line 0

    def row_key(self, index: int) -> str | None:
        return self.keys[index] if 0 <= index < len(self.keys) else None

    def get_row_index(self, key: str) -> int:
        """The row of a key; KeyError when it is not in the table."""
        return self._index[key]

    @property
    def total_width(self) -> int:
        return sum(c.width + 2 * self.PADDING for c in self.columns)

    def _resize(self) -> None:
        self.virtual_size = Size(self.total_width, len(self.keys) + 1)
        self.refresh()

    # -- cursor
    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on row `row` (clamped); posts RowHighlighted when it moved."""
        if not self.keys:
            return
        row = max(0, min(row, len(self.keys) - 1))
        moved = row != self.cursor_row
        self.cursor_row = row
        self._scroll_to_cursor()
        self.refresh()
        if moved:
            self.post_message(self.RowHighlighted(self, self.keys[row], row))

    @property
    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        top, body = int(self.scroll_offset.y), self._body_height
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + body:
            self.scroll_to(y=self.cursor_row - body + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta)

    def action_page(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta * self._body_height)

    def action_to(self, row: int) -> None:
        self.move_cursor(row=row if row >= 0 else len(self.keys) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:  # the header
            x = offset.x + int(self.scroll_offset.x)
            for column in self.columns:
                x -= column.width + 2 * self.PADDING
                if x < 0:
                    self.post_message(self.HeaderSelected(self, column.key))
                    break
            return
        self.move_cursor(row=int(self.scroll_offset.y) + offset.y - 1)

    # -- drawing
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = (int(v) for v in self.scroll_offset)
        base = self.rich_style
        if y == 0:
            header = base + self.get_component_rich_style("runs-table--header")
            cells = [Cell(c.label) for c in self.columns]
            strip = self._line(cells, header, override=True)
        else:
            index = scroll_y + y - 1
            if index >= len(self.rows):
                return Strip.blank(width, base)
            if index == self.cursor_row:
                style = base + self.get_component_rich_style("runs-table--cursor")
                strip = self._line(self.rows[index], style, override=True)
            else:
                style = base + self.get_component_rich_style("runs-table--even-row") \
                    if index % 2 == 0 else base
                strip = self._line(self.rows[index], style)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, base)

    def _line(self, cells: Sequence[Cell], style: Style, *, override: bool = False) -> Strip:
        """One row's segments. `override`: the row's style wins over the cells' (the cursor
        row reads as one bar; the header's labels are plain)."""
        pad = " " * self.PADDING
        segments = []
        for column, cell in zip(self.columns, cells, strict=False):
            text = pad + fit(cell.text, column.width, cell.justify or column.justify) + pad
            cell_style = _style(cell.style)
            segments.append(Segment(text, style + cell_style + style if override
                                    else style + cell_style))
        return Strip(segments, self.total_width)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self.total_width

    def __rich_repr__(self):
        yield "rows", len(self.keys)
