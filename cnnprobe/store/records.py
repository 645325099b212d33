"""What the store hands out, torch-free: run records, checkpoints, stored sweeps, the error
type, and how a stored config is read back. The bottom of the store package."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig

STATUSES = ("running", "finished", "failed", "cancelled", "interrupted", "skipped")
SWEEP_KINDS = ("resolution", "distractors")
CHECKPOINTS = ("last", "best")


class StoreError(Exception):
    """A store, run or file problem a user can fix; the message is one line saying how."""


class UnreadableFile(StoreError):
    """One of a run's files (predictions.npz, sweep-*.npz) is damaged: the run's other data
    still reads, so a report shows the rest and names this file (`path`) and run."""

    def __init__(self, message: str, path: Path, run_id: str = "") -> None:
        super().__init__(message)
        self.path, self.run_id = Path(path), run_id


@dataclass
class RunRecord:
    """One run as the store knows it (no tensors)."""

    id: str
    name: str
    status: str
    reason: str
    config: RunConfig
    seed: int
    created_at: float  # unix time
    finished_at: float | None
    device: str
    device_name: str
    versions: dict[str, str]  # torch, torchvision, cnnprobe, git commit
    wall_time_s: float
    samples_seen: int
    steps_done: int
    metrics: dict[str, float]  # final metrics (empty while running)
    # How the final metrics were made (measurement.measured); {} for older runs.
    measured: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    note: str = ""
    parent_id: str | None = None
    kind: str = "train"  # "train" or "finetune"; a resume continues the same record
    total_steps: int = 0
    resumed_at: list[int] = field(default_factory=list)  # step each resume started from
    parameters: int = 0
    best_val_mae: float | None = None
    host: str = ""
    pid: int | None = None
    heartbeat_at: float | None = None
    config_warning: str = ""  # set when the stored config needed repair to load

    @property
    def task(self) -> str:
        return self.config.task.name

    @property
    def model(self) -> str:
        return self.config.model.name

    @property
    def resolution(self) -> str:
        return f"{self.config.task.height}x{self.config.task.width}"

    @property
    def has_given_name(self) -> bool:
        """Whether the run was named, rather than called after its task, model and height
        (default_name); read from the listed columns, without parsing the config."""
        return not is_default_name(self.name, self.task, self.model,
                                   self.resolution.split("x")[0], self.id)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def segments(self) -> int:
        """How many training sessions made this run: 1, plus one per resume."""
        return 1 + len(self.resumed_at)


class StoredRunRecord(RunRecord):
    """A RunRecord read from the index whose JSON columns (config, metrics, measured,
    versions, resumed_at) are parsed on first use, and whose task, model and resolution come
    from their own columns: listing thousands of runs costs the query, not thousands of
    config parses (bench/bench_startup.py). Otherwise it is a RunRecord in every way."""

    LAZY = ("config", "metrics", "measured", "versions", "resumed_at")

    @classmethod
    def from_columns(cls, plain: dict[str, Any], raw: dict[str, str],
                     columns: tuple[str, str, int, int]) -> StoredRunRecord:
        rec = cls.__new__(cls)
        rec.__dict__.update(plain)
        rec.__dict__["_raw"] = raw
        rec.__dict__["_columns"] = columns
        return rec

    def __getattr__(self, name: str) -> Any:
        raw = self.__dict__.get("_raw")
        if raw is None or name not in raw:
            raise AttributeError(name)
        text = raw[name]  # not popped: two threads may parse it at once, harmlessly
        if name == "config":
            import json

            value, warning = lenient_config(json.loads(text))
            self.__dict__["_config_warning"] = warning
        else:
            import json

            value = json.loads(text)
        self.__dict__[name] = value
        return value

    @property
    def config_warning(self) -> str:  # type: ignore[override]
        if "_config_warning" not in self.__dict__:
            self.config  # noqa: B018 - parsing the config says whether it needed repair
        return self.__dict__.get("_config_warning", "")

    @config_warning.setter
    def config_warning(self, value: str) -> None:
        self.__dict__["_config_warning"] = value

    def _column(self, i: int) -> Any:
        columns = self.__dict__.get("_columns")
        if columns is None or "config" in self.__dict__:
            return None
        return columns[i]

    @property
    def task(self) -> str:
        return self._column(0) or self.config.task.name

    @property
    def model(self) -> str:
        return self._column(1) or self.config.model.name

    @property
    def resolution(self) -> str:
        if self._column(2) is not None:
            return f"{self._column(2)}x{self._column(3)}"
        return f"{self.config.task.height}x{self.config.task.width}"


@dataclass
class Checkpoint:
    """Weights and everything needed to rebuild and continue a run."""

    config: RunConfig
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    generator_state: Any  # torch.ByteTensor
    step: int
    samples_seen: int
    best_val_mae: float
    run_id: str = ""
    path: Path | None = None


def default_name(config: RunConfig, run_id: str = "") -> str:
    """A run's name when none is given: task, model and height, and the first four
    characters of its id so that runs of one setup are told apart (`show NAME` is not
    ambiguous). Runs stored before the suffix keep their names."""
    base = f"{config.task.name}-{config.model.name}-{config.task.height}"
    return f"{base}-{run_id[:4]}" if run_id else base


def is_default_name(name: str, task: str, model: str, height: int | str,
                    run_id: str = "") -> bool:
    """Whether `name` is the one default_name made (with or without the id's suffix)."""
    base = f"{task}-{model}-{height}"
    return name == base or (bool(run_id) and name == f"{base}-{run_id[:4]}")


def lenient_config(data: dict[str, Any]) -> tuple[RunConfig, str]:
    """The stored config, dropping settings this version no longer knows (and saying so)."""
    try:
        return RunConfig.from_dict(data, stored=True), ""
    except ConfigError as exc:
        kinds = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}
        kept = {s: {k: v for k, v in (data.get(s) or {}).items()
                    if k in {f.name for f in fields(kind)}} for s, kind in kinds.items()}
        return (RunConfig.from_dict(kept, stored=True),
                f"stored config has settings this cnnprobe lacks: {exc}")




@dataclass
class StoredSweep:
    """A sweep as stored: one row per swept value, and every sample behind them (empty when
    their file is gone)."""

    table: Any  # pandas.DataFrame
    samples: Any  # pandas.DataFrame
