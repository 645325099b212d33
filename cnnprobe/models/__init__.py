"""The model registry: every network the lab can train, and the checks that a model fits a
task before any tensor is made.

Each model maps (B, C, H, W) float images to (B,) float32 predictions for any H, W of at
least its `min_size`, and ends in an fp32 RegressionHead (see head.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, validate
from cnnprobe.models.backbones import (
    BACKBONE_BATCH1_MIN_SIZE,
    BACKBONE_MIN_SIZE,
    BACKBONES,
    WeightsError,
    backbone_builder,
)
from cnnprobe.models.coordconv import (
    build_coordconv,
    coordconv_floats_per_pixel,
    coordconv_min_size,
)
from cnnprobe.models.head import InputNorm, RegressionHead
from cnnprobe.models.plaincnn import (
    build_plaincnn,
    plaincnn_batch1_min_size,
    plaincnn_floats_per_pixel,
    plaincnn_min_size,
)
from cnnprobe.models.seednet import SEEDNET_FLOATS_PER_PIXEL, build_coordmlp, build_seednet

__all__ = ["MODELS", "InputNorm", "ModelSpec", "RegressionHead", "WeightsError", "build_model",
           "check_model_fits", "count_parameters", "model_table", "resolve_input_norm",
           "validate_run"]

# Refuse a batch whose estimated training memory is above this share of what is available:
# the estimate is rough, and the rest of the process (data, optimizer state) needs room too.
MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build a model and what it needs from the task."""

    name: str
    description: str  # one line, shown by `cnnprobe models`
    build: Callable[[ModelConfig, int], nn.Module]  # (cfg, in_channels) -> module
    min_size: Callable[[ModelConfig], int]  # smallest input height/width
    needs_coord_channels: bool
    supports_pretrained: bool
    # fp32 values stored per input pixel per sample while training (activations + grads)
    floats_per_pixel: Callable[[ModelConfig], float]
    # Smallest max(H, W) at which a batch of ONE can train: a BatchNorm that sees a single
    # value per channel raises in training mode. None: same as min_size.
    batch1_min_size: Callable[[ModelConfig], int] | None = None


def _const(value: float) -> Callable[[ModelConfig], float]:
    return lambda cfg: value


_SPECS = [
    ModelSpec("seednet", "the seed notebook's Net: fixed 1x1 preconv, global max/min, 8 fc "
              "layers (features scaled by 128)", build_seednet, lambda cfg: 1, True, False,
              _const(SEEDNET_FLOATS_PER_PIXEL)),
    ModelSpec("coordmlp", "seednet's preconv and global max/min with normalized coordinate "
              "features and an MLP head (resolution-free)", build_coordmlp, lambda cfg: 1,
              True, False, _const(SEEDNET_FLOATS_PER_PIXEL)),
    ModelSpec("plaincnn", "depth x (conv3x3, BN, ReLU) with max/avg/stride/no downsampling, "
              "global pool, MLP head", build_plaincnn,
              lambda cfg: plaincnn_min_size(cfg.depth, cfg.pool), False, False,
              plaincnn_floats_per_pixel,
              lambda cfg: plaincnn_batch1_min_size(cfg.depth, cfg.pool)),
    ModelSpec("coordconv", "CoordConv (Liu et al. 2018): x/y channels before every conv, "
              "stride 2 every 2nd layer, max+avg pool", build_coordconv,
              lambda cfg: coordconv_min_size(cfg.depth), False, False,
              coordconv_floats_per_pixel),
    ModelSpec("resnet18", "torchvision ResNet-18 (ImageNet weights optional), fc replaced by "
              "a regression head", backbone_builder("resnet18"),
              lambda cfg: BACKBONE_MIN_SIZE, False, True,
              _const(BACKBONES["resnet18"].floats_per_pixel),
              lambda cfg: BACKBONE_BATCH1_MIN_SIZE),
    ModelSpec("resnet34", "torchvision ResNet-34 (ImageNet weights optional), fc replaced by "
              "a regression head", backbone_builder("resnet34"),
              lambda cfg: BACKBONE_MIN_SIZE, False, True,
              _const(BACKBONES["resnet34"].floats_per_pixel),
              lambda cfg: BACKBONE_BATCH1_MIN_SIZE),
    ModelSpec("mobilenet_v3_small", "torchvision MobileNetV3-Small (ImageNet weights "
              "optional), last classifier layer replaced by a regression head",
              backbone_builder("mobilenet_v3_small"), lambda cfg: BACKBONE_MIN_SIZE, False,
              True, _const(BACKBONES["mobilenet_v3_small"].floats_per_pixel),
              lambda cfg: BACKBONE_BATCH1_MIN_SIZE),
]
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError("model.name", name, f"one of {', '.join(MODELS)}")
    return MODELS[name]


def _check_options(spec: ModelSpec, cfg: ModelConfig) -> None:
    """Options that are wrong for this model whatever the task."""
    if not spec.supports_pretrained:
        having = ", ".join(n for n, s in MODELS.items() if s.supports_pretrained)
        fix = f"{spec.name} has no pretrained weights (only {having} do)"
        if cfg.pretrained:
            raise ConfigError("model.pretrained", cfg.pretrained, f"{fix}; set it to false")
        if cfg.weights_path:
            raise ConfigError("model.weights_path", cfg.weights_path, f"{fix}; leave it unset")
    if cfg.freeze_preconv and spec.name != "seednet":
        raise ConfigError("model.freeze_preconv", cfg.freeze_preconv,
                          f"a seednet option; {spec.name} has no preconv1 to freeze")
    if spec.needs_coord_channels and cfg.input_norm not in ("auto", "none"):
        raise ConfigError("model.input_norm", cfg.input_norm,
                          f"{spec.name} reads the raw coordinate channels (marker + x/(W+1)); "
                          "set it to none (or auto)")


