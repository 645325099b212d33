"""The built-in studies: one per question of the seed notebook, each at three scales.

- smoke: seconds on a CPU (tests): 16 px (32 for the torchvision backbones), a few steps.
- cpu: minutes on a 2-core laptop: 32 px, 400 steps at batch 32, conv nets 16 channels
  wide (100 steps for the ResNets).
- full: the notebook's scale for a GPU: 128 px, batch 512, Adam 1e-4, 1,900 steps (its
  100 epochs of 10,000 samples).
"""

from __future__ import annotations

from typing import Any

from cnnprobe.config import ConfigError
from cnnprobe.studies.plan import StudyPlan, plan_from_dict

SCALES = ("smoke", "cpu", "full")

_SCALE_BASE: dict[str, dict[str, Any]] = {
    "smoke": {"task.height": 16, "task.width": 16, "train.steps": 4, "train.batch_size": 16,
              "train.val_size": 32, "train.bn_samples": 64, "train.lr": 1e-3,
              "task.count_max": 4},
    # Measured on a 2-core laptop, one thread per worker: plaincnn at width 16 ~70 ms a
    # step at 32 px and batch 32, resnet18 ~860 ms (docs/findings.md has the study times).
    "cpu": {"task.height": 32, "task.width": 32, "train.steps": 400, "train.batch_size": 32,
            "train.val_size": 512, "train.bn_samples": 512, "train.lr": 1e-3,
            "model.width": 16},
    "full": {"task.height": 128, "task.width": 128, "train.steps": 1900,
             "train.batch_size": 512, "train.val_size": 2048, "train.lr": 1e-4},
}
BACKBONE_SMOKE = {"task.height": 32, "task.width": 32}  # their smallest input
RESNET_CPU_STEPS = 100  # a ResNet step costs ~12x a plaincnn one on a CPU

_MODELS = ("seednet", "coordmlp", "plaincnn", "coordconv", "resnet18")


def _variant(label: str, scale: str, **settings: Any) -> dict[str, Any]:
    """A [[variant]] entry; backbones get their minimum size at smoke and fewer steps on
    the CPU."""
    over = {k.replace("__", "."): v for k, v in settings.items()}
    if str(over.get("model.name", "")).startswith(("resnet", "mobilenet")):
        if scale == "smoke":
            over.update(BACKBONE_SMOKE)
        elif scale == "cpu" and over["model.name"].startswith("resnet"):
            over["train.steps"] = RESNET_CPU_STEPS
    return {"label": label, "set": over}


def _pooling(scale: str) -> dict[str, Any]:
    return {"question": "Does pooling cap the accuracy?",
            "controls": "plaincnn throughout, same depth, first-block width, training and "
                        "seeds; only the downsampling (max, avg, strided conv, none) and the "
                        "global pool change. Not matched: with pool=none the width stays "
                        "constant (no halving to pay for doubling it), so that control has "
                        "several times fewer parameters (the report's parameters column) "
                        "and a receptive field of only 2*depth+1 pixels (9x9 at depth 4) "
                        "where the pooled stacks see the whole image; a worse none is "
                        "therefore not evidence that pooling helps. At 16 px (smoke) the "
                        "pooled maps reach 1x1, where max and avg global pools coincide.",
            "base": {"model.name": "plaincnn"},
            "axis": [{"field": "task.name", "values": ["distance", "count"]},
                     {"field": "model.pool", "values": ["max", "avg", "stride", "none"]},
                     {"field": "model.global_pool", "values": ["max", "avg"]}]}


def _resolution(scale: str) -> dict[str, Any]:
    variants = []
    for model in ("seednet", "coordmlp", "plaincnn"):
        for units in ("pixels", "normalized"):
            variants.append(_variant(f"{model}-{units}", scale, model__name=model,
                                     task__units=units))
    return {"question": "Is what was learned resilient to new resolutions?",
            "controls": "Model and target units are crossed (seednet, coordmlp and the conv "
                        "net plaincnn, each in pixels and in normalized units) on the same "
                        "task, training and seeds, so a collapse at other sizes can be put "
                        "down to the model or to the units: in pixels a distance grows with "
                        "the resolution, in normalized units it does not. The metric "
                        "(lowest R² over the sizes) is unit-free.",
            "evaluations": ["resolution", "finetune"], "metric": "resolution_min_r2",
            "variant": variants}


