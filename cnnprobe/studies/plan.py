"""A study's plan: a base run config, variants (crossed axes or an explicit list), seeds,
and the evaluations every trial gets. Torch-free; plans come from TOML files or from the
built-in studies (builtin.py).

    name = "pooling"
    question = "Does pooling cap the accuracy?"
    controls = "What is held fixed, what differs besides the variable studied"  # optional
    preset = "quick"                  # optional: fill in a preset first
    seeds = 3                         # or a list: [0, 1, 2]
    evaluations = ["resolution"]      # resolution, finetune, distractors, heldout, probes
    metric = "mae"                    # what the verdict compares (lower is better)

    [base]                            # settings every trial shares, by their config key
    "task.height" = 32
    "train.steps" = 600

    [[axis]]                          # axes are crossed ...
    field = "model.pool"
    values = ["max", "avg", "stride", "none"]

    [[variant]]                       # ... or variants are listed (not both)
    label = "coordconv"
    set = { "model.name" = "coordconv" }

A trial's identity (`Trial.key`) is a hash of its whole resolved config, its seed
included, so running a study again never repeats finished work. Settings that change only
how fast a run goes (`Setting.speed`: torch.compile, channels-last) are left out while they
have their defaults, so adding one kept the key of every trial already stored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cnnprobe.config import (
    INT_MAX,
    PRESETS,
    SECTIONS,
    ConfigError,
    RunConfig,
    apply_preset,
    settings,
    validate,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EVALUATIONS = ("resolution", "finetune", "distractors", "heldout", "probes")
PLAN_KEYS = ("name", "question", "controls", "preset", "seeds", "evaluations", "metric",
             "base", "axis", "variant")
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Variant:
    """One point of the study's grid: a label and the settings it changes."""

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    """One variant at one seed: an ordinary run, identified by its resolved config."""

    study: str
    variant: str
    seed: int
    config: RunConfig

    @property
    def key(self) -> str:
        """A hash of the whole config (seed included): the same trial has the same key."""
        data = self.config.to_dict()
        for section in SECTIONS:
            for st in settings(section):
                if st.speed and data[section].get(st.name) == st.default:
                    del data[section][st.name]
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def tags(self) -> list[str]:
        return [f"study:{self.study}", f"variant:{self.variant}", f"trial:{self.key}"]


@dataclass
class StudyPlan:
    """A study: what every trial shares, what varies, on which seeds, evaluated how."""

    name: str
    question: str
    base: RunConfig
    variants: list[Variant]
    seeds: tuple[int, ...]
    evaluations: tuple[str, ...] = ()
    metric: str = "mae"
    source: str = "built-in"  # the plan file, or "built-in"
    controls: str = ""  # what the design holds fixed and what else differs, in words

    def trials(self) -> list[Trial]:
        """Every variant at every seed, variants first, seeds inside."""
        out = []
        for v in self.variants:
            cfg = apply_overrides(self.base, v.overrides, where=f"{self.source}: variant "
                                  f"{v.label!r}")
            for seed in self.seeds:
                out.append(Trial(self.name, v.label, seed,
                                 replace(cfg, train=replace(cfg.train, seed=seed))))
        return out


def _known_keys() -> dict[str, Any]:
    return {st.key: st for section in SECTIONS for st in settings(section)}


def apply_overrides(base: RunConfig, overrides: dict[str, Any], *, where: str) -> RunConfig:
    """`base` with settings replaced by their keys ("task.height": 32), then checked;
    ConfigError names the place in the plan and the setting."""
    known = _known_keys()
    data = base.to_dict()
    for key, value in overrides.items():
        if key not in known:
            close = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
            hint = f"; did you mean {close[0]}?" if close else \
                "; settings are named section.name, e.g. task.height (docs/settings.md)"
            raise ConfigError(f"{where}: {key}", value, f"a setting{hint}")
        section, name = key.split(".", 1)
        data[section][name] = value
    cfg = RunConfig.from_dict(data)
    try:
        return validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.field}", exc.value, exc.allowed) from exc


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return tuple(range(value))
    if isinstance(value, list) and value and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= INT_MAX
            for s in value) and len(set(value)) == len(value):
        return tuple(value)
    raise ConfigError(f"{where}: seeds", value,
                      "a count from 1 to 100, or a list of distinct seeds from 0 to "
                      f"{INT_MAX} (2**63 - 1)")


def _label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items())


