"""Look inside a model: which layers to watch, their outputs for given images, and the sample.

`capture` runs one forward pass with forward hooks on the layers of interest and returns
their outputs in the order they were produced. A layer of interest is a conv, a pooling
layer, a linear layer, a block (torchvision BasicBlock, Bottleneck, InvertedResidual,
Conv2dNormActivation) or the activation that closes a conv/BatchNorm block inside a
Sequential (plaincnn's and coordconv's ReLUs), so every model shows its post-activation
block outputs. Two layers that return the very same tensor (a block whose output is its
last child's) are listed once, under the outer name. A module called twice in one forward
keeps its first call.

seednet and coordmlp never call their 1x1 preconv as a module (see seednet.py), so for them
the preconv map and the four marker features fed to the MLP are computed beside the hooks
as two extra layers, `preconv1` (or `preconv`) and `features`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import Conv2dNormActivation

from cnnprobe.config import ConfigError, RunConfig, TaskConfig
from cnnprobe.engine.evaluate import DRAW_CHUNK
from cnnprobe.models.head import InputNorm
from cnnprobe.models.seednet import CoordMLP, SeedNet
from cnnprobe.results import Activation
from cnnprobe.tasks import Batch, make_generator, make_task

CONVS = (nn.Conv2d,)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
LINEARS = (nn.Linear,)
BLOCKS = (BasicBlock, Bottleneck, InvertedResidual, Conv2dNormActivation)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.ELU, nn.Hardswish, nn.SiLU, nn.GELU, nn.LeakyReLU)
MAP_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)
INPUT = "input"
FRESH_STREAM = "inspect"  # the stream a fresh draw comes from (seeded by `seed`)


def as_batch_array(out: torch.Tensor) -> tuple[str, torch.Tensor]:
    """A layer output as ("map", (B, C, H, W)) or ("vector", (B, F)), detached, float32."""
    t = out.detach().float()
    if t.dim() == 4 and t.shape[2] * t.shape[3] > 1:
        return "map", t
    if t.dim() == 1:
        return "vector", t[:, None]
    return "vector", t.flatten(1)


def _virtual_layers(model: nn.Module) -> list[tuple[str, str, Callable]]:
    """(name, module, fn(images)) for outputs a model computes without calling a module."""
    if isinstance(model, (SeedNet, CoordMLP)):
        conv_name = "preconv1" if isinstance(model, SeedNet) else "preconv"
        conv = getattr(model, conv_name)
        return [(conv_name, "Conv2d", conv), ("features", "features", model.features)]
    return []


def _candidates(model: nn.Module) -> dict[str, nn.Module]:
    """Every module that may be a layer of interest, by name (see the module docstring)."""
    found: dict[str, nn.Module] = {}
    for name, mod in model.named_modules():
        if name and isinstance(mod, (InputNorm, *CONVS, *POOLS, *LINEARS, *BLOCKS)):
            found[name] = mod
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (_, prev), (kid_name, kid) in zip(kids, kids[1:], strict=False):
                closes_block = isinstance(prev, MAP_LAYERS) or any(
                    isinstance(m, CONVS) for m in prev.modules())
                if isinstance(kid, ACTIVATIONS) and closes_block:
                    found[f"{name}.{kid_name}" if name else kid_name] = kid
    return found


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def hooked_forward(model: nn.Module, images: torch.Tensor, modules: dict[str, nn.Module],
                   keep: Callable[[str, str, str, torch.Tensor], None], *, dedupe: bool,
                   virtual: set[str] | None = None) -> list[str]:
    """Forward `images` with a hook on each module; `keep(name, kind, module, out)` hears the
    input, the virtual layers (all, or those named in `virtual`) and each module's first
    call, before any in-place op can change it. Returns the module names that fired, in
    order; with `dedupe`, a name whose output is the same tensor as an earlier one's
    replaces it (the outer module wins)."""
    fired: list[str] = []
    called: set[str] = set()
    outputs: dict[str, torch.Tensor] = {}  # held only during this pass, for `dedupe`

    def hook_for(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple, out: object) -> None:
            if name in called:
                return  # a second call of the same module: keep the first
            called.add(name)
            t = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(t, torch.Tensor):
                return
            if dedupe:
                same = [n for n, o in outputs.items() if o is t]
                for n in same:
                    fired.remove(n)
                    del outputs[n]
                outputs[name] = t
            fired.append(name)
            kind, arr = as_batch_array(t)
            keep(name, kind, type(mod).__name__, arr)
        return hook

    # A virtual layer's module (seednet's preconv) is called by hand below, not hooked.
    skip = {n for n, _, _ in _virtual_layers(model)}
    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items() if n not in skip]
    was_training = model.training
    model.eval()
    try:
        x = images.to(_device(model), torch.float32)
        keep(INPUT, "map", INPUT, x)
        for name, module_name, fn in _virtual_layers(model):
            if virtual is None or name in virtual:
                kind, arr = as_batch_array(fn(x))
                keep(name, kind, module_name, arr)
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return fired


def _example(model: nn.Module) -> torch.Tensor:
    size = max(32, int(getattr(model, "min_size", 1)))
    return torch.zeros(1, int(getattr(model, "in_channels", 3)), size, size)


def layers_of_interest(model: nn.Module, *, nested: bool = True,
                       example: torch.Tensor | None = None) -> list[str]:
    """Names of the layers `capture` records by default, in forward order.

    Found by one forward of `example` (default: zeros at 32 px or the model's min_size).
    `nested=False` keeps only the outermost ones (a BasicBlock, not the convs inside it).
    """
    x = _example(model) if example is None else example
    fired = hooked_forward(model, x, _candidates(model), lambda *a: None, dedupe=True,
                           virtual=set())
    names = [n for n, _, _ in _virtual_layers(model)] + fired
    if not nested:
        names = [n for n in names if not any(n.startswith(o + ".") for o in names)]
    return names


def check_layers(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """The modules behind user-given layer names (any module name, or a virtual layer; the
    input always comes first anyway); ConfigError names an unknown one."""
    virtual = {n for n, _, _ in _virtual_layers(model)}
    named = dict(model.named_modules())
    for name in layers:
        if name == INPUT:
            continue
        if name not in named and name not in virtual:
            known = layers_of_interest(model)
            raise ConfigError("layers", name, "a layer of this model, e.g. "
                              + ", ".join(known[:6]) + (", ..." if len(known) > 6 else ""))
    return {n: named[n] for n in layers if n in named}


def check_size(model: nn.Module, height: int, width: int) -> None:
    """ConfigError when the model cannot take images of this size."""
    need = int(getattr(model, "min_size", 1))
    if min(height, width) < need:
        raise ConfigError("resolution", f"{height}x{width}", f"at least {need} for this model")


def capture(model: nn.Module, images: torch.Tensor, layers: Sequence[str] | None = None
            ) -> list[Activation]:
    """Outputs of each layer (default: `layers_of_interest`) for the whole batch `images`,
    in the order they were produced, after the input itself (named "input")."""
    check_size(model, *images.shape[-2:])
    acts: list[Activation] = []

    def keep(name: str, kind: str, module: str, t: torch.Tensor) -> None:
        acts.append(Activation(name, kind, module, t.cpu().numpy().copy()))

    if layers is None:
        fired = hooked_forward(model, images, _candidates(model), keep, dedupe=True)
        wanted = {INPUT, *fired, *(n for n, _, _ in _virtual_layers(model))}
        return [a for a in acts if a.name in wanted]
    modules = check_layers(model, layers)
    hooked_forward(model, images, modules, keep, dedupe=False, virtual=set(layers))
    return [a for a in acts if a.name == INPUT or a.name in layers]


def sample_input(task_cfg: TaskConfig, *, seed: int = 0, index: int | None = None,
                 val_seed: int | None = None, val_size: int = 2048,
                 distractors: int | None = None, device: torch.device | str = "cpu") -> Batch:
    """One sample as a batch of one: a fresh draw (seeded by `seed`), or, with `index`, sample
    `index` of the validation set `predict` draws for a run whose train seed is `val_seed`.

    The validation set depends on its size (`val_size`), the evaluation distractor count and
    the device the run drew it on (CUDA and CPU generators differ), so pass the run's own.
    """
    task = make_task(task_cfg)
    if index is None:
        g = make_generator(seed, device, FRESH_STREAM)
        batch = task.sample(1, g, distractors=distractors)
        return Batch(batch.images.clone(), batch.targets.clone(), batch.boxes, batch.valid)
    if not (isinstance(index, int) and 0 <= index < val_size):
        raise ConfigError("sample", index, f"an index from 0 to {val_size - 1} "
                          f"(the run's validation set has {val_size} samples)")
    try:
        g = make_generator(seed if val_seed is None else val_seed, device, "val")
    except RuntimeError as exc:
        raise ConfigError("device", str(device), "a device this machine has; the run validated "
                          "there, so use a fresh draw (seed) instead of a sample index") from exc
    done = 0
    while True:  # the same chunks as evaluate.predict, so index i is its sample i
        batch = task.sample(min(DRAW_CHUNK, val_size - done), g, distractors=distractors)
        if index < done + len(batch):
            j = index - done
            return Batch(batch.images[j:j + 1].clone(), batch.targets[j:j + 1].clone(),
                         batch.boxes[j:j + 1], batch.valid[j:j + 1])
        done += len(batch)


def run_sample(config: RunConfig, *, index: int | None = None, seed: int = 0,
               height: int | None = None, width: int | None = None,
               device: torch.device | str = "cpu") -> tuple[TaskConfig, Batch]:
    """A stored run's task (optionally at another size) and one sample of it: sample `index`
    of the run's validation stream, or a fresh draw seeded by `seed`; both with the
    evaluation distractor count."""
    task_cfg = replace(config.task, height=config.task.height if height is None else height,
                       width=config.task.width if width is None else width)
    batch = sample_input(task_cfg, seed=seed, index=index, val_seed=config.train.seed,
                         val_size=config.train.val_size,
                         distractors=task_cfg.eval_distractor_count, device=device)
    return task_cfg, batch
