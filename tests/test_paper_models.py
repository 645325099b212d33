"""The CoordConv paper's models (cnnprobe/models/paper.py), checked against what
uber-research/CoordConv's `model_builders.py` builds: `ConvRegressor` with type
`coordconv` (coordinates once, 1x1/3x3 convolutions without activations, global max pool,
about 900 parameters) and with type `conv_quarant` (the conv baseline)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.train import train
from cnnprobe.models import MODELS, build_model, count_parameters, model_table, validate_run
from cnnprobe.models.coordconv import AddCoords
from cnnprobe.models.paper import ConvPaper, CoordConvPaper


def test_coordconv_paper_has_the_papers_layers_and_parameter_count():
    # The paper's input: a one-hot image (1 channel) and two outputs (x, y).
    model = CoordConvPaper(1, outputs=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1)] * 3 + [(3, 3)] * 2
    assert [c.out_channels for c in convs] == [8, 8, 8, 8, 2]
    assert convs[0].in_channels == 1 + 2  # the coordinates, added once
    assert sum(isinstance(m, AddCoords) for m in model.modules()) == 1
    # 3*8+8 + 2*(8*8+8) + 8*8*9+8 + 8*2*9+2
    assert count_parameters(model) == 906
    assert not any(isinstance(m, (nn.ReLU, nn.ELU, nn.Linear, nn.BatchNorm2d))
                   for m in model.modules())


def test_coordconv_paper_is_a_linear_map_then_a_global_max():
    torch.manual_seed(0)
    model = CoordConvPaper(1, outputs=2).eval()
    a, b = torch.rand(2, 1, 12, 16), torch.rand(2, 1, 12, 16)

    def maps(x: torch.Tensor) -> torch.Tensor:
        return model.convs(model.add_coords(x))

    with torch.no_grad():
        # No activation: the conv stack is affine in its input (f(a+b) = f(a) + f(b) - f(0)).
        zero = torch.zeros_like(a)
        assert torch.allclose(maps(a + b), maps(a) + maps(b) - maps(zero), atol=1e-4)
        # The answer is each output map's maximum over the whole image.
        assert torch.equal(model(a), maps(a).amax(dim=(2, 3)))
    assert model(a).shape == (2, 2)
    assert CoordConvPaper(3).eval()(torch.rand(4, 3, 9, 9)).shape == (4,)


def test_conv_paper_is_the_papers_quadrant_baseline():
    model = ConvPaper(1, outputs=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 1, 3, 3, 3, 3, 1, 3, 3]
    assert [c.stride[0] for c in convs] == [2, 1, 1, 2, 2, 2, 1, 2, 1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert [c.out_channels for c in convs] == [16] * 8 + [2]
    # A ReLU before the global mean, as in the paper: the outputs are never negative.
    out = model.eval()(torch.randn(8, 1, 64, 64))
    assert out.shape == (8, 2) and (out >= 0).all()


def test_he_normal_initialisation():
    torch.manual_seed(0)
    conv = CoordConvPaper(3, width=64).convs[1]  # 64 -> 64, 1x1: fan_in 64
    w = conv.weight.detach()
    std = (2 / 64) ** 0.5
    assert w.abs().max() <= 2 * std + 1e-6  # truncated at two SDs
    assert 0.7 * std < w.std() < 0.95 * std  # a normal truncated at 2 SD has SD 0.88 of it
    assert torch.equal(conv.bias.detach(), torch.zeros(64))


@pytest.mark.parametrize("name", ["coordconv_paper", "conv_paper"])
def test_paper_models_are_in_the_registry_with_their_parameter_counts(name, capsys):
    row = next(r for r in model_table() if r["name"] == name)
    assert row["params"] == count_parameters(build_model(ModelConfig(name=name), 3))
    from cnnprobe.cli import main

    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if f" {name} " in x)
    assert f"{row['params']:,}" in line
    # `auto` input normalisation is none: the paper trained them on raw images.
    cfg = RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                    model=ModelConfig(name=name))
    assert validate_run(cfg, memory=False).model.input_norm == "none"
    assert MODELS[name].raw_input


@pytest.mark.parametrize("name", ["coordconv_paper", "conv_paper"])
def test_paper_models_train_and_record_their_size(name):
    cfg = RunConfig(task=TaskConfig(name="distance", height=16, width=16,
                                    coord_channels=False),
                    model=ModelConfig(name=name),
                    train=TrainConfig(batch_size=8, steps=3, eval_every=3, val_size=16,
                                      device="cpu"))
    result = train(cfg)
    assert result.status == "finished", result.reason
    assert result.model.in_channels == 1
    assert count_parameters(result.model) == count_parameters(
        build_model(replace(cfg.model, input_norm="none"), 1))
