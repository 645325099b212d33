"""Evaluation: per-sample predictions, metrics, error-by-label, resolution and distractor sweeps,
and the state a model is evaluated in (`evaluation_state`: BatchNorm statistics recalibrated
at the weights being evaluated, and the record of what produced the numbers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cnnprobe.config import DEFAULT_RESOLUTIONS, ConfigError, RunConfig, TaskConfig  # noqa: F401 - re-exported
from cnnprobe.measurement import measured
from cnnprobe.metrics import compute_metrics, error_by_label  # noqa: F401 - re-exported
from cnnprobe.results import Evaluation, Sweep
from cnnprobe.tasks import make_generator, make_task

# The notebook's sweep: range(64, 256, 10), i.e. 64, 74, ..., 254.
DRAW_CHUNK = 256


def autocast_for(device: torch.device, amp: bool = True):
    """bf16 autocast on CUDA; nothing on the CPU (where bf16 is slow and gains nothing)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


BN_STREAM = "bn-calibration"


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def input_norm_of(model: nn.Module) -> str:
    """The model's input normalisation ("none", "task" or "imagenet")."""
    return getattr(model, "input_norm_kind", "none")


def calibration_batches(task_cfg: TaskConfig, n: int, *, seed: int, device: torch.device,
                        batch_size: int) -> Iterator[torch.Tensor]:
    """n fresh images from the training distribution (training size, training distractors,
    training region), from the run's own BatchNorm stream: the same n every time."""
    task = make_task(task_cfg)
    g = make_generator(seed, device, BN_STREAM)
    done = 0
    while done < n:
        batch = task.sample(min(batch_size, n - done), g)
        done += len(batch)
        yield batch.images


@contextmanager
def evaluation_state(model: nn.Module, config: RunConfig, device: torch.device | str, *,
                     weights: str, step: int, precise_bn: bool | None = None
                     ) -> Iterator[dict[str, Any]]:
    """Evaluate `model` inside this block: yields the `measured` record of the numbers.

    With precise BN (the run's `train.precise_bn` unless `precise_bn` says otherwise) every
    BatchNorm's statistics are recomputed at the current weights from `train.bn_samples`
    fresh training samples (torch's `update_bn`: an equal-weight average of the batches'
    statistics) and put back as they were when the block ends, so a checkpoint or a
    training run in progress keeps its own. Running statistics lag the weights on these
    sparse, near-constant images, and eval-mode numbers made with them can be far worse
    than what the weights have learned.
    """
    device = torch.device(device)
    tr = config.train
    use = tr.precise_bn if precise_bn is None else precise_bn
    bns = batchnorms(model)
    kind = "none" if not bns else "recalibrated" if use else "running"
    info = measured(weights, step, kind, tr.bn_samples, input_norm_of(model))
    if kind != "recalibrated":
        yield info
        return
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
              m.momentum) for m in bns]
    was_training = model.training
    try:
        batches = calibration_batches(config.task, tr.bn_samples, seed=tr.seed, device=device,
                                      batch_size=min(tr.batch_size, 512))
        with autocast_for(device, tr.amp):
            update_bn(batches, model)
        model.eval()
        yield info
    finally:
        for m, (mean, var, count, momentum) in zip(bns, saved, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def predict(model: torch.nn.Module, task_cfg: TaskConfig, n: int, *, seed: int,
            stream: str = "val", device: torch.device | str = "cpu", batch_size: int = 256,
            distractors: int | None = None, region: str = "train", amp: bool = True
            ) -> Evaluation:
    """Run the model on n samples drawn from one seeded stream of the task.

    The same seed and stream always give the same samples, so the validation set of a
    run is fixed without holding it in memory.
    """
    device = torch.device(device)
    task = make_task(task_cfg)
    min_size = getattr(model, "min_size", 1)
    if min(task_cfg.height, task_cfg.width) < min_size:
        raise ConfigError("resolution", f"{task_cfg.height}x{task_cfg.width}",
                          f"this model needs at least {min_size}x{min_size}")
    g = make_generator(seed, device, stream)
    was_training = model.training
    model.eval()
    preds, labels = [], []
    done = 0
    try:
        while done < n:
            # Draws come in fixed chunks, so the samples do not depend on batch_size.
            batch = task.sample(min(DRAW_CHUNK, n - done), g, distractors=distractors,
                                region=region)
            for x in batch.images.split(batch_size):
                with autocast_for(device, amp):
                    preds.append(model(x).float())
            labels.append(batch.targets)
            done += len(batch)
    finally:
        model.train(was_training)
    p = torch.cat(preds).cpu().numpy()
    y = torch.cat(labels).cpu().numpy()
    return Evaluation(p, y, compute_metrics(p, y, task_cfg.name))


def _sweep(model: torch.nn.Module, key: str, values: Iterable, configs: Iterable[TaskConfig],
           distractor_counts: Iterable[int | None], n: int, seed: int, *,
           cancel: Any = None, on_row: Callable[[dict], None] | None = None, **kw) -> Sweep:
    """`cancel` (anything with is_set()) is checked before each value; `on_row` gets each row."""
    rows, samples, cancelled = [], [], False
    for value, cfg, k in zip(values, configs, distractor_counts, strict=True):
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        ev = predict(model, cfg, n, seed=seed, stream=f"sweep-{key}-{value}", distractors=k,
                     **kw)
        rows.append({key: value, **ev.metrics})
        samples.append(pd.DataFrame({key: value, "label": ev.labels,
                                     "prediction": ev.predictions, "error": ev.errors}))
        if on_row is not None:
            on_row(rows[-1])
    columns = [key, "label", "prediction", "error"]
    table = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=columns)
    return Sweep(pd.DataFrame(rows), table, cancelled)


def resolution_sweep(model: torch.nn.Module, task_cfg: TaskConfig,
                     resolutions: Iterable[int] = DEFAULT_RESOLUTIONS, *, n: int = 512,
                     seed: int = 0, **kw) -> Sweep:
    """MAE and friends of a trained model on square images of each resolution."""
    resolutions = [int(r) for r in resolutions]
    if not resolutions:
        raise ConfigError("resolutions", resolutions, "at least one resolution")
    min_size = getattr(model, "min_size", 1)
    too_small = [r for r in resolutions if r < min_size]
    if too_small:
        raise ConfigError("resolutions", too_small, f"each at least {min_size} for this model")
    cfgs = [replace(task_cfg, height=r, width=r) for r in resolutions]
    for c in cfgs:
        make_task(c)  # validate every size before spending time on any
    return _sweep(model, "resolution", resolutions, cfgs, [None] * len(cfgs), n, seed, **kw)


def distractor_sweep(model: torch.nn.Module, task_cfg: TaskConfig, max_distractors: int = 8, *,
                     n: int = 512, seed: int = 0, **kw) -> Sweep:
    """Metrics as 0..max_distractors extra objects are added at evaluation."""
    if max_distractors < 0:
        raise ConfigError("max_distractors", max_distractors, "an integer of at least 0")
    ks = list(range(max_distractors + 1))
    cfgs = [replace(task_cfg, eval_distractors=k) for k in ks]
    for c in cfgs:
        make_task(c)
    return _sweep(model, "distractors", ks, cfgs, ks, n, seed, **kw)
