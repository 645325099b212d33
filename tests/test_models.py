"""Tests for cnnprobe.models: shapes, the notebook's Net, fp32 heads, weights, fit checks."""

from __future__ import annotations

import sys
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cnnprobe.config import ConfigError, ModelConfig, TaskConfig
from cnnprobe.models import (
    MODELS,
    RegressionHead,
    WeightsError,
    build_model,
    check_model_fits,
    count_parameters,
    model_table,
)
from cnnprobe.models.backbones import hub_checkpoint_dir, weights_file_name
from cnnprobe.models.coordconv import AddCoords, CoordConvNet
from cnnprobe.models.plaincnn import PlainCNN


def cfg_for(name: str, **options) -> ModelConfig:
    return replace(ModelConfig(), name=name, **options)


def resolutions_for(name: str) -> list[tuple[int, int]]:
    sizes = [(32, 32), (40, 48), (64, 40)]
    if MODELS[name].min_size(cfg_for(name)) <= 16:
        sizes.append((16, 16))
    return sizes


# ---------------------------------------------------------------- every model


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shape_dtype_at_several_resolutions(name):
    torch.manual_seed(0)
    cfg = cfg_for(name)
    model = build_model(cfg, 3)
    spec = MODELS[name]
    assert model.min_size == spec.min_size(cfg)
    batch1_min = spec.batch1_min_size(cfg) if spec.batch1_min_size else model.min_size
    for h, w in resolutions_for(name):
        for train, batch in ((False, 1), (False, 3), (True, 3), (True, 1)):
            if train and batch == 1 and max(h, w) < batch1_min:
                continue  # documented: BatchNorm cannot train on one value per channel
            model.train(train)
            out = model(torch.rand(batch, 3, h, w))
            assert out.shape == (batch,), (name, h, w, batch, train)
            assert out.dtype == torch.float32
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n].min_size(cfg_for(n)) > 1])
def test_forward_refuses_input_below_min_size(name):
    model = build_model(cfg_for(name), 3).eval()
    small = model.min_size - 1
    with pytest.raises(ValueError, match=f"at least {model.min_size}x{model.min_size}"):
        model(torch.rand(1, 3, small, model.min_size))


@pytest.mark.parametrize("name", ["plaincnn", "coordconv", "resnet18", "mobilenet_v3_small"])
def test_one_channel_input(name):
    model = build_model(cfg_for(name), 1).eval()
    out = model(torch.rand(2, 1, 40, 48))
    assert out.shape == (2,) and out.dtype == torch.float32


def test_resnet18_one_channel_replaces_conv1():
    model = build_model(cfg_for("resnet18"), 1)
    assert model.backbone.conv1.in_channels == 1
    assert model.backbone.conv1.weight.shape == (64, 1, 7, 7)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2,)


def test_model_table_lists_every_model_with_parameters():
    rows = model_table()
    assert [r["name"] for r in rows] == list(MODELS)
    for row in rows:
        assert row["params"] > 0
        assert row["description"] and "\n" not in row["description"]
        built = build_model(cfg_for(row["name"]), 3)
        assert row["params"] == count_parameters(built)  # the registry's recorded count
    one = {r["name"]: r["params"] for r in model_table(in_channels=1)}
    assert one["plaincnn"] == count_parameters(build_model(cfg_for("plaincnn"), 1))
    assert one["seednet"] == count_parameters(build_model(cfg_for("seednet"), 3))


def test_build_model_unknown_name_lists_known_names():
    with pytest.raises(ConfigError) as info:
        build_model(cfg_for("vgg99"), 3)
    assert info.value.field == "model.name"
    for name in MODELS:
        assert name in str(info.value)


def test_coord_models_refuse_one_channel_input():
    with pytest.raises(ConfigError) as info:
        build_model(cfg_for("seednet"), 1)
    assert info.value.field == "task.coord_channels"


