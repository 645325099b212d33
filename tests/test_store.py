"""The run store on its own: records, ids, tags, schema versions, bad files, liveness."""

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig
from cnnprobe.store import STATUSES, RunStore, StoreError, schema


def _cfg(task="distance", model="seednet", size=32):
    return RunConfig(task=TaskConfig(name=task, height=size, width=size),
                     model=ModelConfig(name=model))


def test_create_get_and_list_newest_first(tmp_path):
    store = RunStore(tmp_path)
    a = store.create_run(_cfg(), name="a", tags=["x"], note="first")
    b = store.create_run(_cfg("area", "plaincnn", 48), tags=["x", "y"])
    rec = store.get(a)
    assert (rec.name, rec.status, rec.tags, rec.note) == ("a", "running", ["x"], "first")
    assert rec.config == _cfg() and rec.seed == 0 and rec.kind == "train"
    assert rec.versions["torch"] and rec.versions["cnnprobe"]
    # The default name says what it is, and four characters of its id tell apart runs
    # of one setup (four runs called distance-seednet-64 made `show NAME` ambiguous).
    assert store.get(b).name == f"area-plaincnn-48-{b[:4]}"
    assert [r.id for r in store.list_runs()] == [b, a]
    assert [r.id for r in store.list_runs(task="area")] == [b]
    assert [r.id for r in store.list_runs(model="seednet")] == [a]
    assert [r.id for r in store.list_runs(tag="y")] == [b]
    assert [r.id for r in store.list_runs(tag="x")] == [b, a]
    assert store.list_runs(status="finished") == []
    assert (tmp_path / "cnnprobe.db").is_file() and (tmp_path / a).is_dir()
    twins = [store.create_run(_cfg("area", "plaincnn", 48)) for _ in range(3)]
    assert len({store.get(t).name for t in [b, *twins]}) == 4
    assert store.resolve(store.get(twins[0]).name) == twins[0]


def test_a_listed_run_says_whether_it_was_named_without_parsing_its_config(tmp_path):
    store = RunStore(tmp_path)
    named = store.create_run(_cfg(), name="mine")
    plain = store.create_run(_cfg("area", "plaincnn", 48))
    rect = store.create_run(RunConfig(task=TaskConfig(name="area", height=40, width=56)),
                            name="area-seednet-56")  # the width is not in a default name
    listed = {r.id: r for r in store.list_runs()}
    assert listed[named].has_given_name and not listed[plain].has_given_name
    assert listed[rect].has_given_name
    old = store.create_run(_cfg("area", "plaincnn", 48), name="area-plaincnn-48")
    assert not store.get(old).has_given_name  # named as before the id's suffix
    assert all("config" not in r.__dict__ for r in listed.values())  # the runs table's cost
    assert store.get(named).has_given_name and not store.get(plain).has_given_name


def test_store_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNPROBE_STORE", str(tmp_path / "elsewhere"))
    store = RunStore()
    assert store.path == tmp_path / "elsewhere" / "cnnprobe.db"
    assert store.path.is_file()


def test_resolve_prefix_name_latest_and_refusals(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.create_run(_cfg(), name=f"run{i}") for i in range(3)]
    for rid in ids:
        assert store.resolve(rid[:12]) == rid
        assert store.resolve(rid.upper()) == rid
    assert store.resolve("run1") == ids[1]
    assert store.resolve("latest") == ids[2]
    with pytest.raises(StoreError, match="no run 'nothere'"):
        store.resolve("nothere")
    # Force two ids to share a prefix: the error lists both candidates.
    with store._write() as c:
        c.execute("UPDATE runs SET id = 'abcd1' || substr(id, 6) WHERE id = ?", (ids[0],))
        c.execute("UPDATE runs SET id = 'abcd2' || substr(id, 6) WHERE id = ?", (ids[1],))
    with pytest.raises(StoreError, match="ambiguous") as err:
        store.resolve("abcd")
    assert "abcd1" in str(err.value) and "abcd2" in str(err.value)
    assert store.resolve("abcd2").startswith("abcd2")
    # Fewer than four characters are a name only (as git's abbreviated hashes).
    with pytest.raises(StoreError, match="an id prefix needs at least 4 characters"):
        store.resolve("abc")


