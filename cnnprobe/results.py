"""What the engine's evaluations produce, as plain records (numpy; pandas on use; torch-free):
`Evaluation` (one evaluation's per-sample results), `Sweep` (a sweep's rows and samples) and
`Activation` (one layer's output for a batch). The engine (`cnnprobe.engine`) builds them;
the events, the report writers and the TUI read them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnprobe.metrics import error_by_label

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Evaluation:
    """Per-sample results of one evaluation and the metrics over them."""

    predictions: np.ndarray
    labels: np.ndarray
    metrics: dict[str, float]
    # How the numbers were made (measurement.measured): weights, BatchNorm, normalisation.
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> np.ndarray:
        return np.abs(self.predictions - self.labels)

    def describe(self) -> pd.DataFrame:
        """pandas describe() of the predictions, as the notebook printed it."""
        import pandas as pd

        return pd.DataFrame({"prediction": self.predictions}).describe()

    def error_by_label(self, bins: int = 20) -> pd.DataFrame:
        return error_by_label(self.labels, self.errors, bins)


@dataclass
class Sweep:
    """One row of metrics per swept value, plus every sample behind them."""

    table: pd.DataFrame
    samples: pd.DataFrame
    cancelled: bool = False  # stopped early: the rows so far only
    measured: dict[str, Any] = field(default_factory=dict)  # see Evaluation.measured


@dataclass
class Activation:
    """One layer's output for a batch: (B, C, H, W) maps or (B, F) vectors, CPU float32.

    A map of 1x1 pixels (a global pool) counts as a vector of its channels.
    """

    name: str
    kind: str  # "map" or "vector"
    module: str  # class name of the layer ("Conv2d", "BasicBlock", "input", ...)
    tensor: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) or (F,)."""
        return tuple(self.tensor.shape[1:])

    def sample(self, i: int = 0) -> np.ndarray:
        """Sample i of the batch: (C, H, W) or (F,)."""
        return self.tensor[i]