def _saved_floats_per_pixel(model: nn.Module, h: int, w: int, batch: int = 2) -> float:
    """fp32 values autograd keeps for backward per input pixel (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.rand(batch, 3, h, w))
    return sum(seen.values()) / 4 / (batch * h * w)


@pytest.mark.parametrize("name,options", [
    ("seednet", {}), ("coordconv", {}), ("resnet18", {}), ("mobilenet_v3_small", {}),
    ("coordconv_paper", {}), ("conv_paper", {}),
    ("plaincnn", {"pool": "max"}), ("plaincnn", {"pool": "avg"}),
    ("plaincnn", {"pool": "stride"}), ("plaincnn", {"pool": "none"}),
])
def test_floats_per_pixel_tracks_what_autograd_keeps(name, options):
    cfg = cfg_for(name, **options)
    model = build_model(cfg, 3).train()
    measured = _saved_floats_per_pixel(model, 64, 64)
    estimate = MODELS[name].floats_per_pixel(cfg)
    # At least what autograd keeps, at most four times it plus the input batch (3) and one
    # 2-channel temporary, which exist whatever autograd keeps: good enough to refuse a batch.
    assert measured <= estimate <= 4 * measured + 5, (measured, estimate)


# ---------------------------------------------------------------- seednet

# The seed notebook's own Net, as bench/ keeps it for the baseline.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from notebook_baseline import Net as NotebookNet  # noqa: E402


def notebook_input(h: int, w: int, a: tuple[int, int], b: tuple[int, int]) -> torch.Tensor:
    """One notebook-style sample: +1 at A=(x, y), -1 at B, x / (W + 1), y / (H + 1)."""
    x = torch.zeros(1, 3, h, w)
    x[0, 1] = (torch.arange(w, dtype=torch.float32) / (w + 1))[None, :]
    x[0, 2] = (torch.arange(h, dtype=torch.float32) / (h + 1))[:, None]
    x[0, 0, a[1], a[0]] = 1
    x[0, 0, b[1], b[0]] = -1
    return x


def test_seednet_has_notebook_initial_preconv():
    model = build_model(cfg_for("seednet"), 3)
    expected = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    assert torch.equal(model.preconv1.weight.data, expected)
    assert torch.equal(model.preconv1.bias.data, torch.zeros(2))


def test_seednet_matches_the_notebook_net_layer_for_layer():
    torch.manual_seed(1)
    model = build_model(cfg_for("seednet"), 3).eval()
    reference = NotebookNet()
    reference.load_state_dict(model.state_dict())  # same attribute names, same shapes
    x = torch.cat([notebook_input(24, 24, (3, 5), (20, 17)),
                   notebook_input(24, 24, (0, 23), (11, 2)), torch.rand(2, 3, 24, 24)])
    assert torch.allclose(model(x), reference(x), atol=1e-6)


def test_seednet_features_are_the_notebooks_scaled_coordinates():
    h, w = 20, 30
    (xa, ya), (xb, yb) = (7, 3), (25, 16)
    x = notebook_input(h, w, (xa, ya), (xb, yb))
    seed = build_model(cfg_for("seednet"), 3)
    expected = torch.tensor([[xa * 128 / (w + 1), ya * 128 / (h + 1),
                              xb * 128 / (w + 1), yb * 128 / (h + 1)]])
    assert torch.allclose(seed.features(x), expected, atol=1e-4)
    coord = build_model(cfg_for("coordmlp"), 3)
    assert torch.allclose(coord.features(x), expected / 128, atol=1e-6)


def _adam_step(model: nn.Module) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.cat([notebook_input(16, 16, (2, 3), (12, 9)), notebook_input(16, 16, (8, 1),
                                                                            (0, 14))])
    loss = (model(x) - torch.tensor([10.0, 20.0])).abs().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_seednet_preconv_trains_by_default_like_the_notebook_actually_did():
    model = build_model(cfg_for("seednet"), 3)
    assert all(p.requires_grad for p in model.preconv1.parameters())
    before = model.preconv1.weight.detach().clone()
    _adam_step(model)
    assert not torch.equal(model.preconv1.weight, before)


def test_seednet_freeze_preconv_really_freezes():
    model = build_model(cfg_for("seednet", freeze_preconv=True), 3)
    assert not any(p.requires_grad for p in model.preconv1.parameters())
    before = model.preconv1.weight.detach().clone()
    fc_before = model.fc1.weight.detach().clone()
    _adam_step(model)
    assert torch.equal(model.preconv1.weight, before)
    assert not torch.equal(model.fc1.weight, fc_before)  # the rest still trains


# ---------------------------------------------------------------- fp32 head


def test_head_stays_fp32_and_accurate_under_bf16_autocast():
    head = RegressionHead(4)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[100.0, 50.0, 0.25, 0.125]]))
        head.mlp[0].bias.fill_(0.0)
    feats = torch.tensor([[1.0, 1.0, 1.0, 0.98]])
    target = 150.0 + 0.25 + 0.1225
    plain = nn.Linear(4, 1)
    plain.load_state_dict({"weight": head.mlp[0].weight, "bias": head.mlp[0].bias})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats)
        unguarded = plain(feats)
    # Sanity: without the guard autocast really does round to bf16's 1-px steps here.
    assert unguarded.dtype == torch.bfloat16
    assert abs(unguarded.float().item() - target) > 0.1
    assert out.dtype == torch.float32 and out.shape == (1,)
    assert abs(out.item() - target) < 1e-4


@pytest.mark.parametrize("name", ["seednet", "coordmlp", "plaincnn", "resnet18"])
def test_models_return_fp32_under_bf16_autocast(name):
    model = build_model(cfg_for(name), 3).eval()
    x = torch.cat([notebook_input(32, 32, (3, 4), (30, 25)), torch.rand(1, 3, 32, 32)])
    with torch.no_grad():
        full = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
    assert mixed.dtype == torch.float32 and mixed.shape == (2,)
    if name in ("seednet", "coordmlp"):
        # Run wholly in fp32: autocast must not change a single bit.
        assert torch.equal(mixed, full)


# ---------------------------------------------------------------- plaincnn and coordconv


@pytest.mark.parametrize("pool,expected", [("max", 16), ("avg", 16), ("stride", 16),
                                           ("none", 1)])
def test_plaincnn_min_size_for_each_pool(pool, expected):
    cfg = cfg_for("plaincnn", pool=pool, depth=4, width=4)
    model = build_model(cfg, 3)
    assert model.min_size == expected == MODELS["plaincnn"].min_size(cfg)
    model.eval()
    assert model(torch.rand(1, 3, expected, expected)).shape == (1,)
    model.train()
    assert model(torch.rand(2, 3, expected, expected + 3)).shape == (2,)  # odd side too
    if expected > 1:
        with pytest.raises(ValueError):
            model(torch.rand(2, 3, expected - 1, expected))
        with pytest.raises(ConfigError) as info:
            check_model_fits(cfg, TaskConfig(height=expected - 1, width=64))
        assert info.value.field == "task.height"
        assert str(expected) in info.value.allowed and "plaincnn" in info.value.allowed


def test_plaincnn_pool_options_build_different_layers():
    kinds = {}
    for pool in ("max", "avg", "stride", "none"):
        model = PlainCNN(3, depth=3, width=4, pool=pool)
        kinds[pool] = ({type(m).__name__ for m in model.blocks},
                       [m.stride[0] for m in model.blocks if isinstance(m, nn.Conv2d)])
    assert "MaxPool2d" in kinds["max"][0] and "AvgPool2d" not in kinds["max"][0]
    assert "AvgPool2d" in kinds["avg"][0]
    assert kinds["stride"][1] == [2, 2, 2] and kinds["max"][1] == [1, 1, 1]
    assert kinds["none"][0] == {"Conv2d", "BatchNorm2d", "ReLU"}


def test_add_coords_channels_follow_the_input_size():
    x = torch.zeros(2, 1, 5, 7)
    out = AddCoords(with_radius=True)(x)
    assert out.shape == (2, 4, 5, 7)
    xx, yy, rr = out[0, 1], out[0, 2], out[0, 3]
    assert torch.allclose(xx[0], torch.linspace(-1, 1, 7))  # x along the width
    assert torch.allclose(yy[:, 0], torch.linspace(-1, 1, 5))  # y along the height
    assert abs(rr[2, 3].item()) < 1e-6 and abs(rr[0, 0].item() - 2**0.5) < 1e-6
    assert AddCoords()(x).shape == (2, 3, 5, 7)  # radius is off by default


def test_coordconv_radius_option_and_min_size():
    model = CoordConvNet(3, depth=4, width=8, with_radius=True)
    assert model.layers[0].conv.in_channels == 3 + 3
    assert model.min_size == 4
    assert model(torch.rand(2, 3, 4, 9)).shape == (2,)
    plain = build_model(cfg_for("coordconv"), 3)
    assert plain.layers[0].conv.in_channels == 3 + 2


# ---------------------------------------------------------------- weights


@pytest.fixture
def no_network(monkeypatch):
    """Make torch hub's downloader fail as it would offline; records the attempts."""
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return calls


