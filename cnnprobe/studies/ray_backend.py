"""Running a study's trials as Ray tasks, with the local store as the one record.

Each trial is one Ray task with the resources it needs (`num_cpus`, `num_gpus`, fractional
allowed). A worker needs no shared filesystem and no access to the store: it trains the
trial into a temporary store of its own (cnnprobe.store on its local disk), sends step
progress to the driver through a small actor (`Channel`), and returns the trial's runs
(the trial and its fine-tune, if any) as bundles (`cnnprobe.store.bundle`): rows, history,
sweeps, evaluations, checkpoints and predictions. The driver imports them into its store,
so a Ray trial looks exactly like a local one in `runs`, `show`, the TUI and the reports.

Faults: a worker process that dies (killed, out of memory, its node lost) makes Ray run
the task again, up to `max_retries` times (`ray.remote(max_retries=...)`: retries on
system failures only, not on exceptions of our own code); after that the trial is stored
as `failed` with the reason and the study goes on. Stopping sets a flag in the channel
that every worker polls twice a second: trials in flight stop at their next step and come
back `cancelled`; queued tasks are cancelled with `ray.cancel`, and one that starts anyway
sees the flag and returns without training. The workers read the channel without
`ray.get`, which gives a task's CPUs back to the scheduler while it waits (`_ask`).

Ray is an optional extra: `pip install -e '.[ray]'`. Without an address a local Ray
instance is started (or the one this process already has is used); with one
(`auto`, `HOST:PORT`, `ray://HOST:10001`) the driver joins that cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnprobe.config import ConfigError
from cnnprobe.studies.plan import Trial

INSTALL_HINT = "pip install -e '.[ray]' (Ray is an optional extra of cnnprobe)"
POLL_S = 0.2  # the driver's loop: channel drained, finished tasks collected
STOP_POLL_S = 0.5  # how often a worker asks the channel whether to stop
STEP_EVERY_S = 0.5  # at most this often a worker reports a trial's step
# Not shipped with the code to a cluster (runtime_env working_dir).
SHIP_EXCLUDES = [".git", ".venv", "checkpoints", "exports", "**/__pycache__", "*.pt"]


def import_ray():
    """The `ray` module, or ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend", "ray", INSTALL_HINT) from None
    return ray


def check_options(max_retries: int, cpus_per_trial: float) -> None:
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError("--max-retries", max_retries, "a whole number of at least 0")
    if not cpus_per_trial > 0:
        raise ConfigError("--cpus-per-trial", cpus_per_trial, "a number above 0, e.g. 1")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def connect(address: str | None = None, *, ship_code: bool = False):
    """Join the cluster at `address` or start a local Ray instance (reusing the one this
    process has). Ray's own log lines stay out of the terminal: the TUI owns it."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR, "configure_logging": True}
    if ship_code:
        kwargs["runtime_env"] = {"working_dir": str(project_root()),
                                 "excludes": SHIP_EXCLUDES}
    try:
        with _streams_with_descriptors():
            ray.init(address=address or None, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray instance"
        raise ConfigError("--address", address or "(none)",
                          f"a reachable Ray cluster: could not start or join {where} "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                          "`ray status` on the head node says whether it is up") from None
    return ray


@contextlib.contextmanager
def _streams_with_descriptors() -> Iterator[None]:
    """ray.init asks sys.stdout/stderr for their file descriptors. Under the TUI they are
    Textual's capture objects, which have none: for the call, give Ray /dev/null (what
    it would print must not reach the TUI's terminal anyway)."""
    try:
        os.fstat(sys.stdout.fileno())
        os.fstat(sys.stderr.fileno())
        real = True
    except (AttributeError, OSError, ValueError):  # Textual's returns -1
        real = False
    if real:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        yield


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def _channel_class(ray):
    @ray.remote(num_cpus=0, max_restarts=0)
    class Channel:
        """Worker -> driver news (step, started, pid) and the driver -> worker stop flag."""

        def __init__(self) -> None:
            self.events: list[tuple] = []
            self.stop_flag = False

        def put(self, event: tuple) -> None:
            self.events.append(event)

        def drain(self) -> list[tuple]:
            out, self.events = self.events, []
            return out

        def stop(self) -> None:
            self.stop_flag = True

        def stopped(self) -> bool:
            return self.stop_flag

    return Channel


def _ask(ref: Any, timeout: float | None = None) -> Any:
    """The value of an actor call made from inside a task, without `ray.get`: a task blocked
    in `ray.get` gives its CPUs back to the scheduler until it returns ("Yielding Resources
    While Blocked", docs.ray.io, ray-core/tasks/nested-tasks), and Ray started the next
    trial in that moment, beside the running one, beyond `--cpus-per-trial` (two trials at
    once on 2 CPUs with `cpus_per_trial=2`, seen in tests/test_study_ray.py). Waiting on
    the ref's future (GetAsync) keeps them held."""
    return ref.future().result(timeout=timeout)


