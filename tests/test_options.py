"""The options of the commands on a stored run, defined once (cnnprobe.options): the CLI
flags, the TUI dialogs, the service layer's defaults and the docs all read them."""

from __future__ import annotations

import inspect

import pytest

from cnnprobe import runs
from cnnprobe.cli import build_parser
from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.options import (
    COMMANDS,
    FinetuneOptions,
    SweepOptions,
    finetune_plan,
    option_settings,
    resume_steps,
)


def _sub(command: str):
    return build_parser()._subparsers._group_actions[0].choices[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_a_flag_with_its_help_default_and_choices(command):
    sub = _sub(command)
    text = "".join(sub.format_help().split())  # argparse wraps, at hyphens too
    args = sub.parse_args(["somerun"])
    for st in option_settings(command):
        assert st.flag in text, (command, st.name)
        assert "".join(st.help_text.split()) in text, (command, st.name)
        assert getattr(args, st.name) == st.default, (command, st.name)
        for c in st.choices:
            assert c in text, (command, st.name, c)


@pytest.mark.parametrize(("function", "command"), [
    (runs.evaluate_run, "eval"), (runs.sweep_run, "sweep"), (runs.resume_run, "resume"),
    (runs.finetune_run, "finetune")])
def test_the_service_layer_defaults_are_the_options(function, command):
    params = inspect.signature(function).parameters
    renamed = {"steps": "extra_steps"} if command == "resume" else {}
    for st in option_settings(command):
        name = renamed.get(st.name, st.name)
        if name in params and st.name not in ("which", "resolutions", "device"):
            assert params[name].default == st.default, (command, st.name)
    assert SweepOptions.n == 512 and SweepOptions.max_distractors == 8


@pytest.mark.parametrize(("size", "steps", "given", "want"), [
    ((128, 128), 3000, {}, (300, 300, 1000)),  # the notebook's 128 -> 300
    ((32, 48), 20, {}, (75, 112, 6)),
    ((32, 32), 4, {}, (75, 75, 2)),  # at least 2 steps
    ((2048, 2048), 30, {}, (4096, 4096, 10)),  # at most 4096 px
    ((32, 32), 20, {"height": 48}, (48, 75, 6)),  # each side on its own
    ((32, 32), 20, {"height": 40, "width": 24, "steps": 9}, (40, 24, 9)),
])
def test_the_finetune_default_is_decided_once(size, steps, given, want):
    cfg = RunConfig(task=TaskConfig(height=size[0], width=size[1]),
                    train=TrainConfig(steps=steps))
    assert finetune_plan(cfg, **given) == want


@pytest.mark.parametrize(("done", "status", "want"), [
    (8, "cancelled", 12), (20, "finished", 20), (25, "interrupted", 1)])
def test_the_resume_default_is_the_rest_of_the_steps(done, status, want):
    assert resume_steps(RunConfig(train=TrainConfig(steps=20)), done, status) == want


async def test_the_tui_dialogs_offer_the_same_defaults():
    from types import SimpleNamespace

    from textual.app import App

    from tui.screens.finetune import FinetuneScreen
    from tui.screens.resume import ResumeScreen
    from tui.screens.sweep import SweepScreen

    cfg = RunConfig(task=TaskConfig(height=32, width=48), train=TrainConfig(steps=30))
    rec = SimpleNamespace(config=cfg, id="abcdef123456", task="distance", model="seednet",
                          resolution="32x48", steps_done=10, status="cancelled")

    def shown(screen, **kw):  # the rows a dialog composes (widgets need a running app)
        rows = screen.fields(SimpleNamespace(record=rec, **kw))
        return {f.key: f.control.value for f in rows}

    async with App().run_test():
        assert shown(FinetuneScreen) == {"height": "75", "width": "112", "steps": "10",
                                         "lr": ""}
        assert shown(ResumeScreen) == {"steps": "20"}
        assert shown(SweepScreen, kind="distractors") == {"max_distractors": "8", "n": "512"}
    assert FinetuneOptions.lr is None


def test_a_cli_finetune_without_size_or_steps_takes_the_default(tmp_path, capsys):
    from cli_helpers import TRAIN, run

    from cnnprobe.store import RunStore

    assert run(capsys, tmp_path, *TRAIN, "--name", "base")[0] == 0
    code, _, err = run(capsys, tmp_path, "finetune", "base", "--quiet")
    assert code == 0, err
    child = next(r for r in RunStore(tmp_path).list_runs() if r.kind == "finetune")
    assert (child.resolution, child.steps_done, child.status) == ("75x75", 6, "finished")
