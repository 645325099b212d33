"""Numbers that mean what they say: BatchNorm statistics matched to the weights evaluated,
input normalisation inside the model, a resolution-free model that really is, and a record
of how every reported number was made."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import numpy as np
import pytest
import torch

from cnnprobe.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.evaluate import batchnorms, calibration_batches, evaluation_state, predict
from cnnprobe.engine.inspect import capture
from cnnprobe.engine.train import train
from cnnprobe.measurement import DEFAULT_WEIGHTS, best_of, describe
from cnnprobe.models import InputNorm, build_model, resolve_input_norm
from cnnprobe.models import validate_run as validate
from cnnprobe.runs import evaluate_run, inspect_run, load_model, sweep_run, train_run
from cnnprobe.store import RunStore, schema
from cnnprobe.tasks import make_generator, make_task


def bn_config(**train) -> RunConfig:
    """plaincnn (BatchNorm after every conv) on 16 px distance, a few CPU steps."""
    t = dict(batch_size=32, steps=12, eval_every=6, val_size=64, lr=1e-3, device="cpu",
             bn_samples=256)
    t.update(train)
    return RunConfig(TaskConfig(name="distance", height=16, width=16),
                     ModelConfig(name="plaincnn", depth=2, width=8), TrainConfig(**t))


def _stale(model: torch.nn.Module) -> list[torch.Tensor]:
    """Push every BatchNorm's running statistics far from anything real; return copies."""
    for m in batchnorms(model):
        m.running_mean.add_(3.0)
        m.running_var.mul_(25.0)
    return [t.clone() for m in batchnorms(model) for t in (m.running_mean, m.running_var)]


# ------------------------------------------------------------------ precise BatchNorm

def test_recalibrated_statistics_are_the_batch_statistics_and_training_state_is_kept():
    """With one calibration batch, eval mode inside the block must give what train mode (the
    batch's own statistics, computed by torch's BatchNorm) gives on those very images; the
    stale running statistics come back afterwards, untouched."""
    cfg = validate(bn_config(batch_size=256, bn_samples=256))
    torch.manual_seed(0)
    model = build_model(cfg.model, 3)
    stale = _stale(model)
    [images] = list(calibration_batches(cfg.task, 256, seed=0, device=torch.device("cpu"),
                                        batch_size=256))
    with torch.no_grad():
        stale_out = model.eval()(images)
        with evaluation_state(model, cfg, "cpu", weights="last", step=3) as how:
            calibrated = model(images)
        after = [t.clone() for m in batchnorms(model) for t in (m.running_mean, m.running_var)]
        batch_stats = model.train()(images)
    assert how == {"weights": "last", "step": 3, "batchnorm": "recalibrated",
                   "bn_samples": 256, "input_norm": "task"}
    # running_var is unbiased (n-1), train mode divides by n: a 1/256 difference at most.
    np.testing.assert_allclose(calibrated.numpy(), batch_stats.numpy(), rtol=2e-3, atol=2e-3)
    assert (stale_out - batch_stats).abs().mean() > 10 * (calibrated - batch_stats).abs().mean()
    for a, b in zip(after, stale, strict=True):
        assert torch.equal(a, b)


def test_precise_bn_off_or_no_batchnorm_is_recorded_as_such():
    cfg = validate(bn_config(precise_bn=False))
    model = build_model(cfg.model, 3)
    before = [t.clone() for m in batchnorms(model) for t in (m.running_mean, m.running_var)]
    with evaluation_state(model, cfg, "cpu", weights="best", step=7) as how:
        pass
    assert how["batchnorm"] == "running" and how["bn_samples"] == 0
    assert all(torch.equal(a, b) for a, b in zip(
        before, [t for m in batchnorms(model) for t in (m.running_mean, m.running_var)],
        strict=True))
    seed_cfg = validate(replace(cfg, model=ModelConfig(name="seednet")))
    with evaluation_state(build_model(seed_cfg.model, 3), seed_cfg, "cpu", weights="last",
                          step=1) as how:
        pass
    assert how["batchnorm"] == "none" and how["input_norm"] == "none"
    assert "no BatchNorm" in describe(how) and "raw input" in describe(how)


