"""SIGTERM and SIGHUP stop a training as Ctrl-C / ctrl+q do: at the next step, stored as
cancelled with a checkpoint at that step, a line said where a terminal is left, exit status
128 + the signal. The CLI's `train` and `study run` and the TUI, each in a real process;
"hangup" closes the terminal itself (a pty's master), as an SSH connection dropping does."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil
import pytest

from cnnprobe.store import RunStore
from cnnprobe.store.files import peek_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TERM": "xterm-256color",
       "COLUMNS": "140", "LINES": "42"}
CLI = "import sys; from cnnprobe.cli import main; sys.exit(main())"
TRAIN = ["train", "--resolution", "16", "--steps", "1000000", "--batch-size", "8",
         "--eval-every", "500000", "--val-size", "16", "--device", "cpu"]
PLAN = """
name = "signals"
question = "Do the trials stop and keep their steps?"
seeds = 1
evaluations = []

[base]
"task.height" = 16
"task.width" = 16
"model.name" = "plaincnn"
"train.steps" = 1000000
"train.eval_every" = 500000
"train.batch_size" = 8
"train.val_size" = 16
"train.device" = "cpu"

[[axis]]
field = "model.pool"
values = ["max", "avg"]
"""


class Terminal:
    """A process on a pseudo-terminal of its own (its controlling terminal, 140x42), its
    output read as it comes; `hang_up` closes the terminal as a dropped SSH session does."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 42, 140, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=ENV,
                                     start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self.output = bytearray()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.output += data

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def hang_up(self) -> None:
        self._stop.set()
        self._reader.join()
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stop.set()
        self._reader.join()
        if self.master >= 0:
            os.close(self.master)


def _take_terminal() -> None:  # in the child, after setsid: the pty becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def wait_for(what, proc, timeout: float = 120.0, describe=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        assert proc.poll() is None, f"exited early ({proc.returncode}): {describe()}"
        time.sleep(0.1)
    pytest.fail(f"timed out: {describe()}")


def training_runs(root: Path, n: int = 1):
    """The store's runs once `n` of them train and have recorded steps, else None."""
    if not (root / "cnnprobe.db").exists():
        return None
    with RunStore(root) as store:
        runs = [r for r in store.list_runs(status="running") if r.steps_done > 0]
    return runs if len(runs) >= n else None


def stop(term: Terminal, how: str) -> None:
    if how == "hangup":
        term.hang_up()
    elif how == "group":  # what a hangup sends: every process of the foreground group
        os.killpg(term.proc.pid, signal.SIGHUP)
    else:
        os.kill(term.proc.pid, getattr(signal, how))


def assert_stopped_and_kept(root: Path, runs) -> None:
    with RunStore(root) as store:
        for rec in runs:
            rec = store.get(rec.id)
            assert rec.status == "cancelled", (rec.status, rec.reason)
            assert rec.steps_done > 0
            ckpt = peek_checkpoint(store.checkpoint_path(rec.id, "last"))
            assert ckpt["step"] == rec.steps_done  # every step up to the stop is kept


# (how it is stopped, exit status, the line on the terminal or None when none is left)
CLI_STOPS = [
    ("SIGTERM", 143, "stopped by SIGTERM: run"),
    ("SIGHUP", 129, "stopped by SIGHUP: run"),
    ("hangup", 129, None),
]


@pytest.mark.parametrize("how, code, said", CLI_STOPS, ids=[c[0] for c in CLI_STOPS])
def test_cli_train_stops_on_a_signal_and_keeps_its_steps(tmp_path, how, code, said):
    term = Terminal([sys.executable, "-c", CLI, "--store", str(tmp_path), *TRAIN])
    try:
        runs = wait_for(lambda: training_runs(tmp_path), term.proc, describe=term.text)
        time.sleep(0.3)
        stop(term, how)
        assert term.proc.wait(timeout=60) == code, term.text()
    finally:
        term.close()
    assert_stopped_and_kept(tmp_path, runs)
    if said:
        text = term.text()
        assert said in text and "cancelled at step" in text and "cnnprobe resume" in text
        assert "Traceback" not in text


