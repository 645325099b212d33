"""Two drivers of one study on one store: claims on trials (the store's `claims` table),
stale claims taken over, and worker processes that exit when their driver is killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from cnnprobe.store import RunStore, schema
from cnnprobe.store.claims import CLAIM_STALE_AFTER_S
from cnnprobe.store.provenance import hostname
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.runner import run_study, stored_studies, trial_records

ROOT = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def put_claim(store: RunStore, study: str, trial: str, *, owner: str = "other",
              host: str | None = None, pid: int | None = None, age_s: float = 0.0) -> None:
    now = time.time() - age_s
    with store._write() as c:
        c.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, '', ?, ?)",
                  (study, trial, owner, host or hostname(), os.getpid() if pid is None else pid,
                   now, now))


def trial_counts(store: RunStore, study: str) -> Counter:
    return Counter(t.split(":", 1)[1] for r in store.list_runs(tag=f"study:{study}")
                   for t in r.tags if t.startswith("trial:"))


# Who holds a claim already, and whether a new driver takes it: one row per kind of owner.
CLAIMS = [
    # (case, put_claim options or None, taken by the new driver)
    ("free", None, True),
    ("a live driver here (this process, another owner)", {}, False),
    ("a dead pid here", {"pid": "dead"}, True),
    ("another host, renewed just now", {"host": "node-b", "pid": 1}, False),
    ("another host, silent past the bound",
     {"host": "node-b", "pid": 1, "age_s": CLAIM_STALE_AFTER_S + 60}, True),
    ("the same driver again", {"owner": "me"}, True),
]


@pytest.mark.parametrize("case, held_by, taken", CLAIMS, ids=[c[0] for c in CLAIMS])
def test_a_claim_is_taken_only_from_an_owner_that_is_gone(tmp_path, case, held_by, taken):
    store = RunStore(tmp_path)
    if held_by is not None:
        opts = dict(held_by)
        if opts.get("pid") == "dead":
            opts["pid"] = dead_pid()
        put_claim(store, "s", "t1", **opts)
    held = store.claim_trials("s", ["t1", "t2"], "me")
    assert ("t1" not in held) == taken
    assert "t2" not in held  # a free trial beside it is claimed in the same transaction
    (claim,) = [c for c in store.claims("s") if c.trial == "t1"]
    assert (claim.owner == "me") == taken
    if not taken:
        assert held["t1"].owner == claim.owner and "pid" in held["t1"].describe()


def test_release_gives_back_only_the_owners_claims(tmp_path):
    store = RunStore(tmp_path)
    store.claim_trials("s", ["a", "b"], "me")
    put_claim(store, "s", "c", owner="other")
    store.release_claim("s", "c", "me")  # not mine: stays
    store.release_claim("s", "a", "me")
    assert sorted(c.trial for c in store.claims()) == ["b", "c"]
    assert store.release_claims("me") == 1
    assert [c.trial for c in store.claims()] == ["c"]


def test_a_version_3_store_gains_the_claims_table(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        RunStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "cnnprobe.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    store = RunStore(tmp_path)
    assert store.schema_version == schema.latest_version() == 4
    assert store.claims() == [] and store.claim_trials("s", ["t"], "me") == {}
    assert (tmp_path / "cnnprobe.db.v3.bak").is_file()


def smoke_plan(steps: int | None = None, variants: int | None = None, seeds: int = 2):
    plan = builtin_plan("pooling", "smoke", seeds=seeds)
    if steps is not None:
        data = plan.base.to_dict()
        plan.base = plan.base.__class__.from_dict({**data, "train": {**data["train"],
                                                                      "steps": steps}})
    if variants is not None:
        plan.variants = plan.variants[:variants]
    return plan


def test_two_drivers_at_once_train_every_trial_once(tmp_path):
    """Two `study run`s of one study started together (threads, each with its own store
    connection): every trial is trained once, and both return with the whole study done."""
    plan = smoke_plan(variants=2)  # 4 trials
    start = threading.Barrier(2)
    results, errors, said = {}, [], {0: [], 1: []}

    def driver(i: int) -> None:
        try:
            with RunStore(tmp_path) as store:
                start.wait()
                results[i] = run_study(store, plan,
                                       on_trial=lambda t, what, rec: said[i].append(what))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=driver, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 2
    store = RunStore(tmp_path)
    keys = {t.key for t in plan.trials()}
    assert trial_counts(store, plan.name) == Counter({k: 1 for k in keys})
    assert stored_studies(store) == {plan.name: {"finished": 4}}  # `study list`: 4, not 8
    trained = results[0].trained + results[1].trained
    assert sorted(trained) == sorted(keys)  # shared: each trained by one of them
    for i in (0, 1):  # each saw the whole study done: trained here, or kept from the other
        assert set(results[i].trained) | set(results[i].kept) == keys
        assert results[i].elsewhere == [] and not results[i].cancelled
    assert store.claims() == []  # all given back


def test_a_stale_claim_of_a_dead_driver_is_taken_over(tmp_path):
    plan = smoke_plan(variants=1)
    store = RunStore(tmp_path)
    victim = plan.trials()[0].key
    put_claim(store, plan.name, victim, pid=dead_pid())
    progress = run_study(store, plan)
    assert sorted(progress.trained) == sorted(t.key for t in plan.trials())
    assert trial_counts(store, plan.name)[victim] == 1 and store.claims() == []


def test_a_trial_running_elsewhere_is_waited_for_and_taken_over_when_its_driver_dies(
        tmp_path):
    plan = smoke_plan(variants=1)
    store = RunStore(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    victim = plan.trials()[0].key
    try:
        put_claim(store, plan.name, victim, pid=other.pid)
        said = []

        def on_trial(trial, what, rec):
            said.append((trial.key, what))
            if trial.key != victim and what == "finished":
                other.kill()  # the other driver dies while this one waits

        progress = run_study(store, plan, on_trial=on_trial)
    finally:
        other.kill()
        other.wait()
    assert (victim, f"running elsewhere: pid {other.pid} on {hostname()}") in said
    assert said.index((victim, "training")) > said.index(
        (victim, f"running elsewhere: pid {other.pid} on {hostname()}"))
    assert sorted(progress.trained) == sorted(t.key for t in plan.trials())
    assert trial_counts(store, plan.name)[victim] == 1 and store.claims() == []


def test_stopping_a_driver_that_waits_for_another_says_what_runs_elsewhere(tmp_path):
    plan = smoke_plan(variants=1, seeds=1)
    store = RunStore(tmp_path)
    (trial,) = plan.trials()
    put_claim(store, plan.name, trial.key)  # live: this process, another owner
    cancel = threading.Event()
    timer = threading.Timer(1.5, cancel.set)
    timer.start()
    progress = run_study(store, plan, cancel=cancel)
    timer.cancel()
    assert progress.cancelled and progress.elsewhere == [trial.key]
    assert progress.trained == [] and trial_records(store, plan.name) == {}
    assert [c.owner for c in store.claims()] == ["other"]  # the other's claim is untouched


DRIVER = """
import sys
from cnnprobe.store import RunStore
from cnnprobe.studies import builtin_plan
from cnnprobe.studies.runner import run_study
plan = builtin_plan("pooling", "smoke", seeds=1)
data = plan.base.to_dict()
plan.base = plan.base.__class__.from_dict({**data, "train": {**data["train"],
                                                              "steps": 1_000_000}})