def test_every_evaluation_of_a_bn_run_uses_recalibrated_statistics(tmp_path):
    """Final metrics, a re-evaluation, a sweep and an inspection all record precise BN; the
    stored re-evaluation reproduces the final validation exactly; turning it off changes the
    numbers and says so."""
    store = RunStore(tmp_path)
    rid, result = train_run(store, bn_config())
    rec = store.get(rid)
    assert rec.measured == result.measured == {
        "weights": "last", "step": 12, "batchnorm": "recalibrated", "bn_samples": 256,
        "input_norm": "task"}
    ev = evaluate_run(store, rid, which="last", n=64, device="cpu")
    assert ev.metrics == pytest.approx(result.evaluation.metrics)
    assert store.evaluations(rid)[-1]["options"]["measured"] == rec.measured
    off = evaluate_run(store, rid, which="last", n=64, device="cpu", precise_bn=False)
    assert off.measured["batchnorm"] == "running" and off.metrics["mae"] != ev.metrics["mae"]
    sweep = sweep_run(store, rid, resolutions=[16, 24], n=32, device="cpu")
    assert sweep.measured["batchnorm"] == "recalibrated"
    assert store.sweeps(rid)[0]["options"]["measured"] == sweep.measured
    insp = inspect_run(store, rid, sample=0, n_train=16, n_test=8, device="cpu")
    assert insp.options["measured"]["batchnorm"] == "recalibrated"
    assert insp.prediction == pytest.approx(float(result.evaluation.predictions[0]), abs=1e-4)
    # The checkpoint keeps the statistics training left, not the recalibrated ones.
    model, ckpt = load_model(store, rid, "last")
    for k, v in result.model.state_dict().items():
        assert torch.equal(ckpt.model_state[k], v.cpu()), k


# ------------------------------------------------------------------ input normalisation

@pytest.mark.parametrize("name,options,expected", [
    ("seednet", {}, "none"), ("coordmlp", {}, "none"), ("plaincnn", {}, "task"),
    ("coordconv", {}, "task"), ("resnet18", {}, "task"),
    ("resnet18", {"pretrained": True}, "imagenet"),
    ("mobilenet_v3_small", {"weights_path": "w.pt"}, "imagenet"),
    ("plaincnn", {"input_norm": "none"}, "none"),
])
def test_auto_input_normalisation_per_model(name, options, expected):
    assert resolve_input_norm(ModelConfig(name=name, **options)) == expected


def test_coordinate_readers_refuse_a_normalisation():
    cfg = RunConfig(TaskConfig(height=16, width=16), ModelConfig(name="seednet",
                                                                input_norm="task"))
    with pytest.raises(ConfigError, match="model.input_norm.*raw coordinate"):
        validate(cfg)
    with pytest.raises(ConfigError, match="model.input_norm"):
        validate(replace(cfg, model=ModelConfig(input_norm="zscore")))


def test_task_normalisation_is_fitted_stored_and_applied_on_every_path(tmp_path):
    store = RunStore(tmp_path)
    cfg = bn_config(precise_bn=False)
    rid, result = train_run(store, cfg)
    assert store.get(rid).config.model.input_norm == "task"  # auto, resolved and recorded
    norm = result.model.input_norm
    # Independent recomputation: the distance signal has one +1 and one -1 in H*W pixels,
    # and channel 1 is x/(W+1) for x = 0..W-1.
    h = w = 16
    xs = np.arange(w) / (w + 1)
    assert norm.mean[0].item() == pytest.approx(0.0, abs=1e-6)
    assert norm.std[0].item() == pytest.approx(np.sqrt(2 / (h * w)), rel=1e-4)
    assert norm.mean[1].item() == pytest.approx(xs.mean(), rel=1e-5)
    assert norm.std[1].item() == pytest.approx(xs.std(), rel=1e-4)
    model, _ = load_model(store, rid, "last")
    assert torch.equal(model.input_norm.mean, norm.mean.cpu())
    assert torch.equal(model.input_norm.std, norm.std.cpu())
    # What the first conv sees, in inspect, is (x - mean) / std of the raw input.
    task = make_task(cfg.task)
    x = task.sample(4, make_generator(9, "cpu", "t")).images
    acts = {a.name: a.tensor for a in capture(model, x)}
    expected = ((x - norm.mean.view(1, -1, 1, 1)) / norm.std.view(1, -1, 1, 1)).numpy()
    np.testing.assert_allclose(acts["input"], x.numpy())
    np.testing.assert_allclose(acts["input_norm"], expected, rtol=1e-6, atol=1e-6)
    # predict (evaluation and sweeps) runs the same model, normalisation included.
    ev = predict(model, cfg.task, 64, seed=cfg.train.seed, device="cpu", batch_size=32)
    assert ev.metrics == pytest.approx(result.evaluation.metrics)


