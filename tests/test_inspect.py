from dataclasses import replace

import numpy as np
import pytest
import torch

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.evaluate import predict
from cnnprobe.engine.inspect import (
    INPUT,
    capture,
    layers_of_interest,
    run_sample,
    sample_input,
)
from cnnprobe.models import MODELS, build_model

SIZES = [(32, 32), (40, 48)]


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name), 3).eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_capture_matches_each_layer_run_by_hand(name):
    """Every captured output equals that module run again on the input it got, at two sizes:
    shapes are the layer's own, and no later in-place op changed the copy."""
    model = _model(name)
    modules = dict(model.named_modules())
    for h, w in SIZES:
        images = torch.rand(2, 3, h, w)
        inputs: dict[str, tuple] = {}

        def pre(key, args, seen=inputs):
            seen.setdefault(key, tuple(a.clone() for a in args))

        handles = [modules[n].register_forward_pre_hook(lambda m, a, n=n: pre(n, a))
                   for n in layers_of_interest(model) if n in modules]
        acts = capture(model, images)
        for hd in handles:
            hd.remove()
        assert [a.name for a in acts] == [INPUT, *layers_of_interest(model)]
        assert np.array_equal(acts[0].tensor, images.numpy())
        with torch.no_grad():
            for act in acts[1:]:
                if act.name in inputs:
                    expected = modules[act.name](*inputs[act.name])
                else:  # seednet/coordmlp: the preconv map and the marker features
                    expected = (modules[act.name](images) if act.module == "Conv2d"
                                else model.features(images))
                if act.kind == "vector":
                    expected = expected.reshape(2, -1)
                assert act.tensor.shape == tuple(expected.shape), act.name
                assert np.allclose(act.tensor, expected.numpy(), atol=1e-5), act.name
                assert act.tensor.dtype == np.float32


@pytest.mark.parametrize("name,layer,small,large", [
    # conv arithmetic: out = floor((n + 2p - k) / s) + 1; ceil_mode pools round up
    ("resnet18", "backbone.conv1", (64, 16, 16), (64, 20, 24)),
    ("resnet18", "backbone.layer3.1", (256, 2, 2), (256, 3, 3)),
    ("resnet18", "backbone.layer4.1", (512,), (512, 2, 2)),  # 1x1 maps count as vectors
    ("resnet18", "backbone.avgpool", (512,), (512,)),
    ("plaincnn", "blocks.15", (256, 2, 2), (256, 3, 3)),
    ("coordconv", "layers.7", (32, 8, 8), (32, 10, 12)),
    ("seednet", "preconv1", (2, 32, 32), (2, 40, 48)),
    ("seednet", "features", (4,), (4,)),
    ("mobilenet_v3_small", "backbone.features.0", (16, 16, 16), (16, 20, 24)),
])
def test_known_shapes(name, layer, small, large):
    model = _model(name)
    for (h, w), shape in zip(SIZES, (small, large), strict=True):
        acts = {a.name: a for a in capture(model, torch.rand(1, 3, h, w))}
        assert acts[layer].shape == shape


def test_layers_are_in_forward_order_and_deduplicated():
    model = _model("mobilenet_v3_small")
    names = layers_of_interest(model)
    # A stride-2 InvertedResidual returns its last conv block's tensor: listed once, outer.
    assert "backbone.features.1" in names
    assert "backbone.features.1.block.2" not in names
    assert names.index("backbone.features.0") < names.index("backbone.features.1")
    assert names[-1] == "head.mlp.0"
    top = layers_of_interest(model, nested=False)
    assert top == [n for n in names if n in top]
    assert "backbone.features.1.block.0" not in top and "backbone.features.11" in top


def test_chosen_layers_only_in_forward_order():
    model = _model("seednet")
    acts = capture(model, torch.rand(1, 3, 32, 32), layers=["fc7", "preconv1"])
    assert [a.name for a in acts] == [INPUT, "preconv1", "fc7"]
    with pytest.raises(ConfigError, match="layers"):
        capture(model, torch.rand(1, 3, 32, 32), layers=["fc99"])


def test_too_small_an_image_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 32"):
        capture(_model("resnet18"), torch.rand(1, 3, 16, 16))


def test_fresh_draw_is_seeded():
    cfg = TaskConfig(name="distance", height=32, width=32)
    a, b = sample_input(cfg, seed=5), sample_input(cfg, seed=5)
    c = sample_input(cfg, seed=6)
    assert a.images.shape == (1, 3, 32, 32)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_validation_index_is_the_sample_predict_validated_on():
    """Index i is predict's sample i, across a chunk boundary (chunks of 256)."""
    model = _model("seednet")
    cfg = RunConfig(task=TaskConfig(name="distance", height=32, width=32, distractors=1),
                    train=TrainConfig(seed=3, val_size=300, device="cpu"))
    ev = predict(model, cfg.task, 300, seed=3, stream="val", batch_size=64,
                 distractors=cfg.task.eval_distractor_count)
    for i in (0, 17, 255, 256, 299):
        task_cfg, batch = run_sample(cfg, index=i)
        assert task_cfg == cfg.task
        assert batch.targets[0].item() == ev.labels[i]
        with torch.no_grad():
            assert model(batch.images).item() == pytest.approx(ev.predictions[i], abs=1e-4)
    with pytest.raises(ConfigError, match="0 to 299"):
        run_sample(cfg, index=300)


def test_run_sample_at_another_resolution():
    cfg = RunConfig(task=TaskConfig(name="area", height=32, width=32),
                    train=TrainConfig(val_size=64))
    task_cfg, batch = run_sample(cfg, seed=1, height=40, width=48)
    assert task_cfg == replace(cfg.task, height=40, width=48)
    assert batch.images.shape == (1, 3, 40, 48)
    ev = predict(_model("plaincnn"), task_cfg, 64, seed=0, stream="val")
    _, indexed = run_sample(cfg, index=5, height=40, width=48)
    assert indexed.targets[0].item() == ev.labels[5]


def test_outputs_are_copied_before_in_place_ops():
    """coordconv's ReLU works in place on its conv's output: the conv's copy keeps the
    negative values the ReLU later zeroes."""
    acts = capture(_model("coordconv"), torch.rand(1, 3, 32, 32),
                   layers=["layers.0.conv", "layers.1"])
    conv, relu = acts[1].tensor, acts[2].tensor
    assert conv.min() < 0 and relu.min() == 0
    assert np.array_equal(np.maximum(conv, 0), relu)
