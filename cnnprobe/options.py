"""The options of the commands on a stored run (eval, sweep, resume, fine-tune), each defined
once as a `config.setting()` field, like `RunConfig`'s settings: the CLI flags
(`cli.flags.add_option_flags`), the TUI dialogs (their defaults, labels and help), the
service layer's defaults (`runs`) and the docs table (docs/settings.md) read them here.

A default that depends on the run is None here and computed by one function for every front
end: `resume_steps` and `finetune_plan`. The fine-tune default, decided once: the notebook's
128 -> 300 (the run's size times FINETUNE_FACTOR, at most MAX_SIDE), for a third of the
run's steps (at least 2), at the run's learning rate; the CLI, the TUI and a study's
`finetune` evaluation all use it. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnprobe.config import (
    REGIONS,
    ConfigError,
    RunConfig,
    Setting,
    setting,
    settings_markdown,
    settings_of,
)
from cnnprobe.measurement import DEFAULT_WEIGHTS, WEIGHTS
from cnnprobe.store.records import SWEEP_KINDS

DEVICE_HELP = "auto, cpu, cuda or cuda:N"
WHICH_HELP = ("the last weights (those of the final metrics) or the best checkpoint (lowest "
              "validation MAE)")
PRECISE_BN_HELP = ("recalibrate BatchNorm statistics at these weights first (default: as the "
                   "run was trained, on unless --no-precise-bn)")
FINETUNE_FACTOR = 300 / 128  # the notebook's fine-tune: trained at 128, tuned at 300
FINETUNE_SHARE = 3  # a fine-tune takes a third of its parent's steps
MAX_SIDE = 4096  # the largest image side a dialog offers


@dataclass(frozen=True)
class EvaluateOptions:
    """`cnnprobe eval` and `runs.evaluate_run`."""

    height: int | None = setting(None, "image height (default: the run's)", bounds=(1, None))
    width: int | None = setting(None, "image width (default: the run's)", bounds=(1, None))
    distractors: int | None = setting(None, "extra objects in each image (default: the run's "
                                      "evaluation count)", bounds=(0, None))
    region: str = setting("train", "where objects are placed; heldout needs a quadrant-split "
                          "run", choices=REGIONS)
    n: int = setting(1024, "samples per evaluation", bounds=(1, None), label="samples")
    which: str = setting(DEFAULT_WEIGHTS, WHICH_HELP, choices=WEIGHTS, label="weights")
    precise_bn: bool | None = setting(None, PRECISE_BN_HELP, label="precise BN")
    device: str = setting("auto", DEVICE_HELP)


@dataclass(frozen=True)
class SweepOptions:
    """`cnnprobe sweep`, the TUI's sweep dialog and `runs.sweep_run`."""

    kind: str = setting("resolution", "what to sweep", choices=SWEEP_KINDS)
    resolutions: str | None = setting(None, "sizes: 64,96,128 or start:stop:step (default: "
                                      "64:254:10, the notebook's)", label="resolutions")
    max_distractors: int = setting(8, "distractor sweep: 0..K extra objects", bounds=(0, 64),
                                   label="up to")
    n: int = setting(512, "samples per evaluation", bounds=(1, None), label="samples each")
    which: str = setting(DEFAULT_WEIGHTS, WHICH_HELP, choices=WEIGHTS, label="weights")
    precise_bn: bool | None = setting(None, PRECISE_BN_HELP, label="precise BN")
    device: str = setting("auto", DEVICE_HELP)


@dataclass(frozen=True)
class ResumeOptions:
    """`cnnprobe resume`, the TUI's resume dialog and `runs.resume_run`."""

    steps: int | None = setting(None, "how many more steps to train (default: the rest of its "
                                "planned steps; a finished run, as many as it had)",
                                bounds=(1, None), label="more steps")
    device: str | None = setting(None, f"{DEVICE_HELP} (default: the run's)")


@dataclass(frozen=True)
class FinetuneOptions:
    """`cnnprobe finetune`, the TUI's fine-tune dialog, a study's `finetune` evaluation and
    `runs.finetune_run`."""

    height: int | None = setting(None, "image height (default: the run's times 300/128, the "
                                 "notebook's 128 -> 300)", bounds=(1, None), label="height px")
    width: int | None = setting(None, "image width (default: the run's times 300/128)",
                                bounds=(1, None), label="width px")
    steps: int | None = setting(None, "training steps of the new run (default: a third of the "
                                "run's)", bounds=(1, None))
    lr: float | None = setting(None, "learning rate (default: the run's)",
                               label="learning rate")
    which: str = setting(DEFAULT_WEIGHTS, WHICH_HELP, choices=WEIGHTS, label="weights")
    device: str | None = setting(None, f"{DEVICE_HELP} (default: the run's)")