plan.variants = plan.variants[:2]
run_study(RunStore(sys.argv[1]), plan, workers=2)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_workers_exit_when_their_driver_is_killed_and_its_claims_go_stale(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert driver.poll() is None, driver.stderr.read()
            assert time.monotonic() < deadline, "the workers never started training"
            if (tmp_path / "cnnprobe.db").exists():
                running = [r for r in RunStore(tmp_path).list_runs(status="running")
                           if r.steps_done > 0]
                if len(running) == 2:
                    break
            time.sleep(0.2)
        workers = [r.pid for r in running]
        assert all(psutil.Process(p).ppid() == driver.pid for p in workers)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 15
        while not all(gone(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(p) for p in workers), "orphaned workers lived on"
    finally:
        driver.kill()
        driver.wait()
        for pid in workers if "workers" in dir() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    store = RunStore(tmp_path)
    for rec in running:  # each stopped its trial at a step and stored it, with a checkpoint
        rec = store.get(rec.id)
        assert rec.status == "cancelled" and rec.steps_done > 0
        assert store.checkpoint_path(rec.id, "last").is_file()
    claims = store.claims()
    assert {c.pid for c in claims} == {driver.pid} and len(claims) == 2  # never released
    keys = [c.trial for c in claims]
    assert store.claim_trials(claims[0].study, keys, "next driver") == {}  # stale: taken
