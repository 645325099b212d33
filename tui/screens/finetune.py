"""Fine-tune a stored run at another resolution: size, steps and learning rate."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cnnprobe.admission import admit
from cnnprobe.config import ConfigError
from cnnprobe.measurement import DEFAULT_WEIGHTS, WEIGHT_WORDS
from cnnprobe.options import finetune_plan, option
from tui.screens.form_dialog import FormDialog
from tui.widgets.field import Field, option_field, text_input

# Engine field names -> this dialog's fields, so the engine's error lands at the right row.
FIELD_OF = {"task.height": "height", "task.width": "width", "task.height/width": "height",
            "resolution": "height", "train.steps": "steps", "train.lr": "lr"}


class FinetuneScreen(FormDialog):
    """Answers {"height", "width", "steps", "lr"} for `finetune_run`."""

    TITLE_TEXT = "Fine-tune at another resolution"
    OK_LABEL = "Fine-tune"

    def __init__(self, record: Any) -> None:
        cfg = record.config
        super().__init__(f"A new run starts from {record.id[:8]}'s "
                         f"{WEIGHT_WORDS[DEFAULT_WEIGHTS].removeprefix('its ')} "
                         f"({cfg.task.name}/{cfg.model.name}, trained at "
                         f"{cfg.task.height}x{cfg.task.width}).")
        self.record = record

    def fields(self) -> list[Field]:
        cfg = self.record.config
        height, width, steps = finetune_plan(cfg)  # the one fine-tune default
        lr = option("finetune", "lr")
        return [option_field(option("finetune", "height"), height, "int"),
                option_field(option("finetune", "width"), width, "int"),
                option_field(option("finetune", "steps"), steps, "int"),
                Field("lr", lr.label, text_input("", f"{cfg.train.lr:g} (as trained)"),
                      "opt_str", help=lr.help_text)]

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        lr = values.get("lr")
        if lr is not None:
            try:
                lr = float(lr)
            except ValueError:
                raise ConfigError("lr", lr, "a number such as 1e-4, or empty") from None
        cfg = self.record.config
        trial = replace(cfg, task=replace(cfg.task, height=values["height"],
                                          width=values["width"]),
                        train=replace(cfg.train, steps=values["steps"],
                                      lr=cfg.train.lr if lr is None else lr))
        try:
            admit(trial, upto="memory")
        except ConfigError as exc:
            raise ConfigError(FIELD_OF.get(exc.field, exc.field), exc.value, exc.allowed) from None
        return {**values, "lr": lr}
