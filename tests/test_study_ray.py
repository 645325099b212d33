"""The Ray backend on the CPU (one local Ray instance for the session, started as `study
run --backend ray` starts one): the same trials and metrics as the local backend, a killed
worker retried and its temporary store removed, a stop that stores the trials in flight as
cancelled, what a local Ray listens on, and bad options and addresses said in one line
within seconds (dead addresses in a subprocess: the old code hung there for minutes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from cnnprobe.cli import main
from cnnprobe.config import ConfigError
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan, plan_from_dict
from cnnprobe.studies import ray_backend as rb
from cnnprobe.studies.runner import run_study, trial_records

ROOT = Path(__file__).resolve().parents[1]


def long_plan(name: str, steps: int = 2000):
    return plan_from_dict({"name": name, "seeds": 2,
                           "base": {"task.height": 16, "task.width": 16,
                                    "train.steps": steps, "train.batch_size": 8,
                                    "train.val_size": 16, "train.device": "cpu"}},
                          source="test")


def trial_worker_pids() -> list[int]:
    """Ray names a worker process after the task it runs: ray::cnnprobe-trial."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::cnnprobe-trial"):
            out.append(int(proc.name))
    return out


def trial_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{rb.TRIAL_DIR_PREFIX}*")}


def left_behind(before: set[str]) -> list[str]:
    """Trial stores made since `before` whose process is gone (another session's live
    workers may have theirs meanwhile)."""
    out = []
    for name in trial_dirs() - before:
        pid = name.removeprefix(rb.TRIAL_DIR_PREFIX).split("-", 1)[0]
        if not (pid.isdigit() and rb._pid_alive(int(pid))):
            out.append(name)
    return out


def once_each(store: RunStore, plan) -> dict:
    keys = Counter(t.split(":", 1)[1] for r in store.list_runs(tag=f"study:{plan.name}")
                   for t in r.tags if t.startswith("trial:"))
    assert set(keys) == {t.key for t in plan.trials()} and set(keys.values()) == {1}
    return trial_records(store, plan.name)


def test_ray_trials_equal_local_ones(tmp_path, ray_instance):
    plan = builtin_plan("distractors", "smoke", seeds=2)  # 4 trials with sweeps
    with RunStore(tmp_path / "local") as local, RunStore(tmp_path / "ray") as remote:
        run_study(local, plan)
        steps = {}
        progress = run_study(remote, plan, backend="ray",
                             on_step=lambda t, s, n: steps.__setitem__(t.key, s))
        assert len(progress.trained) == 4 and not progress.failed
        assert steps == {t.key: t.config.train.total_steps for t in plan.trials()}
        a, b = once_each(local, plan), once_each(remote, plan)
        for key, rec in a.items():
            other = b[key]
            assert other.status == "finished" and other.tags == rec.tags
            never = {k for k, v in rec.metrics.items() if v is None}  # steps_to_r2_* not met
            assert {k for k, v in other.metrics.items() if v is None} == never
            assert {k: v for k, v in other.metrics.items() if k not in never} == \
                pytest.approx({k: v for k, v in rec.metrics.items() if k not in never},
                              rel=1e-5, abs=1e-6)
            assert other.pid != os.getpid()  # trained in a Ray worker
            sa = local.sweep(rec.id, "distractors").table
            sb = remote.sweep(other.id, "distractors").table
            assert sb["mae"].tolist() == pytest.approx(sa["mae"].tolist(), rel=1e-5)
            # The imported run is a whole run: its weights load and re-evaluate the same.
            assert remote.load_checkpoint(other.id, "last").step == rec.steps_done
        again = run_study(remote, plan, backend="ray")
        assert again.trained == [] and len(again.kept) == 4


def test_a_killed_ray_worker_is_retried_and_the_study_completes(tmp_path, ray_instance):
    plan = long_plan("killed", steps=600)
    killed: list[int] = []
    before = trial_dirs()

    def on_step(trial, step, total):
        if step >= 20 and not killed:
            pids = trial_worker_pids()
            if pids:
                killed.append(pids[0])
                os.kill(pids[0], signal.SIGKILL)

    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", on_step=on_step, max_retries=2)
        assert killed, "no Ray trial worker was found to kill"
        assert len(progress.trained) == 2 and not progress.failed
        records = once_each(store, plan)
        assert {r.status for r in records.values()} == {"finished"}
        assert all(r.pid not in killed for r in records.values())
    assert left_behind(before) == []  # the killed worker's temporary store is gone


