"""Command-line flags for every field of the run config, and the config they describe."""

from __future__ import annotations

import argparse
from typing import Any

from cnnprobe.config import PRESETS, SECTIONS, RunConfig, Setting, apply_preset, settings
from cnnprobe.measurement import DEFAULT_WEIGHTS, WEIGHTS
from cnnprobe.options import PRECISE_BN_HELP, WHICH_HELP, option_settings


def _flag(st: Setting) -> str:
    """--task and --model name the task and the model; every other setting its own flag."""
    return f"--{st.section}" if st.name == "name" else st.flag


def _dest(section: str, name: str) -> str:
    return f"{section}__{name}"


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag for every setting of the task, model and training configs (config.settings:
    the help, choices and defaults are defined once, on the dataclass fields)."""
    p.add_argument("--preset", choices=sorted(PRESETS), help="fill in a preset's settings first")
    p.add_argument("--resolution", type=int, metavar="N", help="set --height and --width to N")
    for section in SECTIONS:
        group = p.add_argument_group(f"{section} settings")
        for st in settings(section):
            kw: dict[str, Any] = {"dest": _dest(section, st.name), "default": argparse.SUPPRESS}
            base = st.kind.removeprefix("opt_")
            if base == "bool":
                kw["action"] = argparse.BooleanOptionalAction
            elif base == "int":
                kw["type"] = int
            elif base == "float":
                kw["type"] = float
            if st.choices:
                kw["choices"] = st.choices
            elif "action" not in kw:
                kw["metavar"] = "N" if base == "int" else st.name.split("_")[-1].upper()
            kw["help"] = f"{st.help_text} (default: {st.default})"
            group.add_argument(_flag(st), **kw)


def add_weights_flags(p: argparse.ArgumentParser, *, precise_bn: bool = True) -> None:
    """--which (the same default everywhere) and, for evaluations, --precise-bn."""
    p.add_argument("--which", choices=WEIGHTS, default=DEFAULT_WEIGHTS,
                   help=f"{WHICH_HELP} (default: {DEFAULT_WEIGHTS})")
    if precise_bn:
        p.add_argument("--precise-bn", action=argparse.BooleanOptionalAction, default=None,
                       help=PRECISE_BN_HELP)


def add_option_flags(p: argparse.ArgumentParser, command: str, *,
                     types: dict[str, Any] | None = None, metavars: dict[str, str] | None = None,
                     skip: tuple[str, ...] = ()) -> None:
    """One flag for every option of a command on a stored run (`cnnprobe.options`: the help,
    choices and defaults are defined once, on the dataclass fields). `types` parses a flag's
    text its own way (--resolutions); a default of None is the run's, as the help says."""
    types, metavars = types or {}, metavars or {}
    for st in option_settings(command):
        if st.name in skip:
            continue
        kw: dict[str, Any] = {"dest": st.name, "default": st.default}
        base = st.kind.removeprefix("opt_")
        if base == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = types.get(st.name, {"int": int, "float": float}.get(base, str))
        if st.choices:
            kw["choices"] = st.choices
        elif "action" not in kw and st.name in metavars:
            kw["metavar"] = metavars[st.name]
        said = st.default is None or "(default:" in st.help_text
        kw["help"] = st.help_text if said else f"{st.help_text} (default: {st.default})"
        p.add_argument(st.flag, **kw)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the preset, then the flags the user gave."""
    cfg = RunConfig()
    if getattr(args, "preset", None):
        cfg = apply_preset(cfg, args.preset)
    data = cfg.to_dict()
    res = getattr(args, "resolution", None)
    if res is not None:
        data["task"]["height"] = data["task"]["width"] = res
    for key, value in vars(args).items():
        if "__" in key:
            section, name = key.split("__", 1)
            data[section][name] = value
    if "train__steps" not in vars(args) and "train__epochs" in vars(args):
        data["train"]["steps"] = None  # --epochs given alone: the preset's steps give way
    return RunConfig.from_dict(data)


def first_given(*values: Any) -> Any:
    """The first value the user gave: None is "not given", 0 is a value (and is checked)."""
    return next((v for v in values if v is not None), None)