STUDY_STOPS = [
    ("SIGTERM", 143, "stopped by SIGTERM"),
    ("group", 129, "stopped by SIGHUP"),  # the workers hear it too: the driver decides
]


@pytest.mark.parametrize("how, code, said", STUDY_STOPS, ids=[c[0] for c in STUDY_STOPS])
def test_study_run_forwards_the_stop_to_its_workers(tmp_path, how, code, said):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    store = tmp_path / "store"
    term = Terminal([sys.executable, "-c", CLI, "--store", str(store), "study", "run",
                     str(plan), "--workers", "2"])
    try:
        runs = wait_for(lambda: training_runs(store, 2), term.proc, timeout=180,
                        describe=term.text)
        workers = [psutil.Process(r.pid) for r in runs]
        stop(term, how)
        assert term.proc.wait(timeout=60) == code, term.text()
        psutil.wait_procs(workers, timeout=10)
    finally:
        term.close()
    assert_stopped_and_kept(store, runs)
    assert said in term.text() and "Traceback" not in term.text()
    with RunStore(store) as s:
        assert s.claims() == []


TUI = """
import sys
from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from tui.app import CnnprobeApp, run_app
cfg = RunConfig(task=TaskConfig(name="distance", height=16, width=16),
                model=ModelConfig(name="seednet"),
                train=TrainConfig(batch_size=8, steps=1_000_000, eval_every=500_000,
                                  val_size=16, device="cpu"))
sys.exit(run_app(CnnprobeApp(sys.argv[1], config=cfg, watch_store=False)))
"""

TUI_STOPS = [
    ("SIGTERM", 143, "cnnprobe-tui: stopped by SIGTERM: run"),
    ("hangup", 129, None),
]


@pytest.mark.parametrize("how, code, said", TUI_STOPS, ids=[c[0] for c in TUI_STOPS])
def test_the_tui_stops_its_training_on_a_signal_as_ctrl_q_does(tmp_path, how, code, said):
    term = Terminal([sys.executable, "-c", TUI, str(tmp_path)])
    try:
        wait_for(lambda: "Train" in term.text(), term.proc, describe=term.text)
        term.type(b"\x12")  # ctrl+r: train (starts once the engine has loaded)
        runs = wait_for(lambda: training_runs(tmp_path), term.proc, timeout=180,
                        describe=lambda: term.text()[-2000:])
        stop(term, how)
        assert term.proc.wait(timeout=60) == code, term.text()[-2000:]
    finally:
        term.close()
    assert_stopped_and_kept(tmp_path, runs)
    if said:
        assert said in term.text() and "stored as cancelled at step" in term.text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_the_tui_takes_the_signal_through_its_event_loop(tmp_path, signum):
    """In-process (Pilot): the app's own handler, through a real signal to this process;
    the handlers it had before are back once it has closed."""
    from test_tui import press_live, records, tiny
    from test_tui import wait_for as wait_for_app

    from tui.app import CnnprobeApp

    before = signal.getsignal(signum)
    app = CnnprobeApp(tmp_path, config=tiny(5000, eval_every=1000), watch_store=False)
    async with app.run_test(size=(140, 42)) as pilot:
        assert signum in app.controller._signal_handlers  # else the signal below would end pytest
        await press_live(pilot, "ctrl+r")
        await wait_for_app(pilot, lambda: app.lab.active and app.lab.viewed_job.step >= 5)
        job = app.lab.viewed_job
        os.kill(os.getpid(), signum)
        await wait_for_app(pilot, lambda: not app.is_running or not app.lab.active, timeout=30)
        await app.workers.wait_for_complete()
    assert job.cancel.is_set() and app.controller.stop_signal == signum
    assert app.return_code == 128 + signum
    (rec,) = records(tmp_path)
    assert rec.status == "cancelled" and 5 <= rec.steps_done < 5000
    assert "stored as cancelled at step" in app.controller.stopped_message()
    assert signal.getsignal(signum) == before
