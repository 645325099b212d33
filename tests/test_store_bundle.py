"""A run moved between stores as plain data (store/bundle.py): export_run, import_run."""

import dataclasses
import os
import pickle

import pandas as pd
import pytest

from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.runs import evaluate_run, finetune_run, load_model, sweep_run, train_run
from cnnprobe.store import RunStore, StoreError, export_run, import_run


def _tiny() -> RunConfig:  # as conftest's `tiny`, for a module-wide fixture
    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     train=TrainConfig(batch_size=32, steps=20, eval_every=10, val_size=64,
                                       lr=1e-3, device="cpu"))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Store A: a trained run with a sweep, a saved evaluation, probes, tags and a note,
    and a fine-tuned child of it. Trained once for the module; tests only read it."""
    store = RunStore(tmp_path_factory.mktemp("a"))
    run_id, _ = train_run(store, _tiny(), name="tiny", tags=["t", "u"], note="a note")
    sweep_run(store, run_id, "resolution", resolutions=[16, 32], n=16, device="cpu")
    evaluate_run(store, run_id, n=32, device="cpu")
    store.save_probes(run_id, pd.DataFrame([{"layer": "a", "r2": 0.5}]), {"n": 8})
    child_id, _ = finetune_run(store, run_id, height=48, width=48, steps=1, lr=1e-12)
    return store, run_id, child_id


@pytest.fixture
def dest(tmp_path):
    return RunStore(tmp_path / "b")


def _ended_run(store: RunStore, status: str = "cancelled") -> str:
    """A run without training (fast): a row, a status and one file."""
    run_id = store.create_run(_tiny(), tags=["x"])
    store.set_status(run_id, status, "test")
    (store.run_dir(run_id) / "sub").mkdir()
    (store.run_dir(run_id) / "sub" / "data.bin").write_bytes(b"\x00\x01payload")
    return run_id


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_round_trips_through_a_pickled_bundle(source, dest):
    a, run_id, _ = source
    bundle = pickle.loads(pickle.dumps(export_run(a, run_id)))
    assert import_run(dest, bundle) == run_id
    for f in dataclasses.fields(a.get(run_id)):
        assert getattr(dest.get(run_id), f.name) == getattr(a.get(run_id), f.name), f.name
    assert dest.get(run_id) == a.get(run_id)
    assert [r.id for r in dest.list_runs()] == [run_id]
    assert dest.train_history(run_id) == a.train_history(run_id)
    assert dest.val_history(run_id) == a.val_history(run_id)
    assert dest.sweeps(run_id) == a.sweeps(run_id)
    pd.testing.assert_frame_equal(dest.sweep(run_id, "resolution").table,
                                  a.sweep(run_id, "resolution").table)
    pd.testing.assert_frame_equal(dest.sweep(run_id, "resolution").samples,
                                  a.sweep(run_id, "resolution").samples)
    assert dest.evaluations(run_id) == a.evaluations(run_id) and len(a.evaluations(run_id)) == 1
    pd.testing.assert_frame_equal(dest.probes(run_id), a.probes(run_id))
    assert dest.probes_info(run_id) == a.probes_info(run_id)
    assert dest.get(run_id).tags == ["t", "u"] and dest.get(run_id).note == "a note"
    files = _files(a.run_dir(run_id))
    assert {"last.pt", "best.pt", "predictions.npz", "sweep-resolution.npz"} <= set(files)
    assert _files(dest.run_dir(run_id)) == files  # byte-identical
    load_model(dest, run_id)
    there = evaluate_run(a, run_id, n=32, save=False, device="cpu")
    here = evaluate_run(dest, run_id, n=32, save=False, device="cpu")
    assert here.metrics == there.metrics
    assert [p.name for p in dest.root.iterdir() if p.name.startswith(".")] == []


def test_a_fine_tuned_child_keeps_its_parent(source, dest):
    a, parent_id, child_id = source
    import_run(dest, export_run(a, parent_id))
    import_run(dest, export_run(a, child_id))
    child = dest.get(child_id)
    assert child == a.get(child_id)
    assert (child.parent_id, child.kind) == (parent_id, "finetune")
    assert [r.id for r in dest.list_runs(parent_id=parent_id)] == [child_id]
    load_model(dest, child_id)


def test_the_bundle_is_plain_data(dest, tmp_path):
    a = RunStore(tmp_path / "a")
    run_id = _ended_run(a)
    bundle = export_run(a, run_id)
    assert set(bundle) == {"format", "schema", "rows", "files"}
    assert bundle["schema"] == a.schema_version
    assert set(bundle["rows"]) == {"runs", "tags"}
    assert bundle["files"] == {"sub/data.bin": b"\x00\x01payload"}
    with pytest.raises(StoreError, match="no run"):
        export_run(a, "0" * 32)


def test_importing_twice_needs_replace(dest, tmp_path):
    a = RunStore(tmp_path / "a")
    run_id = _ended_run(a)
    a.save_evaluation(run_id, {"n": 1}, {"mae": 1.0})
    bundle = export_run(a, run_id)
    import_run(dest, bundle)
    (dest.run_dir(run_id) / "stale.txt").write_text("old")
    with pytest.raises(StoreError, match="replace=True") as err:
        import_run(dest, bundle)
    assert "\n" not in str(err.value) and run_id[:8] in str(err.value)
    bundle["rows"]["runs"][0]["name"] = "renamed"
    assert import_run(dest, bundle, replace=True) == run_id
    assert [(r.id, r.name) for r in dest.list_runs()] == [(run_id, "renamed")]
    assert len(dest.evaluations(run_id)) == 1 and dest.get(run_id).tags == ["x"]
    assert _files(dest.run_dir(run_id)) == {"sub/data.bin": b"\x00\x01payload"}
    assert sorted(p.name for p in dest.root.iterdir() if p.is_dir()) == [run_id]
    dest.set_status(run_id, "running")  # its pid is this live process
    with pytest.raises(StoreError, match="still running"):
        import_run(dest, bundle, replace=True)
    assert dest.get(run_id).status == "running"


@pytest.mark.parametrize("bad", ["../x", "/etc/x", "sub/../../x", "C:/x", "a\\..\\x", ""])
def test_a_path_outside_the_run_folder_writes_nothing(dest, tmp_path, bad):
    a = RunStore(tmp_path / "a")
    bundle = export_run(a, _ended_run(a))
    bundle["files"][bad] = b"evil"
    before = sorted(os.listdir(dest.root))
    with pytest.raises(StoreError, match="not a plain relative path"):
        import_run(dest, bundle)
    assert dest.list_runs() == [] and sorted(os.listdir(dest.root)) == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "b" / "x").exists()


def test_a_running_run_is_refused(dest, tmp_path):
    a = RunStore(tmp_path / "a")
    run_id = a.create_run(_tiny())  # running in this process
    with pytest.raises(StoreError, match="only a run that ended"):
        import_run(dest, export_run(a, run_id))
    assert dest.list_runs() == []


def test_a_foreign_table_travels_too(dest, tmp_path):
    """Tables are found from the schema: one added later needs no change to the bundle."""
    a = RunStore(tmp_path / "a")
    run_id = _ended_run(a)
    for store in (a, dest):
        with store._write() as c:
            c.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY, run_id TEXT, x INTEGER)")
    with a._write() as c:
        c.executemany("INSERT INTO extra (id, run_id, x) VALUES (?, ?, ?)",
                      [(7, run_id, 1), (9, run_id, 2), (8, "other", 3)])
    bundle = export_run(a, run_id)
    assert bundle["rows"]["extra"] == [{"run_id": run_id, "x": 1}, {"run_id": run_id, "x": 2}]
    import_run(dest, bundle)
    assert [tuple(r) for r in dest._read("SELECT id, x FROM extra")] == [(1, 1), (2, 2)]


def _broken(bundle, what):
    if what == "format":
        bundle["format"] = 2
    elif what == "schema":
        bundle["schema"] += 1
    elif what == "keys":
        del bundle["files"]
    elif what == "table":
        bundle["rows"]["nope"] = [{"run_id": bundle["rows"]["runs"][0]["id"]}]
    elif what == "column":
        bundle["rows"]["runs"][0]["nope"] = 1
    elif what == "run_id":
        bundle["rows"]["runs"][0]["id"] = "../up"
    elif what == "child":
        bundle["rows"]["tags"][0]["run_id"] = "other"
    elif what == "bytes":
        bundle["files"]["sub/data.bin"] = "text"
    elif what == "collision":  # a file where the bundle also has a folder
        bundle["files"]["sub"] = b"x"
    return bundle


@pytest.mark.parametrize("what", ["format", "schema", "keys", "table", "column", "run_id",
                                  "child", "bytes", "collision"])
def test_a_bad_bundle_is_one_line_and_writes_nothing(dest, tmp_path, what):
    a = RunStore(tmp_path / "a")
    bundle = _broken(export_run(a, _ended_run(a)), what)
    before = sorted(os.listdir(dest.root))
    with pytest.raises(StoreError) as err:
        import_run(dest, bundle)
    assert "\n" not in str(err.value)
    assert dest.list_runs() == [] and sorted(os.listdir(dest.root)) == before
