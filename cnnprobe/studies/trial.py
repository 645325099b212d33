"""One trial of a study, trained and evaluated into a store: what every backend runs (this
process, a local worker process, a Ray task on another machine).

After training, a trial gets the plan's evaluations:

- `resolution`: a sweep over 0.5x-2x of its size;
- `finetune`: a fine-tune at 2.34x its size (the notebook's 128 -> 300), a third of its
  steps, stored as its own run (tag `finetune:KEY`) and as an evaluation of the trial;
- `distractors`: a sweep over 0..8 distractors (fewer where 8 would not fit);
- `heldout`: the error on the held-out quadrant, in the final metrics of a quadrant-split
  trial and evaluated on the same quadrant for a uniform one (the score it is held to);
- `probes`: per-layer linear probes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cnnprobe.config import ConfigError, validate_task
from cnnprobe.options import finetune_plan
from cnnprobe.store import RunStore
from cnnprobe.studies.plan import Trial

# Every trial computes with one intra-op thread, whichever backend runs it and however
# many workers share the machine: the order of a sum follows the thread count, and the same
# seed gave MAE 0.056 at 2 threads and 0.094 at 1 (issue 20). One thread per trial also
# makes the cores the unit of parallelism: `--workers` as many as the cores.
TRIAL_THREADS = 1
SWEEP_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
EVAL_SAMPLES = 256


def study_tag(name: str) -> str:
    return f"study:{name}"


def _most_distractors(cfg, most: int = 8) -> int:
    """The largest count up to `most` whose objects still fit the trial's images."""
    for k in range(most, 0, -1):
        try:
            validate_task(replace(cfg.task, eval_distractors=k))
            return k
        except ConfigError:
            continue
    return 0


def _evaluate(store: RunStore, trial: Trial, run_id: str, evaluations: tuple[str, ...],
              cancel, device: str) -> None:
    from cnnprobe.runs import evaluate_run, finetune_run, inspect_run, sweep_run

    cfg = trial.config
    for what in evaluations:
        if cancel is not None and cancel.is_set():
            return
        if what == "resolution":
            size = cfg.task.height
            sizes = sorted({max(4, round(size * f)) for f in SWEEP_FACTORS})
            try:
                sweep_run(store, run_id, "resolution", resolutions=sizes, n=EVAL_SAMPLES,
                          device=device, cancel=cancel)
            except ConfigError:  # a size the model cannot take: the sizes it can
                sizes = [s for s in sizes if s >= size]
                sweep_run(store, run_id, "resolution", resolutions=sizes, n=EVAL_SAMPLES,
                          device=device, cancel=cancel)
        elif what == "distractors":
            sweep_run(store, run_id, "distractors", max_distractors=_most_distractors(cfg),
                      n=EVAL_SAMPLES, device=device, cancel=cancel)
        elif what == "probes":
            inspect_run(store, run_id, probes=True, n_train=256, n_test=128,
                        device=device, cancel=cancel)
        elif what == "heldout" and cfg.task.split == "uniform":
            evaluate_run(store, run_id, region="heldout", quadrant=cfg.task.heldout_quadrant,
                         n=cfg.train.val_size, device=device)
        elif what == "finetune":
            h, w, steps = finetune_plan(cfg)  # the fine-tune default (cnnprobe.options)
            child, result = finetune_run(
                store, run_id, height=h, width=w, steps=steps, cancel=cancel, device=device,
                name=f"{store.get(run_id).name}-ft{h}",
                tags=[study_tag(trial.study), f"variant:{trial.variant}",
                      f"finetune:{trial.key}"], allow_slow=True)
            if result.status == "finished":
                store.save_evaluation(run_id, {"kind": "finetune", "height": h, "width": w,
                                               "steps": steps, "run": child},
                                      store.get(child).metrics)
        # "heldout" of a quadrant-split trial is in its final metrics already


def run_trial(store: RunStore, trial: Trial, evaluations: tuple[str, ...], cancel,
               device: str | None, on_created: Callable[[str], None] | None = None,
               on_step: Callable[[int, int], None] | None = None
               ) -> tuple[str | None, str, str]:
    """Train one trial (on `device`, or where its config says) and evaluate it:
    (run id, status, reason)."""
    from cnnprobe.events import StepEvent

    cfg = trial.config
    if device is not None:
        cfg = replace(cfg, train=replace(cfg.train, device=device))
    name = f"{trial.study}-{trial.variant}-s{trial.seed}"

    def listen(event: Any) -> None:
        if isinstance(event, StepEvent) and on_step is not None:
            on_step(event.step, event.total_steps)

    made: list[str] = []

    def created(run_id: str) -> None:
        made.append(run_id)
        if on_created is not None:
            on_created(run_id)

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(TRIAL_THREADS)
    try:
        return _train_and_evaluate(store, trial, cfg, name, listen, created, made,
                                   evaluations, cancel)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate(store: RunStore, trial: Trial, cfg, name: str, listen, created,
                        made: list[str], evaluations: tuple[str, ...], cancel
                        ) -> tuple[str | None, str, str]:
    from cnnprobe.runs import train_run

    try:
        # A study's scale is the user's explicit choice: its trials are not timed and refused
        # for being slow as a single `cnnprobe train` is (runs.check_step_time).
        run_id, result = train_run(store, cfg, [listen], cancel, name=name, tags=trial.tags,
                                   on_created=created, allow_slow=True)
    except ConfigError as exc:  # the model cannot be built here (weights offline...)
        run_id = made[0] if made else store.create_run(cfg, name=name, tags=trial.tags)
        store.set_status(run_id, "skipped", str(exc))
        return run_id, "skipped", str(exc)
    if result.status == "finished":
        try:
            _evaluate(store, trial, run_id, evaluations, cancel, cfg.train.device)
        except ConfigError as exc:  # an evaluation this model cannot take: say, keep it
            return run_id, "finished", f"evaluation skipped: {exc}"
    return run_id, result.status, result.reason or ""
