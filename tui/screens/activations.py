"""Look inside a stored run: each layer's output for one sample, and per-layer probes.

The layer list on the left moves through the input and every layer of interest; the
selected one is drawn large on the right (cnnprobe.report.heatmap). Capture, the linear probes
and the export each run in a thread worker that only calls the engine
(`cnnprobe.runs.inspect_run`, `save_inspection`, `inspect_export.export_inspection`) and
posts the result; a failure (a damaged checkpoint, a full disk) becomes a line on the
screen and a notification, never a dead app.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList, ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from cnnprobe.config import ConfigError
from cnnprobe.errors import first_line
from cnnprobe.measurement import DEFAULT_WEIGHTS
from cnnprobe.report.files import ExportError
from cnnprobe.report.formatting import num
from cnnprobe.report.heatmap import CMAPS, layer_header, truecolor_available
from cnnprobe.shown import shown
from cnnprobe.store import RunStore, StoreError
from tui.widgets.activation_view import ActivationView, ViewSettings
from tui.widgets.probe_table import ProbePanel

if TYPE_CHECKING:
    import pandas as pd

    from cnnprobe.runs import Inspection
    from cnnprobe.store import RunRecord

# Footer groups: "kj Layer  [] Sample  +- Channels  pgup pgdn Page" fit an 80-column footer
# better than a label per key; the palette still lists each key on its own.
LAYER = Binding.Group("Layer", compact=True)
SAMPLE = Binding.Group("Sample", compact=True)
CHANNELS = Binding.Group("Channels", compact=True)
PAGE = Binding.Group("Page")
CHANNEL_STEPS = (8, 16, 32, 64)
NARROW_WIDTH = 100
KEY_NAMES = {"left_square_bracket": "[", "right_square_bracket": "]", "plus": "+",
             "minus": "-", "equals_sign": "=", "pageup": "PgUp", "pagedown": "PgDn"}


def key_names(binding: Binding) -> str:
    """"j / down" for a binding's keys, as a person types them."""
    return " / ".join(KEY_NAMES.get(k, k) for k in binding.key.split(","))


def error_line(exc: BaseException) -> str:
    """The first line of an error; the engine's own (store, config, export) already say what
    to do, anything else is named by its type."""
    if isinstance(exc, (ConfigError, StoreError, ExportError, OSError)):
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first_line(exc)


# -- what the workers post
class InspectionReady(Message):
    """A sample went through the model: its activations (and the run's stored probes)."""

    def __init__(self, generation: int, record: RunRecord, inspection: Inspection,
                 stored: pd.DataFrame | None, stored_info: dict | None) -> None:
        super().__init__()
        self.generation, self.record, self.inspection = generation, record, inspection
        self.stored, self.stored_info = stored, stored_info