def plan_from_dict(data: dict[str, Any], *, source: str = "built-in",
                   seeds: int | None = None) -> StudyPlan:
    """Build and check a plan from its TOML (or built-in) data; ConfigError names the
    source and the key. `seeds` overrides the plan's seed count."""
    where = source
    unknown = [k for k in data if k not in PLAN_KEYS]
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}", data[unknown[0]],
                          f"a plan key: one of {', '.join(PLAN_KEYS)}")
    needs = ('a plan needs at least name = "..." (one word) and what it varies: [base] '
             "settings and [[axis]] or [[variant]] tables (the format is at the top of "
             "cnnprobe/studies/plan.py)")
    if not data:
        raise ConfigError(f"{where}: name", None, needs, message=f"{where} is empty: {needs}")
    name = data.get("name")
    if name is None:
        raise ConfigError(f"{where}: name", None, needs,
                          message=f"{where} has no name: {needs}")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise ConfigError(f"{where}: name", name, "one word naming the study")
    base = RunConfig()
    preset = data.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"{where}: preset", preset, f"one of {', '.join(PRESETS)}")
        base = apply_preset(base, preset)
    base_over = data.get("base", {})
    if not isinstance(base_over, dict):
        raise ConfigError(f"{where}: base", base_over, "a table of settings")
    base = apply_overrides(base, base_over, where=f"{where}: base")
    axes, listed = data.get("axis", []), data.get("variant", [])
    if axes and listed:
        raise ConfigError(f"{where}: variant", "[[variant]]",
                          "either [[axis]] tables (crossed) or [[variant]] tables, not both")
    variants: list[Variant] = []
    if listed:
        for i, v in enumerate(listed):
            at = f"{where}: variant {i + 1}"
            if not isinstance(v, dict) or set(v) - {"label", "set"} or not isinstance(
                    v.get("set", {}), dict):
                raise ConfigError(at, v, "a table with label and set = { setting = value }")
            over = dict(v.get("set", {}))
            label = str(v.get("label") or _label(over) or "base")
            if any(c.isspace() for c in label):
                raise ConfigError(f"{at}: label", label, "one word (it becomes a tag)")
            variants.append(Variant(label, over))
    else:
        grids = []
        for i, ax in enumerate(axes):
            at = f"{where}: axis {i + 1}"
            if not isinstance(ax, dict) or set(ax) != {"field", "values"}:
                raise ConfigError(at, ax, "a table with field and values")
            if not isinstance(ax["field"], str):
                raise ConfigError(f"{at}: field", ax["field"],
                                  'a setting\'s name in quotes, e.g. field = "model.pool" '
                                  "(docs/settings.md lists them)")
            values = ax["values"]
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{at} ({ax['field']}): values", values,
                                  "a non-empty list of values")
            grids.append([(ax["field"], val) for val in values])
        for combo in itertools.product(*grids):
            over = dict(combo)
            variants.append(Variant(_label(over).replace(" ", "_") or "base", over))
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise ConfigError(f"{where}: variant", dup, "a label used once")
    seed_list = _seeds(seeds if seeds is not None else data.get("seeds", 3), where)
    evals = data.get("evaluations", [])
    if not isinstance(evals, list) or any(e not in EVALUATIONS for e in evals):
        raise ConfigError(f"{where}: evaluations", evals,
                          f"a list of: {', '.join(EVALUATIONS)}")
    metric = data.get("metric", "mae")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{where}: metric", metric, "a metric name such as mae")
    controls = data.get("controls", "")
    if not isinstance(controls, str):
        raise ConfigError(f"{where}: controls", controls, "a sentence or two of text")
    plan = StudyPlan(name, str(data.get("question", "")), base, variants, seed_list,
                     tuple(evals), metric, source, controls)
    if len(variants) * len(seed_list) > MAX_TRIALS:
        raise ConfigError(f"{where}: axis", f"{len(variants) * len(seed_list)} trials",
                          f"at most {MAX_TRIALS:,} trials")
    same: dict[str, str] = {}
    for trial in plan.trials():  # every variant's config is checked before anything runs
        if trial.seed != seed_list[0]:
            continue
        first = same.setdefault(trial.key, trial.variant)
        if first != trial.variant:
            # Their trials would be one and the same runs, reported under both labels.
            raise ConfigError(f"{where}: variant", trial.variant,
                              f"a config of its own; it has the same config as variant "
                              f"{first!r} (drop one, or change what it sets)")
    return plan


def load_plan(path: str | Path, *, seeds: int | None = None) -> StudyPlan:
    """A plan from a TOML file; ConfigError names the file (and line) and what to fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte order mark (Windows editors) is fine
    except FileNotFoundError:
        raise ConfigError("plan", str(p), "an existing TOML file, or a built-in study name "
                          "(`cnnprobe study list`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("plan", str(p), f"a readable UTF-8 TOML file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}", str(exc).splitlines()[0], "valid TOML") from None
    return plan_from_dict(data, source=str(p), seeds=seeds)
