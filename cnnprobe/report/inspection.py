"""Write an inspection to a folder: a PNG per layer, the raw tensors, the probe table.

    <out>/00-input.png, 01-<layer>.png, ...   each channel at full resolution, colour-mapped
    <out>/activations.npz                     every captured tensor (keys: safe layer names,
                                              plus `layer_names`, the real names in order)
    <out>/probes.csv, probes.md               the per-layer linear probe table, when given

A map layer's PNG is a grid of up to 32 channels (8 to a row, 2 px gaps, as the notebook
showed them); maps smaller than 32 px grow by a whole factor (nearest neighbour) so each
tile is at least 32 px on its longer side. A vector layer's PNG is a bar chart. A folder
that already holds files is refused unless `overwrite`, and then only this exporter's own
files in it are replaced.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cnnprobe.config import ConfigError
from cnnprobe.report.files import ExportError
from cnnprobe.report.heatmap import NORMALIZE, apply_cmap, to_unit, value_range
from cnnprobe.report.markdown import table
from cnnprobe.results import Activation
from cnnprobe.store.files import kind_of

MAX_CHANNELS = 32
COLUMNS = 8
GAP = 2  # pixels between tiles
MIN_TILE = 32  # a tile's longer side is at least this many pixels
BAR_HEIGHT = 64
BAR_SPAN = 256  # a bar chart is about this wide (each bar at least 1 px)
BACKGROUND = (24, 24, 24)
NPZ_NAME, CSV_NAME, MD_NAME = "activations.npz", "probes.csv", "probes.md"
_OWN = re.compile(r"^\d{2,}-.+\.png$")


def safe_name(name: str) -> str:
    """A layer name usable as a file name and an npz key: "layer1.0" -> "layer1_0"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "layer"


def tile_scale(height: int, width: int) -> int:
    """Whole-number upscale that brings a map's longer side to at least MIN_TILE pixels."""
    return max(1, math.ceil(MIN_TILE / max(height, width)))


