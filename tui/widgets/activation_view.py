"""One layer's output drawn large: a grid of channel heatmaps, or bars for a vector.

The drawing is `cnnprobe.report.heatmap.render_activation`; this widget only picks the grid's
columns and width so the tiles come out as large as the space allows, and redraws when
its width, the space it sits in, or the settings change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from cnnprobe.report.heatmap import render_activation

if TYPE_CHECKING:
    from cnnprobe.results import Activation

MIN_TILE_WIDTH = 8  # below this a tile's title ("12 -0.3..1.2") is cut to nothing
MAX_COLUMNS = 16


@dataclass(frozen=True)
class ViewSettings:
    """How a layer is drawn; the screen's keys change these."""

    channels: int = 32
    offset: int = 0
    normalize: str = "channel"  # or "layer"
    resample: str = "peak"  # keeps single-pixel markers visible; "area" averages
    cmap: str = "viridis"
    truecolor: bool = True


def grid_layout(n: int, map_hw: tuple[int, int], width: int, height: int,
                footnote: bool) -> tuple[int, int]:
    """(columns, render width) for n tiles of an H x W map: the largest tiles whose grid
    fits width x height; when none fits, as many columns of MIN_TILE_WIDTH as the width
    takes (the view then scrolls)."""
    h, w = map_hw
    best: tuple[int, int] | None = None
    for cols in range(1, min(n, MAX_COLUMNS) + 1):
        rows = math.ceil(n / cols)
        # each tile row: a title line and the map; blank lines between rows and before a
        # "channels a-b of C" footnote (render_grid's layout)
        free = height - rows - (rows - 1) - (2 if footnote else 0)
        map_rows = free // rows
        if map_rows < 1:
            continue
        cw = min((width - (cols - 1)) // cols, math.floor(map_rows * 2 * w / h))
        if best is None or cw > best[1]:
            best = (cols, cw)
    if best is not None and best[1] >= MIN_TILE_WIDTH:
        cols, cw = best
        return cols, cols * cw + (cols - 1)
    cols = max(1, min(n, MAX_COLUMNS, (width + 1) // (MIN_TILE_WIDTH + 1)))
    return cols, width


class ActivationView(Widget):
    """The selected layer's channels (offset .. offset+channels) or its vector as bars."""

    DEFAULT_CSS = """
    ActivationView {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.activation: Activation | None = None
        self.settings = ViewSettings()
        self.message = ""
        self._fit_height = 24
        self._cache: tuple[tuple, Text] | None = None
        self.drawn_channels = 0  # how many tiles the last drawing had (tests, the header)

    def show(self, activation: Activation | None, settings: ViewSettings,
             message: str = "") -> None:
        """Draw `activation` with `settings` (or `message` when there is none)."""
        self.activation, self.settings, self.message = activation, settings, message
        self._cache = None
        self.refresh(layout=True)

    def shown_range(self) -> range:
        """The channel indices the grid shows (empty for a vector)."""
        act = self.activation
        if act is None or act.kind != "map":
            return range(0)
        c = act.shape[0]
        start = min(self.settings.offset, c)
        return range(start, min(c, start + self.settings.channels))

    def text_for(self, width: int, height: int) -> Text:
        """The drawing for a box of width x height cells (cached until something changes)."""
        key = (width, height)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        text = self._draw(max(1, width), max(4, height))
        text.no_wrap = True
        text.overflow = "crop"
        self._cache = (key, text)
        return text

    def _draw(self, width: int, height: int) -> Text:
        act, s = self.activation, self.settings
        if act is None:
            self.drawn_channels = 0
            return Text(self.message or "nothing to show", style="dim")
        if act.kind == "vector":
            self.drawn_channels = 0
            bar_height = max(2, min(16, height - 2))
            text = render_activation(act, width, cmap=s.cmap, truecolor=s.truecolor,
                                     bar_height=bar_height)
        else:
            shown = self.shown_range()
            n = max(1, len(shown))
            cols, render_width = grid_layout(n, act.shape[1:], width, height,
                                              footnote=len(shown) < act.shape[0])
            self.drawn_channels = len(shown)
            text = render_activation(act, render_width, max_channels=s.channels, columns=cols,
                                     normalize=s.normalize, cmap=s.cmap, truecolor=s.truecolor,
                                     offset=s.offset, resample=s.resample)
        body = text.split("\n", allow_blank=True)[1:]  # the screen shows the header line
        return Text("\n").join(body)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # The space the view sits in decides the tile size, so remember it for render().
        self._fit_height = container.height or viewport.height
        return len(self.text_for(width, self._fit_height).split("\n", allow_blank=True))

    def render(self) -> Text:
        return self.text_for(self.content_size.width, self._fit_height)
