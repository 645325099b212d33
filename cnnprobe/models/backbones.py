"""torchvision backbones (resnet18, resnet34, mobilenet_v3_small) behind one regression head.

The notebook compared its own net with an ImageNet-pretrained resnet18 whose `fc` became
Linear(512, 1). Here each backbone's 1000-class layer is replaced by a RegressionHead, and
weights come from one of two places:

- `pretrained=True`: torchvision's ImageNet file from the torch hub cache
  (`torch.hub.get_dir()/checkpoints/<file>`), downloaded by torchvision when missing. Offline,
  a WeightsError says where to put the file or how to pass a local one instead.
- `weights_path=FILE`: a local state dict, either torchvision's own format (its classifier
  is skipped: 1000 outputs do not fit our head) or one of our own saved models.

Inputs with other than 3 channels get a new first conv; with loaded weights it starts from
the pretrained kernel's mean over its 3 input channels, repeated, so the ImageNet filters
still respond to the new input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import (
    MobileNet_V3_Small_Weights,
    ResNet18_Weights,
    ResNet34_Weights,
    WeightsEnum,
)

from cnnprobe.config import ModelConfig
from cnnprobe.errors import first_line
from cnnprobe.models.head import ProbeModel, RegressionHead
from cnnprobe.models.spec import (  # noqa: F401 - re-exported
    BACKBONE_BATCH1_MIN_SIZE,
    BACKBONE_FLOATS_PER_PIXEL,
    BACKBONE_MIN_SIZE,
    WeightsError,
    weights_file_problem,
)


@dataclass(frozen=True)
class Backbone:
    """How to build one torchvision backbone and where its parts are."""

    factory: Callable[..., nn.Module]
    weights: WeightsEnum
    first_conv: str  # dotted path of the conv that sees the input
    classifier: str  # dotted path of the 1000-class Linear we replace


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1,
                         "conv1", "fc"),
    "resnet34": Backbone(torchvision.models.resnet34, ResNet34_Weights.IMAGENET1K_V1,
                         "conv1", "fc"),
    "mobilenet_v3_small": Backbone(torchvision.models.mobilenet_v3_small,
                                   MobileNet_V3_Small_Weights.IMAGENET1K_V1,
                                   "features.0.0", "classifier.3"),
}


class BackboneRegressor(ProbeModel):
    """A torchvision backbone without its classifier, then a one-output RegressionHead."""

    def __init__(self, arch: str, in_channels: int, input_norm: str = "none"):
        super().__init__(in_channels, BACKBONE_MIN_SIZE, input_norm)
        spec = BACKBONES[arch]
        self.arch = arch
        self.backbone = spec.factory(weights=None)
        old_head = self.backbone.get_submodule(spec.classifier)
        self.backbone.set_submodule(spec.classifier, nn.Identity())
        self.head = RegressionHead(old_head.in_features)
        if in_channels != 3:
            old = self.backbone.get_submodule(spec.first_conv)
            new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=old.stride,
                            padding=old.padding, bias=old.bias is not None)
            # torchvision's own init for these convs, so a fresh model starts the same way.
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            self.backbone.set_submodule(spec.first_conv, new)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image, shape (B,) float32."""
        return self.head(self.backbone(self.prepare_input(x)))


def _load_problem(exc: BaseException) -> str:
    """Why torch.load refused a file, in one line: its weights_only errors are paragraphs
    whose useful part is the 'WeightsUnpickler error' clause."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", str(exc))
    if match:
        detail = match.group(1).strip()
        if "Unsupported global" in detail:
            return (f"it holds Python objects, not just tensors ({detail}); save "
                    "model.state_dict() rather than the model")
        return f"not a torch.save file ({detail})"
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    return first_line(exc, 160)


def _as_state_dict(obj: Any, field: str, source: str) -> dict[str, torch.Tensor]:
    """Accept a state dict, or a checkpoint dict holding one under 'state_dict' or 'model'."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError(field, source, "does not hold a state dict (a dict of tensors); "
                           "save one with torch.save(model.state_dict(), FILE)")
    return dict(obj)