def resolve_input_norm(cfg: ModelConfig) -> str:
    """The input normalisation `auto` means for this model (any other value is kept).

    seednet and coordmlp: none (their features are the raw coordinate values, as in the
    notebook). A backbone with loaded weights: imagenet (what its filters were trained on).
    Every other model: task, the per-channel standardisation fitted to the task's images,
    without which a conv net cannot see single-pixel markers beside the coordinate ramps.
    """
    if cfg.input_norm != "auto":
        return cfg.input_norm
    spec = _spec(cfg.name)
    if spec.needs_coord_channels:
        return "none"
    if spec.supports_pretrained and (cfg.pretrained or cfg.weights_path):
        return "imagenet"
    return "task"


def _check_channels(spec: ModelSpec, in_channels: int) -> None:
    if spec.needs_coord_channels and in_channels != 3:
        raise ConfigError("task.coord_channels", False,
                          f"{spec.name} reads the x and y coordinate channels (3 input "
                          "channels); turn them on or pick another model")


def build_model(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Build the registry model `cfg.name` for inputs of `in_channels` channels.

    The module has `min_size` and maps (B, in_channels, H, W) to (B,) float32.
    Raises ConfigError for an unknown name or options the model does not have.
    """
    spec = _spec(cfg.name)
    _check_options(spec, cfg)
    _check_channels(spec, in_channels)
    return spec.build(replace(cfg, input_norm=resolve_input_norm(cfg)), in_channels)


def available_memory() -> tuple[int, str]:
    """Bytes a training run may use and what they are: free CUDA memory when CUDA is
    available, else the machine's physical RAM."""
    if torch.cuda.is_available():
        try:
            free, _total = torch.cuda.mem_get_info()
            return int(free), "free GPU memory"
        except RuntimeError:  # a CUDA that cannot report; judge by RAM instead
            pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical RAM"


def estimate_training_bytes(cfg: ModelConfig, task: TaskConfig, batch_size: int) -> float:
    """Rough activation + gradient memory of one training step, in bytes."""
    spec = _spec(cfg.name)
    return batch_size * task.height * task.width * spec.floats_per_pixel(cfg) * 4


def check_model_fits(cfg: ModelConfig, task: TaskConfig, batch_size: int | None = None) -> None:
    """Raise ConfigError when model `cfg` cannot run on `task` images (or, with
    `batch_size`, would not fit in memory); the error names the field to change."""
    spec = _spec(cfg.name)
    _check_options(spec, cfg)
    if cfg.weights_path and not os.path.isfile(os.path.expanduser(cfg.weights_path)):
        raise ConfigError("model.weights_path", cfg.weights_path,
                          "file not found; give the path of a saved state dict")
    if spec.needs_coord_channels and not task.coord_channels:
        _check_channels(spec, task.in_channels)
    need = spec.min_size(cfg)
    for side in ("height", "width"):
        value = getattr(task, side)
        if value < need:
            raise ConfigError(f"task.{side}", value, f"at least {need} for {spec.name}")
    if batch_size is None:
        return
    one = spec.batch1_min_size(cfg) if spec.batch1_min_size else need
    if batch_size == 1 and max(task.height, task.width) < one:
        raise ConfigError("train.batch_size", batch_size,
                          f"at least 2 for {spec.name} at {task.height}x{task.width}: with one "
                          "image its last BatchNorm sees a single value per channel; or use "
                          f"images of at least {one} px")
    est = estimate_training_bytes(cfg, task, batch_size)
    avail, what = available_memory()
    if est > MEMORY_FRACTION * avail:
        gib = 2**30
        raise ConfigError("train.batch_size", batch_size,
                          f"training {spec.name} at {task.height}x{task.width} "
                          f"needs about {est / gib:.1f} GiB, over {MEMORY_FRACTION:.0%} of the "
                          f"{avail / gib:.1f} GiB {what}; lower the batch size or the "
                          "resolution")


def validate_run(cfg: RunConfig) -> RunConfig:
    """Check every field (config.validate), that the model fits the task and the memory at
    the batch size, and resolve `auto` settings (model.input_norm): the config a run
    records. Raises ConfigError naming the field."""
    validate(cfg)
    check_model_fits(cfg.model, cfg.task, cfg.train.batch_size)
    norm = resolve_input_norm(cfg.model)
    if norm != cfg.model.input_norm:
        cfg = replace(cfg, model=replace(cfg.model, input_norm=norm))
    return cfg


def count_parameters(module: nn.Module) -> int:
    """Number of parameter values in `module` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def model_table(in_channels: int = 3) -> list[dict]:
    """One row per registry model: name, params (default options, no pretrained weights),
    min_size, needs_coord_channels, supports_pretrained and description."""
    rows = []
    for name, spec in MODELS.items():
        cfg = replace(ModelConfig(), name=name, pretrained=False, weights_path=None)
        # Coordinate models only exist with 3 input channels; count them that way.
        channels = 3 if spec.needs_coord_channels else in_channels
        rows.append({"name": name, "params": count_parameters(build_model(cfg, channels)),
                     "min_size": spec.min_size(cfg),
                     "needs_coord_channels": spec.needs_coord_channels,
                     "supports_pretrained": spec.supports_pretrained,
                     "description": spec.description})
    return rows
