"""Scrolls that repaint what moved, not the whole screen.

Textual lays a screen out in two ways: a full layout pass (`Compositor.reflow`) after
anything that may change sizes (a status update, a log line, a row added to the runs
table), and a fast path for scrolls (`Compositor.reflow_visible`), which repaints what moved
since the visible map of the last scroll. A full pass drops that map, so the next scroll
compares with nothing, takes every widget on screen as moved and repaints the whole screen:
~240 ms of UI thread here for one plot-tab key (the plot strip scrolls) after a status
update, taken from a training run through the GIL (bench/bench_tui.py). While a run trains
the status line changes every tick, so nearly every key paid it.

`keep_scrolls_partial(screen)` gives such a scroll the map to compare with: the widgets on
screen after the last full pass, as that pass placed them. Widgets that moved, appeared or
left are repainted, and only they; widgets that come into view are still sized as a scroll
sizes them. This reads Textual 8's `Compositor._visible_map` and `_full_map`; with a
Textual that lacks them it changes nothing, and scrolls repaint as Textual does.
"""

from __future__ import annotations

from typing import Any


def keep_scrolls_partial(screen: Any) -> bool:
    """Prime `screen`'s scroll path after full layout passes; False if this Textual's
    compositor is not the one this was written for (then nothing changes)."""
    compositor = getattr(screen, "_compositor", None)
    reflow_visible = getattr(compositor, "reflow_visible", None)
    if reflow_visible is None or getattr(compositor, "_primed_scrolls", False) or not all(
            hasattr(compositor, name) for name in ("_visible_map", "_full_map",
                                                    "visible_widgets")):
        return False

    def primed(parent: Any, size: Any) -> Any:
        full = compositor._full_map
        if compositor._visible_map is None and full and compositor.size == size:
            compositor._visible_map = {w: full[w] for w in compositor.visible_widgets
                                       if w in full}
        return reflow_visible(parent, size)

    compositor.reflow_visible = primed
    compositor._primed_scrolls = True
    return True