def read_state_file(path: str, field: str = "model.weights_path") -> dict[str, torch.Tensor]:
    """Load a state dict from a local file on the CPU, or raise WeightsError naming it."""
    p = Path(path).expanduser()
    problem = weights_file_problem(p)
    if problem:
        raise WeightsError(field, path, problem)
    try:
        # weights_only: a weights file from elsewhere must not be able to run code.
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(field, path, weights_file_problem(p) or
                           f"not a readable torch state dict: {_load_problem(exc)}") from exc
    return _as_state_dict(obj, field, path)


def _fit_report(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """Describe how `given` fails to fit `expected`; '' when it fits."""
    # Old files may lack BatchNorm's step counter; BatchNorm fills it in itself.
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    wrong = [k for k in expected if k in given and given[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} shape mismatches (e.g. {k}: file "
                        f"{tuple(given[k].shape)}, model {tuple(expected[k].shape)})")
    return ", ".join(problems)


def load_weights(model: BackboneRegressor, state: Mapping[str, torch.Tensor], field: str,
                 source: str) -> None:
    """Load a torchvision-format or own-format state dict into `model`, or raise WeightsError."""
    if any(k.startswith(("backbone.", "head.")) for k in state):
        target: nn.Module = model  # one of our own saved models: must match exactly
        given = dict(state)
    else:
        spec = BACKBONES[model.arch]
        target = model.backbone
        # The 1000-class classifier cannot fit a one-output head; skip it.
        given = {k: v for k, v in state.items() if not k.startswith(spec.classifier + ".")}
        conv_key = spec.first_conv + ".weight"
        w = given.get(conv_key)
        if model.in_channels != 3 and w is not None and w.dim() == 4 and w.shape[1] == 3:
            # Mean over the RGB kernels, repeated: each new channel gets the filter's
            # average colour response, so pretrained features still fire.
            given[conv_key] = w.mean(dim=1, keepdim=True).repeat(1, model.in_channels, 1, 1)
    problem = _fit_report(target.state_dict(), given)
    if problem:
        raise WeightsError(field, source, f"does not fit {model.arch} with "
                           f"{model.in_channels} input channels: {problem}")
    target.load_state_dict(given, strict=False)


def weights_file_name(arch: str) -> str:
    """The file name torchvision's ImageNet weights for `arch` have in the hub cache."""
    return os.path.basename(urlparse(BACKBONES[arch].weights.url).path)


def hub_checkpoint_dir() -> str:
    """Where torch hub keeps downloaded weights (follows TORCH_HOME at call time)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def pretrained_state(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights for `arch` from the hub cache, downloading when missing.

    Returns the state dict and the file it came from; raises WeightsError on model.pretrained
    when the file is neither cached nor downloadable.
    """
    url = BACKBONES[arch].weights.url
    name = weights_file_name(arch)
    cache_dir = hub_checkpoint_dir()
    cached = os.path.join(cache_dir, name)
    local = "pass model.weights_path=FILE"
    if os.path.isfile(cached):
        try:
            obj = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a corrupt file
            raise WeightsError("model.pretrained", True,
                               f"cached weights {cached} are unreadable ({_load_problem(exc)}); "
                               f"replace that file with a good copy of {url}, or {local}"
                               ) from exc
    else:
        # torch hub's downloader, as torchvision's get_state_dict uses it, but called directly:
        # load_state_dict_from_url also writes "Downloading: ..." to stderr, which would
        # scribble over the TUI. The hash prefix in the file name is checked the same way.
        found = torch.hub.HASH_REGEX.search(name)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            torch.hub.download_url_to_file(url, cached, found.group(1) if found else None,
                                           progress=False)
            obj = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:  # offline: URLError; a bad download: RuntimeError, OSError
            raise WeightsError("model.pretrained", True,
                               f"ImageNet weights for {arch} are not cached and could not be "
                               f"downloaded ({first_line(exc, 160)}); put the file {name} "
                               f"(from {url}) in {cache_dir}, or {local}") from exc
    return _as_state_dict(obj, "model.pretrained", cached), cached


def build_backbone(arch: str, cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Build `arch` with a regression head; weights_path wins over pretrained."""
    model = BackboneRegressor(arch, in_channels, cfg.input_norm)
    if cfg.weights_path:
        state = read_state_file(cfg.weights_path)
        load_weights(model, state, "model.weights_path", cfg.weights_path)
    elif cfg.pretrained:
        state, source = pretrained_state(arch)
        load_weights(model, state, "model.pretrained", source)
    return model
