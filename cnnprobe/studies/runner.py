"""Running a study: every trial an ordinary stored run, tagged with its study, variant and
trial key, so running it again trains only what is missing.

A finished trial is kept; a cancelled or interrupted one is removed and trained again; a
failed one is kept unless `retry_failed`. After training, a trial gets the plan's
evaluations: `resolution` (a sweep over 0.5x-2x of its size), `distractors` (0..8, fewer
where 8 would not fit), `heldout` (in the final metrics of a quadrant-split run) and
`probes` (per-layer linear probes). Trials run one after another in this process;
parallel workers and Ray come next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cnnprobe.config import ConfigError, validate_task
from cnnprobe.store import RunRecord, RunStore
from cnnprobe.studies.plan import StudyPlan, Trial

SWEEP_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


@dataclass
class StudyProgress:
    """What a study run did: trial keys trained now, kept as they were, and failed."""

    trained: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: bool = False


def study_tag(name: str) -> str:
    return f"study:{name}"


def stored_studies(store: RunStore) -> dict[str, dict[str, int]]:
    """Every study with trials in the store: name -> trials by status."""
    out: dict[str, dict[str, int]] = {}
    for rec in store.list_runs():
        for tag in rec.tags:
            if tag.startswith("study:"):
                counts = out.setdefault(tag.split(":", 1)[1], {})
                counts[rec.status] = counts.get(rec.status, 0) + 1
    return dict(sorted(out.items()))


def trial_records(store: RunStore, name: str) -> dict[str, RunRecord]:
    """The study's stored trials by trial key (the newest record of a key wins)."""
    out: dict[str, RunRecord] = {}
    for rec in reversed(store.list_runs(tag=study_tag(name))):
        key = next((t.split(":", 1)[1] for t in rec.tags if t.startswith("trial:")), None)
        if key is not None:
            out[key] = rec
    return out


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
              cancel) -> None:
    from cnnprobe.runs import inspect_run, sweep_run

    cfg = trial.config
    for what in evaluations:
        if cancel is not None and cancel.is_set():
            return
        if what == "resolution":
            size = cfg.task.height
            sizes = sorted({max(4, round(size * f)) for f in SWEEP_FACTORS})
            try:
                sweep_run(store, run_id, "resolution", resolutions=sizes, n=256,
                          device=cfg.train.device, cancel=cancel)
            except ConfigError:  # a size the model cannot take: the sizes it can
                sizes = [s for s in sizes if s >= size]
                sweep_run(store, run_id, "resolution", resolutions=sizes, n=256,
                          device=cfg.train.device, cancel=cancel)
        elif what == "distractors":
            sweep_run(store, run_id, "distractors", max_distractors=_most_distractors(cfg),
                      n=256, device=cfg.train.device, cancel=cancel)
        elif what == "probes":
            inspect_run(store, run_id, probes=True, n_train=256, n_test=128,
                        device=cfg.train.device, cancel=cancel)
        # "heldout" is in the final metrics of every quadrant-split trial


def run_study(store: RunStore, plan: StudyPlan, *, cancel=None, retry_failed: bool = False,
              on_trial: Callable[[Trial, str, RunRecord | None], None] | None = None
              ) -> StudyProgress:
    """Train every missing trial of `plan` into `store`; `on_trial(trial, what, record)`
    hears "kept", "training", "finished", "failed" or "cancelled" for each."""
    from cnnprobe.runs import train_run

    progress = StudyProgress()
    stored = trial_records(store, plan.name)
    for trial in plan.trials():
        if cancel is not None and cancel.is_set():
            progress.cancelled = True
            break
        rec = stored.get(trial.key)
        if rec is not None and (rec.status == "finished"
                                or (rec.status == "failed" and not retry_failed)):
            progress.kept.append(trial.key)
            if on_trial:
                on_trial(trial, "kept", rec)
            continue
        if rec is not None and rec.status != "running":
            store.delete(rec.id)  # cancelled, interrupted or a failure to retry: again
        if on_trial:
            on_trial(trial, "training", None)
        try:
            run_id, result = train_run(store, trial.config, [], cancel,
                                       name=f"{plan.name}-{trial.variant}-s{trial.seed}",
                                       tags=trial.tags)
        except ConfigError as exc:  # the model could not be built (weights offline...)
            progress.failed.append(trial.key)
            if on_trial:
                on_trial(trial, f"failed: {exc}", None)
            continue
        if result.status == "finished":
            _evaluate(store, trial, run_id, plan.evaluations, cancel)
        what = result.status if result.status != "failed" else f"failed: {result.reason}"
        (progress.trained if result.status == "finished" else progress.failed
         if result.status == "failed" else []).append(trial.key)
        if result.status == "cancelled":
            progress.cancelled = True
        if on_trial:
            on_trial(trial, what, store.get(run_id))
        if progress.cancelled:
            break
    return progress
