"""Run configuration: task, model and training settings as dataclasses, validated.

Every user-facing value goes through `validate()` (and, with the model registry's checks,
`cnnprobe.models.validate_run`), which raises `ConfigError`
naming the field, the value and what is allowed, so the CLI and the TUI can show
one clear line instead of a traceback deep inside torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

TASK_NAMES = ("distance", "area", "locate", "count")
UNITS = ("pixels", "normalized")
SPLITS = ("uniform", "quadrant")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
LOSSES = ("l1", "mse", "huber")
OPTIMIZERS = ("adam", "adamw", "sgd")
POOLS = ("max", "avg", "stride", "none")
GLOBAL_POOLS = ("max", "avg")
DEVICES = ("auto", "cpu", "cuda")
INPUT_NORMS = ("auto", "none", "task", "imagenet")
REGIONS = ("train", "heldout")  # where evaluation objects go: as in training, or held out

# Settings added after runs were already stored, and what those older runs did: a stored
# config without the key is read with this value, so it still describes what ran.
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "task": {"allow_coincident": True},  # distance drew A == B before distinct points
    "model": {"input_norm": "none"},  # no input normalisation before it existed
}


class ConfigError(ValueError):
    """A configuration value a user gave is not allowed; the message says which and why."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name}={value!r} is not allowed: {allowed}")