def test_input_norm_fit_and_imagenet_constants():
    norm = InputNorm(3, "task")
    images = torch.zeros(8, 3, 4, 4)
    images[:, 0, 0, 0] = 2.0  # channel 0 varies, channel 1 is constant 0.5, channel 2 zero
    images[:, 1] = 0.5
    norm.fit([images[:3], images[3:]])  # in chunks: the same as all at once
    assert norm.mean.tolist() == pytest.approx([2 / 16, 0.5, 0.0])
    assert norm.std[0].item() == pytest.approx(np.std([2.0] + [0.0] * 15))
    assert norm.std[1:].tolist() == [1.0, 1.0]  # constant channels are only centred
    one = InputNorm(1, "imagenet")
    assert one.mean.item() == pytest.approx(np.mean([0.485, 0.456, 0.406]))
    with pytest.raises(ValueError):
        InputNorm(3, "auto")


def test_the_notebook_seednet_has_no_normalisation_and_the_seed_preset_is_the_notebook():
    from cnnprobe.config import apply_preset

    cfg = validate(apply_preset(RunConfig(), "seed"))
    assert cfg.model.input_norm == "none" and cfg.task.allow_coincident
    assert build_model(cfg.model, 3).input_norm is None
    assert "input_norm" not in dict(build_model(cfg.model, 3).named_modules())


def test_stored_configs_from_before_these_settings_read_as_what_ran():
    old = {"task": {"name": "distance", "height": 32, "width": 32},
           "model": {"name": "plaincnn"}, "train": {"steps": 5}}
    cfg = RunConfig.from_dict(old, stored=True)
    assert cfg.model.input_norm == "none" and cfg.task.allow_coincident
    fresh = RunConfig.from_dict(old)
    assert fresh.model.input_norm == "auto" and not fresh.task.allow_coincident


# ------------------------------------------------------------------ resolution-free coordmlp

def test_coordmlp_in_normalized_units_is_resolution_free():
    """Trained at 32 px, its error at 0.5x and 2x stays within 2x its error at 1x (with the
    diagonal as the unit it was 2.7x worse at 16 px)."""
    cfg = RunConfig(TaskConfig(name="distance", height=32, width=32, units="normalized"),
                    ModelConfig(name="coordmlp"),
                    TrainConfig(batch_size=64, steps=1500, eval_every=1500, val_size=512,
                                lr=3e-3, device="cpu"))
    result = train(cfg)
    assert result.status == "finished"
    mae = {}
    for size in (16, 32, 64):
        task = replace(cfg.task, height=size, width=size)
        mae[size] = predict(result.model, task, 1024, seed=5, device="cpu",
                            batch_size=256).metrics["mae"]
    mean_guess = predict(result.model, cfg.task, 1024, seed=5).labels.std()
    assert mae[32] < 0.1 * mean_guess, mae  # it learned the task
    assert max(mae[16], mae[64]) < 2 * mae[32], mae


# ------------------------------------------------------------------ which weights

def test_one_default_for_which_weights_everywhere():
    from cnnprobe.cli import build_parser

    assert DEFAULT_WEIGHTS == "last"
    parser = build_parser()
    for argv in (["eval", "x"], ["sweep", "x"], ["inspect", "x"],
                 ["finetune", "x", "--steps", "1"]):
        args = parser.parse_args(argv)
        assert args.which == "last", argv
    import inspect as pyinspect

    from cnnprobe import runs
    from tui.screens.activations import ActivationsScreen

    for fn in (runs.evaluate_run, runs.sweep_run, runs.finetune_run, runs.inspect_run,
               runs.load_model, ActivationsScreen.__init__):
        assert pyinspect.signature(fn).parameters["which"].default == "last", fn


def test_best_of_and_describe():
    rows = [{"step": 10, "mae": 2.0}, {"step": 20, "mae": 1.0}, {"step": 30, "mae": 1.0}]
    assert best_of(rows)["step"] == 20 and best_of([]) is None
    line = describe({"weights": "best", "step": 20, "batchnorm": "recalibrated",
                     "bn_samples": 1024, "input_norm": "imagenet"})
    assert line == ("best weights (step 20) · BatchNorm recalibrated on 1,024 training samples "
                    "· input normalised with ImageNet's statistics")
    assert "not recorded" in describe({})


