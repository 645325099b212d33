"""The log pane: timestamped events of runs and sweeps."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

clock = time.localtime  # tests pin it for stable snapshots
STYLES = {"info": "", "good": "green", "warn": "yellow", "error": "bold red", "dim": "dim"}


class LogPane(RichLog):
    """Run events, one timestamped line each; the latest stays in view."""

    BORDER_TITLE = "5 Log"

    def __init__(self, **kw) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, max_lines=5000, min_width=20,
                         **kw)
        self.lines_text: list[str] = []  # plain copy, for tests and export

    def event(self, message: str, level: str = "info") -> None:
        stamp = time.strftime("%H:%M:%S", clock())
        self.lines_text.append(f"{stamp} {message}")
        line = Text.assemble((stamp + " ", "dim"), (message, STYLES.get(level, "")))
        self.write(line)

    def text(self) -> str:
        return "\n".join(self.lines_text)
