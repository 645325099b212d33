"""Running a study: every trial an ordinary stored run, tagged with its study, variant and
trial key, so running it again trains only what is missing.

A finished trial is kept; a cancelled or interrupted one is removed and trained again; a
failed or skipped one is kept unless `retry_failed`; one another `study run` holds (a claim
in the store, claiming.py) or is training is left to it, waited for, and taken over if its
driver dies. A trial whose model cannot be built here (pretrained weights offline) is
stored as `skipped` with the one-line fix. What a trial is (training, then the plan's
evaluations) is in trial.py.

Trials run in this process (`workers=1`), in parallel worker processes, one slot each
(`workers` slots on the CPU, or `gpus_per_trial` of a GPU per slot on every GPU), all
recording into the same store (SQLite in WAL mode takes the concurrent writers), or as
Ray tasks (ray_backend.py).
"""

from __future__ import annotations

import math
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cnnprobe.config import ConfigError
from cnnprobe.options import FINETUNE_FACTOR
from cnnprobe.store import RunRecord, RunStore
from cnnprobe.studies.capacity import fit_slots
from cnnprobe.studies.claiming import TrialClaimer
from cnnprobe.studies.parent_watch import ParentWatch
from cnnprobe.studies.plan import StudyPlan, Trial
from cnnprobe.studies.stored import stored_studies, trial_metrics, trial_records
from cnnprobe.studies.trial import run_trial, study_tag

__all__ = ["FINETUNE_FACTOR", "StudyProgress", "run_study", "stored_studies", "study_tag",
           "kept_trial", "pending_trials", "trial_metrics", "trial_records", "trial_slots"]



@dataclass
class StudyProgress:
    """What a study run did: trial keys trained now, kept as they were, failed, skipped."""

    trained: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cancelled: bool = False
    elsewhere: list[str] = field(default_factory=list)  # still running elsewhere when stopped


# on_trial(trial, what, record): what is "kept", "training", "finished", "cancelled",
# "running elsewhere: pid N on HOST" (another driver has it; it comes back as "kept", or as
# "training" when its driver died), "skipped: ..." or "failed: ...".
OnTrial = Callable[[Trial, str, "RunRecord | None"], None]
# on_step(trial, step, total_steps): training progress of a trial in flight.
OnStep = Callable[[Trial, int, int], None]


# -- worker processes: module-level state set by the pool's initializer
_cancel = None
_events = None
_watch: ParentWatch | None = None


class _WorkerStop:
    """A worker's cancel flag: the driver's stop event, a SIGTERM sent to this worker, or
    the driver gone (parent_watch.py)."""

    def __init__(self, driver_stop, watch: ParentWatch) -> None:
        self.driver_stop, self.watch, self.terminated = driver_stop, watch, False

    def is_set(self) -> bool:
        return self.terminated or self.watch.is_set() or self.driver_stop.is_set()


def _init_worker(cancel, events, threads: int, parent_pid: int) -> None:
    global _cancel, _events, _watch
    _watch = ParentWatch(parent_pid).start()  # exits when the driver is gone
    _cancel, _events = _WorkerStop(cancel, _watch), events
    # Ctrl-C and a hangup reach the whole process group: the driver hears them too and
    # decides (it sets `cancel`). A SIGTERM to this worker alone stops its trial, stored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):  # blocked since its spawn (_hangup_held): ignored now
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    signal.signal(signal.SIGTERM, lambda *_: setattr(_cancel, "terminated", True))
    import torch

    torch.set_num_threads(threads)


