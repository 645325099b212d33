"""Admission (`cnnprobe.admission.admit`): every check a training passes, in one place, run
once per training path; an Admission handed on is completed, never redone."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cli_helpers import TRAIN, run

import cnnprobe.admission as admission
from cnnprobe.admission import STAGES, Admission, admit
from cnnprobe.config import ConfigError
from cnnprobe.store import RunStore


@pytest.fixture
def counted(monkeypatch):
    """How often each check of admission ran."""
    calls = {"validate": 0, "device": 0, "step_time": 0}

    def count(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(admission, "validate_run", count("validate", admission.validate_run))
    monkeypatch.setattr(admission, "_training_device",
                        count("device", admission._training_device))
    monkeypatch.setattr(admission, "check_step_time",
                        count("step_time", admission.check_step_time))
    return calls


@pytest.mark.parametrize("upto", STAGES)
def test_admit_stops_at_the_stage_asked(tiny, counted, upto):
    adm = admit(tiny, upto=upto)
    assert adm.done == upto and adm.config.model.input_norm != "auto"
    assert (adm.device == "cpu") == (upto in ("device", "step_time"))
    assert counted == {"validate": 1, "device": int(adm.device is not None),
                       "step_time": int(upto == "step_time")}


def test_an_admission_handed_on_is_completed_not_redone(tiny, counted):
    early = admit(tiny, upto="device")
    assert admit(early) == replace(early, done="step_time")
    assert counted == {"validate": 1, "device": 1, "step_time": 1}
    # One made before the engine had loaded (no memory check) is checked from there on.
    assert admit(admit(tiny, upto="config")).done == "step_time"
    assert counted["validate"] == 3


@pytest.mark.parametrize(("change", "field"), [
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"task": {"height": 8, "width": 8}, "model": {"name": "plaincnn"}}, "task.height"),
    ({"train": {"device": "cuda:7"}}, "train.device"),
    ({"train": {"compile": "reduce-overhead"}}, "train.compile"),
])
def test_a_refusal_names_its_field(tiny, change, field):
    cfg = tiny
    for section, values in change.items():
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **values)})
    with pytest.raises(ConfigError) as info:
        admit(cfg)
    assert info.value.field == field


def test_an_unknown_stage_is_a_programming_error(tiny):
    with pytest.raises(ValueError, match="one of config, memory, device, step_time"):
        admit(tiny, upto="everything")


def test_a_cli_training_is_admitted_once(tmp_path, capsys, counted):
    """The CLI admits for early feedback and hands the admission to runs.train_run, which
    does not admit again (it validated three times before)."""
    code, _, err = run(capsys, tmp_path, *TRAIN)
    assert code == 0, err
    assert counted == {"validate": 1, "device": 1, "step_time": 1}
    assert [r.status for r in RunStore(tmp_path).list_runs()] == ["finished"]


def test_train_run_admits_a_bare_config_itself(tmp_path, tiny, counted):
    from cnnprobe.runs import train_run

    _, result = train_run(RunStore(tmp_path), replace(tiny, train=replace(tiny.train, steps=2)))
    assert result.status == "finished"
    assert counted == {"validate": 1, "device": 1, "step_time": 1}


def test_admission_is_torch_free_up_to_the_config_stage():
    import subprocess
    import sys

    code = ("import sys; from cnnprobe.admission import admit; from cnnprobe.config import "
            "RunConfig; admit(RunConfig(), upto='config'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_an_admission_records_what_it_passed(tiny):
    adm = Admission(tiny, "memory")
    assert adm.passed("config") and adm.passed("memory") and not adm.passed("device")
