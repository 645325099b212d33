"""Feature maps as terminal heatmaps: rich `Text` built from half-block characters.

Each character cell shows two pixels stacked vertically: "▀" with the top pixel as its
foreground colour and the bottom pixel as its background, so pixels come out about square.
A map larger than its box is shrunk by area averaging (each cell pixel is the mean of the
input pixels it covers) or, with resample="peak", by keeping in each cell pixel the covered
value farthest from the map's median, so a single marked pixel (the distance task's
points) stays visible instead of fading into its neighbours. A smaller map grows by the
largest whole factor that fits (nearest neighbour), so pixels stay square and equal.
Without true colour each cell is one of " ░▒▓█" by the mean of its two pixels. Values map
to colours through a colour map sampled at ten points and interpolated linearly;
non-finite pixels are magenta ("?" without colour).

Everything here is deterministic, so tests can assert exact cells.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.text import Text

from cnnprobe.config import ConfigError
from cnnprobe.report.palettes import CMAPS, NORMALIZE, RESAMPLE  # noqa: F401 - re-exported

SHADES = " ░▒▓█"
BARS = " ▁▂▃▄▅▆▇█"
UPPER_HALF = "▀"
NAN_RGB = (255, 0, 255)


def _table(cmap: str) -> np.ndarray:
    if cmap not in CMAPS:
        raise ConfigError("cmap", cmap, f"one of {', '.join(CMAPS)}")
    return np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in CMAPS[cmap]], float)


def apply_cmap(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (clipped; NaN allowed) -> uint8 RGB of shape values.shape + (3,)."""
    table = _table(cmap)
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    pos = np.clip(np.where(bad, 0.0, v), 0.0, 1.0) * (len(table) - 1)
    lo = np.minimum(np.floor(pos).astype(int), len(table) - 2)
    frac = (pos - lo)[..., None]
    rgb = np.rint(table[lo] * (1 - frac) + table[lo + 1] * frac).astype(np.uint8)
    rgb[bad] = NAN_RGB
    return rgb


