"""Typed events the trainer sends to its callbacks. The trainer knows nothing of who listens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from cnnprobe.train import RunResult


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
