"""The store across processes: a run killed mid-training, and two runs training at once."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cnnprobe.runs import load_model, resume_run
from cnnprobe.store import RunStore

TRAINER = """
import sys, torch
torch.set_num_threads(1)
from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.runs import train_run
from cnnprobe.store import RunStore
root, steps, eval_every, seed, name = sys.argv[1:6]
cfg = RunConfig(task=TaskConfig(name="distance", height=16, width=16),
                train=TrainConfig(batch_size=16, steps=int(steps), eval_every=int(eval_every),
                                  val_size=32, lr=1e-3, device="cpu", seed=int(seed)))
run_id, result = train_run(RunStore(root), cfg, name=name)
print(run_id, result.status)
"""


def _trainer(root, steps, eval_every, seed, name):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", TRAINER, str(root), str(steps),
                             str(eval_every), str(seed), name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out waiting for the trainer")


def test_a_killed_run_is_interrupted_and_resumable(tmp_path):
    proc = _trainer(tmp_path, 1_000_000, 5, 0, "doomed")
    try:
        def checkpointed_a_few_times():
            if not (tmp_path / "cnnprobe.db").exists():
                return None
            runs = RunStore(tmp_path).list_runs()
            if runs and runs[0].steps_done >= 40 and (tmp_path / runs[0].id / "last.pt").exists():
                return runs[0]
            return None

        rec = _wait_for(checkpointed_a_few_times, proc)
        assert rec.status == "running"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = RunStore(tmp_path)
    rec = store.get(rec.id)
    assert rec.status == "interrupted"
    assert f"process {proc.pid}" in rec.reason
    model, ckpt = load_model(store, rec.id, "last")
    # Past step 40, the evaluation at 35 had its checkpoint written; a later one may be
    # cut short by the kill, and then the previous complete one is what loads.
    assert 35 <= ckpt.step <= rec.steps_done and ckpt.step % 5 == 0
    assert sum(p.numel() for p in model.parameters()) == rec.parameters
    assert store.train_history(rec.id) and store.val_history(rec.id)

    _, result = resume_run(store, rec.id, 10)
    rec = store.get(rec.id)
    assert result.status == "finished" and rec.status == "finished"
    assert rec.steps_done == ckpt.step + 10 and rec.resumed_at == [ckpt.step]
    assert [r["step"] for r in store.train_history(rec.id)] == list(range(1, rec.steps_done + 1))


def test_two_processes_train_into_one_store(tmp_path):
    # Both start on a store that does not exist yet: creating it races too.
    procs = [_trainer(tmp_path, 150, 30, seed, f"p{seed}") for seed in (1, 2)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.split()[1] == "finished"
    store = RunStore(tmp_path)
    runs = store.list_runs()
    assert sorted(r.name for r in runs) == ["p1", "p2"]
    for rec in runs:
        assert rec.status == "finished" and rec.steps_done == 150
        assert [r["step"] for r in store.train_history(rec.id)] == list(range(1, 151))
        assert [r["step"] for r in store.val_history(rec.id)] == [30, 60, 90, 120, 150]
        assert rec.metrics["n"] == 32
        assert store.load_checkpoint(rec.id, "last").step == 150
        assert store.predictions(rec.id) is not None
    # Different seeds, different runs: the records did not get mixed up.
    a, b = (store.train_history(r.id) for r in runs)
    assert [r["loss"] for r in a] != [r["loss"] for r in b]