@pytest.fixture
def resnet18_file(tmp_path):
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18_tv.pth"
    torch.save(state, path)
    return path, state


def test_weights_path_loads_a_torchvision_state_dict(resnet18_file):
    path, state = resnet18_file
    model = build_model(cfg_for("resnet18", weights_path=str(path)), 3)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.head.mlp[-1].weight.shape == (1, 512)  # the 1000-class fc was skipped


def test_weights_path_adapts_first_conv_to_one_channel(resnet18_file):
    path, state = resnet18_file
    model = build_model(cfg_for("resnet18", weights_path=str(path)), 1)
    expected = state["conv1.weight"].mean(dim=1, keepdim=True)
    assert torch.equal(model.backbone.conv1.weight, expected)


def test_weights_path_loads_our_own_saved_model(tmp_path):
    torch.manual_seed(4)
    original = build_model(cfg_for("mobilenet_v3_small"), 3).eval()
    path = tmp_path / "ours.pth"
    torch.save(original.state_dict(), path)
    loaded = build_model(cfg_for("mobilenet_v3_small", weights_path=str(path)), 3).eval()
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))


def test_pretrained_loads_from_the_torch_hub_cache(tmp_path, monkeypatch, no_network,
                                                   resnet18_file):
    _, state = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert hub_checkpoint_dir() == str(cache)
    cache.mkdir(parents=True)
    torch.save(state, cache / weights_file_name("resnet18"))
    model = build_model(cfg_for("resnet18", pretrained=True), 3)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert no_network == []  # never tried to download