def test_a_trial_whose_worker_dies_past_its_retries_is_stored_failed(tmp_path,
                                                                     ray_instance):
    plan = long_plan("doomed", steps=600)
    plan.seeds = (0,)
    killed: list[int] = []
    before = trial_dirs()

    def on_step(trial, step, total):
        pids = [p for p in trial_worker_pids() if p not in killed]
        if step >= 10 and pids:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", on_step=on_step, max_retries=0)
        assert killed and len(progress.failed) == 1
        (rec,) = trial_records(store, "doomed").values()
        assert rec.status == "failed" and "Ray worker died 1 time (" in rec.reason
        assert left_behind(before) == []  # no trial ran after it on this node: the driver
        # The study can be run again: the failed trial is kept unless --retry-failed.
        assert run_study(store, plan, backend="ray").trained == []


def test_a_ray_trial_holds_its_cpus_while_it_trains(tmp_path, ray_instance):
    """With --cpus-per-trial 2 on 2 CPUs the trials run one after the other. A task that
    read the stop flag with ray.get gave its CPUs back while it waited, and Ray started the
    next trial beside it (it did here, every run, before the reads went through futures)."""
    plan = long_plan("serial", steps=600)
    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", cpus_per_trial=2)
        assert len(progress.trained) == 2
        first, second = sorted(once_each(store, plan).values(), key=lambda r: r.created_at)
        assert first.finished_at - first.created_at > 1.0  # long enough to poll the flag
        assert second.created_at >= first.finished_at, (first.finished_at,
                                                          second.created_at)


def test_stopping_a_ray_study_stores_trials_in_flight_as_cancelled(tmp_path, ray_instance):
    plan = long_plan("stopped", steps=5000)
    cancel = threading.Event()

    def on_step(trial, step, total):
        if step >= 20:
            cancel.set()

    with RunStore(tmp_path) as store:
        progress = run_study(store, plan, backend="ray", cancel=cancel, on_step=on_step,
                             cpus_per_trial=2)  # one at a time: the second is queued
        assert progress.cancelled
        recs = list(trial_records(store, "stopped").values())
        statuses = [r.status for r in recs]
        # the queued one never started: not stored
        assert statuses == ["cancelled"], [(r.status, r.steps_done, r.pid) for r in recs]


