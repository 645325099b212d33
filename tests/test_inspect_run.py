"""runs.inspect_run, the code path the CLI and the TUI share, and the store's probe tables
(saved, replaced, deleted with the run, migrated into an older store)."""

import sqlite3
import threading

import pytest

from cnnprobe.config import ConfigError, RunConfig, TaskConfig, TrainConfig
from cnnprobe.runs import inspect_run, train_run
from cnnprobe.store import RunStore, StoreError, schema

SEEDNET = ["input", "preconv1", "features", *(f"fc{i}" for i in range(1, 9))]


def _cfg(**train):
    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     train=TrainConfig(batch_size=32, steps=20, eval_every=10, val_size=64,
                                       lr=1e-3, device="cpu", **train))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("store"))
    run_id, _ = train_run(store, _cfg(), name="base")
    return store, run_id


def test_inspection_of_a_validation_sample_with_probes_saved(trained):
    store, rid = trained
    predictions, labels = store.predictions(rid)
    insp = inspect_run(store, rid, sample=9, which="last", n_train=32, n_test=16,
                       device="cpu")
    assert insp.sample == 9 and insp.which == "last" and insp.step == 20
    assert insp.label == pytest.approx(float(labels[9]))
    assert insp.prediction == pytest.approx(float(predictions[9]), abs=1e-4)
    assert insp.batch.images.shape == (1, 3, 32, 32) and insp.batch.images.device.type == "cpu"
    assert [a.name for a in insp.activations] == SEEDNET
    assert list(insp.probe_table["layer"]) == SEEDNET
    assert insp.saved and not insp.cancelled
    stored = store.probes(rid)
    assert stored.to_dict(orient="records") == insp.probe_table.to_dict(orient="records")
    options = store.probes_info(rid)["options"]
    assert options == {"which": "last", "step": 20, "height": 32, "width": 32, "n_train": 32,
                       "n_test": 16, "seed": 0, "device": "cpu", "layers": "all",
                       "measured": {"weights": "last", "step": 20, "batchnorm": "none",
                                    "bn_samples": 0, "input_norm": "none"}}


def test_another_size_chosen_layers_and_no_save(trained):
    store, rid = trained
    before = store.probes_info(rid)
    insp = inspect_run(store, rid, seed=3, layers=["fc2", "preconv1", "fc2"], height=24,
                       width=40, n_train=16, n_test=8, device="cpu", save=False)
    assert insp.task_cfg.height == 24 and insp.task_cfg.width == 40
    assert insp.sample is None and insp.batch.images.shape == (1, 3, 24, 40)
    assert [a.name for a in insp.activations] == ["input", "preconv1", "fc2"]
    assert list(insp.probe_table["depth"]) == [0, 1, 4]
    assert insp.options["layers"] == ["preconv1", "fc2"] and not insp.saved
    assert store.probes_info(rid) == before
    again = inspect_run(store, rid, seed=3, layers=["fc2"], height=24, width=40,
                        probes=False, device="cpu", save=False)
    assert again.probe_table is None
    assert (again.activations[0].tensor == insp.activations[0].tensor).all()  # seeded draw


def test_progress_and_cancel(trained):
    store, rid = trained
    before = store.probes_info(rid)
    seen = []
    cancel = threading.Event()

    def progress(done, total):
        seen.append((done, total))
        cancel.set()  # stop after the first batch

    insp = inspect_run(store, rid, n_train=128, n_test=64, device="cpu", cancel=cancel,
                       progress=progress)
    assert seen == [(1, 3)]
    assert insp.cancelled and insp.probe_table is None and not insp.saved
    assert [a.name for a in insp.activations] == SEEDNET  # the look itself is complete
    assert store.probes_info(rid) == before


@pytest.mark.parametrize("kw,words", [
    ({"layers": ["fc1", "fc9"]}, "layers='fc9' is not allowed: a layer of this model: preconv1"),
    ({"height": 2}, "task.height=2"),
    ({"sample": 64}, "an index from 0 to 63"),
    ({"n_test": 1}, "n_test=1"),
])
def test_bad_options_raise_before_anything_is_stored(trained, kw, words):
    store, rid = trained
    before = (store.probes_info(rid), store.probes(rid))
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        inspect_run(store, rid, device="cpu", **{"n_train": 16, "n_test": 8, **kw})
    after = (store.probes_info(rid), store.probes(rid))
    assert after[0] == before[0]
    assert (after[1] is None) == (before[1] is None)


def test_probe_tables_are_replaced_and_go_with_the_run(tmp_path):
    import pandas as pd

    store = RunStore(tmp_path)
    rid = store.create_run(_cfg())
    assert store.probes(rid) is None and store.probes_info(rid) is None
    store.save_probes(rid, pd.DataFrame({"layer": ["input"], "r2": [float("nan")]}), {"a": 1})
    store.save_probes(rid, pd.DataFrame({"layer": ["input", "fc"], "r2": [0.1, 0.9]}), {"a": 2})
    assert store.probes(rid).to_dict(orient="records") == [{"layer": "input", "r2": 0.1},
                                                           {"layer": "fc", "r2": 0.9}]
    assert store.probes_info(rid)["options"] == {"a": 2}
    with pytest.raises(StoreError, match="no run 'beef'"):
        store.save_probes("beef", pd.DataFrame({"layer": ["input"]}))
    store.set_status(rid, "cancelled")
    store.delete(rid)
    assert store._read("SELECT count(*) FROM probes")[0][0] == 0


def test_a_version_1_store_gains_the_probes_table(tmp_path, monkeypatch):
    import pandas as pd

    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        old = RunStore(tmp_path)
        rid = old.create_run(_cfg(), name="old")
        assert old.schema_version == 1
        old.close()
    store = RunStore(tmp_path)
    assert store.schema_version == schema.latest_version() and store.get(rid).name == "old"
    assert (tmp_path / "cnnprobe.db.v1.bak").is_file()
    store.save_probes(rid, pd.DataFrame({"layer": ["input"], "r2": [0.5]}))
    assert store.probes(rid)["r2"].tolist() == [0.5]
    with sqlite3.connect(tmp_path / "cnnprobe.db.v1.bak") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "probes" not in tables and "runs" in tables
