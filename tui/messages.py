"""Messages worker threads post to the app: results only, never widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from cnnprobe.events import RunResult
    from cnnprobe.results import Sweep
    from tui.jobs import SweepJob, TrainJob
    from tui.run_view import RunView


class TrainingEnded(Message):
    """A training worker returned: finished, cancelled or failed, and stored."""

    def __init__(self, job: TrainJob, run_id: str, result: RunResult) -> None:
        super().__init__()
        self.job, self.run_id, self.result = job, run_id, result


class SweepEnded(Message):
    """A sweep worker returned its table (already saved with the run)."""

    def __init__(self, job: SweepJob, sweep: Sweep) -> None:
        super().__init__()
        self.job, self.sweep = job, sweep


class RunLoaded(Message):
    """A stored run's data, read in a worker, ready to plot."""

    def __init__(self, view: RunView) -> None:
        super().__init__()
        self.view = view


class CompareLoaded(Message):
    """The marked runs' data for the Compare tab."""

    def __init__(self, views: list[RunView]) -> None:
        super().__init__()
        self.views = views


class ModelTableReady(Message):
    """Parameter counts of the registry models, computed off the UI thread."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows


class Exported(Message):
    """A run was written to these files."""

    def __init__(self, run_id: str, fmt: str, paths: list) -> None:
        super().__init__()
        self.run_id, self.fmt, self.paths = run_id, fmt, paths


class EngineLoaded(Message):
    """The engine (torch, torchvision, the trainer) has been imported, or failed to be:
    `error` is then the one line saying why."""

    def __init__(self, seconds: float, error: str = "") -> None:
        super().__init__()
        self.seconds = seconds
        self.error = error