@dataclass
class TaskConfig:
    """What the probe images look like and what the target is (see docs/tasks.md)."""

    name: str = "distance"
    height: int = 128
    width: int = 128
    coord_channels: bool = True
    units: str = "pixels"
    distractors: int = 0  # extra objects of another kind during training
    eval_distractors: int | None = None  # None: same as training
    split: str = "uniform"
    heldout_quadrant: str = "bottom-right"
    count_min: int = 0
    count_max: int = 10
    object_min: int = 2  # side (square) or diameter (disc) in pixels
    object_max: int = 0  # 0: auto, max(object_min, min(height, width) // 8)
    allow_coincident: bool = False  # distance: A may equal B, as in the notebook

    @property
    def in_channels(self) -> int:
        return 3 if self.coord_channels else 1

    @property
    def eval_distractor_count(self) -> int:
        return self.distractors if self.eval_distractors is None else self.eval_distractors

    @property
    def object_max_px(self) -> int:
        if self.object_max:
            return self.object_max
        return max(self.object_min, min(self.height, self.width) // 8)


@dataclass
class ModelConfig:
    """Which network from the registry, and its options."""

    name: str = "seednet"
    pretrained: bool = False
    weights_path: str | None = None
    freeze_preconv: bool = False  # seednet only
    pool: str = "max"  # plaincnn: between blocks
    global_pool: str = "max"  # plaincnn (coordconv concatenates max and avg)
    depth: int = 4  # plaincnn, coordconv
    width: int = 32  # plaincnn, coordconv: channels of the first block
    # auto: none for seednet/coordmlp (they read raw coordinates), imagenet for backbones
    # with loaded weights, task (per-channel standardisation) for every other model
    input_norm: str = "auto"


@dataclass
class TrainConfig:
    """How to train: loss, optimizer, length, validation, device."""

    loss: str = "l1"
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 512
    steps: int | None = None  # wins over epochs when set
    epochs: int | None = 100
    samples_per_epoch: int = 10_000
    eval_every: int = 0  # steps; 0: about ten evaluations per run
    val_size: int = 2048
    seed: int = 0
    device: str = "auto"
    log_every: int = 0  # steps between loss read-backs; 0: 1 on CPU, 20 on CUDA
    amp: bool = True  # bf16 autocast on CUDA (head and loss stay fp32)
    # Before every evaluation, recompute BatchNorm statistics at the weights being evaluated
    # from bn_samples fresh training samples (models without BatchNorm: no effect).
    precise_bn: bool = True
    bn_samples: int = 1024

    @property
    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        # The notebook's DataLoader used drop_last=True: whole batches only.
        return max(1, (self.epochs or 0) * (self.samples_per_epoch // self.batch_size))

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.total_steps // 10)


@dataclass
class RunConfig:
    """Everything needed to reproduce a run."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, stored: bool = False) -> RunConfig:
        """Rebuild from `to_dict()` output; unknown keys raise ConfigError.

        `stored`: the dict was saved by an earlier version; settings it lacks take their
        LEGACY_DEFAULTS value (what that version did), not today's default.
        """
        parts = {}
        for name, kind in (("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig)):
            section = dict(data.get(name) or {})
            if stored:
                section = {**LEGACY_DEFAULTS.get(name, {}), **section}
            known = {f.name for f in fields(kind)}
            unknown = sorted(set(section) - known)
            if unknown:
                raise ConfigError(f"{name}.{unknown[0]}", section[unknown[0]], "unknown setting")
            parts[name] = kind(**section)
        return cls(**parts)


def _check(ok: bool, field_name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(field_name, value, allowed)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def require_int(field_name: str, value: Any, least: int) -> int:
    """ConfigError naming the field unless `value` is an integer of at least `least`."""
    _check(_is_int(value) and value >= least, field_name, value,
           f"an integer of at least {least}")
    return value


def validate_task(t: TaskConfig) -> None:
    """Raise ConfigError for the first task setting that is out of range."""
    _check(t.name in TASK_NAMES, "task.name", t.name, f"one of {', '.join(TASK_NAMES)}")
    for name in ("height", "width"):
        v = getattr(t, name)
        _check(_is_int(v) and 4 <= v <= 4096, f"task.{name}", v, "an integer from 4 to 4096")
    _check(t.units in UNITS, "task.units", t.units, f"one of {', '.join(UNITS)}")
    _check(t.split in SPLITS, "task.split", t.split, f"one of {', '.join(SPLITS)}")
    _check(t.heldout_quadrant in QUADRANTS, "task.heldout_quadrant", t.heldout_quadrant,
           f"one of {', '.join(QUADRANTS)}")
    _check(_is_int(t.distractors) and 0 <= t.distractors <= 64, "task.distractors",
           t.distractors, "an integer from 0 to 64")
    if t.eval_distractors is not None:
        _check(_is_int(t.eval_distractors) and 0 <= t.eval_distractors <= 64,
               "task.eval_distractors", t.eval_distractors, "an integer from 0 to 64, or unset")
    _check(_is_int(t.object_min) and t.object_min >= 1, "task.object_min", t.object_min,
           "an integer of at least 1")
    side = min(t.height, t.width) // (2 if t.split == "quadrant" else 1)
    _check(_is_int(t.object_max) and (t.object_max == 0 or t.object_min <= t.object_max <= side),
           "task.object_max", t.object_max,
           f"0 (auto) or from object_min ({t.object_min}) to {side}")
    _check(_is_int(t.count_min) and t.count_min >= 0, "task.count_min", t.count_min,
           "an integer of at least 0")
    _check(_is_int(t.count_max) and t.count_min <= t.count_max <= 64, "task.count_max",
           t.count_max, f"an integer from count_min ({t.count_min}) to 64")
    _check(isinstance(t.allow_coincident, bool), "task.allow_coincident", t.allow_coincident,
           "true or false")
    if t.name in ("count", "locate") or t.distractors or t.eval_distractors:
        _check_fits(t)


def _check_fits(t: TaskConfig) -> None:
    """Objects are placed without overlap; refuse densities where that often fails."""
    n = {"count": t.count_max, "locate": 2}.get(t.name, 1)
    n += max(t.distractors, t.eval_distractor_count)
    cell = (t.object_max_px + 1) ** 2  # each object keeps a 1-pixel gap
    free = t.height * t.width * (0.25 if t.split == "quadrant" else 0.75)
    if n * cell > 0.35 * free:
        raise ConfigError("task.height/width", f"{t.height}x{t.width}",
                          f"too small for {n} objects up to {t.object_max_px}px without overlap; "
                          "use a larger image, fewer objects or a smaller task.object_max")


def validate_train(tr: TrainConfig) -> None:
    """Raise ConfigError for the first training setting that is out of range."""
    _check(tr.loss in LOSSES, "train.loss", tr.loss, f"one of {', '.join(LOSSES)}")
    _check(tr.optimizer in OPTIMIZERS, "train.optimizer", tr.optimizer,
           f"one of {', '.join(OPTIMIZERS)}")
    _check(isinstance(tr.lr, (int, float)) and math.isfinite(tr.lr) and tr.lr > 0, "train.lr",
           tr.lr, "a finite number above 0")
    _check(isinstance(tr.weight_decay, (int, float)) and math.isfinite(tr.weight_decay)
           and tr.weight_decay >= 0, "train.weight_decay", tr.weight_decay,
           "a finite number of at least 0")
    _check(_is_int(tr.batch_size) and tr.batch_size >= 1, "train.batch_size", tr.batch_size,
           "an integer of at least 1")
    if tr.steps is not None:
        _check(_is_int(tr.steps) and tr.steps >= 1, "train.steps", tr.steps,
               "an integer of at least 1, or unset to use epochs")
    else:
        _check(_is_int(tr.epochs) and tr.epochs >= 1, "train.epochs", tr.epochs,
               "an integer of at least 1 (or set train.steps)")
        _check(_is_int(tr.samples_per_epoch) and tr.samples_per_epoch >= tr.batch_size,
               "train.samples_per_epoch", tr.samples_per_epoch,
               f"an integer of at least batch_size ({tr.batch_size})")
    _check(_is_int(tr.eval_every) and tr.eval_every >= 0, "train.eval_every", tr.eval_every,
           "an integer of at least 0 (0: automatic)")
    _check(_is_int(tr.val_size) and tr.val_size >= 1, "train.val_size", tr.val_size,
           "an integer of at least 1")
    _check(_is_int(tr.seed) and tr.seed >= 0, "train.seed", tr.seed, "an integer of at least 0")
    _check(tr.device in DEVICES or tr.device.startswith("cuda:"), "train.device", tr.device,
           "auto, cpu, cuda or cuda:N")
    _check(_is_int(tr.log_every) and tr.log_every >= 0, "train.log_every", tr.log_every,
           "an integer of at least 0 (0: automatic)")
    _check(isinstance(tr.precise_bn, bool), "train.precise_bn", tr.precise_bn, "true or false")
    _check(_is_int(tr.bn_samples) and 16 <= tr.bn_samples <= 1_000_000, "train.bn_samples",
           tr.bn_samples, "an integer from 16 to 1,000,000")


def validate_model(m: ModelConfig) -> None:
    """Raise ConfigError for option values; whether the name exists is the registry's check."""
    _check(m.pool in POOLS, "model.pool", m.pool, f"one of {', '.join(POOLS)}")
    _check(m.global_pool in GLOBAL_POOLS, "model.global_pool", m.global_pool,
           f"one of {', '.join(GLOBAL_POOLS)}")
    _check(_is_int(m.depth) and 1 <= m.depth <= 12, "model.depth", m.depth,
           "an integer from 1 to 12")
    _check(_is_int(m.width) and 1 <= m.width <= 1024, "model.width", m.width,
           "an integer from 1 to 1024")
    _check(m.input_norm in INPUT_NORMS, "model.input_norm", m.input_norm,
           f"one of {', '.join(INPUT_NORMS)}")


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field of a run config on its own terms; returns cfg.

    Whether the model fits the task and the machine, and what `auto` settings become, is
    for the models to say: `cnnprobe.models.validate_run` does both, and is what the
    trainer and the run service call.
    """
    validate_task(cfg.task)
    validate_model(cfg.model)
    validate_train(cfg.train)
    return cfg


# ---------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The notebook exactly: 128x128, batch 512, 10,000 samples an epoch, 100 epochs,
    # Adam at 1e-4, L1 loss, and its two points drawn independently (they may coincide).
    "seed": {
        "task": {"height": 128, "width": 128, "allow_coincident": True},
        "train": {"batch_size": 512, "samples_per_epoch": 10_000, "epochs": 100, "steps": None,
                  "lr": 1e-4, "optimizer": "adam", "loss": "l1"},
    },
    # Under two minutes on a 2-core CPU, long enough for the loss to fall well below
    # the predict-the-mean baseline (measured in docs/benchmarks.md).
    "quick": {
        "task": {"height": 64, "width": 64},
        "train": {"batch_size": 64, "steps": 600, "lr": 1e-3, "optimizer": "adam",
                  "loss": "l1", "eval_every": 100, "val_size": 1024},
    },
}


def apply_preset(cfg: RunConfig, name: str) -> RunConfig:
    """Return a copy of cfg with the preset's task size and training settings filled in."""
    if name not in PRESETS:
        raise ConfigError("preset", name, f"one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    return RunConfig(task=replace(cfg.task, **p.get("task", {})),
                     model=replace(cfg.model, **p.get("model", {})),
                     train=replace(cfg.train, **p.get("train", {})))