def remote_trial(trial: Trial, evaluations: tuple[str, ...], device: str | None,
                 channel: Any, threads: int) -> dict[str, Any]:
    """A Ray task's body (on a worker): train the trial into a temporary store there and
    return its runs as bundles: {"status", "reason", "run_id", "bundles"}."""
    if _ask(channel.stopped.remote()):  # stopped while this task was queued: return at once
        return {"status": "not started", "reason": "", "run_id": None, "bundles": []}
    import tempfile

    import torch

    from cnnprobe.store import RunStore
    from cnnprobe.store.bundle import export_run
    from cnnprobe.studies.trial import run_trial

    torch.set_num_threads(max(1, threads))
    stop, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                if _ask(channel.stopped.remote(), timeout=10):
                    stop.set()
                    return
            except Exception:  # noqa: BLE001 - the driver is gone: stop too
                stop.set()
                return
            done.wait(STOP_POLL_S)

    watcher = threading.Thread(target=watch, daemon=True, name="cnnprobe-stop-watch")
    watcher.start()
    try:
        channel.put.remote(("started", trial.key, os.getpid(), socket.gethostname()))
        last = [0.0]

        def on_step(step: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= STEP_EVERY_S or step == total:
                last[0] = now
                channel.put.remote(("step", trial.key, step, total))

        with tempfile.TemporaryDirectory(prefix="cnnprobe-trial-") as tmp, \
                RunStore(tmp) as store:
            run_id, status, reason = run_trial(store, trial, evaluations, stop, device,
                                                on_step=on_step)
            # The trial first, then what was made from it (its fine-tune).
            runs = sorted(store.list_runs(), key=lambda r: r.created_at)
            bundles = [export_run(store, r.id) for r in runs]
        return {"status": status, "reason": reason, "run_id": run_id, "bundles": bundles}
    finally:
        done.set()


def run_on_ray(store, plan, todo: list[Trial], progress, on_trial, on_step, *, cancel,
               address: str | None, gpus_per_trial: float | None, cpus_per_trial: float,
               max_retries: int, ship_code: bool, settle) -> None:
    """Every trial of `todo` as a Ray task; results imported into `store` as they come."""
    from cnnprobe.store.bundle import import_run

    ray = connect(address, ship_code=ship_code)
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_trial is not None and gpus == 0:
        raise ConfigError("--gpus-per-trial", gpus_per_trial,
                          "a cluster with GPUs: this one has none (leave it out to train "
                          "on the CPUs)")
    use_gpu = gpus_per_trial is not None or (
        gpus > 0 and plan.base.train.device in ("auto", "cuda"))
    num_gpus = (gpus_per_trial or 1.0) if use_gpu else 0
    device = "cuda" if use_gpu else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per task
    task = ray.remote(remote_trial).options(
        num_cpus=cpus_per_trial, num_gpus=num_gpus, max_retries=max_retries,
        retry_exceptions=False, name="cnnprobe-trial")
    channel = _channel_class(ray).remote()
    by_key = {t.key: t for t in todo}
    refs = {task.remote(t, plan.evaluations, device, channel,
                        max(1, int(cpus_per_trial))): t for t in todo}
    started: set[str] = set()
    stopping = False

    def drain() -> None:
        try:
            events = ray.get(channel.drain.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - news lost is only news
            return
        for event in events:
            kind, key = event[0], event[1]
            trial = by_key.get(key)
            if trial is None:
                continue
            if kind == "started" and key not in started:
                started.add(key)
                if on_trial:
                    on_trial(trial, "training", None)
            elif kind == "step" and on_step is not None:
                on_step(trial, event[2], event[3])

    try:
        while refs:
            if cancel is not None and cancel.is_set() and not stopping:
                stopping = True
                progress.cancelled = True
                ray.get(channel.stop.remote())
                # Queued: never starts (on a cluster it may wait for nodes that never come).
                # One the driver has not heard start from may have just started: it gets a
                # KeyboardInterrupt, and its trial stays missing like a queued one.
                for ref, trial in refs.items():
                    if trial.key not in started:
                        ray.cancel(ref)
            done, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
            drain()
            for ref in done:
                trial = refs.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    continue  # stopped before it started: missing, run again later
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.RayTaskError, ray.exceptions.RayError) as exc:
                    runs = max_retries + 1
                    reason = (f"its Ray worker failed {runs} time{'s' if runs > 1 else ''} "
                              f"({type(exc).__name__}: {_first(exc)}); --max-retries "
                              "allows more, `study run --retry-failed` tries it again")
                    run_id = store.create_run(trial.config, name=f"{trial.study}-"
                                              f"{trial.variant}-s{trial.seed}",
                                              tags=trial.tags)
                    store.set_status(run_id, "failed", reason)
                    settle(store, trial, run_id, "failed", reason, progress, on_trial)
                    continue
                if out["status"] == "not started":
                    continue
                for bundle in out["bundles"]:
                    import_run(store, bundle)
                settle(store, trial, out["run_id"], out["status"], out["reason"], progress,
                       on_trial)
    finally:
        if refs:  # the driver itself is stopping (an exception, Ctrl-C twice)
            try:
                ray.get(channel.stop.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - best effort
                pass
            for ref in refs:
                ray.cancel(ref, force=True)
        ray.kill(channel)