@contextmanager
def _hangup_held() -> Iterator[None]:
    """Processes started inside begin with SIGHUP blocked (a signal mask is inherited):
    the pool's workers until their initializer ignores it, and multiprocessing's resource
    tracker for good (it ignores SIGINT and SIGTERM itself, but a hangup, sent to the whole
    process group, killed it: "resource_tracker: process died unexpectedly")."""
    if not hasattr(signal, "SIGHUP") or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_trial(root: str, trial: Trial, evaluations: tuple[str, ...],
                  device: str | None) -> tuple[str | None, str, str]:
    last = [0.0]

    def on_step(step: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25 or step == total:  # the queue is not a firehose
            last[0] = now
            _events.put(("step", trial.key, step, total))

    with _watch.working(), RunStore(root) as store:
        return run_trial(store, trial, evaluations, _cancel, device,
                          on_created=lambda rid: _events.put(("created", trial.key, rid)),
                          on_step=on_step)


def trial_slots(workers: int | None, gpus_per_trial: float | None,
                gpu_count: int, device: str = "auto") -> list[str | None]:
    """The device of each parallel slot (None: as the trial's config says).

    `gpus_per_trial` F puts floor(1/F) trials on each GPU (F <= 1); without it, each GPU
    is one slot when the trials train on CUDA, and `workers` slots share the CPU.
    `workers` caps the slots either way."""
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError("--workers", workers, "a whole number of at least 1")
    if gpus_per_trial is not None:
        if not (isinstance(gpus_per_trial, (int, float)) and 0 < gpus_per_trial <= 1):
            raise ConfigError("--gpus-per-trial", gpus_per_trial,
                              "a share of one GPU in (0, 1], e.g. 0.25 for four trials a GPU")
        if gpu_count == 0:
            raise ConfigError("--gpus-per-trial", gpus_per_trial,
                              "no CUDA device here: use --workers N to share the CPU")
        per = max(1, math.floor(1 / gpus_per_trial + 1e-9))
        slots: list[str | None] = [f"cuda:{g}" for _ in range(per) for g in range(gpu_count)]
        return slots[:workers] if workers else slots
    if gpu_count > 0 and device in ("auto", "cuda"):
        slots = [f"cuda:{g}" for g in range(gpu_count)]
        return slots[:workers] if workers else slots
    n = workers or 1
    return [None] if n == 1 else ["cpu" if device in ("auto", "cuda") else device] * n


BACKENDS = ("local", "ray")


def run_study(store: RunStore, plan: StudyPlan, *, cancel=None, retry_failed: bool = False,
              on_trial: OnTrial | None = None, on_step: OnStep | None = None,
              workers: int | None = None, gpus_per_trial: float | None = None,
              backend: str = "local", address: str | None = None, max_retries: int = 2,
              cpus_per_trial: float = 1.0, ship_code: bool = False,
              on_note: Callable[[str], None] | None = None) -> StudyProgress:
    """Train every missing trial of `plan` into `store`: in this process or in parallel
    worker processes (backend "local", see trial_slots; never more than the machine's
    CPUs and memory hold nor than the trials, capacity.fit_slots), or as Ray tasks on a
    local Ray instance or the cluster at `address` (backend "ray", see ray_backend).
    `on_trial` hears each trial's outcome, `on_step` its training steps and `on_note` a
    line such as why the workers were capped."""
    if backend not in BACKENDS:
        raise ConfigError("--backend", backend, f"one of {', '.join(BACKENDS)}")
    slots: list[str | None] = []
    if backend == "local":
        gpus = 0
        if gpus_per_trial is not None or plan.base.train.device in ("auto", "cuda") and (
                workers is None or workers > 1):
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        slots = trial_slots(workers, gpus_per_trial, gpus, plan.base.train.device)
    else:
        from cnnprobe.studies.ray_backend import check_options, import_ray, prepare

        import_ray()  # a missing extra is said before anything is stored
        check_options(max_retries, cpus_per_trial, gpus_per_trial)
        # Ray started or joined (a dead address said within seconds) and the trial's
        # resources found on a node, before the store is touched.
        if not prepare(address, ship_code=ship_code, cpus_per_trial=cpus_per_trial,
                       gpus_per_trial=gpus_per_trial, cancel=cancel):
            return StudyProgress(cancelled=True)
    progress = StudyProgress()
    with TrialClaimer(store, plan, retry_failed=retry_failed, kept=progress.kept,
                      on_trial=on_trial, records=trial_records,
                      delete=_delete_trial) as claims:

        def settle(store, trial, run_id, status, reason, progress, on_trial) -> None:
            try:
                _settle(store, trial, run_id, status, reason, progress, on_trial)
            finally:
                claims.release(trial)

        def run(todo: list[Trial]) -> None:
            if backend == "ray":  # every trial queued on the cluster at once: claimed now
                from cnnprobe.studies.ray_backend import run_on_ray

                mine = [t for t in todo if claims.start(t)]
                if mine:
                    run_on_ray(store, plan, mine, progress, on_trial, on_step, cancel=cancel,
                               gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
                               max_retries=max_retries, settle=settle)
            elif len(slots) == 1 and slots[0] is None:
                _run_here(store, plan, todo, cancel, progress, on_trial, on_step,
                          claims.start, settle)
            else:
                _run_parallel(store, plan, todo, fit_slots(slots, len(todo), on_note), cancel,
                              progress, on_trial, on_step, claims.start, settle)

        todo = claims.pending(plan.trials())
        while todo or claims.elsewhere:
            if cancel is not None and cancel.is_set():
                progress.cancelled = True
                break
            if todo:
                run(todo)
                if progress.cancelled:
                    break
            # Trials another driver holds: wait until they end there, or take them over
            # when their driver is gone.
            todo = claims.wait(cancel)
        progress.elsewhere = list(claims.elsewhere)
    return progress


def pending_trials(store: RunStore, plan: StudyPlan, retry_failed: bool = False
                   ) -> list[Trial]:
    """The trials `run_study` would train, found without changing the store."""
    stored = trial_records(store, plan.name)
    return [t for t in plan.trials() if not kept_trial(stored.get(t.key), retry_failed)]


def kept_trial(rec: RunRecord | None, retry_failed: bool) -> bool:
    """Whether a trial's stored record stands (not trained again)."""
    return rec is not None and (rec.status in ("finished", "running") or (
        rec.status in ("failed", "skipped") and not retry_failed))


def _delete_trial(store: RunStore, study: str, key: str, run_id: str) -> None:
    """A trial's stale record and the fine-tunes made from it: it is trained again."""
    for rec in store.list_runs(tag=f"finetune:{key}"):
        store.delete(rec.id, force=True)
    store.delete(run_id)


def _settle(store: RunStore, trial: Trial, run_id: str | None, status: str, reason: str,
            progress: StudyProgress, on_trial: OnTrial | None) -> None:
    if status == "finished":
        progress.trained.append(trial.key)
    elif status == "skipped":
        progress.skipped.append(trial.key)
    elif status == "cancelled":
        progress.cancelled = True
    else:
        progress.failed.append(trial.key)
    if on_trial:
        what = status if status in ("finished", "cancelled") else f"{status}: {reason}"
        on_trial(trial, what, store.get(run_id) if run_id else None)


def _run_here(store, plan, todo, cancel, progress, on_trial, on_step, start, settle) -> None:
    """One trial after the other in this process; `start(trial)` claims each (False: done
    or taken by another driver meanwhile) and `settle` records its end."""
    for trial in todo:
        if cancel is not None and cancel.is_set():
            progress.cancelled = True
            return
        if not start(trial):
            continue
        if on_trial:
            on_trial(trial, "training", None)
        step = (lambda s, t, tr=trial: on_step(tr, s, t)) if on_step else None
        run_id, status, reason = run_trial(store, trial, plan.evaluations, cancel, None,
                                            on_step=step)
        settle(store, trial, run_id, status, reason, progress, on_trial)
        if progress.cancelled:
            return


def _run_parallel(store, plan, todo, slots, cancel, progress, on_trial, on_step, start,
                  settle) -> None:
    """Each slot one worker process (spawned: CUDA and threads do not survive a fork);
    a trial goes to a free slot with the slot's device. Stopping sets a cancel event the
    workers' trainers read, so in-flight trials are stored as cancelled."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import resource_tracker

    ctx = mp.get_context("spawn")
    with _hangup_held():
        resource_tracker.ensure_running()
    stop, events = ctx.Event(), ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(slots))
    by_key = {t.key: t for t in todo}
    created: dict[str, str] = {}
    pending = list(todo)
    free = list(range(len(slots)))
    running: dict[Any, tuple[Trial, int]] = {}

    def drain() -> None:
        while True:
            try:
                msg = events.get_nowait()
            except (queue.Empty, OSError, EOFError):
                return
            if msg[0] == "created":
                created[msg[1]] = msg[2]
            elif msg[0] == "step" and on_step is not None:
                on_step(by_key[msg[1]], msg[2], msg[3])

    with ProcessPoolExecutor(len(slots), mp_context=ctx, initializer=_init_worker,
                             initargs=(stop, events, threads, os.getpid())) as pool:
        try:
            while pending or running:
                if cancel is not None and cancel.is_set() and not stop.is_set():
                    stop.set()
                    progress.cancelled = True
                while pending and free and not stop.is_set():
                    trial = pending.pop(0)
                    if not start(trial):  # done, or another driver has it
                        continue
                    slot = free.pop(0)
                    if on_trial:
                        on_trial(trial, "training", None)
                    with _hangup_held():  # a worker may be spawned here
                        fut = pool.submit(_worker_trial, str(store.root), trial,
                                          plan.evaluations, slots[slot])
                    running[fut] = (trial, slot)
                if stop.is_set():
                    pending.clear()
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    trial, slot = running.pop(fut)
                    free.append(slot)
                    try:
                        run_id, status, reason = fut.result()
                    except BrokenProcessPool:
                        # The pool is gone with it: no new trials; a re-run continues.
                        stop.set()
                        progress.cancelled = True
                        run_id, status, reason = created.get(trial.key), "interrupted", \
                            "a worker process died (killed or out of memory)"
                        if run_id is not None and store.get(run_id).status == "running":
                            store.set_status(run_id, "interrupted", reason)
                    except Exception as exc:  # noqa: BLE001 - a trial's crash, said, kept
                        run_id, status = created.get(trial.key), "failed"
                        reason = f"{type(exc).__name__}: {exc}"
                        if run_id is not None:
                            store.set_status(run_id, "failed", reason)
                    settle(store, trial, run_id, status, reason, progress, on_trial)
                    if progress.cancelled:  # stopped there too (a SIGTERM to the worker)
                        stop.set()
        finally:
            stop.set()  # also when the driver itself is interrupted: workers stop soon
            drain()
