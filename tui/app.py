"""`cnnprobe-tui`: the keyboard-driven lab. Task and model forms, live plots, the run store.

Layout: at large sizes every pane shows in a grid; below NARROW_WIDTH x NARROW_HEIGHT
(an 80x24 SSH session) one pane shows at a time under a row of tabs, and the progress
line stays visible under any of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, Tab, Tabs
from textual.worker import Worker

from cnnprobe.admission import admit
from cnnprobe.config import PRESETS, ConfigError, RunConfig, apply_preset
from tui.jobs import TrainJob
from tui.lab import REFRESH_S, LabController
from tui.messages import (
    CompareLoaded,
    EngineLoaded,
    Exported,
    ModelTableReady,
    RunLoaded,
    SweepEnded,
    TrainingEnded,
)
from tui.scheduler import Scheduler
from tui.screens.help import HelpScreen
from tui.widgets.form_pane import FormPane
from tui.widgets.log_pane import LogPane
from tui.widgets.model_pane import ModelPane
from tui.widgets.plots_pane import TABS, PlotsPane
from tui.widgets.run_status import RunStatus
from tui.widgets.runs_pane import RunsPane
from tui.widgets.task_pane import TaskPane

NARROW_WIDTH, NARROW_HEIGHT = 110, 30
PANES = (("task", "1 Task"), ("model", "2 Model"), ("plots", "3 Plots"), ("runs", "4 Runs"),
         ("log", "5 Log"))
PALETTE_TITLES = {"sweep_resolution": "Resolution sweep", "sweep_distractors": "Distractor sweep",
                  "mark": "Mark for compare", "baseline": "Pin or unpin the Compare baseline",
                  "filter_runs": "Filter the runs", "plot_prev": "Previous plot tab",
                  "plot_next": "Next plot tab", "theme": "Toggle dark/light theme",
                  "delete": "Delete run", "export": "Export run", "resume": "Resume run",
                  "finetune": "Fine-tune at another resolution", "stop": "Stop the run",
                  "activations": "Activations of the selected run",
                  "studies": "Studies (configs × seeds, statistics, verdicts)"}
POLL_S = 3.0  # re-read the store's run list (other processes may write to it)


def load_engine() -> None:
    """Import what training, sweeps and inspection need (torch, torchvision, the trainer):
    seconds that the lab spends in a background thread after its first paint."""
    import cnnprobe.runs  # noqa: F401 - the service layer, and through it the engine


def form_keys(field_name: str) -> list[str]:
    """The form fields an engine ConfigError is about ("task.height/width" is two)."""
    if field_name == "resolution":
        return ["task.height", "task.width"]
    if "/" in field_name:
        section, names = field_name.split(".", 1)
        return [f"{section}.{n}" for n in names.split("/")]
    return [field_name]


class LabFooter(Footer):
    """The footer with its keys in the lab's first frame. Textual's composes them a frame
    later, when the screen first says its bindings changed (~0.25 s of first paint here,
    bench/bench_startup.py); from then on it follows the bindings as Textual's does."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.set_reactive(Footer._bindings_ready, True)


