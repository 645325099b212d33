"""The progress line under the panes: what runs, a bar, step, samples/s, ETA, device, memory.

One Static redrawn in place (no layout pass), so refreshing it a few times a second costs
the training thread next to nothing.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.jobs import TrainJob

BAR_WIDTH = 20


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """A text progress bar in eighths of a cell."""
    if total <= 0:
        return "░" * width
    eighths = int(8 * width * min(1.0, done / total))
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part].strip() if part else ""
    return ("█" * full + partial).ljust(width, "░")[:width]


class RunStatus(Static):
    """Always visible, in every layout: what is running and how fast."""

    def __init__(self, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self.text = ""

    def show(self, job: TrainJob | None, *, queued: int = 0, sweeps: int = 0,
             memory: str = "", engine: str = "") -> None:
        """`engine`: said while idle when the engine is not ready (still loading)."""
        extra = []
        if queued:
            extra.append(f"{queued} queued")
        if sweeps:
            extra.append(f"{sweeps} sweep{'s' * (sweeps > 1)} running")
        tail = f" · {', '.join(extra)}" if extra else ""
        line = Text(no_wrap=True, overflow="ellipsis")
        if job is None and engine:
            line.append(f" {engine}{tail}", style="yellow")
        elif job is None:
            line.append(" idle" + tail, style="dim")
        else:
            device = job.device
            if job.device.startswith("cuda") and job.device_name:
                device = f"{job.device} {job.device_name}"
            if memory:
                device += f" {memory}"
            pct = job.step / job.total_steps if job.total_steps else 0.0
            line.append(f" ● {job.title}{tail} ", style="bold")
            line.append(bar(job.step, job.total_steps), style="green")
            line.append(f" {pct:4.0%} {job.step}/{job.total_steps or '?'} · "
                        f"{job.samples_per_s:,.0f} samples/s · ETA {clock(job.eta_s())} · "
                        f"{device}", style="dim" if not job.step else "")
        if line.plain != self.text:
            self.text = line.plain
            self.update(line, layout=False)