RESOLUTIONS_ALLOWED = "sizes like 64,96,128 or start:stop:step like 64:256:16"


def parse_resolutions(text: str) -> list[int]:
    """A resolution list as the CLI's --resolutions and the TUI's sweep dialog read it:
    '64,96,128', 'start:stop:step' (stop included when on the step; step 1 when left
    out), or a mix; ConfigError (field `resolutions`) otherwise."""
    values: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if ":" in part:
                bits = [int(b) for b in part.split(":")]
                if len(bits) not in (2, 3) or (len(bits) == 3 and bits[2] < 1):
                    raise ValueError
                start, stop, step = bits[0], bits[1], bits[2] if len(bits) == 3 else 1
                values += range(start, stop + 1, step)
            elif part:
                values.append(int(part))
    except ValueError:
        raise ConfigError("resolutions", text, RESOLUTIONS_ALLOWED) from None
    if not values or min(values) < 1:
        raise ConfigError("resolutions", text, "at least one size of 1 or more, e.g. "
                          "64:256:16")
    return values


COMMANDS: dict[str, type] = {"eval": EvaluateOptions, "sweep": SweepOptions,
                             "resume": ResumeOptions, "finetune": FinetuneOptions}


def option_settings(command: str) -> list[Setting]:
    """The settings of one command's options (section = the command's name)."""
    return settings_of(COMMANDS[command], command)


def option(command: str, name: str) -> Setting:
    return next(st for st in option_settings(command) if st.name == name)


def resume_steps(cfg: RunConfig, steps_done: int, status: str) -> int:
    """The default of `resume --steps`: the rest of the planned steps (a finished run: as
    many as it had)."""
    if status == "finished":
        return cfg.train.total_steps
    return max(1, cfg.train.total_steps - steps_done)


def finetune_plan(cfg: RunConfig, *, height: int | None = None, width: int | None = None,
                  steps: int | None = None) -> tuple[int, int, int]:
    """(height, width, steps) of a fine-tune of a run trained with `cfg`: what is given, the
    default for the rest (see the module docstring); each side on its own."""
    if height is None:
        height = min(MAX_SIDE, round(cfg.task.height * FINETUNE_FACTOR))
    if width is None:
        width = min(MAX_SIDE, round(cfg.task.width * FINETUNE_FACTOR))
    if steps is None:
        steps = max(2, cfg.train.total_steps // FINETUNE_SHARE)
    return height, width, steps


def settings_document() -> str:
    """docs/settings.md: the run settings (config.settings_markdown), then the options."""
    return settings_markdown() + "\n" + options_markdown()


def options_markdown() -> str:
    """The table of every command option for docs/settings.md."""
    lines = ["# Command options", "",
             "The options of the commands on a stored run, as the CLI takes them and the TUI's",
             "dialogs offer them (`cnnprobe.options`). The fine-tune default, the same in the",
             "CLI, the TUI and a study: the run's size times 300/128 (the notebook's 128 -> 300,",
             f"at most {MAX_SIDE} px) for a third of its steps, at its learning rate.", ""]
    for command, kind in COMMANDS.items():
        lines += [f"## {command}", "", " ".join((kind.__doc__ or "").split()), "",
                  "| option | flag | default | what |", "|---|---|---|---|"]
        for st in option_settings(command):
            what = st.help_text + (f" ({', '.join(st.choices)})" if st.choices else "")
            default = "(see what)" if st.default is None else f"`{st.default}`"
            lines.append(f"| `{st.name}` | `{st.flag}` | {default} | {what} |")
        lines.append("")
    return "\n".join(lines)


__all__ = ["COMMANDS", "DEVICE_HELP", "EvaluateOptions", "FINETUNE_FACTOR", "FinetuneOptions",
           "ResumeOptions", "SweepOptions", "finetune_plan", "option",
           "option_settings", "options_markdown", "resume_steps", "settings_document"]
