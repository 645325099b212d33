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
A killed worker runs no `finally`: its temporary store (`cnnprobe-trial-PID-*` in the temp
folder) is removed by the next trial on that node and by the driver when the study ends
(`sweep_trial_dirs`: the folders whose PID is gone).

Ray is an optional extra: `pip install -e '.[ray]'`. Without an address (and without
RAY_ADDRESS) a local Ray instance is started that listens on 127.0.0.1 only (or the one
this process already has is used); with one (`auto`, `HOST:PORT`) the driver joins that
cluster once the address has answered as a Ray GCS within CONNECT_S (`wait_for_answer`).
Ray Client (`ray://`) is refused: it needs `ray[client]` and is not tested here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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
CONNECT_S = 10.0  # how long an address has to answer before ray.init is tried
TRIAL_DIR_PREFIX = "cnnprobe-trial-"  # a trial's temporary store: cnnprobe-trial-PID-XXXX
SHIPPED = ("cnnprobe",)  # --ship-code sends the files git tracks under these (the engine)
# Ray's own switch for laptops: off, ray.init keeps a loopback node address
# (services.get_node_ip_address), and Ray binds its servers to the node address.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# A gRPC (HTTP/2) server answers this client preface with a SETTINGS frame (type 4).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
log = logging.getLogger("cnnprobe.ray")


def import_ray():
    """The `ray` module, or ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend", "ray", INSTALL_HINT) from None
    return ray


def _resource(flag: str, value: float | None) -> None:
    """Ray takes a positive, finite amount, in steps of 0.0001."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(flag, value, "a number above 0, e.g. 1 or 0.5")
    if abs(value * 10_000 - round(value * 10_000)) > 1e-6:
        raise ConfigError(flag, value, "a number with at most 4 decimals (Ray counts "
                          "resources in steps of 0.0001)")


def check_options(max_retries: int, cpus_per_trial: float,
                  gpus_per_trial: float | None = None) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or \
            not 0 <= max_retries <= 1000:
        raise ConfigError("--max-retries", max_retries, "a whole number from 0 to 1000")
    _resource("--cpus-per-trial", cpus_per_trial)
    _resource("--gpus-per-trial", gpus_per_trial)


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


# -- where to connect, and whether it answers


def resolve_address(address: str | None) -> tuple[str | None, str, str | None]:
    """(the HOST:PORT ray.init will dial, or None to start a local instance; the option
    that named it; its value), read as ray.init reads it: RAY_ADDRESS stands in for no
    address and for `auto`; `auto` is the cluster a `ray start` on this machine made; a
    loopback host becomes this machine's address (Ray's resolve_ip_for_localhost).
    ConfigError for a malformed address, for `ray://`, and for `auto` with no cluster."""
    field, value = "--address", (address or "").strip() or None
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and value in (None, "auto"):
        field, value = "RAY_ADDRESS", env
    if value is None or value == "local":
        return None, field, value
    if "://" in value:
        raise ConfigError(field, value, "auto or HOST:PORT (the head node's GCS, port 6379 "
                          "by default): Ray Client (ray://) is not supported; run the study "
                          "on the head node (ssh, tmux) with --address auto")
    from ray._private import services

    if value == "auto":
        try:
            return services.canonicalize_bootstrap_address_or_die("auto"), field, value
        except (ConnectionError, ValueError):
            raise ConfigError(field, value, "a running Ray cluster: none found on this "
                              "machine (`ray start --head` starts one), or give HOST:PORT"
                              ) from None
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(field, value, "auto, or HOST:PORT such as 10.0.0.1:6379 (the "
                          "head node's GCS port: 6379 by default)")
    try:
        return services.canonicalize_bootstrap_address(value), field, value
    except Exception as exc:  # noqa: BLE001 - Ray could not resolve the host
        raise ConfigError(field, value, f"an address this machine can resolve "
                          f"({_first(exc) or type(exc).__name__})") from None


def wait_for_answer(target: str, field: str, value: str, cancel=None,
                    limit: float = CONNECT_S) -> bool:
    """Whether a Ray GCS answers at `target` (HOST:PORT) within `limit` seconds: a TCP
    connection, then the HTTP/2 preface that gRPC answers with its SETTINGS (not sent with
    RAY_USE_TLS). ray.init against an address that does not answer retries for about 11
    minutes, printing warnings and deaf to Ctrl-C; this says so within `limit`, and returns
    False as soon as `cancel` is set (the first Ctrl-C). ConfigError says what failed."""
    host, _, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    tls = os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")
    where = f"{value} ({target})" if target != value else value
    deadline = time.monotonic() + limit
    step = 0.25  # cancel is looked at this often

    def refuse(why: str) -> ConfigError:
        return ConfigError(field, value, f"a Ray cluster that answers: {why} at {where}; "
                           "`ray status` on the head node says whether it is up, `ray start "
                           "--head` prints its address")

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    while True:
        if cancelled():
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise refuse(f"no answer within {limit:g} s")
        try:
            sock = socket.create_connection((host, int(port)), timeout=min(step, left))
        except TimeoutError:  # socket.timeout: try again until the deadline
            continue
        except ConnectionRefusedError:
            raise refuse("connection refused (nothing listens on that port)") from None
        except OSError as exc:
            raise refuse(exc.strerror or type(exc).__name__) from None
        with sock:
            if tls:
                return True
            reply = b""
            try:
                sock.sendall(H2_PREFACE)
                while len(reply) < 9:
                    if cancelled():
                        return False
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise refuse(f"a connection but no reply within {limit:g} s")
                    sock.settimeout(min(step, left))
                    try:
                        chunk = sock.recv(9 - len(reply))
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    reply += chunk
            except OSError as exc:
                raise refuse(f"the connection failed ({exc.strerror or exc})") from None
            if len(reply) == 9 and reply[3] == 4:  # an HTTP/2 SETTINGS frame
                return True
            raise refuse("something answers, but not a Ray GCS (gRPC): is it the GCS port "
                         "(6379 by default)?")


