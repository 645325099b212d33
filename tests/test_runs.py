"""Recorded runs: history, checkpoints, re-evaluation, sweeps, resume and fine-tune."""

import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from cnnprobe.config import ConfigError
from cnnprobe.engine.train import train
from cnnprobe.events import StepEvent
from cnnprobe.models import validate_run
from cnnprobe.runs import evaluate_run, finetune_run, load_model, resume_run, sweep_run, train_run
from cnnprobe.store import RunStore, StoreError


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path)


@pytest.fixture
def trained(store, tiny):
    run_id, result = train_run(store, tiny, name="tiny", tags=["t"])
    return run_id, result


def test_a_trained_run_is_recorded_completely(store, trained, tiny):
    run_id, result = trained
    rec = store.get(run_id)
    assert rec.status == "finished" and rec.finished_at >= rec.created_at
    assert (rec.steps_done, rec.samples_seen, rec.total_steps) == (20, 640, 20)
    assert rec.metrics == result.final_metrics
    assert rec.device == "cpu" and rec.device_name and rec.parameters > 0
    assert rec.wall_time_s == pytest.approx(result.wall_time_s)
    hist = store.train_history(run_id)
    assert [r["step"] for r in hist] == list(range(1, 21))
    assert [r["loss"] for r in hist] == pytest.approx([r["loss"] for r in result.train_history])
    assert all(r["samples_per_s"] > 0 for r in hist)
    val = store.val_history(run_id)
    assert [r["step"] for r in val] == [10, 20]
    assert val[-1]["mae"] == pytest.approx(result.final_metrics["mae"])
    pred, labels = store.predictions(run_id)
    assert np.array_equal(pred, result.evaluation.predictions)
    assert np.array_equal(labels, result.evaluation.labels)
    # best is the checkpoint of the lowest validation MAE, last the final step.
    best_step = min(val, key=lambda r: r["mae"])["step"]
    assert store.load_checkpoint(run_id, "best").step == best_step
    last = store.load_checkpoint(run_id, "last")
    # The config as recorded: `auto` settings resolved to what ran (seednet: no input norm).
    assert (last.step, last.samples_seen, last.config) == (20, 640, validate_run(tiny))
    assert last.config.model.input_norm == "none" and rec.config == last.config
    assert rec.measured == {"weights": "last", "step": 20, "batchnorm": "none",
                            "bn_samples": 0, "input_norm": "none"}
    assert result.measured == rec.measured
    for k, v in result.model.state_dict().items():
        assert torch.equal(last.model_state[k], v), k
    assert rec.best_val_mae == pytest.approx(min(r["mae"] for r in val))


def test_config_error_records_nothing(store, tiny):
    with pytest.raises(ConfigError):
        train_run(store, replace(tiny, train=replace(tiny.train, lr=-1.0)))
    assert store.list_runs() == []


def test_cancelled_run_keeps_a_checkpoint_at_the_stop(store, tiny):
    flag = threading.Event()

    def stop(ev):
        if isinstance(ev, StepEvent) and ev.step == 13:
            flag.set()

    run_id, result = train_run(store, tiny, [stop], flag)
    rec = store.get(run_id)
    assert rec.status == "cancelled" and rec.steps_done == 13
    assert store.load_checkpoint(run_id, "last").step == 13
    assert store.load_checkpoint(run_id, "best").step == 10


def test_failed_run_records_the_reason_and_keeps_no_broken_weights(store, tiny):
    cfg = replace(tiny, train=replace(tiny.train, lr=1e30, loss="mse", optimizer="sgd"))
    run_id, result = train_run(store, cfg)
    rec = store.get(run_id)
    assert rec.status == "failed" and "loss became" in rec.reason
    assert rec.metrics == {}
    assert not store.checkpoint_path(run_id, "last").exists()


