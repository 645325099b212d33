"""Typed events the trainer sends to its callbacks, and what a run starts from and ends
with (ResumeState, RunResult). The trainer knows nothing of who listens."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnprobe.config import RunConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from cnnprobe.results import Evaluation


@dataclass
class ResumeState:
    """Where an earlier run stopped: enough to continue it exactly."""

    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    generator_state: torch.Tensor
    step: int
    samples_seen: int
    best_val_mae: float = math.inf
    # The validation rows before `step` (the store's val_history): the time-to-learn
    # metrics (steps_to_r2_90/99) count from the run's first step, not the resume.
    val_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class RunResult:
    """What a run produced, whether it finished, failed or was cancelled."""

    config: RunConfig
    status: str  # "finished", "failed" or "cancelled"
    reason: str
    steps_done: int
    samples_seen: int
    wall_time_s: float
    device: str
    device_name: str
    model: nn.Module = field(repr=False)
    optimizer: torch.optim.Optimizer = field(repr=False)
    generator: torch.Generator = field(repr=False)
    train_history: list[dict[str, float]] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = field(default=None, repr=False)
    best_val_mae: float = math.inf
    # How final_metrics were made: weights, BatchNorm statistics, input normalisation.
    measured: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainState:
    """What a listener needs to checkpoint the run at this point."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int
    samples_seen: int
    best_val_mae: float


@dataclass(frozen=True)
class RunStarted:
    total_steps: int
    start_step: int
    device: str
    device_name: str
    parameters: int


@dataclass(frozen=True)
class StepEvent:
    step: int
    total_steps: int
    loss: float  # mean training loss since the previous StepEvent
    samples_per_s: float
    samples_seen: int
    elapsed_s: float

    def row(self, elapsed_offset: float = 0.0) -> dict[str, float]:
        """The training-history row of this step, as the store and RunResult keep it."""
        return {"step": self.step, "loss": self.loss, "samples_per_s": self.samples_per_s,
                "elapsed_s": elapsed_offset + self.elapsed_s}


@dataclass(frozen=True)
class EvaluationEvent:
    step: int
    metrics: dict[str, float]
    is_best: bool
    state: TrainState = field(repr=False, compare=False)
    # The per-sample predictions behind the metrics (an evaluate.Evaluation).
    evaluation: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Finished:
    result: RunResult = field(repr=False)


@dataclass(frozen=True)
class Failed:
    reason: str
    step: int
    result: RunResult = field(repr=False)


@dataclass(frozen=True)
class Cancelled:
    step: int
    result: RunResult = field(repr=False)


Event = RunStarted | StepEvent | EvaluationEvent | Finished | Failed | Cancelled
Callback = Callable[[Any], None]
