"""The plots of a run, drawn with plotext: loss, predictions, errors, sweeps, compare.

Each plot keeps the (view, version) it last drew and redraws only when that changed,
and thins long series to about two points per column: what a terminal can show.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from cnnprobe.measurement import describe_short
from cnnprobe.shown import shown
from cnnprobe.store.records import SWEEP_KINDS, is_default_name
from tui.run_view import RunView, mae_curve, validation_curve

SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.97, 0.99)


def thin(xs: Sequence[float], ys: Sequence[float], n: int) -> tuple[list, list]:
    """At most n evenly spaced points, always keeping the last."""
    import numpy as np  # on use: the lab paints before numpy loads

    if len(xs) <= n or n < 2:
        return list(xs), list(ys)
    idx = np.unique(np.linspace(0, len(xs) - 1, n).astype(int))
    return [xs[i] for i in idx], [ys[i] for i in idx]


def two_panels(plt, width: int):
    """Two subplots: side by side when there is room, else one over the other."""
    if width >= 100:
        plt.subplots(1, 2)
        return plt.subplot(1, 1), plt.subplot(1, 2)
    plt.subplots(2, 1)
    return plt.subplot(1, 1), plt.subplot(2, 1)


class LazyPlot(PlotextPlot):
    """A plotext widget whose figure is built when it renders, and only when its data or
    size changed (a hidden tab costs nothing; the figure always fits). A figure that fails
    to draw shows the error in place instead of ending the app."""

    FAILED = "this plot could not be drawn"

    # CPU seconds of this process's UI thread that the last new figure took, from building
    # it to Textual's lines on screen: the lab redraws live plots less often when they cost
    # more (lab.plot_interval).
    last_cost_s = 0.0

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._built_for: tuple | None = None
        self._rendered: tuple[tuple, Text] | None = None
        self._new_since: float | None = None  # thread time at which a new figure began

    def data_key(self) -> object:
        """What the figure shows; a new key rebuilds it."""
        raise NotImplementedError

    def draw_figure(self) -> None:
        """Draw into the cleared `self.plt`."""
        raise NotImplementedError

    def title(self, text: str) -> None:
        """The figure's title, cut to fit: plotext leaves out a title longer than the
        plot's own width, the widget's less the y axis's labels (a run's label made the
        Predictions title too long at 140 columns)."""
        width = max(8, (self.size.width or 80) - 10)
        self.plt.title(text if len(text) <= width else text[:width - 1] + "…")

    def build(self) -> None:
        wanted = (self.data_key(), self.size.width, self.size.height)
        if wanted == self._built_for:
            return
        self._built_for = wanted
        self.plt.clear_figure()
        self.draw_figure()

    def render(self):
        start = time.thread_time()
        try:
            self.build()
            # The same figure at the same size and theme renders to the same text: a widget
            # repainted for another reason (a tooltip, a layout pass) reuses it.
            key = (self._built_for, self.app.theme)
            if self._rendered is None or self._rendered[0] != key:
                self._rendered = (key, super().render())
                self._new_since = start
            return self._rendered[1]
        except Exception as exc:  # noqa: BLE001 - a plot that can't draw must not end the app
            self._built_for = None
            self._rendered = None
            return Text(f"{self.FAILED}: {type(exc).__name__}: {exc}", style="red")

    def render_lines(self, crop):
        # A new figure is built and rendered (render) inside this call, and then turned
        # into Textual's lines, which cost about as much again (cProfile, bench_tui's
        # keyed run): the cost is the sum.
        self._new_since = None  # a figure rendered outside this call is not timed here
        lines = super().render_lines(crop)
        if self._new_since is not None:
            LazyPlot.last_cost_s = time.thread_time() - self._new_since
            self._new_since = None
        return lines


class RunPlot(LazyPlot):
    """A plot of one run's data. `show` only notes what to draw."""

    EMPTY = "no run selected: pick one in Runs (4) or train one (ctrl+r)"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.view: RunView | None = None
        self._shown: tuple | None = None
        self._series = 0

    def show(self, view: RunView | None, *, force: bool = False) -> bool:
        """Draw `view` if it changed since it was last shown; True when it will redraw."""
        key = self.key_of(view)
        if not force and key == self._shown:
            return False
        self.view = view
        self._shown = key
        if force:
            self._built_for = None
        self.refresh()
        return True

    def key_of(self, view: RunView | None) -> tuple:
        return (id(view), view.version if view else -1)

    def data_key(self) -> object:
        return self._shown

    def draw_figure(self) -> None:
        self._series = 0
        if self.view is None:
            self.title(self.EMPTY)
        else:
            self.draw(self.view)

    def draw(self, view: RunView) -> None:
        raise NotImplementedError

    @property
    def points(self) -> int:
        return max(40, 2 * (self.size.width or 80))

    def has_data(self) -> bool:
        """Whether the figure has data series (rather than an empty-state title)."""
        self.build()
        return bool(self._series)


