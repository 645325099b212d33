"""The machine, in one line above the progress line: each GPU's load, memory, temperature
and power, this process's CPU and memory, the host's CPU and RAM, and while a run trains on
a GPU, its own memory (allocated / peak). See `tui.system`.

Sampled once a second on the UI thread (a few reads of /proc and NVML, about a millisecond),
and the Static is updated only when the text changed: no layout pass, so the training
thread loses next to nothing. NVML is initialised once, in a thread worker, so a slow
driver never delays the first paint.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from tui.system import SEP, SystemSampler, SystemSnapshot, format_line, run_memory

INTERVAL_S = 1.0


def make_sampler() -> Any:
    """The sampler of a lab that was given none (tests replace this to pin the line)."""
    return SystemSampler()


class SystemLine(Static):
    """One line: the machine now. `sampler` (or the app's `system_sampler`) is anything with
    `sample(run=...) -> SystemSnapshot`; by default `make_sampler()` builds one."""

    def __init__(self, sampler: Any = None, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self.sampler = sampler
        self.snapshot: SystemSnapshot | None = None
        self.text = ""
        self._seen_jobs: set[int] = set()  # trainings whose peak memory was restarted

    def on_mount(self) -> None:
        if self.sampler is None:
            self.sampler = getattr(self.app, "system_sampler", None)
        if self.sampler is None:
            self.run_worker(make_sampler, thread=True, exit_on_error=False,
                            group="system-line", description="system line: open NVML")
        else:
            self.sample()
        self.set_interval(INTERVAL_S, self.sample)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        event.stop()
        if event.state == WorkerState.SUCCESS and self.sampler is None:
            self.sampler = event.worker.result
            self.sample()

    def on_unmount(self) -> None:
        close = getattr(self.sampler, "close", None)
        if close is not None:
            close()

    def run_job_memory(self) -> Any:
        """The GPU memory of the training the progress line shows, if it runs on a GPU."""
        lab = getattr(self.app, "lab", None)
        job = lab.status_job() if lab is not None else None
        if job is None or not job.device.startswith("cuda"):
            return None
        first = job.number not in self._seen_jobs
        self._seen_jobs.add(job.number)
        return run_memory(job.device, reset_peak=first)

    def sample(self) -> None:
        if self.sampler is None or not self.is_mounted or not self.screen.is_current:
            return  # not ready, or covered by another screen: nothing to show
        self.snapshot = self.sampler.sample(run=self.run_job_memory())
        self.show()

    def on_resize(self) -> None:
        self.show()

    def show(self) -> None:
        if self.snapshot is None:
            return
        width = self.content_size.width or 120
        plain = format_line(self.snapshot, max(1, width - 1))  # one column of margin
        if plain == self.text:
            return
        self.text = plain
        line = Text(" ", no_wrap=True, overflow="ellipsis")
        for i, part in enumerate(plain.split(SEP)):
            if i:
                line.append(SEP, style="dim")
            line.append(part)
        self.update(line, layout=False)
