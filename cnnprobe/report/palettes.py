"""The choices of a terminal heatmap (colour map, normalisation, resampling), apart from
heatmap.py so that the command line's parser offers them without importing numpy."""

from __future__ import annotations

# matplotlib's maps sampled at 10 evenly spaced points (as R's viridisLite prints them).
CMAPS: dict[str, tuple[str, ...]] = {
    "viridis": ("#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779",
                "#6dcd59", "#b4de2c", "#fde725"),
    "magma": ("#000004", "#180f3e", "#451077", "#721f81", "#9f2f7f", "#cd4071", "#f1605d",
              "#fd9567", "#fec98d", "#fcfdbf"),
    "gray": ("#000000", "#ffffff"),
}
NORMALIZE = ("channel", "layer")
RESAMPLE = ("area", "peak")