class LossPlot(RunPlot):
    """Training loss (smoothed) and the validation curve against step."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.log_scale = False
        self.smoothing = 0.6
        # The smoothed curve so far, extended as rows arrive: a live run's redraw does not
        # go over its whole history again.
        self._curve_of: tuple = ()
        self._steps: list[float] = []
        self._smooth: list[float] = []
        self._ema = 0.0

    def key_of(self, view: RunView | None) -> tuple:
        return super().key_of(view) + (self.log_scale, self.smoothing)

    def scaled(self, xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
        """log10 of the positive values on a log scale. (plotext's own log scale rescales
        its data in place at every build, so a figure drawn twice would be wrong.)"""
        if not self.log_scale:
            return list(xs), list(ys)
        keep = [(x, math.log10(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
        return [x for x, _ in keep], [y for _, y in keep]

    def smoothed(self, view: RunView) -> tuple[list[float], list[float]]:
        rows, a = view.train_history, self.smoothing
        if self._curve_of != (id(view), a) or len(rows) < len(self._steps):
            self._curve_of, self._steps, self._smooth, self._ema = (id(view), a), [], [], 0.0
        for r in rows[len(self._steps):]:
            self._ema = a * self._ema + (1 - a) * float(r["loss"])
            self._steps.append(float(r["step"]))
            self._smooth.append(self._ema / (1 - a ** len(self._steps)) if a else self._ema)
        return self._steps, self._smooth

    def draw(self, view: RunView) -> None:
        plt = self.plt
        self._series = 0
        steps, losses = self.smoothed(view)
        xs, ys = self.scaled(*thin(steps, losses, self.points))
        if xs:
            plt.plot(xs, ys, label=f"train {view.loss_name}", marker="braille")
            self._series += 1
        vs, vv = self.scaled(*validation_curve(view)[:2])
        if vs:
            plt.plot(vs, vv, label=validation_curve(view)[2], marker="dot")
            self._series += 1
        if self.log_scale and (ys or vv):
            lo, hi = min(ys + vv), max(ys + vv)
            ticks = [t + math.log10(m) for t in range(math.floor(lo), math.ceil(hi) + 1)
                     for m in (1, 2, 5) if lo <= t + math.log10(m) <= hi]
            if len(ticks) < 2:
                ticks = [lo, hi]
            plt.yticks(ticks, [f"{10 ** t:.2g}" for t in ticks])
        plt.xlabel("step")
        smooth = f", smoothing {self.smoothing:g}" if self.smoothing else ""
        scale = ", log" if self.log_scale else ""
        if not self._series:
            self.title(f"{view.label}: waiting for the first step")
        else:
            self.title(f"{view.label} loss{scale}{smooth}")


class EvaluationPlot(RunPlot):
    """A plot of the run's last predictions: redrawn when they change, not at every step
    of a training run (a plot-tab key would otherwise rebuild it every time)."""

    def key_of(self, view: RunView | None) -> tuple:
        return (id(view), view.run_id, view.evaluated) if view else (None,)


class PredictionsPlot(EvaluationPlot):
    """Histogram of the predictions over the histogram of the labels."""

    def draw(self, view: RunView) -> None:
        import numpy as np  # on use: the lab paints before numpy loads

        self._series = 0
        if view.predictions is None or view.labels is None:
            self.title(f"{view.label}: predictions appear when the run ends")
            return
        preds = np.asarray(view.predictions, dtype=np.float64)
        labels = np.asarray(view.labels, dtype=np.float64)
        finite = preds[np.isfinite(preds)]
        edges = np.histogram_bin_edges(np.concatenate([finite, labels]), bins=30)
        centers = ((edges[:-1] + edges[1:]) / 2).tolist()
        pred_counts = np.histogram(finite, edges)[0].tolist()
        label_counts = np.histogram(labels, edges)[0].tolist()
        self.plt.bar(centers, pred_counts, label="predictions", width=0.8, reset_ticks=False)
        self.plt.plot(centers, label_counts, label="labels", marker="braille")
        ticks = np.linspace(edges[0], edges[-1], 6)
        self.plt.xticks(ticks.tolist(), [f"{t:.3g}" for t in ticks])
        self.title(f"{view.label}: predictions over the labels (n={len(labels)})")
        self._series = 2


def describe_table(view: RunView | None) -> Table | str:
    """pandas describe() of predictions and labels, as the notebook printed it."""
    if view is None or view.predictions is None or view.labels is None:
        return "no predictions yet"
    import pandas as pd  # here: the lab paints before pandas is imported

    df = pd.DataFrame({"pred": view.predictions, "label": view.labels}).describe()
    table = Table("", "pred", "label", box=None, padding=(0, 1), title="describe()",
                  caption=describe_short(view.measured) if view.measured else None)
    for stat, row in df.iterrows():
        table.add_row(str(stat), f"{row['pred']:.4g}", f"{row['label']:.4g}")
    return table


class PredictionsView(Horizontal):
    """The histogram with the describe() table beside it."""

    def compose(self) -> ComposeResult:
        yield PredictionsPlot(id="plot-predictions")
        yield Static("", id="describe")

    def show(self, view: RunView | None, *, force: bool = False) -> bool:
        redrew = self.query_one(PredictionsPlot).show(view, force=force)
        if redrew:
            self.query_one("#describe", Static).update(describe_table(view))
        return redrew


class ErrorsPlot(EvaluationPlot):
    """Absolute error against label, the notebook's scatter, with the binned mean."""

    def draw(self, view: RunView) -> None:
        import numpy as np  # on use: the lab paints before numpy loads

        self._series = 0
        if view.predictions is None or view.labels is None:
            self.title(f"{view.label}: errors appear when the run ends")
            return
        labels = np.asarray(view.labels, dtype=np.float64)
        errors = np.abs(np.asarray(view.predictions, dtype=np.float64) - labels)
        order = np.argsort(labels)
        xs, ys = thin(labels[order].tolist(), errors[order].tolist(), 4 * self.points)
        self.plt.scatter(xs, ys, label="|error|", marker="dot")
        from cnnprobe.metrics import error_by_label  # numpy and pandas: on use

        binned = error_by_label(labels, errors, bins=20).dropna(subset=["mae"])
        self.plt.plot(binned.label_mid.tolist(), binned.mae.tolist(), label="binned MAE")
        self.plt.xlabel("label")
        self.title(f"{view.label}: absolute error against label")
        self._series = 2