# -- starting or joining Ray


def connect(address: str | None = None, *, ship_code: bool = False, cancel=None,
            **local: Any):
    """Join the cluster at `address` or start a local Ray instance (reusing the one this
    process has); None when `cancel` was set meanwhile. A local instance listens on
    127.0.0.1 only; `local` (num_cpus, num_gpus) sizes it. Ray's own log lines stay out of
    the terminal: the TUI owns it."""
    ray = import_ray()
    _quiet_driver()
    target, field, value = resolve_address(address)
    if ray.is_initialized():  # the TUI's second study: the Ray it has, if it is the one
        current = ray.get_runtime_context().gcs_address
        if target is not None and target != current:
            raise ConfigError(field, value, f"the Ray cluster this process has joined "
                              f"already ({current}): restart cnnprobe to join another")
        return ray
    if target is not None and not wait_for_answer(target, field, value, cancel):
        return None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR, "configure_logging": True}
    if target is None:
        kwargs.update(local, _node_ip_address="127.0.0.1")
    shipped = None
    try:
        if ship_code:
            shipped = ship_folder(project_root())
            kwargs["runtime_env"] = {"working_dir": str(shipped)}
        with _streams_with_descriptors(), \
                (_loopback_only() if target is None else contextlib.nullcontext()):
            ray.init(address=target or "local", **kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        # RayError: e.g. AuthenticationError, a cluster with a token this machine lacks
        where = value or "a local Ray instance"
        raise ConfigError(field, value or "(none)",
                          f"a reachable Ray cluster: could not start or join {where} "
                          f"({_first(exc) or type(exc).__name__}); `ray status` on the head "
                          "node says whether it is up") from None
    finally:
        if shipped is not None:  # ray.init has uploaded it (runtime_env working_dir)
            shutil.rmtree(shipped, ignore_errors=True)
    if cancel is not None and cancel.is_set():
        return None
    return ray


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """For ray.init of a local instance: its GCS, raylet and workers listen on 127.0.0.1
    only, not on every interface. Ray binds its servers to the node address, and ray.init
    replaces a loopback `_node_ip_address` with this machine's address unless Ray clusters
    are off: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for the processes it starts (they inherit
    it), and ray_constants.ENABLE_RAY_CLUSTER (read once, at import) for this one."""
    from ray._private import ray_constants

    env, switch = os.environ.get(LOOPBACK_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = switch
        if env is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = env


def _quiet_driver() -> None:
    """Keep the raylet's news ("(raylet) A worker died or was killed ...") off the terminal.
    Ray prints it from a driver thread (worker.listen_error_messages) through
    print_to_stdstream whatever log_to_driver says; here it goes to this module's logger
    (a trial that fails is stored with its reason anyway)."""
    from ray._private import worker

    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "cnnprobe_quiet", False):
        return

    def quiet(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") == "raylet":
            for line in data.get("lines", ()):
                log.info("raylet: %s", line)
            return
        printer(data, ignore_prefix)

    quiet.cnnprobe_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = quiet


def check_resources(ray, cpus_per_trial: float, gpus_per_trial: float | None) -> None:
    """ConfigError when no node of the cluster has what one trial reserves: Ray would wait
    for such a node forever, silently."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]

    def largest(kind: str) -> tuple[float, str]:
        best = max(nodes, key=lambda n: n.get("Resources", {}).get(kind, 0), default=None)
        if best is None:
            return 0.0, "no node alive"
        return (float(best.get("Resources", {}).get(kind, 0)),
                best.get("NodeManagerHostname") or best.get("NodeManagerAddress") or "?")

    cpus, host = largest("CPU")
    if cpus_per_trial > cpus:
        raise ConfigError("--cpus-per-trial", cpus_per_trial,
                          f"at most {cpus:g}: the largest node of this Ray cluster ({host}) "
                          f"has {cpus:g} CPUs (`ray status` lists the nodes)")
    if gpus_per_trial is None:
        return
    gpus, host = largest("GPU")
    if gpus == 0:
        raise ConfigError("--gpus-per-trial", gpus_per_trial,
                          "a cluster with GPUs: this one has none (leave it out to train "
                          "on the CPUs)")
    if gpus_per_trial > gpus:
        raise ConfigError("--gpus-per-trial", gpus_per_trial,
                          f"at most {gpus:g}: the largest node of this Ray cluster ({host}) "
                          f"has {gpus:g} GPUs (`ray status` lists the nodes)")


def ship_folder(root: Path) -> Path:
    """A temporary copy of what --ship-code sends: the files git tracks under SHIPPED in
    the checkout at `root`, as they are on disk (edits included); never an untracked file
    (.env, keys, stores, exports) nor a link. ConfigError outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--",
                              *SHIPPED], capture_output=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        raise ConfigError("--ship-code", True, f"a git checkout of cnnprobe ({root} is not "
                          "one, or git is missing): it ships the files git tracks; install "
                          "cnnprobe on the workers instead (docs/scale-out.md)") from None
    files = [f for f in out.decode("utf-8", "surrogateescape").split("\0") if f]
    if not files:
        raise ConfigError("--ship-code", True, f"files git tracks under "
                          f"{', '.join(SHIPPED)}/ in {root}: there are none")
    folder = Path(tempfile.mkdtemp(prefix="cnnprobe-ship-"))
    try:
        for name in files:
            src = root / name
            if src.is_symlink() or not src.is_file():  # deleted, or a link: not shipped
                continue
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def sweep_trial_dirs(root: str | Path | None = None) -> list[Path]:
    """Remove the temporary stores of trials whose worker process is gone (a killed worker
    runs no `finally`); the folders removed. Only cnnprobe-trial-PID-* folders whose PID
    runs no more on this machine: a live worker's store, and links, are left alone."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{TRIAL_DIR_PREFIX}*-*"):
        pid = path.name[len(TRIAL_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


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
    sweep_trial_dirs()  # the stores of killed trials on this node
    try:
        channel.put.remote(("started", trial.key, os.getpid(), socket.gethostname()))
        last = [0.0]

        def on_step(step: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= STEP_EVERY_S or step == total:
                last[0] = now
                channel.put.remote(("step", trial.key, step, total))

        # Named after this process: once it is gone, sweep_trial_dirs removes what is left.
        with tempfile.TemporaryDirectory(prefix=f"{TRIAL_DIR_PREFIX}{os.getpid()}-") as tmp, \
                RunStore(tmp) as store:
            run_id, status, reason = run_trial(store, trial, evaluations, stop, device,
                                                on_step=on_step)
            # The trial first, then what was made from it (its fine-tune).
            runs = sorted(store.list_runs(), key=lambda r: r.created_at)
            bundles = [export_run(store, r.id) for r in runs]
        return {"status": status, "reason": reason, "run_id": run_id, "bundles": bundles}
    finally:
        done.set()


def prepare(address: str | None, *, ship_code: bool, cpus_per_trial: float,
            gpus_per_trial: float | None, cancel=None) -> bool:
    """Ray started or joined, and a trial's resources found on one of its nodes, before
    the study touches the store; False when `cancel` was set meanwhile (Ctrl-C)."""
    ray = connect(address, ship_code=ship_code, cancel=cancel)
    if ray is None:
        return False
    check_resources(ray, cpus_per_trial, gpus_per_trial)
    return True


def failure_reason(exc: BaseException, max_retries: int) -> str:
    """Why a trial's task failed, as it happened: its worker died (Ray ran it
    max_retries + 1 times), the trial raised (once: exceptions are not retried), or Ray
    could not run it."""
    from ray import exceptions as rex

    again = "`study run --retry-failed` tries it again"
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError,
                        rex.OutOfMemoryError)):
        runs = max_retries + 1
        return (f"its Ray worker died {runs} time{'s' if runs > 1 else ''} "
                f"({type(exc).__name__}: {_first(exc)}); --max-retries allows more, {again}")
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        hint = ""
        if isinstance(cause, ModuleNotFoundError) and "cnnprobe" in str(cause):
            hint = " (install cnnprobe on every node, or use --ship-code)"
        return (f"it raised {type(cause).__name__}: {_first(cause)} in its Ray worker, "
                f"once (an error of the trial is not retried){hint}; {again}")
    return f"Ray could not run it ({type(exc).__name__}: {_first(exc)}); {again}"


def run_on_ray(store, plan, todo: list[Trial], progress, on_trial, on_step, *, cancel,
               gpus_per_trial: float | None, cpus_per_trial: float, max_retries: int,
               settle) -> None:
    """Every trial of `todo` as a Ray task on the Ray that `prepare` started or joined;
    results imported into `store` as they come."""
    from cnnprobe.store.bundle import import_run

    ray = import_ray()
    gpus = ray.cluster_resources().get("GPU", 0)
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
                except ray.exceptions.RayError as exc:
                    reason = failure_reason(exc, max_retries)
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
        sweep_trial_dirs()  # a killed worker's store, when it ran on this machine