def map_grid_image(maps: np.ndarray, max_channels: int = MAX_CHANNELS, columns: int = COLUMNS,
                   normalize: str = "channel", cmap: str = "viridis") -> Image.Image:
    """(C, H, W) -> RGB grid of the first max_channels channels, each at full resolution."""
    c, h, w = maps.shape
    n = min(c, max_channels)
    k = tile_scale(h, w)
    th, tw = h * k, w * k
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    canvas = np.empty((rows * th + (rows - 1) * GAP, cols * tw + (cols - 1) * GAP, 3), np.uint8)
    canvas[:] = BACKGROUND
    layer_lo, layer_hi = value_range(maps)
    for i in range(n):
        lo, hi = value_range(maps[i]) if normalize == "channel" else (layer_lo, layer_hi)
        rgb = apply_cmap(to_unit(maps[i], lo, hi), cmap)
        rgb = np.repeat(np.repeat(rgb, k, 0), k, 1)
        y, x = (i // cols) * (th + GAP), (i % cols) * (tw + GAP)
        canvas[y:y + th, x:x + tw] = rgb
    return Image.fromarray(canvas, "RGB")


def vector_image(vec: np.ndarray, cmap: str = "viridis") -> Image.Image:
    """A bar chart: one bar per element, rising from min(0, min) to max(0, max)."""
    v = np.nan_to_num(np.asarray(vec, dtype=np.float64).ravel())
    bw = max(1, BAR_SPAN // len(v))
    lo, hi = min(0.0, float(v.min())), max(0.0, float(v.max()))
    heights = np.rint(to_unit(v, lo, hi) * BAR_HEIGHT).astype(int) if hi > lo else \
        np.zeros(len(v), int)
    colours = apply_cmap(to_unit(v), cmap)
    canvas = np.empty((BAR_HEIGHT, len(v) * bw, 3), np.uint8)
    canvas[:] = BACKGROUND
    for i, (bar, colour) in enumerate(zip(heights, colours, strict=True)):
        if bar:
            canvas[BAR_HEIGHT - bar:, i * bw:(i + 1) * bw] = colour
    return Image.fromarray(canvas, "RGB")


def layer_image(act: Activation, sample: int = 0, **kw) -> Image.Image:
    """The PNG image of one layer's sample: a channel grid for maps, bars for vectors."""
    if act.kind == "vector":
        return vector_image(act.sample(sample), kw.get("cmap", "viridis"))
    return map_grid_image(act.sample(sample), **kw)


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """The folder export_inspection would write, checked before any work is done: ExportError
    for a file in the way, a folder with files (unless overwrite) or one it cannot create."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder: pass --out a folder path")
    existing = sorted(out.iterdir()) if out.is_dir() else []
    if existing and not overwrite:
        raise ExportError(f"{out} is not empty ({len(existing)} entries, e.g. "
                          f"{existing[0].name}): pass --overwrite to replace its inspection "
                          "files, or --out a new folder")
    for p in existing:  # a FIFO or device where a file of ours goes: never opened
        if _ours(p) and not p.is_symlink() and kind_of(p.lstat().st_mode) is not None:
            raise ExportError(f"{p} is {kind_of(p.lstat().st_mode)}, not a regular file: "
                              "--overwrite never replaces one; pass --out another folder")
    nearest = out if out.is_dir() else next(a for a in out.absolute().parents if a.exists())
    if not nearest.is_dir():
        raise ExportError(f"cannot create {out}: {nearest} is a file, not a folder; pass --out "
                          "a writable folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write to {nearest} (permission denied): pass --out a "
                          "writable folder")
    return out


def _ours(p: Path) -> bool:
    """Whether `p` is named as a file export_inspection writes."""
    return bool(_OWN.match(p.name)) or p.name in (NPZ_NAME, CSV_NAME, MD_NAME)


def free_out_dir(base: str | Path) -> Path:
    """`base`, else base-2, base-3, ...: the first that is missing or an empty folder, so a
    default export never lands on an earlier one."""
    base = Path(base)
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _prepare(out: Path, overwrite: bool) -> None:
    """Create `out`, or refuse a non-empty one unless overwrite (then clear our old files)."""
    check_out_dir(out, overwrite)
    existing = sorted(out.iterdir()) if out.is_dir() else []
    for p in existing:  # files of an earlier export with more layers would otherwise linger
        if _ours(p) and (p.is_symlink() or p.is_file()):
            p.unlink()  # a symlink itself, never where it leads (a dangling one included)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out} ({exc.strerror or exc}): pass --out a "
                          "writable folder") from exc


def _npz_keys(names: Sequence[str]) -> list[str]:
    keys: list[str] = []
    for name in names:
        key, i = safe_name(name), 2
        while key in keys or key == "layer_names":
            key, i = f"{safe_name(name)}_{i}", i + 1
        keys.append(key)
    return keys


def export_inspection(out_dir: str | Path, activations: Sequence[Activation],
                      probe_table: pd.DataFrame | None = None, overwrite: bool = False, *,
                      sample: int = 0, max_channels: int = MAX_CHANNELS,
                      columns: int = COLUMNS, normalize: str = "channel",
                      cmap: str = "viridis") -> list[Path]:
    """Write the layer PNGs (of batch sample `sample`), activations.npz (whole batches) and,
    with a probe table, probes.csv and probes.md into out_dir; returns the files written.

    ExportError, naming the folder, when it is not empty and overwrite is False.
    """
    if normalize not in NORMALIZE:
        raise ConfigError("normalize", normalize, f"one of {', '.join(NORMALIZE)}")
    out = Path(out_dir)
    _prepare(out, overwrite)
    written: list[Path] = []
    for depth, act in enumerate(activations):
        path = out / f"{depth:02d}-{safe_name(act.name)}.png"
        layer_image(act, sample, max_channels=max_channels, columns=columns,
                    normalize=normalize, cmap=cmap).save(path)
        written.append(path)
    names = [a.name for a in activations]
    arrays = dict(zip(_npz_keys(names), (a.tensor for a in activations), strict=True))
    np.savez_compressed(out / NPZ_NAME, layer_names=np.array(names), **arrays)
    written.append(out / NPZ_NAME)
    if probe_table is not None:
        probe_table.to_csv(out / CSV_NAME, index=False)
        header = list(probe_table.columns)
        rows = probe_table.astype(object).values.tolist()
        (out / MD_NAME).write_text("# Linear probes per layer\n\n" + table(header, rows) + "\n")
        written += [out / CSV_NAME, out / MD_NAME]
    return written