class SweepPlot(RunPlot):
    """MAE against resolution (training resolution marked) and against distractor count."""

    def key_of(self, view: RunView | None) -> tuple:
        return (id(view), view.run_id, view.swept) if view else (None,)

    def draw(self, view: RunView) -> None:
        self._series = 0
        sweeps = [(kind, view.sweeps[kind]) for kind in SWEEP_KINDS
                  if view.sweeps.get(kind) is not None and len(view.sweeps[kind])]
        if not sweeps:
            self.title(f"{view.label}: no sweeps yet; s: resolution sweep, "
                       "d: distractor sweep")
            return
        panels = two_panels(self.plt, self.size.width) if len(sweeps) == 2 else (self.plt,)
        for panel, (kind, table) in zip(panels, sweeps, strict=True):
            xs = table[kind].astype(float).tolist()
            panel.plot(xs, table["mae"].tolist(), label="MAE", marker="dot")
            trained = view.config.task.height if kind == "resolution" else \
                view.config.task.distractors
            panel.vertical_line(float(trained), color="red")
            what = "size" if kind == "resolution" else "distractors"
            panel.title(f"{(view.run_id or '')[:8]} MAE vs {what} (red: trained, {trained})")
            other = "   (d: distractor sweep)" if kind == "resolution" else \
                "   (s: resolution sweep)"
            panel.xlabel(kind + (other if len(sweeps) == 1 else ""))
            self._series += 1


