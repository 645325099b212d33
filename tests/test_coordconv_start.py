"""coordconv starts where it can learn: He init (the signal keeps its scale through the
un-normalised stack) and its output at the training labels' mean. With PyTorch's default
init its first output was 0 +- 0.002 against labels of 17 +- 8 px, and it stayed at the
mean guess for hundreds of steps (docs/measurement.md, bench/coordconv_start.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.train import NORM_SAMPLES, fit_output_bias, train
from cnnprobe.models import build_model
from cnnprobe.tasks import make_generator, make_task

CFG = RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                model=ModelConfig(name="coordconv", width=8, depth=2),
                train=TrainConfig(batch_size=16, steps=1, lr=1e-12, eval_every=1,
                                  val_size=256, device="cpu"))


@pytest.mark.parametrize("units", ["pixels", "normalized"])
def test_a_new_coordconv_run_predicts_the_label_mean_from_its_first_step(units):
    cfg = replace(CFG, task=replace(CFG.task, units=units))
    result = train(cfg)
    pred, labels = result.evaluation.predictions, result.evaluation.labels
    # Before the fix the predictions were about 0, some 2 label SDs below the mean.
    assert abs(pred.mean() - labels.mean()) < 0.25 * labels.std()
    assert abs(result.final_metrics["r2"]) < 0.2  # the mean guess, not far below it


def test_the_output_bias_is_the_mean_of_the_runs_own_training_draws():
    model = build_model(replace(CFG.model, input_norm="none"), 3)
    task = make_task(CFG.task)
    fit_output_bias(model, task, 7, torch.device("cpu"))
    want = task.sample(NORM_SAMPLES, make_generator(7, "cpu", "output-bias")).targets
    assert model.head.mlp[-1].bias.item() == pytest.approx(float(want.double().mean()),
                                                            rel=1e-6)


def test_other_models_keep_their_output_bias():
    model = build_model(ModelConfig(name="plaincnn", depth=2, width=8, input_norm="none"), 3)
    before = model.head.mlp[-1].bias.clone()
    fit_output_bias(model, make_task(CFG.task), 0, torch.device("cpu"))
    assert torch.equal(model.head.mlp[-1].bias, before)


def test_coordconv_layers_are_he_initialised():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="coordconv", width=64, input_norm="none"), 3)
    conv = model.layers[2].conv  # 64 + 2 channels in, 3x3
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert all(not m.bias.any() for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert not model.head.mlp[-1].weight.any()  # the output starts at its bias alone