class ProbeProgress(Message):
    """Batches of probe samples done; a newer one replaces an older one still queued."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done, self.total = done, total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ProbeProgress)


class ProbesReady(Message):
    """The probe worker returned: a table (saved with the run) or cancelled."""

    def __init__(self, table: pd.DataFrame | None, cancelled: bool, saved: bool) -> None:
        super().__init__()
        self.table, self.cancelled, self.saved = table, cancelled, saved


class InspectionExported(Message):
    """The PNGs, activations.npz and probe files were written."""

    def __init__(self, out: Path, files: list[Path]) -> None:
        super().__init__()
        self.out, self.files = out, files


class ActivationsCommands(Provider):
    """The screen's keys in the command palette (the app's own list knows only its keys)."""

    def _commands(self) -> list[tuple[str, str, Any]]:
        screen = self.screen
        if not isinstance(screen, ActivationsScreen):
            return []
        return [(f"Activations: {b.description}", f"{b.tooltip} (key {key_names(b)})",
                 partial(screen.run_action, b.action)) for b in screen.BINDINGS]

    async def discover(self) -> Hits:
        for title, help_text, command in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, command in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, help=help_text)


class ActivationsScreen(ModalScreen[None]):
    """One stored run's layers for one validation sample (or a seeded fresh draw).

    Modal, though it fills the terminal: the lab's own keys (s sweeps, 1-5 focus panes)
    must not act on the screen underneath while this one is up.
    """

    BINDINGS = [
        Binding("k,up", "layer(-1)", "Previous layer", id="activations.prev_layer",
                tooltip="the layer before (up the list)", group=LAYER),
        Binding("j,down", "layer(1)", "Next layer", id="activations.next_layer",
                tooltip="the layer after (down the list)", group=LAYER),
        Binding("home", "layer_at(0)", "First layer", show=False,
                id="activations.first_layer", tooltip="the input"),
        Binding("end", "layer_at(-1)", "Last layer", show=False, id="activations.last_layer",
                tooltip="the last layer (the output)"),
        Binding("left_square_bracket", "sample(-1)", "Previous sample",
                id="activations.prev_sample", group=SAMPLE,
                tooltip="previous validation sample (a fresh draw: previous seed)"),
        Binding("right_square_bracket", "sample(1)", "Next sample", id="activations.next_sample",
                tooltip="next validation sample (a fresh draw: next seed)", group=SAMPLE),
        Binding("plus,equals_sign", "channels(1)", "More channels",
                id="activations.more_channels", group=CHANNELS,
                tooltip="show more channels at once (8, 16, 32, 64)"),
        Binding("minus", "channels(-1)", "Fewer channels", id="activations.fewer_channels",
                tooltip="show fewer channels at once, drawn larger", group=CHANNELS),
        Binding("pageup", "page(-1)", "Previous channels", id="activations.prev_page",
                tooltip="the previous page of channels", group=PAGE),
        Binding("pagedown", "page(1)", "Next channels", id="activations.next_page",
                tooltip="the next page of channels", group=PAGE),
        Binding("n", "normalize", "Norm", id="activations.normalize",
                tooltip="colour range per channel or per layer"),
        Binding("p", "probes", "Probes", id="activations.probes",
                tooltip="fit a linear probe per layer, saved with the run (esc stops)"),
        Binding("v", "probe_view", "Probe view", id="activations.probe_view",
                tooltip="probe results: table and plot, table, plot, hidden"),
        Binding("x", "export", "Export", id="activations.export",
                tooltip="write a PNG per layer, activations.npz and the probe table"),
        Binding("r", "resample", "Resample", id="activations.resample",
                tooltip="shrink maps by peak (keeps single-pixel markers) or area average"),
        Binding("c", "cmap", "Colours", id="activations.cmap",
                tooltip="next colour map (viridis, magma, gray)"),
        Binding("w", "which", "Checkpoint", id="activations.which", show=False,
                tooltip="look at the other checkpoint: best or last"),
        Binding("escape", "back", "Back", id="activations.back",
                tooltip="close; while the probes run, stop them"),
        Binding("q", "close", "Close", id="activations.close", show=False,
                tooltip="close the activations (stops running probes)"),
    ]
    COMMANDS = {ActivationsCommands}
    AUTO_FOCUS = None
    CSS_PATH = "../activations.tcss"

    def __init__(self, store: RunStore, run_id: str, *, sample: int | None = 0, seed: int = 0,
                 which: str = DEFAULT_WEIGHTS, device: str = "auto", n_train: int = 512,
                 n_test: int = 256, export_dir: str | Path | None = None,
                 truecolor: bool | None = None, channels: int = 32) -> None:
        super().__init__()
        self.store, self.run_id = store, run_id
        self.sample, self.seed, self.which, self.device = sample, seed, which, device
        self.n_train, self.n_test = n_train, n_test
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.truecolor = truecolor  # None: from the terminal's colour system
        self.channels = channels
        self.channel_offset = 0
        self.normalize = "channel"
        self.resample = "peak"
        self.cmap = "viridis"
        self.layer_index = 0
        self.record: RunRecord | None = None
        self.inspection: Inspection | None = None
        self.probe_cancel: threading.Event | None = None
        self.is_loading = False
        self.error = ""
        self.exported_to: Path | None = None
        self._generation = 0
        self._stored_read = False

    # -- layout
    def compose(self) -> ComposeResult:
        yield Static("", id="act-run", markup=False)
        yield Static("", id="act-layer", markup=False)
        yield Static("", id="act-settings", markup=False)
        yield Static("", id="act-error", markup=False)
        # Keys belong to the screen: a focused list or scroll would take up/down/PgUp.
        layer_list, scroll = OptionList(id="act-layers"), VerticalScroll(id="act-scroll")
        layer_list.can_focus = scroll.can_focus = False
        with Horizontal(id="act-body"):
            yield layer_list
            with scroll:
                yield ActivationView(id="act-view")
        yield ProbePanel(id="act-probes")
        with Horizontal(id="act-progress"):
            yield Label("", id="act-progress-label")
            yield ProgressBar(id="act-progress-bar", show_eta=False)
        yield Footer(compact=True)

    @property
    def view(self) -> ActivationView:
        return self.query_one(ActivationView)

    @property
    def probes(self) -> ProbePanel:
        return self.query_one(ProbePanel)

    @property
    def probe_table(self) -> pd.DataFrame | None:
        """The probes shown: made here, or stored with the run by an earlier look."""
        return self.probes.table

    def on_mount(self) -> None:
        self.apply_layout(self.app.size.width)
        self.view.show(None, self.settings(), "loading…")
        self.load()

    def on_unmount(self) -> None:
        if self.probe_cancel is not None:
            self.probe_cancel.set()

    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout(event.size.width)

    def apply_layout(self, width: int) -> None:
        self.set_class(width < NARROW_WIDTH, "-narrow")
        self.probes.set_narrow(width < NARROW_WIDTH)

    # -- capture, in a worker
    def load(self) -> None:
        """Run the current sample through the model (the result arrives as a message)."""
        self._generation += 1
        self.is_loading = True
        self.update_run_line()
        self._capture_worker(self.sample, self.seed, self._generation, not self._stored_read)

    def worker_store(self) -> RunStore:
        """A store of this thread's own, closed when the worker is done with it (a thread's
        SQLite connection stays open until its store closes)."""
        return RunStore(self.store.root)

    @work(thread=True, exclusive=True, exit_on_error=False, group="activations-capture",
          description="capture activations")
    def _capture_worker(self, sample: int | None, seed: int, generation: int,
                        with_stored: bool) -> None:
        from cnnprobe.runs import inspect_run

        with self.worker_store() as store:
            record = store.get(self.run_id)
            insp = inspect_run(store, self.run_id, sample=sample, seed=seed, which=self.which,
                               probes=False, device=self.device, save=False)
            stored = store.probes(self.run_id) if with_stored else None
            info = store.probes_info(self.run_id) if stored is not None else None
        if not get_current_worker().is_cancelled:
            self.post_message(InspectionReady(generation, record, insp, stored, info))

    def on_inspection_ready(self, message: InspectionReady) -> None:
        if message.generation != self._generation:
            return  # a sample the user has already moved past
        old = self.layer_names()
        current = old[self.layer_index] if old else None
        self.is_loading = False
        self.record, self.inspection = message.record, message.inspection
        self.clear_error()
        names = self.layer_names()
        if names != old:
            self.fill_layer_list()
            self.layer_index = names.index(current) if current in names else 0
        if message.stored is not None and self.probe_table is None:
            o = (message.stored_info or {}).get("options", {})
            self.probes.show(message.stored, f"stored with the run ({o.get('n_train', '?')} "
                             f"fit, {o.get('n_test', '?')} scored, {o.get('which', '?')} "
                             "checkpoint)")
        self._stored_read = True
        self.update_run_line()
        self.redraw()

    # -- what is shown
    def layer_names(self) -> list[str]:
        return [] if self.inspection is None else [a.name for a in self.inspection.activations]

    def fill_layer_list(self) -> None:
        option_list = self.query_one("#act-layers", OptionList)
        option_list.clear_options()
        acts = self.inspection.activations if self.inspection else []
        option_list.add_options(
            [f"{i:>2} {a.name} {'×'.join(str(s) for s in a.shape)}" for i, a in enumerate(acts)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "act-layers":
            self.select_layer(event.option_index)

    def settings(self) -> ViewSettings:
        colour = self.truecolor
        if colour is None:  # the terminal the app draws on, not this process's stdout
            colour = truecolor_available(self.app.console)
        return ViewSettings(self.channels, self.channel_offset, self.normalize, self.resample,
                            self.cmap, colour)

    def update_run_line(self) -> None:
        rec, insp = self.record, self.inspection
        where = (f"validation sample {self.sample}" if self.sample is not None
                 else f"fresh draw (seed {self.seed})")
        if rec is None or insp is None:
            state = f"loading {where}…" if self.is_loading else "could not be loaded"
            text = f"run {self.run_id[:8]}, {self.which} checkpoint: {state}"
        else:
            cfg = rec.config
            if insp.sample is not None:
                where = f"validation sample {insp.sample} of {cfg.train.val_size}"
            err = abs(insp.prediction - insp.label)
            text = (f"{rec.short_id} {shown(rec.name)} · {insp.which} checkpoint, step "
                    f"{insp.step} · "
                    f"{where}: label {num(insp.label)}, prediction {num(insp.prediction)} "
                    f"(error {num(err)})")
            if self.is_loading:
                text += " · loading…"
        self.query_one("#act-run", Static).update(Text(text))  # not read as markup

    def redraw(self) -> None:
        """The header, the settings line and the drawing of the selected layer."""
        if self.inspection is None:
            return
        acts = self.inspection.activations
        self.layer_index = max(0, min(self.layer_index, len(acts) - 1))
        act = acts[self.layer_index]
        self.query_one("#act-layer", Static).update(
            f"layer {self.layer_index}/{len(acts) - 1}  {layer_header(act)}")
        s = self.settings()
        self.view.show(act, s)
        shown = self.view.shown_range()
        if act.kind == "map":
            what = (f"channels {shown.start}-{shown.stop - 1} of {act.shape[0]}" if shown
                    else f"no channels from {self.channel_offset}")
            what += f" (up to {self.channels})"
        else:
            what = f"{act.shape[0]} values as bars"
        colour = "true colour" if s.truecolor else "shades (no true colour)"
        self.query_one("#act-settings", Static).update(
            f"{what} · norm: per-{self.normalize} · resample: {self.resample} · "
            f"{self.cmap} · {colour}")
        option_list = self.query_one("#act-layers", OptionList)
        if option_list.option_count and option_list.highlighted != self.layer_index:
            option_list.highlighted = self.layer_index

    def select_layer(self, index: int) -> None:
        if index != self.layer_index:
            self.layer_index, self.channel_offset = index, 0
        self.redraw()

    # -- errors
    def show_error(self, text: str) -> None:
        self.error = text
        line = self.query_one("#act-error", Static)
        line.update(text)
        line.display = True
        self.notify(text, title="activations", severity="error", timeout=10)

    def clear_error(self) -> None:
        self.error = ""
        self.query_one("#act-error", Static).display = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        reason = error_line(event.worker.error)
        group = event.worker.group
        if group == "activations-capture":
            self.is_loading = False
            self.update_run_line()
            other = "last" if self.which == "best" else "best"
            self.show_error(f"could not look inside run {self.run_id[:8]}: {reason} "
                            f"(w: try the {other} checkpoint)")
            if self.inspection is None:
                self.view.show(None, self.settings(), "nothing to show: see the error above")
        elif group == "activations-probes":
            self.probe_cancel = None
            self.query_one("#act-progress").display = False
            self.show_error(f"the linear probes could not run: {reason}")
        elif group == "activations-export":
            self.show_error(f"export failed: {reason}")

    # -- keys
    def action_layer(self, delta: int) -> None:
        n = len(self.layer_names())
        if n:
            self.select_layer(max(0, min(n - 1, self.layer_index + delta)))

    def action_layer_at(self, index: int) -> None:
        n = len(self.layer_names())
        if n:
            self.select_layer(index % n)

    def action_sample(self, delta: int) -> None:
        if self.sample is None:
            self.seed = max(0, self.seed + delta)
        else:
            size = self.record.config.train.val_size if self.record else None
            self.sample = self.sample + delta
            self.sample = self.sample % size if size else max(0, self.sample)
        self.load()

    def action_which(self) -> None:
        self.which = "last" if self.which == "best" else "best"
        self.notify(f"the {self.which} checkpoint", timeout=2)
        self.load()

    def action_channels(self, delta: int) -> None:
        steps = CHANNEL_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.channels))
        self.channels = steps[max(0, min(len(steps) - 1, i + delta))]
        self.channel_offset = (self.channel_offset // self.channels) * self.channels
        self.redraw()

    def action_page(self, delta: int) -> None:
        act = self.current_activation()
        if act is None or act.kind != "map":
            self.notify("this layer is a vector: it has no channel pages", timeout=2)
            return
        last = ((act.shape[0] - 1) // self.channels) * self.channels
        self.channel_offset = max(0, min(last, self.channel_offset + delta * self.channels))
        self.redraw()

    def action_normalize(self) -> None:
        self.normalize = "layer" if self.normalize == "channel" else "channel"
        self.redraw()

    def action_resample(self) -> None:
        self.resample = "area" if self.resample == "peak" else "peak"
        self.redraw()

    def action_cmap(self) -> None:
        names = list(CMAPS)
        self.cmap = names[(names.index(self.cmap) + 1) % len(names)]
        self.redraw()

    def current_activation(self):
        if self.inspection is None:
            return None
        return self.inspection.activations[self.layer_index]

    def action_back(self) -> None:
        if self.probe_cancel is not None:
            self.probe_cancel.set()
            self.query_one("#act-progress-label", Label).update("stopping the probes…")
            return
        self.dismiss(None)

    def action_close(self) -> None:
        if self.probe_cancel is not None:
            self.probe_cancel.set()
        self.dismiss(None)

    # -- linear probes, in a worker
    def action_probes(self) -> None:
        if self.probe_cancel is not None:
            self.notify("the probes are already running (esc stops them)", timeout=3)
            return
        self.probe_cancel = threading.Event()
        self.query_one("#act-progress-label", Label).update("linear probes: starting…")
        self.query_one("#act-progress-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#act-progress").display = True
        self._probe_worker(self.sample, self.seed, self.probe_cancel)

    @work(thread=True, exclusive=True, exit_on_error=False, group="activations-probes",
          description="linear probes")
    def _probe_worker(self, sample: int | None, seed: int, cancel: threading.Event) -> None:
        from cnnprobe.runs import inspect_run, save_inspection

        def progress(done: int, total: int) -> None:
            self.post_message(ProbeProgress(done, total))

        with self.worker_store() as store:
            insp = inspect_run(store, self.run_id, sample=sample, seed=seed, which=self.which,
                               probes=True, n_train=self.n_train, n_test=self.n_test,
                               device=self.device, save=False, cancel=cancel,
                               progress=progress)
            saved = not insp.cancelled and save_inspection(store, insp)
        self.post_message(ProbesReady(insp.probe_table, insp.cancelled, saved))

    def on_probe_progress(self, message: ProbeProgress) -> None:
        if self.probe_cancel is None or self.probe_cancel.is_set():
            return
        self.query_one("#act-progress-bar", ProgressBar).update(total=message.total,
                                                                progress=message.done)
        self.query_one("#act-progress-label", Label).update(
            f"linear probes: {message.done}/{message.total} batches (esc stops)")

    def on_probes_ready(self, message: ProbesReady) -> None:
        self.probe_cancel = None
        self.query_one("#act-progress").display = False
        if message.cancelled or message.table is None:
            self.notify("probes stopped: nothing saved", timeout=4)
            return
        saved = "saved with the run" if message.saved else "not saved"
        self.probes.show(message.table, f"{saved} ({self.n_train} fit, {self.n_test} scored)")
        best = message.table.loc[message.table["r2"].idxmax()] if len(message.table) else None
        where = f"; best R² {best['r2']:.3f} at {best['layer']}" if best is not None else ""
        self.notify(f"linear probes of {len(message.table)} layers {saved}{where}", timeout=6)

    def action_probe_view(self) -> None:
        if self.probe_table is None:
            self.notify("no probes yet: press p to fit them", timeout=3)
            return
        self.probes.cycle_view()

    # -- export, in a worker
    def action_export(self) -> None:
        if self.inspection is None:
            self.notify("nothing to export yet", severity="warning", timeout=3)
            return
        from cnnprobe.report.files import DEFAULT_DIR

        base = (self.export_dir or DEFAULT_DIR) / f"{self.run_id[:8]}-inspect"
        self.notify(f"exporting to {base.parent}…", timeout=2)
        self._export_worker(base, self.inspection, self.probe_table, self.channels,
                            self.normalize, self.cmap)

    @work(thread=True, exclusive=True, exit_on_error=False, group="activations-export",
          description="export activations")
    def _export_worker(self, base: Path, insp: Inspection, table: pd.DataFrame | None,
                       channels: int, normalize: str, cmap: str) -> None:
        from cnnprobe.report.inspection import MAX_CHANNELS, export_inspection, free_out_dir

        out = free_out_dir(base)
        files = export_inspection(out, insp.activations, table,
                                  max_channels=max(MAX_CHANNELS, channels),
                                  normalize=normalize, cmap=cmap)
        self.post_message(InspectionExported(out, files))

    def on_inspection_exported(self, message: InspectionExported) -> None:
        self.exported_to = message.out
        pngs = sum(p.suffix == ".png" for p in message.files)
        self.notify(f"wrote {len(message.files)} files ({pngs} PNGs) to {message.out}",
                    title="export", timeout=8)
