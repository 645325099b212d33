"""The plots pane: one tab per plot; only the visible tab draws."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import TabbedContent, TabPane

from tui.run_view import RunView
from tui.widgets.plots import (
    SMOOTHING_STEPS,
    CompareView,
    ErrorsPlot,
    LossPlot,
    PredictionsView,
    SweepPlot,
)

TABS = (("loss", "Loss"), ("predictions", "Predictions"), ("errors", "Errors"),
        ("sweep", "Sweep"), ("compare", "Compare"))


class PlotsPane(Vertical):
    """Loss, Predictions, Errors, Sweep and Compare tabs of the viewed run."""

    BORDER_TITLE = "3 Plots"
    BINDINGS = [
        Binding("l", "toggle_log", "Log scale", id="plots.log",
                tooltip="loss plot: log or linear y axis"),
        Binding("plus,equals_sign", "smoothing(1)", "Smooth+", id="plots.smooth_more",
                tooltip="loss plot: more smoothing (EMA 0 .6 .9 .97 .99)"),
        Binding("minus", "smoothing(-1)", "Smooth-", id="plots.smooth_less",
                tooltip="loss plot: less smoothing"),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.view: RunView | None = None
        self.compare: list[RunView] = []
        self.baseline: str | None = None  # the run id Compare draws the others against

    def compose(self) -> ComposeResult:
        with TabbedContent(id="plot-tabs", initial="loss"):
            with TabPane("Loss", id="loss"):
                yield LossPlot(id="plot-loss")
            with TabPane("Predictions", id="predictions"):
                yield PredictionsView()
            with TabPane("Errors", id="errors"):
                yield ErrorsPlot(id="plot-errors")
            with TabPane("Sweep", id="sweep"):
                yield SweepPlot(id="plot-sweep")
            with TabPane("Compare", id="compare"):
                yield CompareView()

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    def set_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def step_tab(self, delta: int) -> None:
        names = [t for t, _ in TABS]
        self.set_tab(names[(names.index(self.active) + delta) % len(names)])

    def show(self, view: RunView | None) -> None:
        self.view = view
        self.redraw()

    def show_compare(self, views: list[RunView], baseline: str | None = None) -> None:
        """The runs of the Compare tab; `baseline`, one of them, is drawn against."""
        self.compare = views
        self.baseline = baseline
        self.redraw()

    def redraw(self, force: bool = False) -> bool:
        """Draw the visible tab if its data changed; the others draw when shown.

        A run loaded by a worker can arrive while the app is closing and the tabs are
        already gone: then there is nothing to draw."""
        if not self.is_mounted or not self.query(TabbedContent):
            return False
        tab = self.active
        kind = {"loss": LossPlot, "predictions": PredictionsView, "errors": ErrorsPlot,
                "sweep": SweepPlot}.get(tab, CompareView)
        widgets = self.query(kind)
        if not widgets:
            return False
        widget = widgets.first()
        if kind is CompareView:
            return widget.show_many(self.compare, baseline=self.baseline, force=force)
        return widget.show(self.view, force=force)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.redraw()

    def action_toggle_log(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_scale = not plot.log_scale
        self.set_tab("loss")
        self.redraw()
        self.notify(f"loss plot: {'log' if plot.log_scale else 'linear'} scale", timeout=2)

    def action_smoothing(self, delta: int) -> None:
        plot = self.query_one(LossPlot)
        i = SMOOTHING_STEPS.index(plot.smoothing) if plot.smoothing in SMOOTHING_STEPS else 1
        plot.smoothing = SMOOTHING_STEPS[max(0, min(len(SMOOTHING_STEPS) - 1, i + delta))]
        self.set_tab("loss")
        self.redraw()