def test_pretrained_offline_without_cache_says_how_to_fix(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(WeightsError) as info:
        build_model(cfg_for("resnet18", pretrained=True), 3)
    err = info.value
    assert isinstance(err, ConfigError) and err.field == "model.pretrained"
    message = str(err)
    assert "weights_path" in message
    assert str(tmp_path / "empty_home" / "hub" / "checkpoints") in message
    assert weights_file_name("resnet18") in message and "download.pytorch.org" in message
    assert "\n" not in message
    assert no_network and no_network[0].endswith(weights_file_name("resnet18"))


def _bad_weights_error(path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_model(cfg_for("resnet18", weights_path=str(path)), 3)
    assert info.value.field == "model.weights_path"
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    return info.value


def test_missing_weights_file(tmp_path):
    err = _bad_weights_error(tmp_path / "nope.pth")
    assert "not found" in err.allowed


def test_garbage_weights_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    err = _bad_weights_error(path)  # not even the start of a torch file (was "KeyError: 101")
    assert "not a torch.save file" in err.allowed and "torch.save(model.state_dict()" in \
        err.allowed
    zipped = tmp_path / "zipped.pth"  # starts like one, cannot be loaded: torch's reason
    zipped.write_bytes(b"PK\x03\x04" + b"cut short" * 10)
    assert "not a readable torch state dict" in _bad_weights_error(zipped).allowed
    (tmp_path / "folder.pth").mkdir()
    assert "is a folder" in _bad_weights_error(tmp_path / "folder.pth").allowed
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "the file is empty" in _bad_weights_error(tmp_path / "empty.pth").allowed


def test_weights_file_holding_a_whole_module(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(nn.Linear(2, 2), path)
    err = _bad_weights_error(path)
    assert "state_dict()" in err.allowed


def test_weights_of_another_architecture(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    err = _bad_weights_error(path)
    assert "unexpected keys" in err.allowed and "resnet18" in err.allowed


def test_weights_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    err = _bad_weights_error(path)
    assert "state dict" in err.allowed


# ---------------------------------------------------------------- check_model_fits


@pytest.mark.parametrize("model,task,field", [
    (cfg_for("vgg99"), TaskConfig(), "model.name"),
    (cfg_for("seednet"), TaskConfig(coord_channels=False), "task.coord_channels"),
    (cfg_for("coordmlp"), TaskConfig(coord_channels=False), "task.coord_channels"),
    (cfg_for("resnet18"), TaskConfig(height=16, width=64), "task.height"),
    (cfg_for("resnet34"), TaskConfig(height=64, width=31), "task.width"),
    (cfg_for("plaincnn", depth=6), TaskConfig(height=64, width=32), "task.width"),
    (cfg_for("seednet", pretrained=True), TaskConfig(), "model.pretrained"),
    (cfg_for("plaincnn", pretrained=True), TaskConfig(), "model.pretrained"),
    (cfg_for("coordconv", weights_path="w.pth"), TaskConfig(), "model.weights_path"),
    (cfg_for("resnet18", freeze_preconv=True), TaskConfig(), "model.freeze_preconv"),
    (cfg_for("coordmlp", freeze_preconv=True), TaskConfig(), "model.freeze_preconv"),
    (cfg_for("resnet18", weights_path="/no/such/file.pth"), TaskConfig(),
     "model.weights_path"),
])
def test_check_model_fits_names_the_field(model, task, field):
    with pytest.raises(ConfigError) as info:
        check_model_fits(model, task)
    assert info.value.field == field


def test_check_model_fits_min_size_message_names_model_and_minimum():
    with pytest.raises(ConfigError) as info:
        check_model_fits(cfg_for("mobilenet_v3_small"), TaskConfig(height=24, width=24))
    assert "32" in info.value.allowed and "mobilenet_v3_small" in info.value.allowed


def test_check_model_fits_accepts_good_configs(resnet18_file):
    path, _ = resnet18_file
    small = TaskConfig(height=32, width=32)
    for model, task in [(cfg_for("seednet"), TaskConfig()),
                        (cfg_for("seednet", freeze_preconv=True), TaskConfig(height=4, width=4)),
                        (cfg_for("plaincnn", pool="none"), TaskConfig(coord_channels=False)),
                        (cfg_for("resnet18", weights_path=str(path)), small)]:
        assert check_model_fits(model, task, batch_size=8) is None


def test_check_model_fits_refuses_a_batch_too_big_for_memory():
    with pytest.raises(ConfigError) as info:
        check_model_fits(cfg_for("resnet18"), TaskConfig(), batch_size=10**9)
    err = info.value
    assert err.field == "train.batch_size"
    assert "GiB" in err.allowed and "batch size" in err.allowed and "resolution" in err.allowed


def test_check_model_fits_uses_free_cuda_memory_when_cuda_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (2**30, 80 * 2**30))
    # seednet at 128x128: 6 floats/px * 4 B * 16384 px = 0.375 MiB per sample.
    check_model_fits(cfg_for("seednet"), TaskConfig(), batch_size=1024)  # 384 MiB fits
    with pytest.raises(ConfigError) as info:
        check_model_fits(cfg_for("seednet"), TaskConfig(), batch_size=4096)  # 1.5 GiB doesn't
    assert "1.0 GiB free GPU memory" in info.value.allowed


def test_check_model_fits_refuses_batch_of_one_where_batchnorm_cannot_train():
    with pytest.raises(ConfigError) as info:
        check_model_fits(cfg_for("resnet18"), TaskConfig(height=32, width=32), batch_size=1)
    assert info.value.field == "train.batch_size"
    check_model_fits(cfg_for("resnet18"), TaskConfig(height=32, width=32), batch_size=2)
    check_model_fits(cfg_for("resnet18"), TaskConfig(height=33, width=32), batch_size=1)
    # ...and the refusal is real: torch's BatchNorm fails there, and works one pixel up.
    model = build_model(cfg_for("resnet18"), 3).train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(torch.rand(1, 3, 32, 32))
    assert model(torch.rand(1, 3, 33, 32)).shape == (1,)


def test_seednet_gradients_match_the_notebook_net():
    """The fast extreme-pixel path must train exactly like the notebook's conv + max."""
    ours = build_model(cfg_for("seednet"), 3)
    ref = NotebookNet()
    ref.load_state_dict(ours.state_dict())
    x = torch.cat([notebook_input(24, 20, (3, 5), (17, 21)), notebook_input(24, 20, (0, 0),
                                                                              (19, 23))])
    y = torch.tensor([5.0, 30.0])
    for net in (ours, ref):
        torch.nn.functional.l1_loss(net(x), y).backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6), name
    assert ours.preconv1.weight.grad.abs().sum() > 0  # the preconv really gets a gradient


def test_seednet_description_says_its_preconv_trains_by_default():
    """It said "fixed 1x1 preconv" while the default (freeze_preconv off) trains it."""
    from cnnprobe.config import ModelConfig
    from cnnprobe.models import MODELS

    assert ModelConfig().freeze_preconv is False
    text = MODELS["seednet"].description
    assert "fixed" not in text and "preconv (trained" in text
