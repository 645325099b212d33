import math
import threading
from dataclasses import replace

import pytest
import torch

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.train import ResumeState, train
from cnnprobe.events import Cancelled, EvaluationEvent, Failed, Finished, RunStarted, StepEvent


def _mean(rows, key, sl):
    vals = [r[key] for r in rows[sl]]
    return sum(vals) / len(vals)


def test_seednet_learns_distance():
    cfg = RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                    model=ModelConfig(name="seednet"),
                    train=TrainConfig(batch_size=64, steps=300, lr=1e-3, eval_every=300,
                                      val_size=256, device="cpu"))
    result = train(cfg)
    assert result.status == "finished"
    first, last = _mean(result.train_history, "loss", slice(0, 10)), \
        _mean(result.train_history, "loss", slice(-10, None))
    assert last < 0.5 * first, (first, last)
    # Better than always answering the mean distance (about 0.52 * 32 px, MAE ~ 5.7 px).
    labels = result.evaluation.labels
    baseline = float(abs(labels - labels.mean()).mean())
    assert result.final_metrics["mae"] < 0.6 * baseline


def test_plaincnn_learns_count():
    cfg = RunConfig(task=TaskConfig(name="count", height=24, width=24, count_min=0, count_max=5),
                    model=ModelConfig(name="plaincnn", depth=2, width=16, pool="max",
                                      global_pool="avg"),
                    train=TrainConfig(batch_size=32, steps=150, lr=3e-3, eval_every=150,
                                      val_size=128, device="cpu"))
    result = train(cfg)
    assert result.status == "finished"
    first = _mean(result.train_history, "loss", slice(0, 10))
    last = _mean(result.train_history, "loss", slice(-10, None))
    assert last < 0.6 * first, (first, last)


def test_events_arrive_in_order_and_history_matches(tiny):
    events = []
    result = train(tiny, [events.append])
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is Finished
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps == list(range(1, 21))  # CPU reads the loss back every step
    evals = [e for e in events if isinstance(e, EvaluationEvent)]
    assert [e.step for e in evals] == [10, 20]
    assert evals[0].is_best
    assert result.final_metrics["mae"] == pytest.approx(evals[-1].metrics["mae"])
    assert result.samples_seen == 20 * 32
    assert result.steps_done == 20


def test_validation_set_is_fixed_for_the_run(tiny):
    a = train(replace(tiny, train=replace(tiny.train, steps=2, eval_every=1)))
    # The same seed sees the same validation labels, however long it trained.
    b = train(replace(tiny, train=replace(tiny.train, steps=4, eval_every=2)))
    assert (a.evaluation.labels == b.evaluation.labels).all()
    c = train(replace(tiny, train=replace(tiny.train, steps=2, seed=1)))
    assert not (a.evaluation.labels == c.evaluation.labels).all()


def test_same_seed_same_run(tiny):
    a = train(tiny)
    b = train(tiny)
    assert [r["loss"] for r in a.train_history] == [r["loss"] for r in b.train_history]


def test_cancel_returns_partial_result(tiny):
    flag = threading.Event()
    events = []

    def stop_after_five(ev):
        events.append(ev)
        if isinstance(ev, StepEvent) and ev.step == 5:
            flag.set()

    result = train(tiny, [stop_after_five], flag)
    assert result.status == "cancelled"
    assert result.steps_done == 5
    assert isinstance(events[-1], Cancelled)
    assert "mae" in result.final_metrics  # partial result still evaluated


def test_non_finite_loss_fails_the_run(tiny):
    cfg = replace(tiny, train=replace(tiny.train, lr=1e30, loss="mse", optimizer="sgd"))
    events = []
    result = train(cfg, [events.append])
    assert result.status == "failed"
    assert "loss became" in result.reason
    assert isinstance(events[-1], Failed)
    assert result.final_metrics == {}


def test_epochs_count_whole_batches():
    cfg = TrainConfig(batch_size=512, epochs=100, samples_per_epoch=10_000)
    assert cfg.total_steps == 100 * 19  # the notebook's DataLoader dropped the last batch


def test_resume_continues_exactly(tiny):
    full = train(tiny)
    half_cfg = replace(tiny, train=replace(tiny.train, steps=10))
    half = train(half_cfg)
    state = ResumeState(half.model.state_dict(), half.optimizer.state_dict(),
                        half.generator.get_state(), half.steps_done, half.samples_seen,
                        half.best_val_mae)
    rest = train(tiny, resume=state)
    assert rest.steps_done == 20
    got = [r["loss"] for r in rest.train_history]
    want = [r["loss"] for r in full.train_history][10:]
    assert got == pytest.approx(want, rel=1e-5)


def test_init_model_state_starts_from_given_weights(tiny):
    base = train(tiny)
    cfg = replace(tiny, task=replace(tiny.task, height=40, width=40),
                  train=replace(tiny.train, steps=1, lr=1e-12))
    tuned = train(cfg, init_model_state=base.model.state_dict())
    for k, v in base.model.state_dict().items():
        assert torch.allclose(v, tuned.model.state_dict()[k], atol=1e-6), k


@pytest.mark.parametrize("field,change", [
    ("train.batch_size", {"train": {"batch_size": 0}}),
    ("train.lr", {"train": {"lr": float("nan")}}),
    ("train.lr", {"train": {"lr": -1.0}}),
    ("task.name", {"task": {"name": "volume"}}),
    ("model.name", {"model": {"name": "vgg1000"}}),
    ("task.height", {"task": {"height": 16, "width": 64}, "model": {"name": "resnet18"}}),
    ("train.batch_size", {"train": {"batch_size": 10**9, "steps": 1}}),
    ("task.coord_channels", {"task": {"coord_channels": False}}),
])
def test_bad_config_names_the_field(field, change):
    data = RunConfig().to_dict()
    for section, values in change.items():
        data[section].update(values)
    with pytest.raises(ConfigError) as err:
        train(RunConfig.from_dict(data))
    assert err.value.field == field
    assert field in str(err.value)


def test_unknown_config_key_is_refused():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"train": {"learning_rate": 1}})
    assert err.value.field == "train.learning_rate"


def test_round_trip_config_dict():
    cfg = RunConfig(task=TaskConfig(name="area", height=20, width=30),
                    train=TrainConfig(steps=5, lr=3e-4))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert math.isclose(RunConfig.from_dict(cfg.to_dict()).train.lr, 3e-4)
