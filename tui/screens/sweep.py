"""Sweep a stored run over resolutions or distractor counts."""

from __future__ import annotations

from typing import Any

from cnnprobe.config import DEFAULT_RESOLUTIONS, ConfigError
from cnnprobe.measurement import DEFAULT_WEIGHTS, WEIGHT_WORDS
from cnnprobe.models import MODELS
from cnnprobe.options import SweepOptions, option, parse_resolutions
from tui.screens.form_dialog import FormDialog
from tui.widgets.field import Field, option_field, text_input


def default_resolutions(trained_at: int, min_size: int) -> str:
    """The notebook's 64..254 for a 128 px run; else half to twice the training size."""
    if trained_at == 128:
        return f"{DEFAULT_RESOLUTIONS[0]}:{DEFAULT_RESOLUTIONS[-1]}:10"
    lo = max(min_size, 4, trained_at // 2)
    step = max(1, trained_at // 8)
    return f"{lo}:{trained_at * 2}:{step}"


class SweepScreen(FormDialog):
    """Answers {"resolutions" | "max_distractors", "n"} for `sweep_run`."""

    OK_LABEL = "Sweep"

    def __init__(self, record: Any, kind: str) -> None:
        self.record, self.kind = record, kind
        self.TITLE_TEXT = ("Resolution sweep" if kind == "resolution" else "Distractor sweep")
        cfg = record.config
        super().__init__(f"{record.id[:8]} ({record.task}/{record.model}, trained at "
                         f"{record.resolution} with {cfg.task.distractors} distractors), "
                         f"at {WEIGHT_WORDS[DEFAULT_WEIGHTS]}. The result is saved with "
                         "the run.")

    def fields(self) -> list[Field]:
        cfg = self.record.config
        if self.kind == "resolution":
            spec = MODELS.get(cfg.model.name)
            min_size = spec.min_size(cfg.model) if spec else 1
            first = Field("resolutions", option("sweep", "resolutions").label,
                          text_input(default_resolutions(cfg.task.height, min_size)), "str",
                          help="square sizes: 64:254:10 or 16,24,32 (as the CLI's "
                               "--resolutions)")
        else:
            first = option_field(option("sweep", "max_distractors"), SweepOptions.max_distractors)
        return [first, option_field(option("sweep", "n"), SweepOptions.n)]

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        n = option("sweep", "n")
        if values["n"] < n.bounds[0]:
            raise ConfigError("n", values["n"], n.allowed)
        if self.kind == "resolution":
            sizes = parse_resolutions(values["resolutions"])
            cfg = self.record.config
            spec = MODELS.get(cfg.model.name)
            need = max(4, spec.min_size(cfg.model) if spec else 1)
            small = [s for s in sizes if s < need]
            if small or max(sizes) > 4096:
                raise ConfigError("resolutions", values["resolutions"],
                                  f"sizes from {need} to 4096 for {cfg.model.name}")
            return {"resolutions": sizes, "n": values["n"]}
        most = option("sweep", "max_distractors")
        if not most.bounds[0] <= values["max_distractors"] <= most.bounds[1]:
            raise ConfigError("max_distractors", values["max_distractors"], most.allowed)
        return values