def test_evaluate_again_reproduces_then_varies(store, trained, tiny):
    run_id, result = trained
    same = evaluate_run(store, run_id, which="last", n=tiny.train.val_size, device="cpu")
    evaluated = {k: v for k, v in result.final_metrics.items() if not k.startswith("steps_to_")}
    assert same.metrics == pytest.approx(evaluated, nan_ok=True)
    bigger = evaluate_run(store, run_id, height=48, width=48, n=64, device="cpu")
    assert bigger.labels.max() > result.evaluation.labels.max() * 0.9
    crowded = evaluate_run(store, run_id, distractors=3, n=64, device="cpu")
    assert crowded.metrics["mae"] != pytest.approx(same.metrics["mae"])
    evals = store.evaluations(run_id)
    assert [(e["options"]["height"], e["options"]["distractors"]) for e in evals] == \
        [(32, 0), (48, 0), (32, 3)]
    assert evals[1]["metrics"]["mae"] == pytest.approx(bigger.metrics["mae"])
    with pytest.raises(ConfigError, match="task.split"):
        evaluate_run(store, run_id, region="heldout", device="cpu")
    assert len(store.evaluations(run_id)) == 3


def test_sweeps_are_saved_with_the_run(store, trained):
    run_id, _ = trained
    rows = []
    sweep = sweep_run(store, run_id, "resolution", resolutions=[16, 32, 48], n=32,
                      device="cpu", on_row=rows.append)
    assert [r["resolution"] for r in rows] == [16, 32, 48]
    again = store.sweep(run_id, "resolution")
    assert list(again.table["resolution"]) == [16, 32, 48]
    assert np.allclose(again.table["mae"], sweep.table["mae"])
    assert len(again.samples) == 96
    assert np.allclose(again.samples["prediction"], sweep.samples["prediction"])
    d = sweep_run(store, run_id, "distractors", max_distractors=2, n=32, device="cpu")
    assert list(store.sweep(run_id, "distractors").table["distractors"]) == [0, 1, 2]
    assert d.table["mae"].notna().all()
    assert [s["kind"] for s in store.sweeps(run_id)] == ["resolution", "distractors"]


def test_a_cancelled_sweep_is_not_saved(store, trained):
    run_id, _ = trained
    flag = threading.Event()
    sweep = sweep_run(store, run_id, resolutions=[16, 24, 32], n=16, device="cpu",
                      cancel=flag, on_row=lambda row: flag.set())
    assert sweep.cancelled and len(sweep.table) == 1
    assert store.sweep(run_id, "resolution") is None


def test_resume_continues_the_same_run_exactly(store, tiny):
    straight = train(replace(tiny, train=replace(tiny.train, steps=30)))
    run_id, _ = train_run(store, tiny)
    same_id, result = resume_run(store, run_id, 10)
    assert same_id == run_id and result.status == "finished"
    rec = store.get(run_id)
    assert (rec.steps_done, rec.total_steps, rec.resumed_at, rec.segments) == (30, 30, [20], 2)
    assert rec.status == "finished"
    losses = [r["loss"] for r in store.train_history(run_id)]
    assert losses == pytest.approx([r["loss"] for r in straight.train_history], rel=1e-5)
    assert [r["step"] for r in store.val_history(run_id)] == [10, 20, 30]
    assert store.load_checkpoint(run_id, "last").step == 30
    assert len(store.list_runs()) == 1


def test_resume_of_an_interrupted_run_drops_history_after_its_checkpoint(store, tiny):
    run_id, _ = train_run(store, replace(tiny, train=replace(tiny.train, steps=10)))
    # As if the process had recorded steps 11..14 and died before the next checkpoint.
    store.record_progress(run_id, [{"step": s, "loss": 99.0} for s in range(11, 15)],
                          steps_done=14, samples_seen=14 * 32, wall_time_s=1.0)
    store.set_status(run_id, "interrupted", "killed")
    resume_run(store, run_id, 5)
    hist = store.train_history(run_id)
    assert [r["step"] for r in hist] == list(range(1, 16))
    assert all(r["loss"] != 99.0 for r in hist)


