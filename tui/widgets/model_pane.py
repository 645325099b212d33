"""The model pane: the network and its options, the training settings, and presets."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Select, Static

from cnnprobe.config import PRESETS, ConfigError, RunConfig, settings
from cnnprobe.models import MODELS
from tui.widgets.field import Field, choice, setting_field
from tui.widgets.form_pane import FormPane


def short_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def device_choices(engine_ready: bool = True) -> list[str]:
    """The devices this machine has. Before the engine has loaded only auto and cpu (asking
    CUDA needs torch); the app fills in the CUDA devices when it has (set_devices)."""
    if not engine_ready:
        return ["auto", "cpu"]
    from cnnprobe.admission import device_names

    return device_names()


class ModelPane(FormPane):
    """Model from the registry with its options, then loss, optimizer and run length."""

    BORDER_TITLE = "2 Model & training"

    class PresetChosen(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    SECTIONS = ("model", "train")

    def __init__(self, cfg: RunConfig, *, preset: str | None = None, **kw: Any) -> None:
        super().__init__(cfg, **kw)
        self._preset = preset
        self.model_rows: dict[str, dict] = {}
        self._devices: list[str] | None = None  # set_devices before the fields are there

    def compose_fields(self) -> ComposeResult:
        m, tr = self._config.model, self._config.train
        yield Field("preset", "preset", Select([(p, p) for p in PRESETS], prompt="fill from…",
                                               value=self._preset or Select.NULL,
                                               compact=True, id="preset"), "choice",
                    help="fill in a preset's resolution and training settings")
        yield Field("model.name", "model", choice(list(MODELS), m.name), "choice")
        yield Static("", id="model-info", markup=False)
        for section, values in (("model", m), ("train", tr)):
            for st in settings(section):
                if not st.form:
                    continue
                value = getattr(values, st.name)
                if st.key == "train.device":  # the devices this machine has
                    devices = self._devices or device_choices(engine_ready=False)
                    yield setting_field(st, value, choices=devices + (
                        [value] if value not in devices else []))
                else:
                    yield setting_field(st, value)

    def on_fields_mounted(self) -> None:
        if self.model_rows:
            self.set_model_rows(list(self.model_rows.values()))
        self.update_visibility()

    def fields(self) -> list[Field]:
        return [f for f in super().fields() if f.key != "preset"]

    def set_model_rows(self, rows: list[dict]) -> None:
        """Parameter counts arrived: label the model choices with them."""
        self.model_rows = {r["name"]: r for r in rows}
        found = self.query("#f-model-name Select")
        if not self.filled or not found:  # labelled when the fields are mounted
            return
        select = found.first(Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([(f"{r['name']} · {short_count(r['params'])}", r["name"])
                                for r in rows])
            select.value = current
        self.update_visibility()

    def set_devices(self, devices: list[str]) -> None:
        """The engine has loaded: offer every device torch sees, keeping the choice."""
        self._devices = devices
        f = self.field("train.device")
        if f is None:
            return
        select = f.control
        current = select.value
        names = devices + ([current] if isinstance(current, str) and current not in devices
                           else [])
        with self.prevent(Select.Changed):
            select.set_options([(n, n) for n in names])
            select.value = current

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset":
            event.stop()
            if event.value is not Select.NULL:
                self.post_message(self.PresetChosen(str(event.value)))
            return
        super().on_select_changed(event)

    def edited(self) -> None:
        self.update_visibility()

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
        found = self.query("#model-info")
        if not self.filled or not found:
            return
        info = found.first(Static)
        row = self.model_rows.get(name)
        if spec is None:
            info.update("")
        elif row is None:
            info.update(spec.description)
        else:
            info.update(f"{row['params']:,} parameters, min {row['min_size']}px. "
                        f"{spec.description}")
