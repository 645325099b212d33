"""Study plans (issue 10, the plan layer): TOML files and built-in studies become checked
trials with stable keys; every bad plan is one ConfigError naming the file and the key."""

from __future__ import annotations

import pytest

from cnnprobe.config import ConfigError
from cnnprobe.studies import BUILTIN, SCALES, builtin_plan, load_plan

GOOD = """
name = "pool"
question = "Does pooling cap the accuracy?"
seeds = 2
evaluations = ["resolution"]

[base]
"task.height" = 16
"task.width" = 16
"model.name" = "plaincnn"
"train.steps" = 3

[[axis]]
field = "model.pool"
values = ["max", "avg"]

[[axis]]
field = "model.global_pool"
values = ["max", "avg"]
"""


def plan_file(tmp_path, text: str):
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return p


def test_axes_are_crossed_and_every_trial_is_a_checked_config(tmp_path):
    plan = load_plan(plan_file(tmp_path, GOOD))
    assert [v.label for v in plan.variants] == [
        "pool=max,global_pool=max", "pool=max,global_pool=avg",
        "pool=avg,global_pool=max", "pool=avg,global_pool=avg"]
    trials = plan.trials()
    assert len(trials) == 8 and plan.seeds == (0, 1) and plan.evaluations == ("resolution",)
    t = trials[3]
    assert (t.variant, t.seed) == ("pool=max,global_pool=avg", 1)
    assert (t.config.model.pool, t.config.model.global_pool) == ("max", "avg")
    assert (t.config.task.height, t.config.train.steps, t.config.train.seed) == (16, 3, 1)
    assert "study:pool" in t.tags and f"trial:{t.key}" in t.tags


def test_trial_keys_are_unique_and_stable(tmp_path):
    keys = [t.key for t in load_plan(plan_file(tmp_path, GOOD)).trials()]
    assert len(set(keys)) == len(keys)
    assert keys == [t.key for t in load_plan(plan_file(tmp_path, GOOD)).trials()]
    more = [t.key for t in load_plan(plan_file(tmp_path, GOOD), seeds=3).trials()]
    assert set(keys) < set(more)  # a third seed adds trials, keeps the others


def test_listed_variants(tmp_path):
    text = GOOD.split("[[axis]]")[0] + """
[[variant]]
label = "coordconv"
set = { "model.name" = "coordconv" }

[[variant]]
set = { "model.pool" = "none" }
"""
    plan = load_plan(plan_file(tmp_path, text))
    assert [v.label for v in plan.variants] == ["coordconv", "pool=none"]
    assert plan.trials()[0].config.model.name == "coordconv"


@pytest.mark.parametrize("edit,words", [
    (lambda t: t + '\ncolour = "red"\n', "colour"),
    (lambda t: t.replace('"train.steps"', '"train.stepz"'), "train.stepz"),
    (lambda t: t.replace('"train.steps" = 3', '"height" = 3'), "did you mean task.height"),
    (lambda t: t.replace('"task.height" = 16', '"task.height" = 2'),
     "base: task.height=2 is not allowed: an integer from 4 to 4096"),
    (lambda t: t.replace('values = ["max", "avg"]\n\n[[axis]]', 'values = []\n\n[[axis]]'),
     "axis 1 (model.pool): values"),
    (lambda t: t + '\n[[variant]]\nlabel = "x"\n', "not both"),
    (lambda t: t.replace("seeds = 2", "seeds = 0"), "seeds"),
    (lambda t: t.replace('["resolution"]', '["vibes"]'), "evaluations"),
    (lambda t: t.replace('name = "pool"', 'name = "two words"'), "name"),
    (lambda t: t.replace("[base]", "[base"), "line"),
    # Two labels, one config (the second sets what the base already has): their trials
    # would be the same runs, reported twice.
    (lambda t: t.split("[[axis]]")[0] + '[[variant]]\nlabel = "a"\nset = {}\n'
     '[[variant]]\nlabel = "b"\nset = { "train.steps" = 3 }\n',
     "variant='b' is not allowed: a config of its own; it has the same config as variant "
     "'a' (drop one, or change what it sets)"),
    (lambda t: t.split("[[axis]]")[0] + '[[variant]]\nlabel = "a"\n'
     'set = { "model.pool" = "avg" }\n[[variant]]\nlabel = "b"\n'
     'set = { "model.pool" = "avg" }\n', "the same config as variant 'a'"),
])
def test_a_bad_plan_is_one_line_naming_the_file_and_key(tmp_path, edit, words):
    path = plan_file(tmp_path, edit(GOOD))
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    message = str(err.value)
    assert "\n" not in message and words in message, message
    assert str(path) in message or "plan" in message


def test_a_bad_axis_value_names_the_variant(tmp_path):
    text = GOOD.replace('field = "model.global_pool"\nvalues = ["max", "avg"]',
                        'field = "model.global_pool"\nvalues = ["max", "median"]')
    with pytest.raises(ConfigError, match="variant 'pool=max,global_pool=median': "
                                          "model.global_pool='median'"):
        load_plan(plan_file(tmp_path, text))


def test_missing_file_and_unknown_builtin_and_scale():
    with pytest.raises(ConfigError, match="plan='nope.toml'.*built-in study name"):
        load_plan("nope.toml")
    with pytest.raises(ConfigError, match="study='pooing'.*pooling"):
        builtin_plan("pooing")
    with pytest.raises(ConfigError, match="scale='huge'"):
        builtin_plan("pooling", "huge")


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_builtin_study_builds_at_every_scale(name, scale):
    plan = builtin_plan(name, scale)
    trials = plan.trials()
    assert plan.question and len(trials) == len(plan.variants) * len(plan.seeds) >= 4
    assert len({t.key for t in trials}) == len(trials)
    size = {"smoke": 16, "cpu": 32, "full": 128}[scale]
    for t in trials:
        backbone = t.config.model.name.startswith("resnet")
        want = 32 if backbone and scale == "smoke" else size
        assert t.config.task.height == want, (t.variant, t.config.task.height)


def test_builtin_questions_cover_the_notebook():
    assert set(BUILTIN) == {"resolution", "pretrained", "pooling", "position", "distractors",
                            "count", "area"}
    pooling = builtin_plan("pooling", "smoke", seeds=2)
    assert len(pooling.variants) == 16 and pooling.seeds == (0, 1)
    assert builtin_plan("position", "cpu").metric == "heldout_mae"