def value_range(a: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values; (0, 0) when there are none."""
    finite = np.asarray(a, dtype=np.float64)[np.isfinite(a)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def to_unit(a: np.ndarray, vmin: float | None = None, vmax: float | None = None
              ) -> np.ndarray:
    """Scale to [0, 1] by vmin..vmax (default: the array's own range); a flat map is all 0."""
    lo, hi = value_range(a)
    lo = lo if vmin is None else vmin
    hi = hi if vmax is None else vmax
    a = np.asarray(a, dtype=np.float64)
    if hi <= lo:
        return np.where(np.isfinite(a), 0.0, np.nan)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: each output pixel the mean of the input span it covers."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    left, right = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(right, pix + 1) - np.maximum(left, pix), 0.0, None)
    return overlap / (n_in / n_out)


def _peaks(a: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Shrink to oh x ow keeping, per output pixel, the input value farthest from the median."""
    h, w = a.shape
    rows, cols = (np.arange(oh) * h) // oh, (np.arange(ow) * w) // ow
    hi = np.maximum.reduceat(np.maximum.reduceat(a, rows, axis=0), cols, axis=1)
    lo = np.minimum.reduceat(np.minimum.reduceat(a, rows, axis=0), cols, axis=1)
    finite = a[np.isfinite(a)]
    mid = float(np.median(finite)) if finite.size else 0.0
    return np.where(np.abs(hi - mid) >= np.abs(lo - mid), hi, lo)


def fit_pixels(a: np.ndarray, max_w: int, max_h: int, resample: str = "area") -> np.ndarray:
    """Resize a 2-D map to fit max_w x max_h pixels, keeping the aspect ratio: down by area
    average (or "peak", see the module docstring), up by a whole-factor nearest neighbour."""
    if resample not in RESAMPLE:
        raise ConfigError("resample", resample, f"one of {', '.join(RESAMPLE)}")
    a = np.asarray(a, dtype=np.float64)
    h, w = a.shape
    scale = min(max_w / w, max_h / h)
    if scale >= 1:
        k = int(scale)
        return np.repeat(np.repeat(a, k, 0), k, 1)
    oh, ow = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
    if resample == "peak":
        return _peaks(a, oh, ow)
    return _area_matrix(h, oh) @ a @ _area_matrix(w, ow).T


@lru_cache(maxsize=4096)
def _style(top: tuple[int, int, int], bottom: tuple[int, int, int] | None) -> Style:
    return Style(color=Color.from_rgb(*top),
                 bgcolor=Color.from_rgb(*bottom) if bottom is not None else None)


def _map_lines(a: np.ndarray, width_cells: int, height_cells: int, cmap: str,
               vmin: float | None, vmax: float | None, truecolor: bool,
               resample: str = "area") -> list[Text]:
    """One Text per character row of the fitted map (not padded)."""
    px = fit_pixels(a, width_cells, 2 * height_cells, resample)
    v = to_unit(px, vmin, vmax)
    lines = []
    if truecolor:
        rgb = apply_cmap(v, cmap)
        for r in range(0, v.shape[0], 2):
            line = Text()
            for c in range(v.shape[1]):
                bottom = tuple(int(x) for x in rgb[r + 1, c]) if r + 1 < v.shape[0] else None
                line.append(UPPER_HALF, _style(tuple(int(x) for x in rgb[r, c]), bottom))
            lines.append(line)
        return lines
    for r in range(0, v.shape[0], 2):
        pair = v[r:r + 2]
        mean = pair.mean(0)  # NaN if either pixel is
        chars = ["?" if not np.isfinite(m) else SHADES[min(len(SHADES) - 1,
                                                             int(m * len(SHADES)))]
                 for m in mean]
        lines.append(Text("".join(chars)))
    return lines


def render_map(array2d: np.ndarray, width_cells: int, height_cells: int, cmap: str = "viridis",
               vmin: float | None = None, vmax: float | None = None, truecolor: bool = True,
               resample: str = "area") -> Text:
    """A 2-D map as at most width_cells x height_cells character cells (two pixels each);
    vmin..vmax (default: the map's own range) spans the colour map."""
    a = np.asarray(array2d)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"render_map needs a non-empty 2-D array, got shape {a.shape}")
    return Text("\n").join(_map_lines(a, width_cells, height_cells, cmap, vmin, vmax, truecolor,
                                      resample))


def fmt_value(x: float) -> str:
    """A short number for titles: 3 significant digits."""
    return f"{x:.3g}"


def _pad(line: Text, width: int) -> Text:
    line = line.copy()
    line.truncate(width)
    line.pad_right(width - line.cell_len)
    return line


def cell_size_for(total_width: int, columns: int, map_hw: tuple[int, int]) -> tuple[int, int]:
    """Cell size (w, h) of one tile so `columns` tiles and their gaps fill total_width, with
    rows enough for the map's aspect ratio."""
    w = max(1, (total_width - (columns - 1)) // columns)
    h, mw = map_hw
    return w, max(1, math.ceil(w * h / mw / 2))


def render_grid(maps, max_channels: int = 32, columns: int = 8,
                cell_size: tuple[int, int] = (10, 5), normalize: str = "channel",
                cmap: str = "viridis", truecolor: bool = True, offset: int = 0,
                sample: int = 0, resample: str = "area") -> Text:
    """Channels offset .. offset+max_channels of a (C, H, W) array or a map Activation
    (its sample `sample`) as a grid of titled heatmaps; `normalize` is "channel" (each its
    own range) or "layer" (one range for all channels of the layer)."""
    if normalize not in NORMALIZE:
        raise ConfigError("normalize", normalize, f"one of {', '.join(NORMALIZE)}")
    a = np.asarray(maps.sample(sample) if hasattr(maps, "sample") else maps)
    if a.ndim != 3:
        raise ValueError(f"render_grid needs (C, H, W) maps, got shape {a.shape}")
    cw, ch = cell_size
    layer_lo, layer_hi = value_range(a)
    shown = range(min(offset, a.shape[0]), min(a.shape[0], offset + max(0, max_channels)))
    tiles = []
    for c in shown:
        lo, hi = value_range(a[c])
        title = Text(f"{c} {fmt_value(lo)}..{fmt_value(hi)}", style="dim")
        vmin, vmax = (lo, hi) if normalize == "channel" else (layer_lo, layer_hi)
        body = _map_lines(a[c], cw, ch, cmap, vmin, vmax, truecolor, resample)
        body += [Text()] * (ch - len(body))
        tiles.append([_pad(line, cw) for line in [title, *body]])
    rows = []
    for start in range(0, len(tiles), max(1, columns)):
        group = tiles[start:start + columns]
        rows.append(Text("\n").join(Text(" ").join(t[i] for t in group)
                                    for i in range(ch + 1)))
    if len(shown) < a.shape[0]:
        rows.append(Text(f"channels {shown.start}-{shown.stop - 1} of {a.shape[0]}"
                         if len(shown) else f"no channels from {offset} (of {a.shape[0]})",
                         style="dim"))
    return Text("\n\n").join(rows)


def render_vector(vec: np.ndarray, width: int, height: int = 4, cmap: str = "viridis",
                  truecolor: bool = True) -> Text:
    """A vector as vertical bars, `height` rows tall, at most `width` columns: each column the
    mean of consecutive elements; bars rise from min(0, min) to max(0, max)."""
    v = np.asarray(vec, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("render_vector needs a non-empty vector")
    cols = min(width, v.size)
    col = _area_matrix(v.size, cols) @ np.nan_to_num(v)
    lo, hi = min(0.0, float(col.min())), max(0.0, float(col.max()))
    level = to_unit(col, lo, hi) if hi > lo else np.zeros(cols)
    eighths = np.rint(level * height * 8).astype(int)
    colours = apply_cmap(to_unit(col), cmap)
    rows = []
    for r in range(height - 1, -1, -1):  # top row first
        line = Text()
        for c in range(cols):
            fill = int(np.clip(eighths[c] - r * 8, 0, 8))
            style = _style(tuple(int(x) for x in colours[c]), None) if truecolor else ""
            line.append(BARS[fill], style)
        rows.append(line)
    if v.size <= 8:  # few enough to print each value
        rows.append(Text(" ".join(fmt_value(x) for x in v), style="dim"))
    return Text("\n").join(rows)


def layer_header(act) -> str:
    """"name  module  shape  min..max" for an Activation (its first sample's range)."""
    lo, hi = value_range(act.sample(0))
    shape = "×".join(str(s) for s in act.shape)
    return f"{act.name}  {act.module}  {shape}  {fmt_value(lo)}..{fmt_value(hi)}"


def render_activation(act, width: int = 80, *, sample: int = 0, max_channels: int = 32,
                      columns: int = 8, normalize: str = "channel", cmap: str = "viridis",
                      truecolor: bool = True, offset: int = 0, bar_height: int = 4,
                      resample: str = "area") -> Text:
    """Header line, then the channel grid (maps) or bars (vectors), fitted to `width`."""
    head = Text(layer_header(act), style="bold")
    a = act.sample(sample)
    if act.kind == "vector":
        body = render_vector(a, width, bar_height, cmap, truecolor)
    else:
        cols = max(1, min(columns, a.shape[0], max_channels))
        cell = cell_size_for(width, cols, a.shape[1:])
        body = render_grid(a, max_channels, cols, cell, normalize, cmap, truecolor, offset,
                           resample=resample)
    return Text("\n").join([head, body])


def truecolor_available(console: Console | None = None) -> bool:
    """Whether heatmaps should use colour: true colour, or 256 colours (rich maps each
    colour to its nearest palette entry, which keeps the colour map readable)."""
    console = console or Console()
    return console.color_system in ("truecolor", "256")
