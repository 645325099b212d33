"""What the plots show of one run: histories, last predictions and sweeps, live or stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnprobe.config import RunConfig
from cnnprobe.store.records import SWEEP_KINDS

if TYPE_CHECKING:  # numpy loads with the first run shown: the lab paints before it
    import numpy as np
    import pandas as pd

    from cnnprobe.store import RunRecord, RunStore


@dataclass
class RunView:
    """The data of one run the plots pane draws; filled live from events or from the store."""

    run_id: str | None
    config: RunConfig
    status: str = "running"
    reason: str = ""
    train_history: list[dict[str, float]] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)
    predictions: np.ndarray | None = None
    labels: np.ndarray | None = None
    sweeps: dict[str, pd.DataFrame] = field(default_factory=dict)  # kind -> Sweep.table
    metrics: dict[str, float] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)  # how `metrics` were made
    name: str = ""  # the run's name in the store ("" for a run not stored yet)
    version: int = 0  # bumped on every change, so plots redraw only what changed
    # Bumped when the predictions (and how they were measured) or the sweeps change: the
    # plots that show only those redraw on these, not on every training step.
    evaluated: int = 0
    swept: int = 0
    unreadable: list[str] = field(default_factory=list)  # damaged files of a stored run

    @property
    def label(self) -> str:
        c = self.config
        short = (self.run_id or "new")[:8]
        return f"{short} {c.task.name}/{c.model.name} {c.task.height}x{c.task.width}"

    @property
    def loss_name(self) -> str:
        return self.config.train.loss

    def touch(self) -> None:
        self.version += 1

    @classmethod
    def from_store(cls, store: RunStore, record: RunRecord) -> RunView:
        """Everything the plots need of a stored run (called in a worker thread)."""
        view = cls(record.id, record.config, record.status, record.reason,
                   metrics=dict(record.metrics), measured=dict(record.measured),
                   name=record.name)
        view.train_history = list(store.train_history(record.id))
        view.val_history = list(store.val_history(record.id))
        from cnnprobe.store import UnreadableFile

        try:
            pl = store.predictions(record.id)
        except UnreadableFile as exc:  # the other plots still show; the lab logs the line
            pl = None
            view.unreadable.append(str(exc))
        if pl is not None:
            import numpy as np

            view.predictions, view.labels = (np.asarray(a, dtype=np.float64) for a in pl)
        for kind in SWEEP_KINDS:
            table = store.sweep_table(record.id, kind)  # its samples file is not needed
            if table is not None:
                view.sweeps[kind] = table
        return view


def mae_curve(view: RunView) -> tuple[list[float], list[float]]:
    """Validation MAE against step, whatever the training loss (Compare's baseline deltas)."""
    steps, values = [], []
    for row in view.val_history:
        v = row.get("mae")
        if v is not None:
            steps.append(float(row["step"]))
            values.append(float(v))
    return steps, values


def validation_curve(view: RunView) -> tuple[list[float], list[float], str]:
    """Validation points on the training loss's scale: MAE for l1/huber, RMSE² for mse."""
    steps, values = [], []
    name = "val MSE" if view.loss_name == "mse" else "val MAE"
    for row in view.val_history:
        v: Any = row.get("rmse") if view.loss_name == "mse" else row.get("mae")
        if v is None:
            continue
        steps.append(float(row["step"]))
        values.append(float(v) ** 2 if view.loss_name == "mse" else float(v))
    return steps, values, name
