"""Per-layer linear probes of a run: the table, R² against depth as a plot, and the panel
that shows them side by side (or one, or neither)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable

from cnnprobe.report.formatting import num, r2_bar
from tui.widgets.plots import LazyPlot

if TYPE_CHECKING:
    import pandas as pd

VIEWS = ("both", "table", "plot", "off")
COLUMNS = (("depth", "#"), ("layer", "layer"), ("module", "module"), ("kind", "kind"),
           ("features", "features"), ("r2", "R²"), ("bar", ""), ("mae", "MAE"))


def _r2(value: Any) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return num(value)
    return f"{value:.3f}".replace("-0.000", "0.000")


def probe_rows(table: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The table's rows as dicts (an empty list for None)."""
    return [] if table is None else table.to_dict(orient="records")


class ProbeTable(DataTable):
    """One row per layer: depth, layer, module, kind, features, R² (with a bar), MAE."""

    DEFAULT_CSS = """
    ProbeTable {
        height: 1fr;
        width: auto;
        max-width: 100%;
        margin-right: 1;
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="none", zebra_stripes=True, **kw)
        self.can_focus = False  # the screen's keys (up/down: layers) stay the screen's

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show(self, table: pd.DataFrame | None) -> None:
        self.clear()
        for r in probe_rows(table):
            self.add_row(str(r.get("depth", "")), str(r.get("layer", "")),
                         str(r.get("module", "")), str(r.get("kind", "")),
                         str(r.get("features", "")), Text(_r2(r.get("r2")), justify="right"),
                         Text(r2_bar(r.get("r2"), 8), style="green"),
                         Text(num(r.get("mae")), justify="right"))


class ProbePlot(LazyPlot):
    """R² of each layer's probe against its depth (0 = the input); below -1 drawn at -1."""

    DEFAULT_CSS = """
    ProbePlot {
        height: 1fr;
        width: 1fr;
    }
    """

    FAILED = "the R² plot could not be drawn"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.rows: list[dict[str, Any]] = []

    def show(self, table: pd.DataFrame | None) -> None:
        self.rows = probe_rows(table)
        self._built_for = None
        self.refresh()

    def data_key(self) -> object:
        return id(self.rows)

    def draw_figure(self) -> None:
        plt = self.plt
        if not self.rows:
            plt.title("no probes yet: press p")
            return
        depths = [float(r["depth"]) for r in self.rows]
        r2 = [r.get("r2") for r in self.rows]
        ys = [max(float(v), -1.0) if isinstance(v, (int, float)) and math.isfinite(v)
              else -1.0 for v in r2]
        plt.plot(depths, ys, marker="braille", label="R²")
        plt.scatter(depths, ys, marker="dot")
        plt.ylim(min([0.0, *ys]), 1.0)
        if len(depths) <= 16:
            plt.xticks(depths, [str(int(d)) for d in depths])
        plt.xlabel("layer depth (0 = input)")
        plt.title("linear probe R² by depth")


class ProbePanel(Horizontal):
    """The table beside the plot, titled with where the probes came from; hidden until there
    is a table. Its view is both, the table, the plot or off; unset, it is the table alone
    on a narrow screen and both otherwise."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.table: pd.DataFrame | None = None
        self.view: str | None = None
        self.narrow = False

    def compose(self) -> ComposeResult:
        yield ProbeTable(id="act-probe-table")
        yield ProbePlot(id="act-probe-plot")

    def on_mount(self) -> None:
        self.update_display()

    def show(self, table: pd.DataFrame, note: str) -> None:
        self.table = table
        self.query_one(ProbeTable).show(table)
        self.query_one(ProbePlot).show(table)
        self.border_title = f"linear probes: {note} · v: view"
        if self.view == "off":  # new results were asked for: show them
            self.view = None
        self.update_display()

    def current_view(self) -> str:
        if self.view is not None:
            return self.view
        return "table" if self.narrow else "both"

    def cycle_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.current_view()) + 1) % len(VIEWS)]
        self.update_display()

    def set_narrow(self, narrow: bool) -> None:
        self.narrow = narrow
        self.update_display()

    def update_display(self) -> None:
        view = self.current_view()
        self.display = self.table is not None and view != "off"
        if self.is_mounted:
            self.query_one(ProbeTable).display = view in ("both", "table")
            self.query_one(ProbePlot).display = view in ("both", "plot")