class CnnprobeApp(App[None]):
    """The lab: configure a probe run, train it, watch it, and study stored runs."""

    CSS_PATH = "app.tcss"
    TITLE = "cnnprobe"
    BINDINGS = [
        Binding("ctrl+r,f5", "train", "Train", id="train",
                tooltip="start training the form's config (asks to queue if busy)"),
        Binding("ctrl+s", "stop", "Stop", id="stop",
                tooltip="stop the run (and sweeps) at the next step; stored as cancelled"),
        Binding("s", "sweep('resolution')", "Res sweep", id="sweep_resolution",
                tooltip="resolution sweep of the selected run"),
        Binding("d", "sweep('distractors')", "Distr sweep", id="sweep_distractors",
                tooltip="distractor-count sweep of the selected run"),
        Binding("c", "resume", "Resume", id="resume",
                tooltip="continue the selected run from its last checkpoint"),
        Binding("f", "finetune", "Fine-tune", id="finetune",
                tooltip="fine-tune the selected run at another resolution (a new run)"),
        Binding("e", "export", "Export", id="export",
                tooltip="export the selected run as Markdown, JSON or CSV"),
        Binding("a", "activations", "Activations", id="activations",
                tooltip="look inside the selected run: feature maps and per-layer linear probes"),
        Binding("u", "studies", "Studies", id="studies",
                tooltip="studies: a question answered over configs × seeds, with statistics"),
        Binding("m", "mark", "Mark", id="mark",
                tooltip="mark or unmark the selected run for the Compare tab"),
        Binding("b", "baseline", "Baseline", id="baseline", show=False,
                tooltip="pin (or unpin) the selected run as the baseline Compare draws the "
                        "others against"),
        Binding("slash", "filter_runs", "Filter", id="filter_runs", show=False,
                tooltip="filter the runs: words, status:failed model:resnet18 tag:x study:y "
                        "(escape clears)"),
        Binding("delete", "delete", "Delete", id="delete",
                tooltip="delete the selected run (asks first)"),
        Binding("left_square_bracket", "plot_tab(-1)", "◀Plot", id="plot_prev",
                tooltip="previous plot tab"),
        Binding("right_square_bracket", "plot_tab(1)", "Plot▶", id="plot_next",
                tooltip="next plot tab"),
        *[Binding(str(i), f"focus_pane('{name}')", label.split()[1], show=False,
                  id=f"focus_{name}", tooltip=f"focus the {label.split()[1]} pane")
          for i, (name, label) in enumerate(PANES, 1)],
        Binding("t", "toggle_theme", "Theme", show=False, id="theme",
                tooltip="switch between the dark and the light theme"),
        Binding("f1,question_mark", "help", "Help", id="help", tooltip="help: every key"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True,
                tooltip="quit; a running training is stopped and stored first"),
        Binding("escape", "leave_field", "Leave field", show=False, id="leave_field",
                tooltip="leave a text field, so the letter keys act"),
    ]

    def __init__(self, store_root: str | Path | None = None, *, preset: str | None = "quick",
                 config: RunConfig | None = None, theme: str = "textual-dark",
                 watch_store: bool = True, store: Any = None,
                 engine_loader: Callable[[], None] | None = None) -> None:
        from cnnprobe.store import default_root

        super().__init__()
        # No sliding underlines or smooth scrolls: over SSH they cost bandwidth, and every
        # animation frame is Python the training thread waits for (bench/bench_tui.py).
        self.animation_level = "none"
        self.store_root = Path(store_root) if store_root else default_root()
        self.initial_preset = preset if config is None else None
        self.initial_config = config or (apply_preset(RunConfig(), preset) if preset
                                         else RunConfig())
        self.initial_theme = theme
        self.theme = theme  # before mount: a theme set later restyles every widget
        self.watch_store = watch_store
        self.given_store = store  # tests: a fixed store object instead of opening one
        self.store = None
        self.store_error = ""
        self.exported: list[Path] = []
        # Fast start: the layout and the store paint first; the engine loads in a thread
        # (tests pass a loader they control). Until it has, training waits at the lab's
        # engine gate (Scheduler.engine).
        self.engine_loader = engine_loader or load_engine
        self._panes: dict[type, Any] = {}
        self._panes_by_id: dict[str, Any] = {}  # the lab's panes by id, from compose
        self.forms_filled = False  # the form panes' fields are mounted after the first frame
        self._focus_after_forms = ""  # a pane key pressed before then
        self._store_signature: tuple | None = None
        self._current_pane = ""
        # The lab's policy (plain Python) and the controller that acts on it: the app
        # composes the widgets and routes keys and messages to them.
        self.lab = Scheduler()
        self.controller = LabController(self, self.lab)

    @property
    def engine_ready(self) -> bool:
        return self.lab.engine.ready

    @property
    def engine_error(self) -> str:
        return self.lab.engine.error

    # -- layout
    def compose(self) -> ComposeResult:
        cfg = self.initial_config
        # The first layout is set here, not in on_mount: a class changed on a mounted
        # container restyles its whole subtree (seconds of startup, measured).
        self.apply_layout(self.size)
        # The forms fill in right after the first frame (FormPane.fill, _fill_forms).
        panes = {"task": TaskPane(cfg, id="task", fill_later=True),
                 "model": ModelPane(cfg, preset=self.initial_preset, id="model",
                                    fill_later=True),
                 "plots": PlotsPane(id="plots"),
                 "runs": RunsPane(self.lab.marks, id="runs"),
                 "log": LogPane(id="log")}
        setup = Vertical(panes["task"], panes["model"], id="setup")
        self._panes_by_id = {**panes, "setup": setup}
        self.show_panes()
        yield Tabs(*[Tab(label, id=f"tab-{name}") for name, label in PANES], id="pane-tabs")
        yield Container(setup, panes["plots"], panes["runs"], panes["log"], id="main")
        yield Static("", id="form-error", markup=False)
        from tui.widgets.system_line import SystemLine  # the machine (tui.system)

        yield SystemLine(id="system")
        yield RunStatus(id="status")
        yield LabFooter(compact=True)

    def _pane(self, kind: type) -> Any:
        """The lab's pane of this type, found once: a query walks the whole DOM, and the
        tick, the progress line and the store poll ask for panes several times a second
        (bench/bench_tui.py). Found again if it was removed; NoMatches if it is gone."""
        found = self._panes.get(kind)
        if found is None or not found.is_attached:
            found = self._panes[kind] = self.screen_main.query_one(kind)
        return found

    @property
    def log_pane(self) -> LogPane:
        return self._pane(LogPane)

    @property
    def plots(self) -> PlotsPane:
        return self._pane(PlotsPane)

    @property
    def runs(self) -> RunsPane:
        return self._pane(RunsPane)

    @property
    def status(self) -> RunStatus:
        return self._pane(RunStatus)

    def on_mount(self) -> None:
        self.show_pane("task")  # the tabs' state; the classes are already right
        self.open_store()
        self._model_table()
        self.controller.listen_for_stop_signals()
        self.set_interval(REFRESH_S, self.controller.tick)
        if self.watch_store:
            self.set_interval(POLL_S, self.poll_store)
        self.revalidate()
        self.plots.show(None)
        self.controller.update_status()
        self.call_after_refresh(self._fill_forms)

    async def _fill_forms(self) -> None:
        """After the first frame: mount the forms' fields, then load the engine (torch)."""
        for kind in (TaskPane, ModelPane):
            panes = self.screen_main.query(kind)
            if not panes:  # closing
                return
            await panes.first().fill()
        if not self.lab_is_up():  # closed while the fields mounted
            return
        self.forms_filled = True
        self.revalidate()
        if self._focus_after_forms:
            self.action_focus_pane(self._focus_after_forms)
        self._load_engine()

    # -- the engine, loaded after the first paint
    @work(thread=True, exit_on_error=False, group="engine", description="engine")
    def _load_engine(self) -> None:
        start = time.perf_counter()
        try:
            self.engine_loader()
        except Exception as exc:  # noqa: BLE001 - a broken torch install is shown, not raised
            from cnnprobe.errors import first_line

            self.post_message(EngineLoaded(time.perf_counter() - start, first_line(exc)))
            return
        self.post_message(EngineLoaded(time.perf_counter() - start))

    def on_engine_loaded(self, message: EngineLoaded) -> None:
        if not self.lab_is_up():
            return  # closing
        if message.error:
            self.controller.engine_failed(message.error)
        else:
            self.controller.engine_loaded(message.seconds)

    def on_unmount(self) -> None:
        self.controller.stop_everything()
        self.controller.forget_stop_signals()

    def open_store(self) -> None:
        from cnnprobe.store import RunStore

        runs = self.runs
        runs.border_subtitle = str(self.store_root)
        try:
            self.store = self.given_store or RunStore(self.store_root)
        except Exception as exc:  # noqa: BLE001 - any reason a store can't open is shown
            self.store = None
            reason = str(exc) or type(exc).__name__
            self.store_error = f"store {self.store_root} could not be opened: {reason}"
            runs.set_message(self.store_error + "\nTraining needs a store: restart with "
                             "--store DIR (a writable folder).")
            self.log_pane.event(self.store_error, "error")
            self.notify(self.store_error, severity="error", timeout=10)
            return
        self.refresh_runs()
        self.log_pane.event(f"store {self.store_root}: {len(runs.records)} runs")

    def worker_store(self) -> AbstractContextManager:
        """A store for a worker thread, closed when the worker is done with it."""
        from cnnprobe.store import RunStore

        if self.given_store is not None:
            return nullcontext(self.given_store)
        return RunStore(self.store_root)

    def lab_is_up(self) -> bool:
        """Whether the lab's panes are there: not yet composed, or gone while the app
        closes (a timer or a worker's message can still arrive then)."""
        if not self.is_running or not self.screen_stack:
            return False
        try:
            return all(self._pane(kind).is_mounted
                       for kind in (PlotsPane, RunsPane, TaskPane, ModelPane, LogPane))
        except NoMatches:
            return False

    def poll_store(self) -> None:
        """Every POLL_S: list the runs again only when the store's signature moved (another
        process added, ended or changed a run); else only follow the shown external run."""
        if self.store is None or not self.lab_is_up():
            return
        try:
            signature = self.store.signature()
        except Exception:  # noqa: BLE001 - refresh_runs shows what is wrong with the store
            signature = None
        if signature is None or signature != self._store_signature:
            self._store_signature = signature
            self.refresh_runs()
            return
        shown = self.plots.view
        if shown is not None and shown.status == "running" and self.lab.viewed_job is None:
            try:
                rec = self.store.get(shown.run_id)
            except Exception:  # noqa: BLE001 - gone meanwhile: the next poll lists again
                return
            self.follow_external_run(rec)

    def refresh_runs(self, select: str | None = None) -> None:
        if self.store is None or not self.lab_is_up():  # none yet, or closing
            return
        try:
            records = self.store.list_runs()
        except Exception as exc:  # noqa: BLE001 - a store that breaks later is shown too
            self.runs.set_message(f"could not read the store: {exc}")
            return
        self.runs.set_records(records)
        if select:
            self.runs.select(select)
        self.follow_external_run()

    def follow_external_run(self, rec: Any = None) -> None:
        """A run another process trains (the CLI, say) redraws as its store record grows."""
        shown = self.plots.view
        lab = self.lab
        if lab.viewed_job is not None or shown is None or shown.run_id != lab.viewed_id:
            return
        rec = rec or self.runs.record(shown.run_id)
        if rec is not None and (rec.status == "running" or rec.status != shown.status) \
                and lab.live_job(rec.id) is None:
            self.controller.load_run(rec.id)

    def on_resize(self, event) -> None:
        self.apply_layout(event.size)

    def apply_layout(self, size: Size) -> None:
        narrow = size.width < NARROW_WIDTH or size.height < NARROW_HEIGHT
        if narrow != self.screen_main.has_class("-narrow"):
            self.screen_main.set_class(narrow, "-narrow")
        self.show_panes()

    def show_panes(self) -> None:
        """Narrow: only the current pane displays; wide: all do. Set as each pane's display,
        not as a class: a class set on a pane restyles every widget in it (~0.9 s for the
        forms on this machine), a display only lays the screen out again."""
        narrow = self.screen_main.has_class("-narrow")
        current = self._current_pane or "task"
        for name, pane in self._panes_by_id.items():
            shown = not narrow or name == current or (
                name == "setup" and current in ("task", "model"))
            if pane.display != shown:
                pane.display = shown

    @property
    def screen_main(self) -> Screen:
        """The lab's own screen, at the bottom of the stack whatever is shown over it (a
        dialog, Activations, Studies): the panes are queried there, not on the screen on
        top, so a worker's result that arrives meanwhile still finds them."""
        if not self.screen_stack:  # closing: query the app itself, as before Studies
            return self  # type: ignore[return-value]
        return self.screen_stack[0]

    def show_pane(self, name: str) -> None:
        """In the narrow layout, the pane on screen; in the grid, all are. A class set on a
        pane restyles all its widgets, so nothing is set when the pane is already current
        (a plot-tab key, pressed while a run trains, used to restyle every pane)."""
        if name == self._current_pane:
            return
        self._current_pane = name
        self.show_panes()
        tabs = self.screen_main.query_one("#pane-tabs", Tabs)
        if tabs.active != f"tab-{name}":
            tabs.active = f"tab-{name}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tabs.id == "pane-tabs" and event.tab.id:
            self.show_pane(event.tab.id.removeprefix("tab-"))

    def action_filter_runs(self) -> None:
        self.show_pane("runs")
        self.runs.open_filter()

    def action_focus_pane(self, name: str) -> None:
        if name in ("task", "model") and not self.forms_filled:
            self._focus_after_forms = name  # a frame or two away: _fill_forms does it
            return
        self.show_pane(name)
        target = {"task": "#task-list", "model": "#model Select", "plots": "#plots Tabs",
                  "runs": "#runs-table", "log": "#log"}[name]
        self.screen_main.query(target).first().focus()

    def action_plot_tab(self, delta: int) -> None:
        self.plots.step_tab(delta)
        self.show_pane("plots")

    def action_show_plot(self, tab: str) -> None:
        self.plots.set_tab(tab)
        self.show_pane("plots")

    def action_leave_field(self) -> None:
        if isinstance(self.focused, Input):
            self.screen.set_focus(None)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_rows()))

    def action_activations(self) -> None:
        rec = self.controller.selected_record("inspect", idle=False)
        if rec is None:
            return
        if self.store is None:
            self.notify(self.store_error or "no store", severity="error", timeout=8)
            return
        from tui.screens.activations import ActivationsScreen

        self.push_screen(ActivationsScreen(self.store, rec.id))

    # Keys that act on the lab's panes and selected run: off (and out of the footer) while
    # the Studies screen is on top, which has its own.
    LAB_ONLY = frozenset({"train", "stop", "sweep", "resume", "finetune", "export",
                          "activations", "mark", "baseline", "filter_runs", "delete",
                          "plot_tab", "focus_pane",
                          "leave_field", "studies"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from tui.screens.studies import StudiesScreen

        if action in self.LAB_ONLY and self.screen_stack and \
                isinstance(self.screen, StudiesScreen):
            return False
        return True

    def action_studies(self) -> None:
        from tui.screens.studies import StudiesScreen

        if isinstance(self.screen, StudiesScreen):
            return
        self.push_screen(StudiesScreen())

    # -- the form
    def read_config(self) -> tuple[RunConfig | None, dict[str, str]]:
        """The form as a validated RunConfig, or the errors keyed by form field."""
        data = RunConfig().to_dict()
        errors = self.screen_main.query_one(TaskPane).read_into(data) + \
            self.screen_main.query_one(ModelPane).read_into(data)
        if errors:
            return None, {e.field: str(e) for e in errors}
        try:
            # Before the engine has loaded (torch), the memory and device checks wait: the
            # form is checked again in full when it has, and when training starts.
            cfg = admit(RunConfig.from_dict(data),
                        upto="device" if self.engine_ready else "config").config
        except ConfigError as exc:
            return None, {key: str(exc) for key in form_keys(exc.field)}
        return cfg, {}

    def revalidate(self) -> RunConfig | None:
        cfg, errors = self.read_config()
        self.screen_main.query_one(TaskPane).show_errors(errors)
        self.screen_main.query_one(ModelPane).show_errors(errors)
        main = self.screen_main
        shown = {f.key for pane in (TaskPane, ModelPane) for f in main.query_one(pane).fields()
                 if f.display}
        stray = [msg for key, msg in errors.items() if key not in shown]
        note = self.screen_main.query_one("#form-error", Static)
        note.update(stray[0] if stray else "")
        note.display = bool(stray)
        return cfg

    def show_config_error(self, exc: ConfigError) -> None:
        """An engine refusal at start (e.g. weights not found) lands at its field too."""
        errors = {key: str(exc) for key in form_keys(exc.field)}
        self.screen_main.query_one(TaskPane).show_errors(errors)
        self.screen_main.query_one(ModelPane).show_errors(errors)

    def on_form_pane_edited(self, event: FormPane.Edited) -> None:
        # An edit burst's one Edited goes out a frame after the burst (FormPane._edited):
        # when the lab closes meanwhile (the forms have just filled, a test ends), the
        # panes are being removed and there is nothing left to validate.
        if not self.lab_is_up():
            return
        self.revalidate()

    def on_model_pane_preset_chosen(self, event: ModelPane.PresetChosen) -> None:
        cfg, _ = self.read_config()
        cfg = apply_preset(cfg or self.initial_config, event.name)
        self.screen_main.query_one(TaskPane).write(cfg)
        self.screen_main.query_one(ModelPane).write(cfg)
        self.revalidate()
        self.log_pane.event(f"preset {event.name}: {cfg.task.height}x{cfg.task.width}, "
                            f"batch {cfg.train.batch_size}, {cfg.train.total_steps} steps")

    @work(thread=True, exit_on_error=False, group="models", description="model table")
    def _model_table(self) -> None:
        self.post_message(ModelTableReady(cached_model_table()))

    def on_model_table_ready(self, message: ModelTableReady) -> None:
        if not self.lab_is_up():
            return  # the app is closing
        for pane in self.screen_main.query(ModelPane):  # none once the panes are gone
            pane.set_model_rows(message.rows)

    def action_train(self) -> None:
        cfg = self.revalidate()
        if cfg is None:
            _, errors = self.read_config()
            key, msg = next(iter(errors.items()))
            self.notify(msg, title="fix this first", severity="error", timeout=6)
            for pane in (TaskPane, ModelPane):
                f = self.screen_main.query_one(pane).field(key)
                if f is not None and f.display:
                    self.show_pane("task" if pane is TaskPane else "model")
                    f.control.focus()
            return
        if self.store is None:
            self.notify(self.store_error or "no store", severity="error", timeout=8)
            return
        self.controller.after_engine(f"training {cfg.model.name} on {cfg.task.name}",
                          lambda: self._train_now(cfg))

    def _train_now(self, cfg: RunConfig) -> None:
        """Start (or queue) `cfg` once the engine is there: the full check first (memory,
        device), which may refuse what the form passed before torch had loaded."""
        try:  # the service times the step in the training thread (train_run)
            admitted = admit(cfg, upto="device")
        except ConfigError as exc:
            self.show_config_error(exc)
            self.notify(str(exc), title="not started", severity="error", timeout=8)
            return
        self.controller.submit(TrainJob("train", admitted.config, admitted.device,
                                        admission=admitted))

    # -- selection
    def on_runs_pane_selected(self, event: RunsPane.Selected) -> None:
        self.controller.view_run(event.run_id)

    # -- routing: the lab's keys and messages go to its controller (tui/lab.py)
    def action_stop(self) -> None:
        self.controller.stop()

    def action_sweep(self, kind: str) -> None:
        self.controller.sweep(kind)

    def action_resume(self) -> None:
        self.controller.resume()

    def action_finetune(self) -> None:
        self.controller.finetune()

    def action_export(self) -> None:
        self.controller.export()

    def action_mark(self) -> None:
        self.controller.mark()

    def action_baseline(self) -> None:
        self.controller.baseline()

    def action_delete(self) -> None:
        self.controller.delete()

    def action_quit(self) -> None:  # type: ignore[override]
        self.controller.quit()

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.controller.training_ended(message)

    def on_sweep_ended(self, message: SweepEnded) -> None:
        self.controller.sweep_ended(message)

    def on_run_loaded(self, message: RunLoaded) -> None:
        self.controller.run_loaded(message)

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        self.controller.compare_loaded(message)

    def on_exported(self, message: Exported) -> None:
        self.controller.export_done(message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.controller.worker_state_changed(event)

    # -- keys, palette, help
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if binding.id in ("leave_field",) or binding.id.startswith("focus_"):
                continue
            key = _key_name(binding.key.split(",")[0])
            title = PALETTE_TITLES.get(binding.id, binding.description)
            yield SystemCommand(title, f"{binding.tooltip} (key {key})",
                                lambda a=binding.action: self.run_action(a))
        for name, label in PANES:
            yield SystemCommand(f"Focus {label[2:]} pane", f"key {label[0]}",
                                lambda n=name: self.action_focus_pane(n))
        for tab, label in TABS:
            yield SystemCommand(f"Plot: {label}", "show this plot tab",
                                lambda t=tab: self.action_show_plot(t))
        yield SystemCommand("Loss plot: log scale", "toggle (l in Plots)",
                            lambda: self.plots.action_toggle_log())
        for preset in PRESETS:
            yield SystemCommand(f"Preset: {preset}", "fill the form from this preset",
                                lambda p=preset: self.post_message(ModelPane.PresetChosen(p)))

    def key_rows(self) -> list[tuple[str, str, str]]:
        """The key table, from the bindings themselves (help screen and README)."""
        return key_table()


def key_table() -> list[tuple[str, str, str]]:
    rows = []
    where = {"sweep_resolution": "outside fields", "sweep_distractors": "outside fields",
             "resume": "outside fields", "finetune": "outside fields",
             "export": "outside fields", "mark": "outside fields", "delete": "outside fields",
             "baseline": "outside fields", "filter_runs": "outside fields",
             "activations": "outside fields",
             "plot_prev": "outside fields", "plot_next": "outside fields",
             "theme": "outside fields", "leave_field": "in a field"}
    for b in CnnprobeApp.BINDINGS:
        keys = " / ".join(_key_name(k) for k in b.key.split(","))
        place = where.get(b.id, "outside fields" if b.id.startswith("focus_") else "anywhere")
        rows.append((keys, b.tooltip or b.description, place))
    for b in PlotsPane.BINDINGS:
        rows.append((" / ".join(_key_name(k) for k in b.key.split(",")),
                     b.tooltip or b.description, "Plots pane"))
    for b in RunsPane.BINDINGS:
        rows.append((" / ".join(_key_name(k) for k in b.key.split(",")),
                     b.tooltip or b.description, "Runs pane"))
    rows.append(("ctrl+p", "command palette", "anywhere"))
    rows.append(("tab / shift+tab", "next / previous field", "anywhere"))
    return rows


def _key_name(key: str) -> str:
    return {"left_square_bracket": "[", "right_square_bracket": "]", "question_mark": "?",
            "slash": "/", "equals_sign": "=", "plus": "+", "minus": "-"}.get(key, key)


_MODEL_TABLE: list[dict] | None = None


def cached_model_table() -> list[dict]:
    """Building every model to count parameters takes a moment: once per process."""
    global _MODEL_TABLE
    if _MODEL_TABLE is None:
        from cnnprobe.models import model_table

        _MODEL_TABLE = model_table()
    return _MODEL_TABLE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnprobe-tui", description="The cnnprobe lab in "
                                     "the terminal: train, watch and compare probe runs.")
    parser.add_argument("--store", metavar="DIR",
                        help="run store folder (default: $CNNPROBE_STORE or ./checkpoints)")
    parser.add_argument("--theme", choices=("dark", "light"), default="dark")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                        help="fill the form from this preset at start (default: quick)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cnnprobe-tui [--store DIR] [--theme dark|light] [--preset NAME]`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.store is not None and not args.store.strip():
        parser.error("--store '' is empty: give a folder, or leave --store out for "
                     "$CNNPROBE_STORE or ./checkpoints")
    app = CnnprobeApp(args.store, preset=args.preset, theme=f"textual-{args.theme}")
    return run_app(app)


def run_app(app: CnnprobeApp) -> int:
    """Run the lab; its exit status. Stopped by SIGTERM or SIGHUP, it says so on the
    terminal (when one is left) and exits with 128 + the signal."""
    app.controller.hard_exit = True
    app.run()
    if app.controller.stop_signal:
        try:
            print(app.controller.stopped_message(), file=sys.stderr)
        except OSError:
            pass
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
