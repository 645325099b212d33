"""How big a study run is before it starts, and how much of it this machine holds: a
rough time for the trials to train (runner.pending_trials) from runs this store has
timed, and how many worker processes fit the machine's CPUs and memory.

A grid of more than CONFIRM_TRIALS trials to train is not started without a yes
(`study run --yes`, or an answer on a terminal); `--workers` is capped to the CPUs this
process may use and to the memory available for WORKER_MEMORY per worker, and never
exceeds the trials to train. Torch-free.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnprobe.store import RunStore
    from cnnprobe.studies.plan import Trial

CONFIRM_TRIALS = 500  # more trials to train than this: asked first (`--yes`)
# What one worker process holds while it trains a trial: torch, the model, a batch. A
# smoke-scale trial peaked at 1.18 GB RSS (measured); larger images and batches take more.
WORKER_MEMORY = 3 << 29  # 1.5 GiB
TIMED_RUNS = 200  # finished runs looked at for a time per step, newest first


def seconds_per_step(store: RunStore, study: str) -> tuple[float, str] | None:
    """The median wall time per training step of this study's finished trials, else of
    the store's newest finished runs, and which it was; None if no run was timed."""
    from cnnprobe.studies.trial import study_tag

    for runs, what in ((store.list_runs(status="finished", tag=study_tag(study),
                                        limit=TIMED_RUNS), f"finished trials of {study}"),
                       (store.list_runs(status="finished", limit=TIMED_RUNS),
                        "finished runs in this store")):
        rates = [r.wall_time_s / r.steps_done for r in runs
                 if r.steps_done and r.wall_time_s and r.wall_time_s > 0]
        if rates:
            return statistics.median(rates), f"the median of {len(rates)} {what}"
    return None


def estimate(store: RunStore, study: str, trials: list[Trial], workers: int) -> str:
    """'about 3.2 h on 2 workers (0.051 s a step, the median of ...)', or why there is
    none."""
    timed = seconds_per_step(store, study)
    if timed is None:
        return "no time estimate yet: no finished run in this store to time"
    per_step, source = timed
    total = sum(t.config.train.total_steps for t in trials) * per_step / max(1, workers)
    return (f"about {_duration(total)} on {workers} worker{'s' if workers != 1 else ''} "
            f"({per_step:.3g} s a step, {source}; rough)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to new processes, or None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil or no /proc: no memory cap
        return None


def worker_cap(requested: int, pending: int, *, cpus: int | None = None,
               memory: int | None = None) -> tuple[int, str]:
    """How many of `requested` worker processes to start for `pending` trials: at most
    one per CPU, as many as the available memory holds at WORKER_MEMORY each (at least
    one), never more than the trials. Returns the number and, when CPUs or memory cut it,
    the one line that says so ("" otherwise)."""
    cpus = usable_cpus() if cpus is None else cpus
    memory = available_memory() if memory is None else memory
    n = max(1, min(requested, pending))
    why = []
    if n > cpus:
        n, why = max(1, cpus), [f"{cpus} CPU{'s' if cpus != 1 else ''} usable"]
    if memory is not None and n > max(1, memory // WORKER_MEMORY):
        n = max(1, memory // WORKER_MEMORY)
        why.append(f"{memory / 2**30:.1f} GiB of memory available at about "
                   f"{WORKER_MEMORY / 2**30:.1f} GiB a worker")
    if not why:
        return n, ""
    return n, (f"{requested} workers capped to {n}: " + " and ".join(why)
               + " (more would compete for them, or run out of memory)")


def fit_slots(slots: list, pending: int, note: Callable[[str], None] | None = None) -> list:
    """`slots` (one per worker) cut to worker_cap's number; its line goes to `note`."""
    if len(slots) <= 1:
        return slots
    n, why = worker_cap(len(slots), pending)
    if why and note is not None:
        note(why)
    return slots[:n]