def compare_label(view: RunView) -> str:
    """A run in a legend: its id, and its name where one was given, else model and size."""
    c = view.config
    short = (view.run_id or "new")[:6]
    if view.name and not is_default_name(view.name, c.task.name, c.model.name,
                                         c.task.height, view.run_id or ""):
        return f"{short} {shown(view.name[:24])}"
    return f"{short} {c.model.name} {c.task.height}"


def relative(xs: list[float], ys: list[float], base_x: list[float], base_y: list[float]
             ) -> tuple[list[float], list[float]]:
    """ys minus the baseline at the same x (linear between the baseline's points), where
    the baseline has points around x: nothing is extrapolated."""
    import numpy as np  # on use: the lab paints before numpy loads

    if not base_x or not xs:
        return [], []
    bx, by = np.asarray(base_x, dtype=np.float64), np.asarray(base_y, dtype=np.float64)
    order = np.argsort(bx)
    bx, by = bx[order], by[order]
    keep = [(x, y) for x, y in zip(xs, ys, strict=True) if bx[0] <= x <= bx[-1]]
    if not keep:
        return [], []
    kx = np.asarray([x for x, _ in keep])
    diff = np.asarray([y for _, y in keep]) - np.interp(kx, bx, by)
    return kx.tolist(), diff.tolist()


def final_mae(view: RunView) -> float | None:
    mae = view.metrics.get("mae")
    return float(mae) if mae is not None and math.isfinite(mae) else None


class ComparePlot(RunPlot):
    """The compared runs' validation curves and resolution sweeps, overlaid; with a
    baseline pinned (b), each other run as its difference from the baseline, which is the
    zero line."""

    EMPTY = "mark runs with m in Runs (4) to compare them; b pins the baseline"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.views: list[RunView] = []
        self.baseline: RunView | None = None

    def show_many(self, views: list[RunView], *, baseline: str | None = None,
                  force: bool = False) -> bool:
        """Draw these runs; `baseline` (a run id among them) is the one drawn against."""
        self.views = views
        self.baseline = next((v for v in views if v.run_id == baseline), None) \
            if baseline else None
        return self.show(views[0] if views else None, force=force)

    def key_of(self, view: RunView | None) -> tuple:
        # What the curves, the legend and the table under it show of each run: a run in
        # training changes it at each validation, not at each step.
        return tuple((id(v), v.run_id, v.name, v.status, len(v.val_history), v.evaluated,
                      v.swept) for v in self.views) + (id(self.baseline),)

    @property
    def relative(self) -> bool:
        """Whether the runs are drawn against a baseline (one pinned, and others to draw)."""
        return self.baseline is not None and len(self.views) > 1

    def draw(self, view: RunView) -> None:
        self._series = 0
        left, right = two_panels(self.plt, self.size.width)
        if self.relative:
            self.draw_relative(left, right, self.baseline)
            return
        for v in self.views:
            vs, vv, _ = validation_curve(v)
            if vs:
                left.plot(vs, vv, label=compare_label(v), marker="braille")
                self._series += 1
        alone = self.baseline is not None  # the baseline is all there is
        left.title(f"◆ baseline {compare_label(self.baseline)}; m marks runs to draw "
                   "against it" if alone else "validation MAE vs step")
        left.xlabel("step")
        swept = 0
        for v in self.views:
            res = v.sweeps.get("resolution")
            if res is not None and len(res):
                right.plot(res["resolution"].astype(float).tolist(), res["mae"].tolist(),
                           label=compare_label(v), marker="braille")
                swept += 1
        right.title("MAE vs resolution" if swept else "no resolution sweeps among them")
        right.xlabel("resolution")
        self._series += swept

    def draw_relative(self, left, right, base: RunView) -> None:
        """Each run's validation MAE (and resolution sweep) minus the baseline's: below
        zero is better than the baseline."""
        others = [v for v in self.views if v is not base]
        name = compare_label(base)
        bs, bv = mae_curve(base)
        if bs:
            left.plot([bs[0], bs[-1]], [0.0, 0.0], label=f"◆ {name} (baseline)",
                      marker="braille")
            self._series += 1
            for v in others:
                xs, ys = relative(*mae_curve(v), bs, bv)
                if xs:
                    left.plot(xs, ys, label=compare_label(v), marker="braille")
                    self._series += 1
            left.title(f"val MAE − baseline ◆ {name} (below 0: better)")
        else:
            left.title(f"baseline ◆ {name} has no validation MAE yet")
        left.xlabel("step")
        base_sweep = base.sweeps.get("resolution")
        if base_sweep is None or not len(base_sweep):
            right.title(f"no resolution sweep of the baseline ◆ {name[:6]} (s sweeps it)")
            right.xlabel("resolution")
            return
        bx = base_sweep["resolution"].astype(float).tolist()
        right.plot([bx[0], bx[-1]], [0.0, 0.0], label=f"◆ {name} (baseline)",
                   marker="braille")
        swept = 0
        for v in others:
            res = v.sweeps.get("resolution")
            if res is not None and len(res):
                xs, ys = relative(res["resolution"].astype(float).tolist(),
                                  res["mae"].astype(float).tolist(), bx,
                                  base_sweep["mae"].astype(float).tolist())
                if xs:
                    right.plot(xs, ys, label=compare_label(v), marker="braille")
                    swept += 1
        right.title("MAE − baseline vs resolution" if swept else
                    "no other run swept at the baseline's resolutions")
        right.xlabel("resolution")
        self._series += swept


