"""What a worker thread runs for the TUI, and the buffer its trainer events land in.

The trainer calls `EventBuffer` on its own thread for every event; the buffer only
appends to a deque, so watching a run costs the run nothing. The UI drains it on a
timer a few times a second and merges what arrived into one redraw.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cnnprobe.admission import Admission
from cnnprobe.config import RunConfig
from cnnprobe.events import EvaluationEvent
from tui.run_view import RunView

_ids = itertools.count(1)


class EventBuffer:
    """A trainer callback that queues events for the UI thread; thread-safe, never blocks."""

    def __init__(self) -> None:
        self._events: deque[Any] = deque()

    def __call__(self, event: Any) -> None:
        if isinstance(event, EvaluationEvent):
            # The TrainState holds the model and optimizer: don't keep them alive in a queue.
            event = EvaluationEvent(event.step, dict(event.metrics), event.is_best, None,
                                    event.evaluation)
        self._events.append(event)

    def note(self, item: Any) -> None:
        """Queue something of our own (the run id, a sweep row) in order with the events."""
        self._events.append(item)

    def drain(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self._events.popleft())
            except IndexError:
                return out


@dataclass(frozen=True)
class RunIdKnown:
    """The store's id of the run a job is training, found once its record exists."""

    run_id: str


@dataclass
class TrainJob:
    """One training, resume or fine-tune, queued or running on one device."""

    kind: str  # "train", "resume" or "finetune"
    config: RunConfig  # what will train (for a fine-tune: at the new size)
    device: str  # resolved device ("cpu", "cuda:0"): one training at a time per device
    parent_id: str | None = None
    extra_steps: int = 0  # resume
    height: int = 0  # fine-tune
    width: int = 0
    steps: int = 0
    lr: float | None = None
    admission: Admission | None = None  # a training's admission so far (runs.train_run ends it)
    cancel: threading.Event = field(default_factory=threading.Event)
    events: EventBuffer = field(default_factory=EventBuffer)
    run_id: str | None = None
    started_at: float = 0.0
    total_steps: int = 0
    step: int = 0
    samples_per_s: float = 0.0
    device_name: str = ""
    number: int = field(default_factory=lambda: next(_ids))
    view: RunView = field(init=False)

    def __post_init__(self) -> None:
        self.view = RunView(None, self.config)

    @property
    def title(self) -> str:
        c = self.config
        what = {"train": "train", "resume": "resume", "finetune": "fine-tune"}[self.kind]
        return f"{what} {c.task.name}/{c.model.name} {c.task.height}x{c.task.width}"

    def eta_s(self) -> float | None:
        if self.samples_per_s <= 0 or self.total_steps <= 0:
            return None
        left = max(0, self.total_steps - self.step) * self.config.train.batch_size
        return left / self.samples_per_s

    def start_clock(self) -> None:
        self.started_at = time.time()


@dataclass
class SweepJob:
    """A resolution or distractor sweep of a stored run."""

    run_id: str
    kind: str  # "resolution" or "distractors"
    resolutions: list[int] | None = None
    max_distractors: int = 8
    n: int = 512
    cancel: threading.Event = field(default_factory=threading.Event)
    rows: EventBuffer = field(default_factory=EventBuffer)  # each value's metrics, live
    done: list[dict] = field(default_factory=list)  # rows drained so far
    number: int = field(default_factory=lambda: next(_ids))

    @property
    def title(self) -> str:
        return f"{self.kind} sweep of {self.run_id[:8]}"
