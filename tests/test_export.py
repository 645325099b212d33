"""Exports: JSON that round-trips, Markdown a person can read, CSV that pandas reads back."""

import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from cnnprobe.report.export import ExportError, comparison, export_comparison, export_run
from cnnprobe.report.summary import run_summary
from cnnprobe.runs import evaluate_run, finetune_run, sweep_run, train_run
from cnnprobe.store import RunStore


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from cnnprobe.config import RunConfig, TaskConfig, TrainConfig

    cfg = RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                    train=TrainConfig(batch_size=32, steps=20, eval_every=10, val_size=64,
                                      lr=1e-3, device="cpu"))
    store = RunStore(tmp_path_factory.mktemp("store"))
    run_id, _ = train_run(store, cfg, name="base", tags=["exp"])
    sweep_run(store, run_id, resolutions=[16, 32], n=16, device="cpu")
    evaluate_run(store, run_id, height=40, width=40, n=16, device="cpu")
    child, _ = finetune_run(store, run_id, height=48, width=48, steps=5)
    other, _ = train_run(store, replace(cfg, train=replace(cfg.train, lr=3e-3, steps=10)))
    return store, run_id, child, other


def _same(a, b):
    """Equal as numbers, with NaN/inf exported as null."""
    if isinstance(a, float) and not math.isfinite(a):
        return b is None
    if isinstance(a, float):
        return b == pytest.approx(a, rel=1e-12)
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_json_export_round_trips_every_number(stored, tmp_path):
    store, run_id, _, _ = stored
    [path] = export_run(store, run_id, "json", tmp_path / "run.json")
    data = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert "NaN" not in path.read_text()
    assert _same(run_summary(store, run_id), data)
    assert data["metrics"] == pytest.approx(store.get(run_id).metrics)
    assert [r["loss"] for r in data["train_history"]] == \
        [r["loss"] for r in store.train_history(run_id)]
    pred, labels = store.predictions(run_id)
    assert data["predictions"]["prediction"] == pytest.approx(pred.tolist(), rel=1e-7)
    assert data["predictions"]["label"] == pytest.approx(labels.tolist(), rel=1e-7)
    table = store.sweep(run_id, "resolution").table
    assert [r["mae"] for r in data["sweeps"]["resolution"]["table"]] == list(table["mae"])
    assert data["evaluations"][0]["options"]["height"] == 40


def test_markdown_export_has_every_section_and_plain_text_plots(stored, tmp_path):
    store, run_id, _, _ = stored
    [path] = export_run(store, run_id, "md", tmp_path)
    text = path.read_text()
    assert path.name == f"{run_id[:8]}-base.md"
    for heading in ("## Record", "## Configuration", "## Final metrics",
                    "## Predictions (describe())", "## Validation history", "## Loss curve",
                    "## Resolution sweep", "## Re-evaluations"):
        assert heading in text, heading
    assert "| train.lr | 0.001 |" in text
    assert "| 50% |" in text  # describe()'s median row
    assert "\x1b" not in text  # no terminal colour codes in a file
    assert text.count("```text") == 2  # loss curve and sweep plots
    assert "MAE by resolution" in text


def test_csv_export_reads_back(stored, tmp_path):
    store, run_id, _, _ = stored
    paths = export_run(store, run_id, "csv", tmp_path / "out.csv")
    names = sorted(p.name for p in paths)
    assert names == ["out-history.csv", "out-predictions.csv", "out-sweep-samples.csv",
                     "out-sweeps.csv"]
    history = pd.read_csv(tmp_path / "out-history.csv")
    assert list(history["step"]) == list(range(1, 21))
    assert list(history["loss"]) == [r["loss"] for r in store.train_history(run_id)]
    assert history.loc[history.step == 10, "val_mae"].item() == \
        store.val_history(run_id)[0]["mae"]
    preds = pd.read_csv(tmp_path / "out-predictions.csv")
    assert preds["prediction"].to_numpy() == pytest.approx(store.predictions(run_id)[0])
    sweeps = pd.read_csv(tmp_path / "out-sweeps.csv")
    assert list(sweeps["value"]) == [16, 32] and set(sweeps["kind"]) == {"resolution"}
    # Counts as whole numbers: `n` was written 512.0.
    text = (tmp_path / "out-sweeps.csv").read_text().splitlines()
    n = text[0].split(",").index("n")
    assert all(line.split(",")[n].isdigit() for line in text[1:]), text


def test_comparison_shows_only_differences_then_metrics(stored, tmp_path):
    store, run_id, child, other = stored
    comp = comparison(store, [run_id, child, other])
    assert set(comp["differences"]) == {"task.height", "task.width", "train.steps", "train.lr"}
    assert "task.name" in comp["common_config"]
    assert comp["runs"][1]["config"]["task.height"] == 48
    assert comp["runs"][0]["metrics"]["mae"] == store.get(run_id).metrics["mae"]
    assert comp["sweep_mae"]["resolution"]["16"][run_id] > 0
    [md] = export_comparison(store, [run_id, child, other], "md", tmp_path)
    text = md.read_text()
    assert "| task.height | 32 | 48 | 32 |" in text
    assert "| train.lr | 0.001 | 0.001 | 0.003 |" in text
    assert "task.name" not in text.split("## Settings they share")[0]
    [csv] = export_comparison(store, [run_id, child, other], "csv", tmp_path / "c.csv")
    frame = pd.read_csv(csv)
    assert list(frame["id"]) == [run_id, child, other]
    assert list(frame["task.height"]) == [32, 48, 32]
    [js] = export_comparison(store, [run_id, other], "json", tmp_path / "c.json")
    assert _same(comparison(store, [run_id, other]), json.loads(js.read_text()))


def test_exports_never_overwrite_silently(stored, tmp_path):
    store, run_id, _, _ = stored
    [path] = export_run(store, run_id, "md", tmp_path)
    path.write_text("my edits")
    with pytest.raises(ExportError, match="exists: pass --force"):
        export_run(store, run_id, "md", tmp_path)
    assert path.read_text() == "my edits"
    # CSV writes several files: if one is taken, none is written.
    (tmp_path / "x-predictions.csv").write_text("mine")
    with pytest.raises(ExportError):
        export_run(store, run_id, "csv", tmp_path / "x.csv")
    assert not (tmp_path / "x-history.csv").exists()
    export_run(store, run_id, "md", tmp_path, force=True)
    assert path.read_text().startswith("# base")


def test_unwritable_export_path_is_one_clear_error(stored, tmp_path):
    store, run_id, _, _ = stored
    (tmp_path / "afile").write_text("")
    with pytest.raises(ExportError, match="is a file, not a folder") as err:
        export_run(store, run_id, "json", tmp_path / "afile" / "run.json")
    assert "\n" not in str(err.value)


def test_default_export_folder(stored, tmp_path, monkeypatch):
    store, run_id, _, _ = stored
    monkeypatch.chdir(tmp_path)
    [path] = export_run(store, run_id, "json")
    assert path.parent.name == "exports" and path.suffix == ".json"