def compare_table(views: list[RunView], baseline: str | None = None) -> Table | str:
    """The compared runs' final MAE, the baseline first, each other run's difference from
    it (green: better, red: worse)."""
    if not views:
        return ""
    base = next((v for v in views if v.run_id == baseline), None) if baseline else None
    base_mae = final_mae(base) if base is not None else None
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for label, justify in (("", "left"), ("run", "left"), ("status", "left"),
                           ("final MAE", "right")):
        table.add_column(label, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    if base is not None:
        table.add_column(f"Δ vs ◆ {(base.run_id or '')[:6]}", justify="right", no_wrap=True)
        table.add_column("Δ %", justify="right", no_wrap=True)
    for v in sorted(views, key=lambda v: v is not base):
        mae = final_mae(v)
        row = ["◆" if v is base else "★", Text(compare_label(v)), shown(v.status),
               f"{mae:.4g}" if mae is not None else "-"]
        if base is not None:
            if v is base:
                row += ["baseline", ""]
            elif mae is None or base_mae is None:
                row += ["-", "-"]
            else:
                delta = mae - base_mae
                style = "green" if delta < 0 else "red" if delta > 0 else ""
                pct = f"{100 * delta / base_mae:+.1f}%" if base_mae else "-"
                row += [Text(f"{delta:+.4g}", style=style), Text(pct, style=style)]
        table.add_row(*row)
    return table


class CompareView(Vertical):
    """The Compare plot with the final-MAE table under it."""

    DEFAULT_CSS = """
    CompareView #compare-table {
        height: auto;
        max-height: 8;
    }
    """

    def compose(self) -> ComposeResult:
        yield ComparePlot(id="plot-compare")
        yield Static("", id="compare-table")

    def show_many(self, views: list[RunView], *, baseline: str | None = None,
                  force: bool = False) -> bool:
        redrew = self.query_one(ComparePlot).show_many(views, baseline=baseline, force=force)
        if redrew:
            table = self.query_one("#compare-table", Static)
            table.update(compare_table(views, baseline))
            table.display = bool(views)
        return redrew