def test_tags_note_rename_and_delete(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run(_cfg(), tags=["a"])
    store.set_tags(rid, ["b", "a", "c"])
    store.set_note(rid, "long | note")
    store.rename(rid, "renamed")
    rec = store.get(rid)
    assert (rec.tags, rec.note, rec.name) == (["a", "b", "c"], "long | note", "renamed")
    with pytest.raises(StoreError, match="one word"):
        store.set_tags(rid, ["two words"])
    assert store.get(rid).tags == ["a", "b", "c"]  # a refused change changes nothing
    with pytest.raises(StoreError, match="still running"):
        store.delete(rid)
    store.set_status(rid, "finished")
    store.delete(rid)
    assert store.list_runs() == []
    assert not (tmp_path / rid).exists()
    with pytest.raises(StoreError, match="no run"):
        store.get(rid)


def test_usable_from_many_threads(tmp_path):
    store = RunStore(tmp_path)
    errors = []

    def work(i):
        try:
            for j in range(5):
                rid = store.create_run(_cfg(), name=f"t{i}-{j}")
                store.record_progress(rid, [{"step": 1, "loss": 1.0}], steps_done=1,
                                      samples_seen=8, wall_time_s=0.1)
                store.list_runs()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = store.list_runs()
    assert len(runs) == 20 and all(r.steps_done == 1 for r in runs)
    store.close()


def test_newer_schema_is_refused_and_left_alone(tmp_path):
    RunStore(tmp_path).create_run(_cfg())
    with sqlite3.connect(tmp_path / "cnnprobe.db") as conn:
        conn.execute(f"PRAGMA user_version = {schema.latest_version() + 1}")
    before = (tmp_path / "cnnprobe.db").read_bytes()
    with pytest.raises(StoreError, match="newer cnnprobe"):
        RunStore(tmp_path)
    assert (tmp_path / "cnnprobe.db").read_bytes() == before


def test_older_schema_is_migrated_with_a_backup(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    rid = store.create_run(_cfg(), name="old")
    store.close()

    def add_column(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN lineage TEXT NOT NULL DEFAULT 'kept'")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_column])
    store = RunStore(tmp_path)
    assert store.schema_version == len(schema.MIGRATIONS)
    assert store.get(rid).name == "old"
    assert store._read("SELECT lineage FROM runs")[0][0] == "kept"
    backup = tmp_path / f"cnnprobe.db.v{len(schema.MIGRATIONS) - 1}.bak"
    assert backup.is_file()


@pytest.mark.parametrize("content", [b"this is not sqlite at all" * 100, b"SQLite format 3\x00"
                                     + b"\xff" * 200])
def test_a_file_that_is_not_a_database(tmp_path, content):
    (tmp_path / "cnnprobe.db").write_bytes(content)
    with pytest.raises(StoreError, match="is not a cnnprobe store") as err:
        RunStore(tmp_path)
    assert "\n" not in str(err.value) and "--store" in str(err.value)
    assert (tmp_path / "cnnprobe.db").read_bytes() == content


def test_another_programs_database_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "cnnprobe.db") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="another program's database"):
        RunStore(tmp_path)


def test_a_locked_store_gives_one_line_and_changes_nothing(tmp_path):
    store = RunStore(tmp_path, timeout=0.2)
    rid = store.create_run(_cfg(), name="before")
    holder = sqlite3.connect(tmp_path / "cnnprobe.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            store.rename(rid, "after")
        assert store.get(rid).name == "before"  # WAL: reading still works meanwhile
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.get(rid).name == "before"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_of_a_dead_process_becomes_interrupted(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run(_cfg())
    store._update(rid, pid=_dead_pid(), pid_token="")
    rec = RunStore(tmp_path).get(rid)  # any open or listing notices
    assert rec.status == "interrupted"
    assert "stopped without finishing" in rec.reason
    assert rec.status in STATUSES


def test_live_run_of_another_process_stays_running(tmp_path):
    from cnnprobe.store.provenance import process_token

    store = RunStore(tmp_path)
    rid = store.create_run(_cfg())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store._update(rid, pid=sleeper.pid, pid_token=process_token(sleeper.pid))
        assert store.list_runs()[0].status == "running"
        # A recycled pid (same number, another process) is not the run's process.
        store._update(rid, pid_token="not-its-start-time")
        assert store.get(rid).status == "interrupted"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_other_host_run_is_interrupted_only_when_its_heartbeat_is_stale(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run(_cfg())
    store._update(rid, host="elsewhere", pid=1, heartbeat_at=time.time() - 60)
    assert store.get(rid).status == "running"
    store._update(rid, heartbeat_at=time.time() - 2 * 3600)
    rec = store.get(rid)
    assert rec.status == "interrupted" and "no heartbeat from elsewhere" in rec.reason
