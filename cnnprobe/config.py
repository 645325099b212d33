"""Run configuration: task, model and training settings as dataclasses, validated.

Every user-facing value goes through `validate()` (and, with the model registry's checks,
`cnnprobe.models.validate_run`), which raises `ConfigError`
naming the field, the value and what is allowed, so the CLI and the TUI can show
one clear line instead of a traceback deep inside torch.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Every probe task and its one-line description (`cnnprobe tasks`, the TUI's task list);
# the generators in cnnprobe/tasks/probes.py take theirs from here.
TASK_DESCRIPTIONS = {
    "distance": "distance between two marked pixels (+1 and -1)",
    "area": "area of one filled rectangle",
    "locate": "find two shapes, then the distance between their centres",
    "count": "how many separate shapes there are",
}
TASK_NAMES = tuple(TASK_DESCRIPTIONS)
# The sizes a resolution sweep evaluates when none are given (CLI `sweep`, the TUI's dialog).
DEFAULT_RESOLUTIONS = tuple(range(64, 256, 10))
UNITS = ("pixels", "normalized")
SPLITS = ("uniform", "quadrant")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
LOSSES = ("l1", "mse", "huber")
OPTIMIZERS = ("adam", "adamw", "sgd")
POOLS = ("max", "avg", "stride", "none")
GLOBAL_POOLS = ("max", "avg")
DEVICES = ("auto", "cpu", "cuda")
INPUT_NORMS = ("auto", "none", "task", "imagenet")
COMPILE_MODES = ("off", "default", "reduce-overhead")  # torch.compile modes of the training step
CHANNELS_LAST = ("auto", "on", "off")
REGIONS = ("train", "heldout")  # where evaluation objects go: as in training, or held out
# The largest integer any setting takes: the store keeps seeds and step counts as SQLite
# INTEGERs, which end here.
INT_MAX = 2**63 - 1

# Settings added after runs were already stored, and what those older runs did: a stored
# config without the key is read with this value, so it still describes what ran.
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "task": {"allow_coincident": True},  # distance drew A == B before distinct points
    "model": {"input_norm": "none"},  # no input normalisation before it existed
    # Eager steps, and channels-last on CUDA for models with spatial convs (today's auto).
    "train": {"compile": "off", "channels_last": "auto"},
}


@dataclass(frozen=True)
class Setting:
    """One config field as the CLI, the TUI form and the docs show it (see `setting`)."""

    section: str
    name: str
    kind: str  # int, opt_int, float, str, opt_str, choice, bool
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    label: str = ""  # the TUI form's label (default: the name with spaces)
    check: str = ""  # a checkbox's text in the TUI
    placeholder: str = ""  # an empty TUI text field's hint
    form: bool = True  # shown in the TUI form
    flag: str = ""  # the CLI flag (default: --name-with-dashes)
    bounds: tuple[int, int | None] | None = None  # integers: lowest and highest (None: any)
    # Changes how fast a run goes, not what it computes: a study trial's key leaves it out
    # while it has its default, so adding one keeps the keys of the trials already stored.
    speed: bool = False

    @property
    def allowed(self) -> str:
        """What `bounds` allow, as ConfigError says it."""
        if self.bounds is None:
            return ""
        lo, hi = self.bounds
        text = f"an integer of at least {lo}" if hi is None else f"an integer from {lo} to {hi}"
        return text + (", or unset" if self.kind.startswith("opt_") else "")

    @property
    def help_text(self) -> str:
        """The help with the allowed range, for the CLI, the TUI and the docs."""
        if self.bounds is None:
            return self.help
        lo, hi = self.bounds
        return f"{self.help} ({lo}-{hi})" if hi is not None else self.help

    @property
    def key(self) -> str:
        """`section.name`, as ConfigError names the field."""
        return f"{self.section}.{self.name}"


def setting(default: Any, help: str, *, choices: tuple[str, ...] = (), label: str = "",
            check: str = "", placeholder: str = "", form: bool = True, flag: str = "",
            bounds: tuple[int, int | None] | None = None, speed: bool = False) -> Any:
    """A config field defined once: its default, help, choices or integer bounds, and how
    the TUI form labels it. `settings()` gives them to the validators, the CLI flags, the
    TUI form and the docs table."""
    return field(default=default, metadata={
        "help": help, "choices": tuple(choices), "label": label, "check": check,
        "placeholder": placeholder, "form": form, "flag": flag, "bounds": bounds,
        "speed": speed})


def _kind(annotation: str, choices: tuple[str, ...]) -> str:
    base = annotation.replace(" ", "")
    optional = base.endswith("|None")
    base = base.removesuffix("|None")
    if base == "str" and choices:
        return "choice"
    return ("opt_" if optional else "") + base


SECTIONS = ("task", "model", "train")


def settings(section: str) -> list[Setting]:
    """Every setting of one config section, in field order."""
    return settings_of({"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}[section],
                       section)


def settings_of(kind: type, section: str) -> list[Setting]:
    """Every `setting()` field of a dataclass (a config section, or a command's options:
    `cnnprobe.options`), in field order, under the name `section`."""
    out = []
    for f in fields(kind):
        m = f.metadata
        out.append(Setting(section, f.name, _kind(str(f.type), m.get("choices", ())),
                           f.default, m.get("help", f.name.replace("_", " ")),
                           m.get("choices", ()), m.get("label") or f.name.replace("_", " "),
                           m.get("check", ""), m.get("placeholder", ""), m.get("form", True),
                           m.get("flag") or "--" + f.name.replace("_", "-"), m.get("bounds"),
                           m.get("speed", False)))
    return out


def settings_markdown() -> str:
    """The table of every setting for docs/settings.md."""
    lines = ["# Settings", "",
             "Every setting of a run, as `cnnprobe train` takes it and the TUI form shows it.",
             "Generated from the config dataclasses (`cnnprobe.config`); regenerate with",
             "`python -c \"from cnnprobe.options import settings_document as m; print(m(), "
             "end='')\" > docs/settings.md`.", ""]
    for section in SECTIONS:
        lines += [f"## {section}", "", "| setting | flag | default | what |", "|---|---|---|---|"]
        for st in settings(section):
            flag = "--task" if st.name == "name" and section == "task" else (
                "--model" if st.name == "name" else st.flag)
            what = st.help_text + (f" ({', '.join(st.choices)})" if st.choices else "")
            lines.append(f"| `{section}.{st.name}` | `{flag}` | `{st.default}` | {what} |")
        lines.append("")
    return "\n".join(lines)


class ConfigError(ValueError):
    """A configuration value a user gave is not allowed; the message says which and why."""

    def __init__(self, field_name: str, value: Any, allowed: str, *, message: str = ""):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        # `message`: the line in plain words where "field=value is not allowed" reads badly
        super().__init__(message or f"{field_name}={value!r} is not allowed: {allowed}")


@dataclass
class TaskConfig:
    """What the probe images look like and what the target is (see docs/tasks.md)."""

    name: str = setting("distance", "the probe task (`cnnprobe tasks` lists them)", form=False)
    height: int = setting(128, "image height in pixels", label="height px", bounds=(4, 4096))
    width: int = setting(128, "image width in pixels", label="width px", bounds=(4, 4096))
    coord_channels: bool = setting(True, "add the x/(W+1) and y/(H+1) coordinate channels",
                                   label="coord chans", check="x/y channels")
    units: str = setting("pixels", "target units: pixels, or normalized (one pixel = 1/(W+1) "
                         "along x, 1/(H+1) along y: the coordinate channels' units)",
                         choices=UNITS)
    allow_coincident: bool = setting(False, "distance: let A and B fall on one pixel, as the "
                                     "notebook did", label="A == B", check="allowed")
    distractors: int = setting(0, "extra objects of another kind during training",
                               bounds=(0, 64))
    eval_distractors: int | None = setting(None, "extra objects during evaluation (empty: as "
                                           "in training)", label="eval distr.",
                                           placeholder="as training", bounds=(0, 64))
    split: str = setting("uniform", "uniform, or quadrant (training never uses the held-out "
                         "quadrant)", choices=SPLITS)
    heldout_quadrant: str = setting("bottom-right", "the quadrant no training sample touches",
                                    choices=QUADRANTS, label="held out")
    count_min: int = setting(0, "count: fewest objects", bounds=(0, None))
    count_max: int = setting(10, "count: most objects")
    object_min: int = setting(2, "smallest object side/diameter in pixels", bounds=(1, None))
    object_max: int = setting(0, "largest object side/diameter in pixels (0: min(H, W) // 8)",
                              placeholder="0 = auto")

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

    name: str = setting("seednet", "the network (`cnnprobe models` lists them)", form=False)
    pretrained: bool = setting(False, "ImageNet weights (torchvision backbones)",
                               check="ImageNet weights")
    weights_path: str | None = setting(None, "load backbone weights from this file instead of "
                                       "the download cache", label="weights",
                                       placeholder="download cache")
    freeze_preconv: bool = setting(False, "seednet: really freeze the 1x1 preconv (the notebook "
                                   "did not)", label="freeze 1x1", check="preconv")
    pool: str = setting("max", "plaincnn: downsampling between blocks", choices=POOLS,
                        label="pooling")
    global_pool: str = setting("max", "plaincnn: global pooling (coordconv uses max and avg)",
                               choices=GLOBAL_POOLS)
    depth: int = setting(4, "plaincnn, coordconv: number of conv blocks", flag="--model-depth",
                         bounds=(1, 12))
    width: int = setting(32, "plaincnn, coordconv: channels of the first conv block",
                         label="channels", flag="--model-width", bounds=(1, 1024))
    input_norm: str = setting("auto", "input normalisation: auto (task for conv nets, imagenet "
                              "with loaded weights, none for seednet/coordmlp), none, task "
                              "(per-channel standardisation from the task's images) or imagenet",
                              choices=INPUT_NORMS, label="input norm")


@dataclass
class TrainConfig:
    """How to train: loss, optimizer, length, validation, device."""

    loss: str = setting("l1", "training loss (L1 is the notebook's)", choices=LOSSES)
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-4, "learning rate", label="learning rate")
    weight_decay: float = setting(0.0, "weight decay")
    batch_size: int = setting(512, "samples per training step", bounds=(1, None))
    steps: int | None = setting(None, "training steps (wins over epochs when set)",
                                placeholder="empty: epochs")
    epochs: int | None = setting(100, "epochs of samples_per_epoch")
    samples_per_epoch: int = setting(10_000, "samples per epoch", label="samples/epoch")
    eval_every: int = setting(0, "validate every N steps (0: ten times a run)",
                              placeholder="0 = auto")
    val_size: int = setting(2048, "validation samples", label="val samples", bounds=(1, None))
    seed: int = setting(0, "seed of the data streams and the initial weights", bounds=(0, None))
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    log_every: int = setting(0, "read the loss back every N steps (0: 1 on CPU, 20 on CUDA)",
                             form=False)
    amp: bool = setting(True, "bf16 autocast on CUDA (the head and the loss stay fp32)",
                        label="bf16 autocast", check="on CUDA")
    compile: str = setting("off", "torch.compile the model's training forward: default is "
                           "inductor, reduce-overhead adds CUDA graphs (CUDA only); evaluation "
                           "stays eager", choices=COMPILE_MODES, form=False, speed=True)
    channels_last: str = setting("auto", "channels-last memory format for the model and its "
                                 "input (auto: on CUDA, for models with spatial convolutions)",
                                 choices=CHANNELS_LAST, form=False, speed=True)
    precise_bn: bool = setting(True, "recalibrate BatchNorm statistics at the evaluated weights "
                               "before every evaluation", label="precise BN",
                               check="recalibrate")
    bn_samples: int = setting(1024, "training samples the BatchNorm recalibration uses",
                              label="BN samples", bounds=(16, 1_000_000))

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
            unknown = sorted(set(section) - _field_names(kind))
            if unknown:
                raise ConfigError(f"{name}.{unknown[0]}", section[unknown[0]], "unknown setting")
            parts[name] = kind(**section)
        return cls(**parts)


@functools.cache
def _field_names(kind: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(kind))


def _check(ok: bool, field_name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(field_name, value, allowed)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def require_int(field_name: str, value: Any, least: int) -> int:
    """ConfigError naming the field unless `value` is an integer of at least `least`."""
    _check(_is_int(value) and value >= least, field_name, value,
           f"an integer of at least {least}")
    _check(value <= INT_MAX, field_name, value,
           f"an integer from {least} to {INT_MAX} (2**63 - 1, the largest the store keeps)")
    return value


def _check_declared(section: str, cfg: Any) -> None:
    """The checks a setting declares itself: integer bounds and choices."""
    for st in settings(section):
        v = getattr(cfg, st.name)
        if st.kind.removeprefix("opt_") == "int" and _is_int(v) and abs(v) > INT_MAX:
            most = f"{INT_MAX} (2**63 - 1, the largest the store keeps)"
            raise ConfigError(st.key, v, f"an integer from {st.bounds[0]} to {most}"
                              if st.bounds else f"an integer up to {most}")
        if st.bounds is not None and not (v is None and st.kind.startswith("opt_")):
            lo, hi = st.bounds
            _check(_is_int(v) and v >= lo and (hi is None or v <= hi), st.key, v, st.allowed)
        if st.choices:
            _check(v in st.choices, st.key, v, f"one of {', '.join(st.choices)}")


def validate_task(t: TaskConfig) -> None:
    """Raise ConfigError for the first task setting that is out of range."""
    _check(t.name in TASK_NAMES, "task.name", t.name, f"one of {', '.join(TASK_NAMES)}")
    _check_declared("task", t)
    side = min(t.height, t.width) // (2 if t.split == "quadrant" else 1)
    _check(_is_int(t.object_max) and (t.object_max == 0 or t.object_min <= t.object_max <= side),
           "task.object_max", t.object_max,
           f"0 (auto) or from object_min ({t.object_min}) to {side}")
    _check(_is_int(t.count_max) and t.count_min <= t.count_max <= 64, "task.count_max",
           t.count_max, f"an integer from count_min ({t.count_min}) to 64")
    _check(isinstance(t.allow_coincident, bool), "task.allow_coincident", t.allow_coincident,
           "true or false")
    if t.name in ("count", "locate") or t.distractors or t.eval_distractors:
        _check_fits(t)


def _check_fits(t: TaskConfig) -> None:
    """Objects are placed without overlap; refuse densities where that often fails, naming
    only changes that would make it fit (a hint that cannot help is not given)."""
    fixed = {"count": t.count_min, "locate": 2}.get(t.name, 1)  # objects the task needs
    n = {"count": t.count_max, "locate": 2}.get(t.name, 1)
    extra = max(t.distractors, t.eval_distractor_count)
    n += extra
    cell = (t.object_max_px + 1) ** 2  # each object keeps a 1-pixel gap
    share = 0.25 if t.split == "quadrant" else 0.75
    room = 0.35 * t.height * t.width * share
    if n * cell <= room:
        return
    side = math.ceil(math.sqrt(n * cell / (0.35 * share)))
    fixes = [f"images of at least {side}x{side} px"]
    fits = int(room // cell)  # objects of this size that fit
    if fixed <= fits < n:
        knobs = [k for k, can in (("task.count_max", t.name == "count" and t.count_max > fixed),
                                  ("task.distractors/eval_distractors", extra > 0)) if can]
        if knobs:
            fixes.append(f"at most {fits} objects ({' or '.join(knobs)})")
    largest = int(math.sqrt(room / n)) - 1  # the biggest object side at which n fit
    if t.object_min <= largest < t.object_max_px:
        fixes.append(f"task.object_max={largest} or less")
    raise ConfigError("task.height/width", f"{t.height}x{t.width}",
                      f"too small for {n} objects up to {t.object_max_px}px without overlap; "
                      f"use {', or '.join(fixes)}")


def validate_train(tr: TrainConfig) -> None:
    """Raise ConfigError for the first training setting that is out of range."""
    _check_declared("train", tr)
    _check(isinstance(tr.lr, (int, float)) and math.isfinite(tr.lr) and tr.lr > 0, "train.lr",
           tr.lr, "a finite number above 0")
    _check(isinstance(tr.weight_decay, (int, float)) and math.isfinite(tr.weight_decay)
           and tr.weight_decay >= 0, "train.weight_decay", tr.weight_decay,
           "a finite number of at least 0")
    if tr.steps is not None:
        _check(_is_int(tr.steps) and tr.steps >= 1, "train.steps", tr.steps,
               "an integer of at least 1, or unset to use epochs")
    else:
        _check(_is_int(tr.epochs) and tr.epochs >= 1, "train.epochs", tr.epochs,
               "an integer of at least 1 (or set train.steps)")
        _check(_is_int(tr.samples_per_epoch) and tr.samples_per_epoch >= tr.batch_size,
               "train.samples_per_epoch", tr.samples_per_epoch,
               f"an integer of at least batch_size ({tr.batch_size})")
    _check(tr.total_steps <= INT_MAX, "train.epochs", tr.epochs,
           f"at most {INT_MAX} training steps in all (epochs × samples_per_epoch / "
           "batch_size); set fewer epochs or train.steps")
    _check(_is_int(tr.eval_every) and tr.eval_every >= 0, "train.eval_every", tr.eval_every,
           "an integer of at least 0 (0: automatic)")
    _check(isinstance(tr.device, str) and (tr.device in DEVICES or re.fullmatch(
        r"cuda:\d+", tr.device) is not None), "train.device", tr.device,
           "auto, cpu, cuda or cuda:N (N a device index from 0)")
    _check(_is_int(tr.log_every) and tr.log_every >= 0, "train.log_every", tr.log_every,
           "an integer of at least 0 (0: automatic)")
    _check(isinstance(tr.precise_bn, bool), "train.precise_bn", tr.precise_bn, "true or false")


def validate_model(m: ModelConfig) -> None:
    """Raise ConfigError for option values; whether the name exists is the registry's check."""
    _check_declared("model", m)


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
