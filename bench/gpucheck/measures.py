"""Speed of the real training path (`cnnprobe.engine.train.train`), as functions of a device:
samples/s of a model at a size and batch with each option, the TUI's cost while training
(bench/bench_tui.py in a subprocess), and what the built-in studies' trials would take."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.train import train
from cnnprobe.events import EvaluationEvent, Finished, StepEvent
from cnnprobe.studies.builtin import builtin_plan

from .results import Result

BENCH = Path(__file__).resolve().parents[1]


def loop_rate(history: list[dict[str, float]], batch: int) -> tuple[float, float]:
    """samples/s from the first loss read to the last (the warm-up and any compilation are
    before the first), and seconds per step over the same stretch."""
    first, last = history[0], history[-1]
    span = last["elapsed_s"] - first["elapsed_s"]
    steps = last["step"] - first["step"]
    if span <= 0 or steps <= 0:
        raise ValueError("too few loss reads to time the loop: raise steps or lower log_every")
    return steps * batch / span, span / steps


def training_rate(half: str, device: torch.device, model: str, size: int, batch: int, *,
                  steps: int = 40, log_every: int = 10, channels_last: str = "auto",
                  compile: str = "off", amp: bool = True, task: str = "distance") -> Result:
    """samples/s of train() itself: the batches drawn on the device, the step, the loss read
    every `log_every` steps; timed between reads (each read syncs, so the span is the
    device's)."""
    cfg = RunConfig(TaskConfig(name=task, height=size, width=size), ModelConfig(name=model),
                    TrainConfig(batch_size=batch, steps=steps, eval_every=steps,
                                val_size=min(batch, 256), precise_bn=False,
                                log_every=log_every, lr=1e-4, device=str(device), amp=amp,
                                channels_last=channels_last, compile=compile))
    bf16 = amp and device.type == "cuda"  # the engine autocasts on CUDA only
    options = f"{'bf16' if bf16 else 'fp32'}, channels-last {channels_last}" + (
        f", compile {compile}" if compile != "off" else "")
    name = f"{model} train() at {size} px, batch {batch}, {options}"
    result = train(cfg)
    if result.status != "finished":
        return Result(half, "measure", name, False, detail=f"{result.status}: {result.reason}")
    rate, step_s = loop_rate(result.train_history, batch)
    return Result(half, "measure", name, None, rate, "samples/s",
                  detail=f"{1000 * step_s:.2f} ms/step; warm-up "
                         f"{result.train_history[0]['elapsed_s']:.1f} s",
                  data={"step_ms": 1000 * step_s, "config": cfg.to_dict()})


def tui_overhead(half: str, device: torch.device, *, repeats: int = 1, steps: int = 1500,
                 timeout_s: float = 180, script: Path = BENCH / "bench_tui.py"
                 ) -> list[Result]:
    """bench_tui.py on this device: headless samples/s and the share kept while the TUI
    watches (and with a key every second), and the UI thread's CPU share."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tui.json"
        cmd = [sys.executable, str(script), "--device", str(device),
               "--repeats", str(repeats), "--steps", str(steps), "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return [Result(half, "measure", "TUI overhead (bench_tui.py)", False,
                           detail=f"exit {proc.returncode}: {tail[0]}")]
        data = json.loads(out.read_text())
    where = f"seednet 32 px, batch 16, {steps} steps, best of {repeats}"
    headless = max(data["headless_samples_per_s"])
    share_w = data["ui_thread_cpu_share_watching"]
    return [Result(half, "measure", "training headless (bench_tui)", None, headless,
                   "samples/s", detail=where, data=data),
            Result(half, "measure", "TUI watching: share of headless samples/s", None,
                   100 * data["ratio_watching"], "%",
                   detail=f"UI thread CPU {100 * min(share_w):.1f}% of wall; goal >= 95%"),
            Result(half, "measure", "TUI with a plot key every 1 s: share of headless", None,
                   100 * data["ratio_keys"], "%",
                   detail=f"key latency median {data['key_latency_ms_median'] or 0:.0f} ms")]


def trial_seconds(cfg: RunConfig, device: torch.device, *, steps: int, log_every: int,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """What one trial of `cfg` takes on `device`, from a short run of it: its training steps
    at the measured rate, its periodic validations (each timed as the short run's one, from
    its last loss read to its EvaluationEvent), and what the end adds after the last one
    (a quadrant split's held-out evaluation, once per trial, from the EvaluationEvent to
    Finished). Both ends of each span follow a host read, so on a GPU they are not cut
    short by queued work."""
    full = cfg.train
    probe = replace(cfg, train=replace(full, steps=steps, eval_every=steps,
                                       log_every=log_every, device=str(device)))
    at: dict[str, float] = {}

    def note(event: object) -> None:
        if isinstance(event, StepEvent) and event.step == steps:
            at["read"] = clock()
        elif isinstance(event, EvaluationEvent) and event.step == steps:
            at["eval"] = clock()
        elif isinstance(event, Finished):
            at["done"] = clock()

    result = train(probe, [note])
    if result.status != "finished":
        raise RuntimeError(f"{cfg.model.name}: {result.status}: {result.reason}")
    _, step_s = loop_rate(result.train_history, full.batch_size)
    eval_s = at["eval"] - at["read"]
    final_s = at["done"] - at["eval"]
    setup_s = max(result.train_history[0]["elapsed_s"] - log_every * step_s, 0.0)
    n_evals = math.ceil(full.total_steps / full.eval_interval)
    return {"step_s": step_s, "eval_s": eval_s, "final_s": final_s, "setup_s": setup_s,
            "evaluations": n_evals,
            "trial_s": setup_s + full.total_steps * step_s + n_evals * eval_s + final_s}


def study_times(half: str, device: torch.device, scale: str, studies: list[str], *,
                steps: int = 15) -> list[Result]:
    """Each built-in study at `scale`: the sum over its trials (every seed) of the estimated
    trial time, one trial at a time. Trials differing only in seed, units or held-out
    quadrant cost the same and are timed once; ImageNet-pretrained ones are timed without
    loading the weights (the same computation). The study's evaluations after training
    (sweeps, fine-tunes, probes) are not included."""
    log_every = max(1, steps // 3)  # three loss reads: two timed stretches
    cache: dict[str, dict[str, float]] = {}
    out = []
    for name in studies:
        plan = builtin_plan(name, scale)
        trials = plan.trials()
        total, distinct = 0.0, set()
        for trial in trials:
            cfg = trial.config
            cfg = replace(cfg, model=replace(cfg.model, pretrained=False, weights_path=None),
                          train=replace(cfg.train, seed=0))
            data = cfg.to_dict()
            data["task"].pop("units")  # pixels or normalized: the same computation
            key = json.dumps(data, sort_keys=True, default=str)
            distinct.add(key)
            if key not in cache:
                try:
                    cache[key] = trial_seconds(cfg, device, steps=steps, log_every=log_every)
                except ConfigError as exc:
                    cache[key] = {"trial_s": math.nan, "error": str(exc)}
            total += cache[key]["trial_s"]
        evaluations = ", ".join(plan.evaluations) or "none"
        out.append(Result(half, "measure", f"study {name} at {scale} scale: {len(trials)} "
                          "trials, one at a time", None, total, "s",
                          detail=f"{len(distinct)} configs timed ({steps} steps each); "
                                 f"evaluations after training ({evaluations}) not included",
                          data={"per_config": [cache[k] for k in sorted(distinct)]}))
    return out
