"""Command-line flags for every field of the run config, and the config they describe."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any

from cnnprobe.config import PRESETS, ModelConfig, RunConfig, TaskConfig, TrainConfig, apply_preset
from cnnprobe.measurement import DEFAULT_WEIGHTS, WEIGHTS

SECTIONS = (("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig))
HELP = {
    "height": "image height in pixels", "width": "image width in pixels",
    # Section-qualified keys win: model.width is a channel count, not an image size.
    "model.width": "plaincnn, coordconv: channels of the first conv block",
    "model.depth": "plaincnn, coordconv: number of conv blocks",
    "coord_channels": "add the x/(W+1) and y/(H+1) coordinate channels",
    "units": "target units: pixels, or normalized (one pixel = 1/(W+1) along x, 1/(H+1) "
             "along y: the coordinate channels' units)",
    "allow_coincident": "distance: let A and B fall on one pixel, as the notebook did",
    "input_norm": "input normalisation: auto, none, task (per-channel standardisation "
                  "from the task's images) or imagenet",
    "precise_bn": "recalibrate BatchNorm statistics at the evaluated weights before every "
                  "evaluation",
    "bn_samples": "training samples the BatchNorm recalibration uses",
    "distractors": "extra objects of another kind during training",
    "eval_distractors": "extra objects during evaluation (default: as in training)",
    "split": "uniform, or quadrant (training never uses the held-out quadrant)",
    "pretrained": "ImageNet weights (torchvision backbones)",
    "weights_path": "load backbone weights from this file instead of the download cache",
    "freeze_preconv": "seednet: really freeze the 1x1 preconv (the notebook did not)",
    "pool": "plaincnn: downsampling between blocks", "global_pool": "global pooling",
    "steps": "training steps (wins over --epochs)", "epochs": "epochs of --samples-per-epoch",
    "eval_every": "validate every N steps (0: ten times a run)",
    "log_every": "read the loss back every N steps (0: 1 on CPU, 20 on CUDA)",
    "amp": "bf16 autocast on CUDA", "device": "auto, cpu, cuda or cuda:N",
}
CHOICES = {"units": ("pixels", "normalized"), "split": ("uniform", "quadrant"),
           "loss": ("l1", "mse", "huber"), "optimizer": ("adam", "adamw", "sgd"),
           "pool": ("max", "avg", "stride", "none"), "global_pool": ("max", "avg"),
           "input_norm": ("auto", "none", "task", "imagenet")}


def _flag(section: str, name: str) -> str:
    """Task settings are unprefixed; model settings whose names clash get `model-`."""
    if name == "name":
        return f"--{section}"
    if section == "model" and name in ("width", "depth"):
        return f"--model-{name}"
    return "--" + name.replace("_", "-")


def _dest(section: str, name: str) -> str:
    return f"{section}__{name}"


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag for every field of the task, model and training configs."""
    p.add_argument("--preset", choices=sorted(PRESETS), help="fill in a preset's settings first")
    p.add_argument("--resolution", type=int, metavar="N", help="set --height and --width to N")
    for section, kind in SECTIONS:
        group = p.add_argument_group(f"{section} settings")
        for f in fields(kind):
            default = f.default if f.default is not MISSING else f.default_factory()
            kw: dict[str, Any] = {"dest": _dest(section, f.name), "default": argparse.SUPPRESS}
            ftype = f.type if isinstance(f.type, str) else str(f.type)
            if "bool" in ftype:
                kw["action"] = argparse.BooleanOptionalAction
            elif "int" in ftype:
                kw["type"] = int
            elif "float" in ftype:
                kw["type"] = float
            if f.name in CHOICES:
                kw["choices"] = CHOICES[f.name]
            elif "action" not in kw:
                kw["metavar"] = "N" if kw.get("type") is int else f.name.split("_")[-1].upper()
            text = HELP.get(f"{section}.{f.name}") or HELP.get(f.name, f.name.replace("_", " "))
            kw["help"] = f"{text} (default: {default})"
            group.add_argument(_flag(section, f.name), **kw)


def add_weights_flags(p: argparse.ArgumentParser, *, precise_bn: bool = True) -> None:
    """--which (the same default everywhere) and, for evaluations, --precise-bn."""
    p.add_argument("--which", choices=WEIGHTS, default=DEFAULT_WEIGHTS,
                   help="the last weights (those of the final metrics) or the best checkpoint "
                        f"(lowest validation MAE) (default: {DEFAULT_WEIGHTS})")
    if precise_bn:
        p.add_argument("--precise-bn", action=argparse.BooleanOptionalAction, default=None,
                       help="recalibrate BatchNorm statistics at these weights first "
                            "(default: as the run was trained, on unless --no-precise-bn)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the preset, then the flags the user gave."""
    cfg = RunConfig()
    if getattr(args, "preset", None):
        cfg = apply_preset(cfg, args.preset)
    data = cfg.to_dict()
    res = getattr(args, "resolution", None)
    if res is not None:
        data["task"]["height"] = data["task"]["width"] = res
    for key, value in vars(args).items():
        if "__" in key:
            section, name = key.split("__", 1)
            data[section][name] = value
    if "train__steps" not in vars(args) and "train__epochs" in vars(args):
        data["train"]["steps"] = None  # --epochs given alone: the preset's steps give way
    return RunConfig.from_dict(data)