def test_a_running_run_is_not_resumed_twice(store, tiny):
    run_id, _ = train_run(store, tiny)
    store.set_status(run_id, "running")  # its pid is this live process
    with pytest.raises(StoreError, match="still running"):
        resume_run(store, run_id, 5)
    assert store.get(run_id).steps_done == 20


def test_finetune_is_a_new_run_from_the_parents_best_weights(store, trained, tiny):
    parent_id, _ = trained
    best = store.load_checkpoint(parent_id, "best")
    child_id, result = finetune_run(store, parent_id, height=48, width=48, steps=1, lr=1e-12)
    child = store.get(child_id)
    assert child_id != parent_id
    assert (child.parent_id, child.kind, child.name) == (parent_id, "finetune", "tiny-ft48")
    assert child.config.task.height == 48 and child.config.train.steps == 1
    assert child.config.train.lr == 1e-12 and child.status == "finished"
    for k, v in best.model_state.items():  # lr ~0: the weights are the parent's
        assert torch.allclose(result.model.state_dict()[k], v, atol=1e-6), k
    assert store.get(parent_id).steps_done == 20  # the parent is untouched


def test_checkpoint_whose_config_no_longer_builds_a_model(store, trained):
    run_id, _ = trained
    path = store.checkpoint_path(run_id, "best")
    data = torch.load(path, weights_only=True)
    data["config"]["model"]["name"] = "vgg1000"
    torch.save(data, path)
    with pytest.raises(StoreError, match="no longer builds a model"):
        load_model(store, run_id, "best")
    data["config"]["model"]["name"] = "plaincnn"  # builds, but the weights do not fit
    torch.save(data, path)
    with pytest.raises(StoreError, match="no longer builds a model"):
        evaluate_run(store, run_id, which="best", device="cpu")
    assert store.evaluations(run_id) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_a_damaged_checkpoint_names_the_file(store, trained, damage):
    run_id, _ = trained
    path = store.checkpoint_path(run_id, "last")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 1000)
    else:
        path.unlink()
    with pytest.raises(StoreError) as err:
        store.load_checkpoint(run_id, "last")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    if damage == "missing":
        assert "--which best" in str(err.value)
    with pytest.raises(StoreError):
        resume_run(store, run_id, 5)
    rec = store.get(run_id)
    assert rec.status == "finished" and rec.steps_done == 20 and rec.resumed_at == []
    assert load_model(store, run_id, "best")[1].step in (10, 20)  # the other one still loads


def test_checkpoint_writes_are_atomic(tmp_path):
    from cnnprobe.store.files import atomic_write

    target = tmp_path / "last.pt"
    target.write_bytes(b"complete old file")

    def crash(f):
        f.write(b"half of a new")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, crash)
    assert target.read_bytes() == b"complete old file"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_generator_state_round_trips(store, trained):
    run_id, result = trained
    state = store.load_checkpoint(run_id, "last").generator_state
    assert torch.equal(state, result.generator.get_state())
    assert math.isfinite(store.load_checkpoint(run_id, "last").best_val_mae)


def test_missing_pretrained_weights_are_stored_as_a_failed_run(tmp_path, monkeypatch):
    """Offline, no cached ImageNet file: the run is kept as failed, with the fix in its reason."""
    import urllib.error

    from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
    from cnnprobe.models import WeightsError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    store = RunStore(tmp_path / "store")
    cfg = RunConfig(TaskConfig(height=32, width=32), ModelConfig(name="resnet18", pretrained=True),
                    TrainConfig(steps=2, batch_size=4, val_size=8, device="cpu"))
    with pytest.raises(WeightsError):
        train_run(store, cfg)
    (run,) = store.list_runs()
    assert run.status == "failed"
    assert "weights_path" in run.reason
