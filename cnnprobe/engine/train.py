"""The training loop: read it top to bottom. Events go out to callbacks; a cancel flag comes in."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Protocol

import torch
from torch import nn

from cnnprobe.config import RunConfig
from cnnprobe.engine.device import device_name, training_device
from cnnprobe.engine.evaluate import Evaluation, evaluation_state, predict
from cnnprobe.engine.step import TrainStep, wants_channels_last
from cnnprobe.errors import first_line
from cnnprobe.events import (
    Callback,
    Cancelled,
    EvaluationEvent,
    Failed,
    Finished,
    ResumeState,
    RunResult,
    RunStarted,
    StepEvent,
    TrainState,
)
from cnnprobe.metrics import mean_guess_mae, steps_to_r2
from cnnprobe.models import InputNorm, build_model, count_parameters, validate_run
from cnnprobe.tasks import make_generator, make_task, stream_seed

LOSSES = {"l1": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}
NORM_SAMPLES = 1024  # training-distribution images the task input normalisation is fitted on
NORM_FLOATS = 2**26  # at most this many values (256 MiB) drawn at once for that fit


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def make_optimizer(cfg: RunConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    tr = cfg.train
    params = [p for p in params if p.requires_grad]
    if tr.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tr.lr, momentum=0.9, weight_decay=tr.weight_decay)
    kind = torch.optim.AdamW if tr.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=tr.lr, weight_decay=tr.weight_decay)


def fit_input_norm(model: nn.Module, task: Any, seed: int, device: torch.device) -> None:
    """Fit a `task` input normalisation to NORM_SAMPLES images of the training distribution
    (its own stream of the run's seed); other normalisations are fixed constants.

    The images are drawn in one batch up to NORM_FLOATS values (every size to 128 px),
    in equal chunks above that, so the statistics depend on the task alone.
    """
    norm = getattr(model, "input_norm", None)
    if isinstance(norm, InputNorm) and norm.kind == "task":
        g = make_generator(seed, device, "input-norm")
        per_image = task.in_channels * task.cfg.height * task.cfg.width
        chunk = max(1, min(NORM_SAMPLES, NORM_FLOATS // per_image))
        sizes = [min(chunk, NORM_SAMPLES - i) for i in range(0, NORM_SAMPLES, chunk)]
        norm.fit(task.sample(n, g).images for n in sizes)


def fit_output_bias(model: nn.Module, task: Any, seed: int, device: torch.device) -> None:
    """For a model that asks (`output_bias_from_labels`: coordconv), start its prediction at
    the mean label of NORM_SAMPLES training draws (its own stream of the run's seed), drawn
    in chunks as fit_input_norm draws."""
    if not getattr(model, "output_bias_from_labels", False):
        return
    g = make_generator(seed, device, "output-bias")
    per_image = task.in_channels * task.cfg.height * task.cfg.width
    chunk = max(1, min(NORM_SAMPLES, NORM_FLOATS // per_image))
    total = sum(float(task.sample(min(chunk, NORM_SAMPLES - i), g).targets.double().sum())
                for i in range(0, NORM_SAMPLES, chunk))
    model.head.set_output_bias(total / NORM_SAMPLES)


def train(config: RunConfig, callbacks: Iterable[Callback] = (), cancel: CancelFlag | None = None,
          *, resume: ResumeState | None = None,
          init_model_state: dict[str, Any] | None = None) -> RunResult:
    """Train one run. Raises ConfigError before starting; anything after becomes a failed run.

    `resume` continues a stopped run (model, optimizer, data stream, step count);
    `init_model_state` starts a new run from other weights (a fine-tune).
    """
    cfg = validate_run(config)
    callbacks = list(callbacks)
    tr = cfg.train
    device = training_device(tr)
    task = make_task(cfg.task)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG state
        torch.manual_seed(stream_seed(tr.seed, "init"))
        model = build_model(cfg.model, task.in_channels)
    if resume is not None:
        model.load_state_dict(resume.model_state)
    elif init_model_state is not None:
        model.load_state_dict(init_model_state)  # a fine-tune keeps its parent's input norm
    model.to(device)
    channels_last = wants_channels_last(model, device, tr.channels_last)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model.parameters())
    train_step = TrainStep(model, optimizer, LOSSES[tr.loss](), device, amp=tr.amp,
                           channels_last=channels_last, compile=tr.compile)
    generator = make_generator(tr.seed, device, "train")
    step, samples_seen, best = 0, 0, math.inf
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer_state)
        generator.set_state(resume.generator_state.to("cpu"))
        step, samples_seen, best = resume.step, resume.samples_seen, resume.best_val_mae
    total = tr.total_steps
    log_every = tr.log_every or (1 if device.type == "cpu" else 20)
    result = RunResult(cfg, "running", "", step, samples_seen, 0.0, str(device),
                       device_name(device), model, optimizer, generator, best_val_mae=best)

    def emit(event: object) -> None:
        for cb in callbacks:
            cb(event)

    def evaluate(*regions: str) -> list[Evaluation]:
        # Statistics recalibrated once at these weights for every region, then put back:
        # training goes on with its own.
        with evaluation_state(model, cfg, device, weights="last", step=step) as how:
            evs = [predict(model, cfg.task, tr.val_size, seed=tr.seed,
                           stream="heldout" if region == "heldout" else "val", device=device,
                           batch_size=min(tr.batch_size, 512), amp=tr.amp,
                           distractors=cfg.task.eval_distractor_count, region=region)
                   for region in regions]
        for ev in evs:
            ev.measured = how
        return evs

    emit(RunStarted(total, step, str(device), result.device_name, count_parameters(model)))
    start = time.perf_counter()
    mark_t, mark_samples = start, samples_seen
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    last_eval: Evaluation | None = None
    batches = task.stream(tr.batch_size, generator)
    model.train()
    try:
        if resume is None and init_model_state is None:  # inside: a failure fails the run
            fit_input_norm(model, task, tr.seed, device)
            fit_output_bias(model, task, tr.seed, device)
        while step < total:
            if cancel is not None and cancel.is_set():
                result.status = "cancelled"
                break
            batch = next(batches)
            loss = train_step(batch.images, batch.targets)  # forward, backward, update
            step += 1
            samples_seen += len(batch)
            last_eval = None
            loss_sum += loss
            loss_count += 1

            # Reading the loss back syncs a GPU, so it happens every log_every steps only.
            if step % log_every == 0 or step == total:
                mean_loss = (loss_sum / loss_count).item()
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"loss became {mean_loss} at step {step}; "
                                             "lower train.lr or use train.loss=huber")
                now = time.perf_counter()
                rate = (samples_seen - mark_samples) / max(now - mark_t, 1e-9)
                mark_t, mark_samples = now, samples_seen
                loss_sum.zero_()
                loss_count = 0
                event = StepEvent(step, total, mean_loss, rate, samples_seen, now - start)
                result.train_history.append(event.row())
                emit(event)

            if step % tr.eval_interval == 0 or step == total:
                (last_eval,) = evaluate("train")
                is_best = last_eval.metrics["mae"] < best
                best = min(best, last_eval.metrics["mae"])
                result.val_history.append({"step": step, **last_eval.metrics})
                state = TrainState(model, optimizer, generator, step, samples_seen, best)
                emit(EvaluationEvent(step, dict(last_eval.metrics), is_best, state, last_eval))
        else:
            result.status = "finished"
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded, visible run
        result.status = "failed"
        result.reason = _reason(exc)
    result.steps_done, result.samples_seen, result.best_val_mae = step, samples_seen, best

    if result.status != "failed" and step > 0:
        try:
            regions = ([] if last_eval else ["train"]) + (
                ["heldout"] if cfg.task.split == "quadrant" else [])
            evs = evaluate(*regions) if regions else []
            result.evaluation = last_eval or evs.pop(0)
            result.final_metrics = dict(result.evaluation.metrics)
            result.measured = dict(result.evaluation.measured)
            # Time to learn, over every validation of the run (a resume's earlier ones too;
            # a final evaluation made after a cancel counts as one at its step).
            history = [*(resume.val_history if resume is not None else []),
                       *result.val_history,
                       *([] if last_eval else [{"step": step, **result.final_metrics}])]
            result.final_metrics.update(steps_to_r2(history))
            for held in evs:  # the held-out quadrant, at the same statistics
                result.final_metrics.update({f"heldout_{k}": v for k, v in held.metrics.items()})
                # Its own baseline: the training distribution's mean label (estimated by the
                # validation labels) guessed for every held-out sample.
                result.final_metrics["heldout_mean_guess_mae"] = mean_guess_mae(
                    held.labels, result.evaluation.labels)
        except Exception as exc:  # noqa: BLE001
            result.status, result.reason = "failed", _reason(exc)
    result.wall_time_s = time.perf_counter() - start

    if result.status == "finished":
        emit(Finished(result))
    elif result.status == "cancelled":
        emit(Cancelled(step, result))
    else:
        emit(Failed(result.reason, step, result))
    return result


def _reason(exc: BaseException) -> str:
    """One line for the log and the store: CUDA out-of-memory gets its fix spelled out."""
    if isinstance(exc, torch.OutOfMemoryError):
        return "CUDA out of memory: lower train.batch_size or the resolution"
    if isinstance(exc, FloatingPointError):
        return str(exc)
    return first_line(exc)
