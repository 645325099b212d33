"""The plots pane: one tab per plot; only the visible tab draws.

The five plots sit side by side in a strip as wide as five panes, and a tab key scrolls it
to the chosen one. Showing and hiding tabs instead (TabbedContent) changes the layout, and
Textual then lays out and repaints the whole screen: ~130 ms of the UI thread on every
plot-tab key against ~70 ms for a scroll, which repaints the plot's region only; that time
is taken from a training run through the GIL (bench/bench_tui.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Tab, Tabs

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


class PlotStrip(Horizontal):
    """The plots side by side, each as wide as the strip's view; `show` scrolls to one."""

    DEFAULT_CSS = """
    PlotStrip {
        height: 1fr;
        overflow: hidden hidden;
        scrollbar-size: 0 0;
    }
    PlotStrip > * {
        width: 100%;
        height: 1fr;
    }
    """

    def show(self, tab: str) -> None:
        if not self.is_attached:  # removed meanwhile (the app closing)
            return
        index = [t for t, _ in TABS].index(tab)
        # force: the strip's overflow is hidden, so that no wheel or drag scrolls it
        self.scroll_to(x=index * self.scrollable_content_region.width, animate=False,
                       immediate=True, force=True)
        # Textual's scroll path compares the visible widgets with those of the last scroll;
        # after a layout pass (a status line's update makes one) it has none to compare
        # with, takes every widget as moved and repaints the whole screen (~240 ms here,
        # bench/bench_tui.py). Then a layout pass goes with the scroll: it compares with
        # the last layout and repaints the strip only. (Textual 8: Compositor._visible_map.
        # Handing the scroll path the last layout's map instead, which saves the pass, left
        # a closed notification on screen: tried and dropped.)
        compositor = getattr(self.screen, "_compositor", None)
        if getattr(compositor, "_visible_map", True) is None:
            self.refresh(layout=True)


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
        yield Tabs(*[Tab(label, id=name) for name, label in TABS], id="plot-tabs")
        with PlotStrip(id="plot-strip"):
            yield LossPlot(id="plot-loss")
            yield PredictionsView()
            yield ErrorsPlot(id="plot-errors")
            yield SweepPlot(id="plot-sweep")
            yield CompareView()

    @property
    def active(self) -> str:
        tabs = self.query("#plot-tabs")
        return (tabs.first(Tabs).active if tabs else "") or TABS[0][0]

    def set_tab(self, tab: str) -> None:
        self.query_one("#plot-tabs", Tabs).active = tab

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
        if not self.is_mounted or not self.query(PlotStrip):
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

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tabs.id != "plot-tabs":
            return
        event.stop()
        strips = self.query(PlotStrip)
        if strips:
            strips.first().show(self.active)
        self.redraw()

    def on_resize(self) -> None:
        strips = self.query(PlotStrip)
        if strips:
            strips.first().call_after_refresh(strips.first().show, self.active)

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
