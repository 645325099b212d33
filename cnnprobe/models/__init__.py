"""The model registry: every network the lab can train, and the checks that a model fits a
task before any tensor is made.

Each model maps (B, C, H, W) float images to (B,) float32 predictions for any H, W of at
least its `min_size`, and ends in an fp32 RegressionHead (see head.py); the CoordConv
paper's models, which have no head, compute in fp32 throughout (paper.py).

This module is torch-free: the registry, the checks and `model_table` answer without
importing torch (`cnnprobe models`, the TUI's form before the engine has loaded); only
`build_model` imports the architecture it builds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, validate
from cnnprobe.models.spec import (
    BACKBONE_BATCH1_MIN_SIZE,
    BACKBONE_FLOATS_PER_PIXEL,
    BACKBONE_MIN_SIZE,
    CONV_PAPER_BATCH1_MIN_SIZE,
    CONV_PAPER_FLOATS_PER_PIXEL,
    CONV_PAPER_MIN_SIZE,
    COORDCONV_PAPER_FLOATS_PER_PIXEL,
    SEEDNET_FLOATS_PER_PIXEL,
    WeightsError,
    coordconv_floats_per_pixel,
    coordconv_min_size,
    plaincnn_batch1_min_size,
    plaincnn_floats_per_pixel,
    plaincnn_min_size,
    weights_file_problem,
)

if TYPE_CHECKING:
    from torch import nn

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
    # Parameters at the default options with 3 input channels, shown by `cnnprobe models`
    # without building (and so without importing torch); tests/test_models.py builds each
    # model and checks this number.
    params: int = 0
    # `auto` input normalisation is none: the model reads the raw images (the CoordConv
    # paper's models were trained on raw 0/1 images).
    raw_input: bool = False


def _const(value: float) -> Callable[[ModelConfig], float]:
    return lambda cfg: value


def _build_seednet(cfg: ModelConfig, in_channels: int) -> nn.Module:
    from cnnprobe.models.seednet import build_seednet

    return build_seednet(cfg, in_channels)


def _build_coordmlp(cfg: ModelConfig, in_channels: int) -> nn.Module:
    from cnnprobe.models.seednet import build_coordmlp

    return build_coordmlp(cfg, in_channels)


def _build_plaincnn(cfg: ModelConfig, in_channels: int) -> nn.Module:
    from cnnprobe.models.plaincnn import build_plaincnn

    return build_plaincnn(cfg, in_channels)


def _build_coordconv(cfg: ModelConfig, in_channels: int) -> nn.Module:
    from cnnprobe.models.coordconv import build_coordconv

    return build_coordconv(cfg, in_channels)


def _build_coordconv_paper(cfg: ModelConfig, in_channels: int) -> nn.Module:
    from cnnprobe.models.paper import build_coordconv_paper

    return build_coordconv_paper(cfg, in_channels)


def _build_conv_paper(cfg: ModelConfig, in_channels: int) -> nn.Module:
    from cnnprobe.models.paper import build_conv_paper

    return build_conv_paper(cfg, in_channels)


def _backbone(arch: str) -> Callable[[ModelConfig, int], nn.Module]:
    def build(cfg: ModelConfig, in_channels: int) -> nn.Module:
        from cnnprobe.models.backbones import build_backbone

        return build_backbone(arch, cfg, in_channels)

    build.__name__ = f"build_{arch}"
    return build


_SPECS = [
    ModelSpec("seednet", "the seed notebook's Net: 1x1 preconv (trained, as in the notebook, "
              "unless freeze_preconv), global max/min, 8 fc layers (features scaled by 128)",
              _build_seednet, lambda cfg: 1, True, False,
              _const(SEEDNET_FLOATS_PER_PIXEL),
              params=99_849),
    ModelSpec("coordmlp", "seednet's preconv and global max/min with normalized coordinate "
              "features and an MLP head (resolution-free)", _build_coordmlp, lambda cfg: 1,
              True, False, _const(SEEDNET_FLOATS_PER_PIXEL),
              params=33_801),
    ModelSpec("plaincnn", "depth x (conv3x3, BN, ReLU) with max/avg/stride/no downsampling, "
              "global pool, MLP head", _build_plaincnn,
              lambda cfg: plaincnn_min_size(cfg.depth, cfg.pool), False, False,
              plaincnn_floats_per_pixel,
              lambda cfg: plaincnn_batch1_min_size(cfg.depth, cfg.pool),
              params=421_921),
    ModelSpec("coordconv", "CoordConv (Liu et al. 2018): x/y channels before every conv, "
              "stride 2 every 2nd layer, max+avg pool", _build_coordconv,
              lambda cfg: coordconv_min_size(cfg.depth), False, False,
              coordconv_floats_per_pixel,
              params=39_393),
    ModelSpec("coordconv_paper", "the CoordConv paper's regressor: x/y channels once at the "
              "input, 1x1/3x3 linear convs of 8, global max pool, no MLP head",
              _build_coordconv_paper, _const(1), False, False,
              _const(COORDCONV_PAPER_FLOATS_PER_PIXEL), params=849, raw_input=True),
    ModelSpec("conv_paper", "the CoordConv paper's conv baseline (quadrant split): strided "
              "convs of 16 with ReLU, 2 BatchNorms, global mean", _build_conv_paper,
              _const(CONV_PAPER_MIN_SIZE), False, False, _const(CONV_PAPER_FLOATS_PER_PIXEL),
              _const(CONV_PAPER_BATCH1_MIN_SIZE), params=13_569, raw_input=True),
    ModelSpec("resnet18", "torchvision ResNet-18 (ImageNet weights optional), fc replaced by "
              "a regression head", _backbone("resnet18"),
              lambda cfg: BACKBONE_MIN_SIZE, False, True,
              _const(BACKBONE_FLOATS_PER_PIXEL["resnet18"]),
              lambda cfg: BACKBONE_BATCH1_MIN_SIZE,
              params=11_177_025),
    ModelSpec("resnet34", "torchvision ResNet-34 (ImageNet weights optional), fc replaced by "
              "a regression head", _backbone("resnet34"),
              lambda cfg: BACKBONE_MIN_SIZE, False, True,
              _const(BACKBONE_FLOATS_PER_PIXEL["resnet34"]),
              lambda cfg: BACKBONE_BATCH1_MIN_SIZE,
              params=21_285_185),
    ModelSpec("mobilenet_v3_small", "torchvision MobileNetV3-Small (ImageNet weights "
              "optional), last classifier layer replaced by a regression head",
              _backbone("mobilenet_v3_small"), lambda cfg: BACKBONE_MIN_SIZE, False,
              True, _const(BACKBONE_FLOATS_PER_PIXEL["mobilenet_v3_small"]),
              lambda cfg: BACKBONE_BATCH1_MIN_SIZE,
              params=1_518_881),
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
    notebook); the CoordConv paper's models too (the paper trained them on raw images).
    A backbone with loaded weights: imagenet (what its filters were trained on).
    Every other model: task, the per-channel standardisation fitted to the task's images,
    without which a conv net cannot see single-pixel markers beside the coordinate ramps.
    """
    if cfg.input_norm != "auto":
        return cfg.input_norm
    spec = _spec(cfg.name)
    if spec.needs_coord_channels or spec.raw_input:
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
    import torch

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