def test_show_and_export_name_the_weights_and_the_best_step(tmp_path, capsys):
    from cnnprobe.cli import main
    from cnnprobe.report.markdown import summary_markdown
    from cnnprobe.report.summary import run_summary

    store = RunStore(tmp_path)
    rid, _ = train_run(store, bn_config())
    with sqlite3.connect(tmp_path / "cnnprobe.db") as conn:  # make step 6 the best
        conn.execute("UPDATE val_history SET metrics = json_set(metrics, '$.mae', 0.001) "
                     "WHERE run_id = ? AND step = 6", (rid,))
    assert main(["--store", str(tmp_path), "show", rid]) == 0
    out = capsys.readouterr().out
    assert "measured with: last weights (step 12) · BatchNorm recalibrated on 256" in out
    assert "best validation: MAE 0.001" in out and "at step 6" in out
    md = summary_markdown(run_summary(store, rid))
    assert "Measured with: last weights (step 12)" in md
    assert "Best validation (the `best` checkpoint): MAE 0.001" in md
    data = json.loads(json.dumps(run_summary(store, rid), default=str))
    assert data["measured"]["batchnorm"] == "recalibrated"
    assert data["best_validation"]["step"] == 6


def test_a_version_2_store_gains_the_measured_column(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        old = RunStore(tmp_path)
        rid = old.create_run(validate(bn_config()), name="old")
        old.close()
    with sqlite3.connect(tmp_path / "cnnprobe.db") as conn:  # as version 2 recorded an end
        conn.execute("UPDATE runs SET status = 'finished', metrics = '{\"mae\": 1.0}'")
    store = RunStore(tmp_path)
    assert store.schema_version == schema.latest_version() and store.get(rid).measured == {}
    assert store.get(rid).metrics == {"mae": 1.0}
    assert "not recorded" in describe(store.get(rid).measured)


def test_cli_train_prints_how_its_metrics_were_made(tmp_path, capsys):
    from cnnprobe.cli import main

    code = main(["--store", str(tmp_path), "train", "--task", "distance", "--model",
                 "plaincnn", "--resolution", "16", "--model-depth", "2", "--model-width", "4",
                 "--steps", "4", "--batch-size", "16", "--val-size", "32", "--bn-samples", "64",
                 "--device", "cpu", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["measured"] == {"weights": "last", "step": 4, "batchnorm": "recalibrated",
                                "bn_samples": 64, "input_norm": "task"}
    assert data["config"]["model"]["input_norm"] == "task"


def test_large_images_fit_the_input_norm_in_chunks(monkeypatch):
    """Above NORM_FLOATS values the fit draws equal chunks, never all images at once."""
    from cnnprobe.engine import train as train_mod

    cfg = validate(bn_config())
    model = build_model(cfg.model, 3)
    drawn = []
    task = make_task(cfg.task)
    original = task.sample

    def spy(n, g, **kw):
        drawn.append(n)
        return original(n, g, **kw)

    monkeypatch.setattr(task, "sample", spy)
    train_mod.fit_input_norm(model, task, 0, torch.device("cpu"))
    assert drawn == [1024]  # 16 px: one draw
    drawn.clear()
    monkeypatch.setattr(train_mod, "NORM_FLOATS", 3 * 16 * 16 * 300)
    train_mod.fit_input_norm(model, task, 0, torch.device("cpu"))
    assert drawn == [300, 300, 300, 124]
    assert model.input_norm.std[0].item() == pytest.approx(np.sqrt(2 / 256), rel=1e-4)


def test_train_help_says_what_model_width_is():
    from cnnprobe.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(sub.format_help().split())
    assert "--model-width N plaincnn, coordconv: channels of the first conv block" in text
    assert "--width N image width in pixels" in text


def test_a_quadrant_run_reports_its_held_out_error_at_the_same_statistics(tmp_path):
    store = RunStore(tmp_path)
    cfg = bn_config()
    cfg = replace(cfg, task=replace(cfg.task, split="quadrant"))
    rid, result = train_run(store, cfg)
    m = result.final_metrics
    assert "heldout_mae" in m and "mae" in m and result.measured["batchnorm"] == "recalibrated"
    held = evaluate_run(store, rid, which="last", region="heldout", n=64, device="cpu")
    assert held.metrics["mae"] == pytest.approx(m["heldout_mae"])
    assert held.measured == result.measured
