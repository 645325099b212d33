"""The training step's speed options (train.compile, train.channels_last): settings defined
once, off by default, validated, refused where the device cannot run them, recorded with the
run, readable in configs stored before they existed, and left out of a study trial's key
while at their defaults."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from cli_helpers import TRAIN, run_json

from cnnprobe.config import ConfigError, RunConfig, TrainConfig, settings, validate
from cnnprobe.engine import step as engine_step
from cnnprobe.engine.device import training_device
from cnnprobe.engine.step import wants_channels_last
from cnnprobe.engine.train import train
from cnnprobe.runs import load_model, train_run
from cnnprobe.store import RunStore
from cnnprobe.studies.builtin import builtin_plan
from cnnprobe.studies.plan import Trial


@pytest.fixture
def quick_compile(monkeypatch):
    """aot_eager instead of inductor: the same tracing and autograd, no C++ build (~40 s)."""
    monkeypatch.setattr(engine_step, "COMPILE_BACKEND", "aot_eager")


def test_defaults_are_off_and_not_in_the_tui_form():
    tr = TrainConfig()
    assert (tr.compile, tr.channels_last) == ("off", "auto")
    speed = {st.name: st for st in settings("train") if st.speed}
    assert set(speed) == {"compile", "channels_last"}
    assert not any(st.form for st in speed.values())
    assert speed["compile"].choices == ("off", "default", "reduce-overhead")


@pytest.mark.parametrize("field,value", [("compile", "max-autotune"), ("compile", True),
                                         ("channels_last", "yes")])
def test_bad_values_name_the_field(field, value):
    cfg = RunConfig(train=replace(TrainConfig(), **{field: value}))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.field == f"train.{field}"


def test_cuda_graphs_are_refused_off_cuda_and_the_rest_allowed():
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        training_device(TrainConfig(device="cpu", compile="reduce-overhead"))
    assert training_device(TrainConfig(device="cpu", compile="default")).type == "cpu"


def test_channels_last_auto_is_cuda_only_and_on_converts_the_model(tiny):
    from cnnprobe.models import build_model

    conv = build_model(replace(tiny.model, name="plaincnn"), 3)
    seed = build_model(tiny.model, 3)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not wants_channels_last(conv, cpu, "auto")
    assert wants_channels_last(conv, cuda, "auto") and not wants_channels_last(seed, cuda, "auto")
    assert wants_channels_last(seed, cpu, "on") and not wants_channels_last(conv, cuda, "off")
    cfg = replace(tiny, model=replace(tiny.model, name="plaincnn"),
                  train=replace(tiny.train, steps=4, eval_every=4, channels_last="on"))
    result = train(cfg)
    assert result.status == "finished", result.reason
    weight = next(p for p in result.model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_training_matches_eager_and_is_stored(tmp_path, quick_compile, tiny):
    cfg = replace(tiny, train=replace(tiny.train, steps=6, eval_every=3))
    eager = train(cfg)
    with RunStore(tmp_path / "store") as store:
        run_id, compiled = train_run(store, replace(cfg, train=replace(cfg.train,
                                                                       compile="default")))
        assert compiled.status == "finished", compiled.reason
        assert store.get(run_id).config.train.compile == "default"
        # The module itself was never wrapped: its checkpoint has the plain keys and loads.
        model, ckpt = load_model(store, run_id)
        assert list(ckpt.model_state) == list(eager.model.state_dict())
    assert [r["loss"] for r in compiled.train_history] == pytest.approx(
        [r["loss"] for r in eager.train_history], rel=1e-5)
    assert compiled.final_metrics["mae"] == pytest.approx(eager.final_metrics["mae"], rel=1e-5)


def test_the_cli_takes_the_flags_and_records_them(tmp_path, capsys, quick_compile):
    out = run_json(capsys, tmp_path, *TRAIN, "--steps", "4", "--eval-every", "4",
                   "--compile", "default", "--channels-last", "off")
    assert out["status"] == "finished"
    assert (out["config"]["train"]["compile"], out["config"]["train"]["channels_last"]) == (
        "default", "off")


def test_a_config_stored_before_the_options_reads_as_what_ran():
    old = RunConfig().to_dict()
    del old["train"]["compile"], old["train"]["channels_last"]
    cfg = RunConfig.from_dict(old, stored=True)
    assert (cfg.train.compile, cfg.train.channels_last) == ("off", "auto")
    old["train"]["compiled"] = True  # an unknown key is still refused
    with pytest.raises(ConfigError, match="train.compiled"):
        RunConfig.from_dict(old, stored=True)


def test_trial_keys_stay_those_of_the_trials_already_stored():
    # Keys computed at the commit before these settings existed.
    trials = builtin_plan("pooling", "full").trials()
    assert [t.key for t in trials[:2]] == ["b18fb7c7f23db4d0", "c39413e40403121d"]
    first = trials[0]
    faster = Trial(first.study, first.variant, first.seed,
                   replace(first.config, train=replace(first.config.train, compile="default")))
    assert faster.key != first.key  # a non-default option is a different trial