def _pretrained(scale: str) -> dict[str, Any]:
    return {"question": "Does a pretrained backbone already know distance?",
            "controls": "resnet18 with ImageNet weights vs the same architecture from random "
                        "weights (one cause: the initial weights), same training and seeds; "
                        "seednet, the notebook's model, is a reference, not a control (other "
                        "architecture and steps). Needs the ImageNet weights (offline: "
                        "skipped with the fix).",
            "variant": [_variant("resnet18-imagenet", scale, model__name="resnet18",
                                 model__pretrained=True),
                        _variant("resnet18-random", scale, model__name="resnet18"),
                        _variant("seednet", scale, model__name="seednet")]}


def _position(scale: str) -> dict[str, Any]:
    variants = []
    for split in ("uniform", "quadrant"):
        for label, over in (("plaincnn", {"model__name": "plaincnn"}),
                            ("coordconv", {"model__name": "coordconv"}),
                            ("plaincnn-no-coords", {"model__name": "plaincnn",
                                                    "task__coord_channels": False})):
            variants.append(_variant(f"{label}-{split}", scale, task__split=split, **over))
    return {"question": "Can a CNN place objects it never saw there (CoordConv's held-out "
                        "quadrant)?",
            "controls": "Each model is trained on the uniform split and on the quadrant split "
                        "and both are scored on the same held-out quadrant (heldout_mae, with "
                        "its own mean-guess baseline), so the split is the one cause. "
                        "plaincnn with and without the coordinate channels isolates the "
                        "channels; coordconv differs from plaincnn in more than coordinates "
                        "(its layers and head), so plaincnn vs coordconv is a comparison of "
                        "models, not of CoordConv's idea alone.",
            "base": {"task.name": "locate"}, "evaluations": ["heldout"],
            "metric": "heldout_mae", "variant": variants}


def _distractors(scale: str) -> dict[str, Any]:
    return {"question": "Is it resilient to additional objects at validation time?",
            "controls": "plaincnn trained without and with 3 distractors, same everything "
                        "else; both swept over 0..8 distractors at validation, and judged by "
                        "their worst MAE over the sweep.",
            "base": {"model.name": "plaincnn"}, "evaluations": ["distractors"],
            "metric": "distractors_max_mae",
            "axis": [{"field": "task.distractors", "values": [0, 3]}]}


def _which_models(task: str, question: str) -> dict[str, Any]:
    def build(scale: str) -> dict[str, Any]:
        return {"question": question,
                "controls": "Every built-in model on the same task, images, steps and seeds "
                            "(the ResNets fewer steps at cpu scale, their minimum size at "
                            "smoke): a comparison of whole models, which differ in "
                            "parameters (the report's column), depth and inductive bias at "
                            "once.",
                "base": {"task.name": task},
                "variant": [_variant(m, scale, model__name=m) for m in _MODELS]}
    return build


BUILTIN: dict[str, Any] = {
    "resolution": _resolution,
    "pretrained": _pretrained,
    "pooling": _pooling,
    "position": _position,
    "distractors": _distractors,
    "count": _which_models("count", "Which models can count?"),
    "area": _which_models("area", "Which models can measure the area of a rectangle?"),
}


def builtin_plan(name: str, scale: str = "cpu", *, seeds: int | None = None) -> StudyPlan:
    """The built-in study `name` at `scale`; ConfigError names what is unknown."""
    if name not in BUILTIN:
        raise ConfigError("study", name, f"a built-in study ({', '.join(BUILTIN)}) or a plan "
                          "file ending in .toml")
    if scale not in SCALES:
        raise ConfigError("scale", scale, f"one of {', '.join(SCALES)}")
    data = BUILTIN[name](scale)
    data["base"] = {**_SCALE_BASE[scale], **data.get("base", {})}
    data["name"] = name
    data.setdefault("seeds", 2 if scale == "smoke" else 3)
    return plan_from_dict(data, source=f"built-in study {name} ({scale})", seeds=seeds)