def check_model_fits(cfg: ModelConfig, task: TaskConfig, batch_size: int | None = None,
                     *, memory: bool = True) -> None:
    """Raise ConfigError when model `cfg` cannot run on `task` images (or, with
    `batch_size`, would not fit in memory); the error names the field to change.

    `memory=False` leaves out the memory check, the one part that imports torch (it asks
    CUDA for its free memory): the TUI's form checks that way until the engine has loaded,
    and the run checks again in full when it starts."""
    spec = _spec(cfg.name)
    _check_options(spec, cfg)
    problem = weights_file_problem(cfg.weights_path) if cfg.weights_path else ""
    if problem:
        raise ConfigError("model.weights_path", cfg.weights_path, problem)
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
    if not memory:
        return
    est = estimate_training_bytes(cfg, task, batch_size)
    avail, what = available_memory()
    if est > MEMORY_FRACTION * avail:
        gib = 2**30
        raise ConfigError("train.batch_size", batch_size,
                          f"training {spec.name} at {task.height}x{task.width} "
                          f"needs about {est / gib:.1f} GiB, over {MEMORY_FRACTION:.0%} of the "
                          f"{avail / gib:.1f} GiB {what}; lower the batch size or the "
                          "resolution")


def validate_run(cfg: RunConfig, *, memory: bool = True) -> RunConfig:
    """Check every field (config.validate), that the model fits the task and the memory at
    the batch size, and resolve `auto` settings (model.input_norm): the config a run
    records. Raises ConfigError naming the field. `memory=False`: see check_model_fits."""
    validate(cfg)
    check_model_fits(cfg.model, cfg.task, cfg.train.batch_size, memory=memory)
    norm = resolve_input_norm(cfg.model)
    if norm != cfg.model.input_norm:
        cfg = replace(cfg, model=replace(cfg.model, input_norm=norm))
    return cfg


def count_parameters(module: nn.Module) -> int:
    """Number of parameter values in `module` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def model_table(in_channels: int = 3) -> list[dict]:
    """One row per registry model: name, params (default options, no pretrained weights),
    min_size, needs_coord_channels, supports_pretrained and description. With 3 input
    channels (the default) nothing is built; with another count the non-coordinate models
    are built to count their parameters (coordinate models only exist with 3)."""
    rows = []
    for name, spec in MODELS.items():
        cfg = replace(ModelConfig(), name=name, pretrained=False, weights_path=None)
        params = spec.params
        if in_channels != 3 and not spec.needs_coord_channels:
            params = count_parameters(build_model(cfg, in_channels))
        rows.append({"name": name, "params": params,
                     "min_size": spec.min_size(cfg),
                     "needs_coord_channels": spec.needs_coord_channels,
                     "supports_pretrained": spec.supports_pretrained,
                     "description": spec.description})
    return rows


def __getattr__(name: str) -> Any:
    """The parts that are torch modules load on first use (PEP 562), so importing the
    registry stays torch-free."""
    if name in ("InputNorm", "RegressionHead"):
        from cnnprobe.models import head

        return getattr(head, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
