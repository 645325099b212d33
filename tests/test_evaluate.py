import numpy as np
import pytest

from cnnprobe.config import ConfigError, ModelConfig, TaskConfig
from cnnprobe.engine.evaluate import (
    DEFAULT_RESOLUTIONS,
    compute_metrics,
    distractor_sweep,
    error_by_label,
    predict,
    resolution_sweep,
)
from cnnprobe.models import build_model


def test_metrics_by_hand():
    p = np.array([1.0, 2.0, 4.0])
    y = np.array([1.0, 3.0, 3.0])
    m = compute_metrics(p, y, "distance")
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert m["max_error"] == 1.0
    assert m["r2"] == pytest.approx(1 - 2 / (16 / 9 + 4 / 9 + 4 / 9))
    assert "accuracy" not in m
    c = compute_metrics(np.array([0.6, 2.4, 3.6]), np.array([1.0, 2.0, 3.0]), "count")
    assert c["accuracy"] == pytest.approx(2 / 3)


def test_error_by_label_bins_cover_every_sample():
    labels = np.linspace(0, 10, 101)
    errors = labels * 0.1
    df = error_by_label(labels, errors, bins=5)
    assert len(df) == 5
    assert df["count"].sum() == 101
    assert (np.diff(df["mae"]) > 0).all()  # error grows with the label here


def test_default_resolutions_are_the_notebooks():
    assert DEFAULT_RESOLUTIONS == tuple(range(64, 256, 10))


def _seednet():
    return build_model(ModelConfig(name="seednet"), 3)


def test_resolution_sweep_one_row_per_resolution():
    sweep = resolution_sweep(_seednet(), TaskConfig(name="distance", height=32, width=32),
                             [16, 24, 32, 40], n=50)
    assert list(sweep.table["resolution"]) == [16, 24, 32, 40]
    assert (sweep.table["n"] == 50).all()
    assert len(sweep.samples) == 200
    # Labels really come from each resolution: the largest distance grows with the image.
    maxima = sweep.samples.groupby("resolution")["label"].max()
    assert maxima[40] > maxima[16]


def test_distractor_sweep_rows():
    sweep = distractor_sweep(_seednet(), TaskConfig(name="distance", height=24, width=24), 3,
                             n=20)
    assert list(sweep.table["distractors"]) == [0, 1, 2, 3]
    assert set(sweep.samples["distractors"]) == {0, 1, 2, 3}


def test_sweep_refuses_resolutions_below_model_minimum():
    model = build_model(ModelConfig(name="resnet18"), 3)
    with pytest.raises(ConfigError) as err:
        resolution_sweep(model, TaskConfig(name="distance", height=32, width=32), [16, 32], n=4)
    assert err.value.field == "resolutions"


def test_predict_is_reproducible_and_describe_matches():
    cfg = TaskConfig(name="distance", height=24, width=24)
    model = _seednet()
    a = predict(model, cfg, 40, seed=3, batch_size=16)
    b = predict(model, cfg, 40, seed=3, batch_size=7)
    assert np.array_equal(a.labels, b.labels)
    assert np.allclose(a.predictions, b.predictions, atol=1e-5)
    d = a.describe()
    assert d.loc["count", "prediction"] == 40
    assert d.loc["mean", "prediction"] == pytest.approx(a.predictions.mean(), rel=1e-6)
