"""The model pane: the network and its options, the training settings, and presets."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Checkbox, Select, Static

from cnnprobe.config import (
    GLOBAL_POOLS,
    INPUT_NORMS,
    LOSSES,
    OPTIMIZERS,
    POOLS,
    PRESETS,
    ConfigError,
    RunConfig,
)
from cnnprobe.models import MODELS
from tui.widgets.field import Field, choice, text_input
from tui.widgets.form_pane import FormPane


def short_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def device_choices() -> list[str]:
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return names


class ModelPane(FormPane):
    """Model from the registry with its options, then loss, optimizer and run length."""

    BORDER_TITLE = "2 Model & training"

    class PresetChosen(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, cfg: RunConfig, *, preset: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._initial = cfg
        self._preset = preset
        self.model_rows: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        m, tr = self._initial.model, self._initial.train
        yield Field("preset", "preset", Select([(p, p) for p in PRESETS], prompt="fill from…",
                                               value=self._preset or Select.NULL,
                                               compact=True, id="preset"), "choice",
                    help="fill in a preset's resolution and training settings")
        yield Field("model.name", "model", choice(list(MODELS), m.name), "choice")
        yield Static("", id="model-info", markup=False)
        yield Field("model.pretrained", "pretrained", Checkbox("ImageNet weights", m.pretrained),
                    "bool", help="torchvision backbones only")
        yield Field("model.weights_path", "weights", text_input(m.weights_path, "download cache"),
                    "opt_str", help="a state dict file instead of the download cache")
        yield Field("model.freeze_preconv", "freeze 1x1", Checkbox("preconv", m.freeze_preconv),
                    "bool", help="seednet: really freeze the 1x1 preconv")
        yield Field("model.pool", "pooling", choice(POOLS, m.pool), "choice",
                    help="plaincnn: downsampling between blocks")
        yield Field("model.global_pool", "global pool", choice(GLOBAL_POOLS, m.global_pool),
                    "choice")
        yield Field("model.depth", "depth", text_input(m.depth), "int")
        yield Field("model.width", "channels", text_input(m.width), "int")
        yield Field("model.input_norm", "input norm", choice(INPUT_NORMS, m.input_norm),
                    "choice", help="auto: task standardisation for conv nets, imagenet with "
                    "loaded weights, none for seednet/coordmlp")
        yield Field("train.loss", "loss", choice(LOSSES, tr.loss), "choice")
        yield Field("train.optimizer", "optimizer", choice(OPTIMIZERS, tr.optimizer), "choice")
        yield Field("train.lr", "learning rate", text_input(tr.lr), "float")
        yield Field("train.weight_decay", "weight decay", text_input(tr.weight_decay), "float")
        yield Field("train.batch_size", "batch size", text_input(tr.batch_size), "int")
        yield Field("train.steps", "steps", text_input(tr.steps, "empty: epochs"), "opt_int",
                    help="training steps; wins over epochs when set")
        yield Field("train.epochs", "epochs", text_input(tr.epochs), "opt_int")
        yield Field("train.samples_per_epoch", "samples/epoch",
                    text_input(tr.samples_per_epoch), "int")
        yield Field("train.eval_every", "eval every", text_input(tr.eval_every, "0 = auto"),
                    "int", help="validate every N steps; 0: ten times a run")
        yield Field("train.val_size", "val samples", text_input(tr.val_size), "int")
        yield Field("train.seed", "seed", text_input(tr.seed), "int")
        devices = device_choices()
        if tr.device not in devices:
            devices.append(tr.device)
        yield Field("train.device", "device", choice(devices, tr.device), "choice")
        yield Field("train.amp", "bf16 autocast", Checkbox("on CUDA", tr.amp), "bool")
        yield Field("train.precise_bn", "precise BN", Checkbox("recalibrate", tr.precise_bn),
                    "bool", help="recompute BatchNorm statistics at the weights before each "
                    "evaluation")
        yield Field("train.bn_samples", "BN samples", text_input(tr.bn_samples), "int",
                    help="training samples the BatchNorm recalibration uses")

    def on_mount(self) -> None:
        self.update_visibility()

    def fields(self) -> list[Field]:
        return [f for f in super().fields() if f.key != "preset"]

    def set_model_rows(self, rows: list[dict]) -> None:
        """Parameter counts arrived: label the model choices with them."""
        self.model_rows = {r["name"]: r for r in rows}
        select = self.query_one("#f-model-name Select", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([(f"{r['name']} · {short_count(r['params'])}", r["name"])
                                for r in rows])
            select.value = current
        self.update_visibility()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset":
            event.stop()
            if event.value is not Select.NULL:
                self.post_message(self.PresetChosen(str(event.value)))
            return
        super().on_select_changed(event)

    def _edited(self) -> None:
        self.update_visibility()
        super()._edited()

    def _value(self, key: str) -> Any:
        f = self.field(key)
        try:
            return f.value() if f else None
        except ConfigError:
            return None

    def update_visibility(self) -> None:
        name = self._value("model.name") or "seednet"
        spec = MODELS.get(name)
        pretrainable = bool(spec and spec.supports_pretrained)
        shown = {
            "model.pretrained": pretrainable,
            "model.weights_path": pretrainable,
            "model.freeze_preconv": name == "seednet",
            "model.pool": name == "plaincnn",
            "model.global_pool": name in ("plaincnn", "coordconv"),
            "model.depth": name in ("plaincnn", "coordconv"),
            "model.width": name in ("plaincnn", "coordconv"),
            "model.input_norm": not (spec and spec.needs_coord_channels),
            "train.bn_samples": self._value("train.precise_bn") is not False,
            "train.epochs": self._value("train.steps") is None,
            "train.samples_per_epoch": self._value("train.steps") is None,
        }
        for key, visible in shown.items():
            f = self.field(key)
            if f is not None:
                f.display = visible
        info = self.query_one("#model-info", Static)
        row = self.model_rows.get(name)
        if spec is None:
            info.update("")
        elif row is None:
            info.update(spec.description)
        else:
            info.update(f"{row['params']:,} parameters, min {row['min_size']}px. "
                        f"{spec.description}")