def test_ray_options_and_a_missing_ray_are_one_line(tmp_path, monkeypatch, capsys):
    plan = builtin_plan("distractors", "smoke", seeds=1)
    with RunStore(tmp_path) as store:
        with pytest.raises(ConfigError, match="--max-retries"):
            run_study(store, plan, backend="ray", max_retries=-1)
        with pytest.raises(ConfigError, match="--backend"):
            run_study(store, plan, backend="spark")
        monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
        with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
            run_study(store, plan, backend="ray")
        assert store.list_runs() == []
    code = main(["--store", str(tmp_path), "study", "run", "distractors", "--scale", "smoke",
                 "--backend", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "[ray]" in err and len(err.splitlines()) == 1


async def test_the_studies_screen_runs_a_study_on_ray(tmp_path, ray_instance):
    from textual.widgets import DataTable, Input, Select, Static

    from tui.app import CnnprobeApp
    from tui.screens.studies import StudiesScreen

    app = CnnprobeApp(tmp_path / "store", watch_store=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("escape", "u")
        screen = app.screen
        assert isinstance(screen, StudiesScreen)
        screen.query_one("#study-name", Select).value = "distractors"
        screen.query_one("#study-backend", Select).value = "ray"
        screen.query_one("#study-seeds", Input).value = "1"
        await pilot.press("ctrl+r")
        for _ in range(600):
            await pilot.pause(0.2)
            if app.lab.study is not None and app.lab.study.done:
                break
        await app.workers.wait_for_complete()
        await pilot.pause(1.0)
        status = str(screen.query_one("#study-status", Static).render())
        with RunStore(tmp_path / "store") as store:
            reasons = [r.reason for r in store.list_runs() if r.status != "finished"]
        assert "trained 2" in status, (status, reasons)
        trials = screen.query_one("#study-trials", DataTable)
        assert [str(trials.get_cell(k, "status")) for k in trials.rows] == ["finished"] * 2
    with RunStore(tmp_path / "store") as store:
        assert len(trial_records(store, "distractors")) == 2


def test_ray_init_gets_real_file_descriptors_under_the_tui(monkeypatch):
    """Textual replaces sys.stdout/stderr with objects whose fileno() is -1, and ray.init
    fails on those ("file.fileno() is not a valid file descriptor"), seen in tmux."""
    from cnnprobe.studies.ray_backend import _streams_with_descriptors

    class Captured:  # as Textual's capture
        def write(self, text):
            return len(text)

        def flush(self):
            pass

        def fileno(self):
            return -1

    monkeypatch.setattr(sys, "stdout", Captured())
    monkeypatch.setattr(sys, "stderr", Captured())
    with _streams_with_descriptors():
        os.fstat(sys.stdout.fileno())
        os.fstat(sys.stderr.fileno())
    assert isinstance(sys.stdout, Captured)


# -- what a local Ray exposes and prints


def test_a_local_ray_listens_on_the_loopback_only(ray_instance):
    """The session's Ray is started as `study run --backend ray` starts one. Its GCS,
    raylet, workers and this driver's core worker listened on every interface (`*:PORT`,
    reachable from the network: whoever reaches them runs code here)."""
    import psutil

    @ray_instance.remote(num_cpus=0)
    def pid() -> int:
        return os.getpid()

    worker = ray_instance.get(pid.remote())  # a worker is up
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    assert worker in {p.pid for p in procs}
    listening = []
    for proc in procs:
        try:
            conns = getattr(proc, "net_connections", proc.connections)(kind="inet")
            name = proc.name()
        except psutil.Error:
            continue
        listening += [(name, c.laddr.ip, c.laddr.port) for c in conns
                      if c.status == psutil.CONN_LISTEN]
    names = {name for name, *_ in listening}
    assert {"gcs_server", "raylet"} <= names, listening
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    assert [s for s in listening if s[1] not in loopback] == []


def test_the_raylets_news_stays_off_the_terminal(ray_instance, capfd):
    """Ray prints the raylet's news from a driver thread whatever log_to_driver says, into
    the CLI's progress bar and over the TUI ("(raylet) A worker died or was killed ...",
    seen after a killed worker)."""
    from ray._private import worker

    worker.print_to_stdstream({"lines": ["A worker died or was killed while executing a "
                                         "task by an unexpected system error."],
                               "pid": "raylet", "is_err": False}, ignore_prefix=False)
    out, err = capfd.readouterr()
    assert "raylet" not in out + err and "worker died" not in out + err


def test_why_a_ray_trial_failed_is_said_as_it_happened():
    from ray import exceptions as rex

    crash = rex.WorkerCrashedError()
    raised = rex.RayTaskError("remote_trial", "Traceback ...",
                              ModuleNotFoundError("No module named 'cnnprobe'"))
    assert rb.failure_reason(crash, 0).startswith("its Ray worker died 1 time (Worker")
    assert rb.failure_reason(crash, 2).startswith("its Ray worker died 3 times (")
    for exc in (raised, raised.as_instanceof_cause()):  # as ray.get raises it
        why = rb.failure_reason(exc, 2)  # raised once, whatever --max-retries says
        assert why.startswith("it raised ModuleNotFoundError: No module named 'cnnprobe' "
                              "in its Ray worker, once"), why
        assert "times" not in why and "--ship-code" in why
    lost = rb.failure_reason(rex.RuntimeEnvSetupError("pip failed"), 2)
    assert lost.startswith("Ray could not run it (RuntimeEnvSetupError: ")


# -- bad options and addresses: one line, nothing stored

BAD_RAY_RUNS = [
    # (options after `study run distractors --scale smoke --seeds 1`, what the line says)
    (["--backend", "ray", "--cpus-per-trial", "64"],
     "--cpus-per-trial=64.0 is not allowed: at most 2: the largest node"),
    (["--backend", "ray", "--gpus-per-trial", "1"], "this one has none"),
    (["--backend", "ray", "--cpus-per-trial", "inf"], "--cpus-per-trial=inf is not allowed"),
    (["--backend", "ray", "--cpus-per-trial", "nan"], "--cpus-per-trial=nan is not allowed"),
    (["--backend", "ray", "--cpus-per-trial", "0"], "a number above 0"),
    (["--backend", "ray", "--cpus-per-trial", "-2"], "a number above 0"),
    (["--backend", "ray", "--cpus-per-trial", "0.00001"], "at most 4 decimals"),
    (["--backend", "ray", "--gpus-per-trial", "inf"], "--gpus-per-trial=inf is not allowed"),
    (["--backend", "ray", "--max-retries", "-1"], "--max-retries=-1 is not allowed"),
    (["--backend", "ray", "--max-retries", str(10**20)], "from 0 to 1000"),
    (["--backend", "ray", "--address", "ray://127.0.0.1:10001"],
     "Ray Client (ray://) is not supported"),
    (["--backend", "ray", "--address", "head-node"], "auto, or HOST:PORT"),
    (["--backend", "ray", "--address", "127.0.0.1:99999"], "auto, or HOST:PORT"),
    (["--backend", "ray", "--workers", "2"], "--workers=2 is not allowed: only with --backend "
                                              "local"),
    (["--address", "10.0.0.1:6379"], "--address='10.0.0.1:6379' is not allowed: only with "
                                     "--backend ray"),
    (["--cpus-per-trial", "2"], "--cpus-per-trial=2.0 is not allowed: only with --backend ray"),
    (["--max-retries", "0"], "--max-retries=0 is not allowed: only with --backend ray"),
    (["--ship-code"], "--ship-code=True is not allowed: only with --backend ray"),
]


@pytest.mark.parametrize("options, says", BAD_RAY_RUNS,
                         ids=[" ".join(o) for o, _ in BAD_RAY_RUNS])
def test_bad_ray_options_are_one_line_and_store_nothing(tmp_path, capsys, ray_instance,
                                                        options, says):
    plan = builtin_plan("distractors", "smoke", seeds=1)
    with RunStore(tmp_path) as store:  # a stopped trial, which a study run would replace
        stale = store.create_run(plan.trials()[0].config, name="stale",
                                 tags=plan.trials()[0].tags)
        store.set_status(stale, "cancelled", "stopped")
        before = [(r.id, r.status) for r in store.list_runs()]
    code = main(["--store", str(tmp_path), "study", "run", "distractors", "--scale", "smoke",
                 "--seeds", "1", *options])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    with RunStore(tmp_path) as store:
        assert [(r.id, r.status) for r in store.list_runs()] == before


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`cnnprobe ARGS` in a process of its own, from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if "RAY_ADDRESS" not in (env or {}):
        env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-c", "import sys; from cnnprobe.cli import "
                             "main; sys.exit(main())", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # the old code: still connecting
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("options, env, named", [
    (["--address", "127.0.0.1:1"], {}, "--address"),
    ([], {"RAY_ADDRESS": "127.0.0.1:1"}, "RAY_ADDRESS"),
    (["--address", "auto"], {"RAY_ADDRESS": "127.0.0.1:1"}, "RAY_ADDRESS"),
])
def test_a_dead_ray_address_is_one_line_within_seconds(tmp_path, options, env, named):
    """It was no answer after 150 s, Ray's C++ warnings every few seconds, Ctrl-C ignored
    for about 11 minutes."""
    start = time.monotonic()
    proc = run_cli(["--store", str(tmp_path), "study", "run", "distractors", "--scale",
                    "smoke", "--seeds", "1", "--backend", "ray", *options], env)
    out, err = finish(proc, 40)
    assert time.monotonic() - start < 30 and proc.returncode == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert f"{named}='127.0.0.1:1' is not allowed: a Ray cluster that answers: " in err
    assert "connection refused" in err or "no answer within 10 s" in err
    assert "rpc_client" not in out + err  # Ray's own warnings
    with RunStore(tmp_path) as store:
        assert store.list_runs() == []


@pytest.fixture
def silent_server():
    """A TCP server that accepts and never answers, on the address Ray dials for this
    machine (its node address): (host, port, an Event set once a client connected)."""
    from ray._private.services import node_ip_address_from_perspective

    host = node_ip_address_from_perspective()
    srv = socket.create_server((host, 0))
    accepted, conns = threading.Event(), []

    def serve() -> None:
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    yield host, srv.getsockname()[1], accepted
    srv.close()
    for conn in conns:
        conn.close()


def test_an_address_that_does_not_answer_as_ray_is_said_within_the_limit(silent_server):
    host, port, _ = silent_server
    start = time.monotonic()
    with pytest.raises(ConfigError, match="a connection but no reply within 0.5 s"):
        rb.wait_for_answer(f"{host}:{port}", "--address", f"{host}:{port}", limit=0.5)
    assert time.monotonic() - start < 2
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    assert rb.wait_for_answer(f"{host}:{port}", "--address", "x", cancel, limit=30) is False
    assert time.monotonic() - start < 2  # Ctrl-C (the first sets cancel) stops the wait


def test_ray_answers_the_check_an_address_gets(ray_instance):
    address = ray_instance.get_runtime_context().gcs_address
    assert rb.wait_for_answer(address, "--address", address, limit=5) is True


def test_ctrl_c_while_connecting_to_ray_stops_at_once(tmp_path, silent_server):
    host, port, accepted = silent_server
    proc = run_cli(["--store", str(tmp_path), "study", "run", "distractors", "--scale",
                    "smoke", "--seeds", "1", "--backend", "ray", "--address",
                    f"{host}:{port}"])
    try:
        assert accepted.wait(30), "the CLI never connected"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = finish(proc, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - start < 5 and proc.returncode == 130, (out, err)
    assert "stopped: run it again" in out
    with RunStore(tmp_path) as store:
        assert store.list_runs() == []


# -- --ship-code


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


def test_ship_code_sends_only_what_git_tracks_under_the_engine(tmp_path):
    """It sent the whole checkout less a few excludes: `.env`, keys and any other untracked
    file went to every worker."""
    repo = tmp_path / "checkout"
    (repo / "cnnprobe" / "sub").mkdir(parents=True)
    (repo / "cnnprobe" / "__init__.py").write_text("A = 1\n")
    (repo / "cnnprobe" / "sub" / "mod.py").write_text("B = 1\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text("")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "x")
    (repo / "cnnprobe" / "sub" / "mod.py").write_text("B = 2\n")  # an edit: shipped
    for secret in (".env", "cnnprobe/.env", "cnnprobe/new.py", "cnnprobe/key.pem"):
        (repo / secret).write_text("SECRET=1\n")
    (repo / "cnnprobe" / "link.py").symlink_to(repo / ".env")
    folder = rb.ship_folder(repo)
    try:
        shipped = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert shipped == ["cnnprobe/__init__.py", "cnnprobe/sub/mod.py"]
        assert (folder / "cnnprobe" / "sub" / "mod.py").read_text() == "B = 2\n"
    finally:
        import shutil

        shutil.rmtree(folder)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="--ship-code=True is not allowed: a git checkout"):
        rb.ship_folder(tmp_path / "plain")


def test_trial_stores_of_gone_workers_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    gone = tmp_path / f"{rb.TRIAL_DIR_PREFIX}{dead}-abc"
    alive = tmp_path / f"{rb.TRIAL_DIR_PREFIX}{os.getpid()}-abc"
    other = tmp_path / f"{rb.TRIAL_DIR_PREFIX}xyz"  # not one of ours: left alone
    for path in (gone, alive, other):
        (path / "runs").mkdir(parents=True)
    link = tmp_path / f"{rb.TRIAL_DIR_PREFIX}{dead}-link"
    link.symlink_to(alive)
    assert rb.sweep_trial_dirs(tmp_path) == [gone]
    assert not gone.exists() and alive.exists() and other.exists() and link.is_symlink()
