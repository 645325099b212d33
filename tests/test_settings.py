"""One definition per setting (config.setting): the CLI flags, the TUI form and the docs
table are derived from it, so a new option is one field."""

from __future__ import annotations

from pathlib import Path

from cnnprobe.cli import build_parser
from cnnprobe.config import SECTIONS, settings
from tui.app import CnnprobeApp
from tui.widgets.field import Field

ROOT = Path(__file__).resolve().parents[1]


def _train_help() -> str:
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    return " ".join(sub.format_help().split())


def test_every_setting_is_a_flag_with_its_help_and_choices():
    text = _train_help()
    for section in SECTIONS:
        for st in settings(section):
            flag = f"--{section}" if st.name == "name" else st.flag
            assert flag in text, st.key
            assert " ".join(st.help_text.split()) in text, st.key
            for c in st.choices:
                assert c in text, (st.key, c)


def test_the_docs_table_is_generated_from_the_settings():
    from cnnprobe.options import settings_document

    assert (ROOT / "docs" / "settings.md").read_text() == settings_document(), (
        "docs/settings.md is stale: regenerate it as its header says")


async def test_the_tui_form_has_a_row_for_every_form_setting(tmp_path):
    app = CnnprobeApp(tmp_path / "store", watch_store=False)
    async with app.run_test(size=(140, 42)) as pilot:
        while not app.forms_filled:  # they fill in after the first frame
            await pilot.pause(0.05)
        rows = {f.key: f for f in app.query(Field) if f.key != "preset"}
        for section in SECTIONS:
            for st in settings(section):
                if st.form:
                    assert st.key in rows, st.key
                    assert rows[st.key].label == st.label and rows[st.key].help == st.help_text
                elif st.name != "name":
                    assert st.key not in rows, st.key


def test_declared_bounds_and_choices_are_what_validation_enforces():
    from dataclasses import replace

    import pytest

    from cnnprobe.config import ConfigError, RunConfig, validate

    for section in SECTIONS:
        for st in settings(section):
            base = RunConfig()
            bad = []
            if st.bounds is not None:
                lo, hi = st.bounds
                bad += [lo - 1] + ([hi + 1] if hi is not None else [])
            if st.choices:
                bad.append("no-such-choice")
            for value in bad:
                part = replace(getattr(base, section), **{st.name: value})
                with pytest.raises(ConfigError) as err:
                    validate(replace(base, **{section: part}))
                assert err.value.field == st.key, (st.key, value, err.value)
