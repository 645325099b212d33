import threading

import numpy as np
import pytest
import torch
from torch import nn

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.inspect import layers_of_interest
from cnnprobe.engine.linear_probe import COLUMNS, fit_ridge, pooled_features, probe_layers
from cnnprobe.engine.train import train
from cnnprobe.models import build_model

TASK = TaskConfig(name="distance", height=24, width=24)


def test_pooled_features_are_max_then_mean_per_channel():
    a = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    f = pooled_features(a)
    assert f.shape == (2, 6)
    assert np.array_equal(f[0], [3, 7, 11, 1.5, 5.5, 9.5])
    assert pooled_features(torch.ones(4, 7)).shape == (4, 7)
    assert pooled_features(np.ones(4)).shape == (4, 1)


def test_ridge_recovers_a_linear_rule_in_the_features_own_units():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) * [1.0, 100.0, 0.01] + [0.0, 50.0, 3.0]
    y = 3 * X[:, 0] - 0.02 * X[:, 1] + 5 + rng.normal(scale=1e-3, size=200)
    w, b, alpha = fit_ridge(X, y)
    assert w[:2] == pytest.approx([3, -0.02], rel=1e-3)
    assert abs(w[2]) < 0.5 and b == pytest.approx(5, abs=0.1)
    assert alpha > 0
    w0, _, _ = fit_ridge(np.c_[X, np.full(200, 7.0)], y)
    assert w0[3] == 0  # a constant column gets no weight


class _Emit(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Oracle(nn.Module):
    """Finds the distance task's two markers; `oracle` emits a map filled with their
    distance (the target), `noise` a map of noise unrelated to the image."""

    in_channels, min_size = 3, 1

    def __init__(self):
        super().__init__()
        self.oracle, self.noise = _Emit(), _Emit()
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        flat = x[:, 0].reshape(b, -1)
        a, c = flat.argmax(1), flat.argmin(1)
        d = torch.hypot((a // w - c // w).float(), (a % w - c % w).float())
        d = torch.where(flat.amax(1) > 0.5, d, 0.0)  # coinciding markers: B's -1 wins
        self.oracle(d[:, None, None, None].expand(b, 2, 4, 4))
        self.noise(torch.randn(b, 32, 4, 4, generator=self.g))
        return d


def test_probe_reads_a_layer_holding_the_target_and_not_noise():
    df = probe_layers(Oracle(), TASK, n_train=256, n_test=256, layers=["oracle", "noise"])
    assert list(df.columns) == COLUMNS
    assert list(df["layer"]) == ["input", "oracle", "noise"]
    rows = df.set_index("layer")
    assert rows.loc["oracle", "r2"] > 0.99
    assert rows.loc["oracle", "mae"] < 0.01
    assert abs(rows.loc["noise", "r2"]) < 0.1
    assert rows.loc["noise", "features"] == 64 and rows.loc["noise", "kind"] == "map"


def test_progress_cancel_and_bad_sizes():
    seen = []
    probe_layers(Oracle(), TASK, n_train=64, n_test=32, batch_size=32, layers=["oracle"],
                 progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    stop = threading.Event()
    stop.set()
    empty = probe_layers(Oracle(), TASK, n_train=64, n_test=32, layers=["oracle"], cancel=stop)
    assert empty.empty and list(empty.columns) == COLUMNS
    with pytest.raises(ConfigError, match="n_train"):
        probe_layers(Oracle(), TASK, n_train=4)


def test_trained_seednet_reads_distance_in_its_fc_layers():
    """After 150 steps the last layers hold the distance linearly (R² > 0.9); the preconv
    map (one marker's position) does not, and neither does an untrained model's output."""
    cfg = RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                    train=TrainConfig(steps=150, batch_size=64, lr=1e-3, device="cpu",
                                      val_size=64))
    result = train(cfg)
    assert result.status == "finished"
    df = probe_layers(result.model, cfg.task, n_train=256, n_test=128)
    assert list(df["layer"]) == ["input", *layers_of_interest(result.model)]
    assert np.isfinite(df[["r2", "mae"]].to_numpy()).all()
    r2 = df.set_index("layer")["r2"]
    assert r2["fc7"] > 0.9 and r2["fc8"] > 0.9
    assert r2["preconv1"] < 0.2
    torch.manual_seed(0)
    fresh = build_model(ModelConfig(name="seednet"), 3)
    untrained = probe_layers(fresh, cfg.task, n_train=256, n_test=128, layers=["fc8"])
    assert untrained.set_index("layer").loc["fc8", "r2"] < 0.5


def test_unknown_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="layers"):
        probe_layers(Oracle(), TASK, n_train=16, n_test=8, layers=["nope"])
    df = probe_layers(Oracle(), TASK, n_train=16, n_test=8, layers=["input", "oracle"])
    assert list(df["layer"]) == ["input", "oracle"]
