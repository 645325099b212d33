"""Studies: pick a built-in study or a plan file, its scale, seeds and workers; start, stop
and continue it; watch its trials and its report fill in.

The study runs in an app-level thread worker that only calls the engine
(`cnnprobe.studies.runner.run_study`), feeding a `StudyState` (plain data, thread-safe);
this screen polls that state twice a second and redraws what moved, so leaving the screen
does not stop the study, and coming back shows it where it is. The report (statistics,
verdicts, plot) is recomputed from the store in a worker each time a trial ends.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, Select, Static

from cnnprobe.config import ConfigError
from cnnprobe.errors import first_line
from cnnprobe.report.formatting import num
from cnnprobe.shown import shown
from cnnprobe.store import StoreError
from cnnprobe.studies.builtin import BUILTIN, SCALES
from cnnprobe.studies.capacity import CONFIRM_TRIALS
from cnnprobe.studies.live import StudyState

if TYPE_CHECKING:
    from cnnprobe.studies.plan import StudyPlan
    from cnnprobe.studies.report import StudyReport

POLL_S = 0.5
GRID_COLUMNS = ("status", "progress", "metric", "seed", "variant", "run")
STATUS_STYLE = {"finished": "green", "failed": "red", "training": "bold cyan",
                "cancelled": "yellow", "interrupted": "magenta", "skipped": "dim",
                "pending": "dim"}


def plan_from_form(study: str, path: str, scale: str, seeds: str) -> StudyPlan:
    """The plan the form names; ConfigError names the form field that is wrong."""
    from cnnprobe.studies import builtin_plan, load_plan

    n: int | None = None
    if seeds.strip():
        try:
            n = int(seeds)
        except ValueError:
            raise ConfigError("seeds", seeds, "a whole number of seeds, or empty for the "
                              "plan's") from None
    if path.strip():
        return load_plan(path.strip(), seeds=n)
    return builtin_plan(study, scale, seeds=n)


def parse_workers(text: str) -> int:
    try:
        n = int(text.strip() or "1")
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError("workers", text, "a whole number of at least 1")
    return n


class ReportReady(Message):
    def __init__(self, generation: int, report: StudyReport | None, plot: str, error: str
                 ) -> None:
        super().__init__()
        self.generation, self.report, self.plot, self.error = generation, report, plot, error


class StudiesScreen(Screen[None]):
    """The study grid and its report."""

    CSS_PATH = "../studies.tcss"
    BINDINGS = [
        Binding("ctrl+r,f5", "start", "Start/continue", id="study.start",
                tooltip="train the study's missing trials (finished ones are kept)"),
        Binding("ctrl+s", "stop", "Stop", id="study.stop",
                tooltip="stop the trials in flight at their next step; stored as cancelled"),
        Binding("o", "open_trial", "Open run", id="study.open",
                tooltip="show the selected trial's run in the lab"),
        Binding("escape", "back", "Back", id="study.back",
                tooltip="back to the lab; a running study keeps running"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._drawn = (-1, -1)  # (state, version) the trial grid shows
        self._reported = (-1, -1)  # (state, finished_version) the report shows
        self._generation = 0
        self._confirmed: tuple[str, str, int] | None = None  # a big grid asked to start

    # -- layout
    def compose(self) -> ComposeResult:
        # Two rows, so that every control fits an 80-column terminal.
        with Horizontal(classes="study-form"):
            yield Label("study")
            yield Select([(f"{name}", name) for name in BUILTIN], value="pooling",
                         allow_blank=False, id="study-name", compact=True)
            yield Input(placeholder="or a plan.toml file", id="study-plan", compact=True)
            yield Label("scale")
            yield Select([(s, s) for s in SCALES], value="smoke", allow_blank=False,
                         id="study-scale", compact=True)
        with Horizontal(classes="study-form"):
            yield Label("seeds")
            yield Input(placeholder="plan's", id="study-seeds", compact=True)
            yield Label("workers")
            yield Input("1", id="study-workers", compact=True)
            yield Label("on")
            yield Select([("local", "local"), ("ray", "ray")], value="local",
                         allow_blank=False, id="study-backend", compact=True)
            yield Input(placeholder="ray address", id="study-address", compact=True,
                        tooltip="with ray: auto or HOST:PORT of a cluster; empty starts a "
                                "local Ray instance")
        yield Static("", id="study-error", markup=False)
        with Horizontal(id="study-progress-line"):
            yield Static("no study running: ctrl+r starts the one above", id="study-status",
                         markup=False)
            yield ProgressBar(total=1.0, show_eta=False, id="study-progress")
        with Horizontal(id="study-body"):
            yield DataTable(id="study-trials", cursor_type="row", zebra_stripes=True)
            with Vertical(id="study-report-pane"):
                yield DataTable(id="study-report", cursor_type="none")
                yield Static("", id="study-verdict", markup=False)
                yield Static("", id="study-plot", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        trials = self.query_one("#study-trials", DataTable)
        # The long variant labels last: status and progress stay in view.
        for key in GRID_COLUMNS:
            trials.add_column(key, key=key)
        state = self.state
        if state is not None:
            self._set_form(state.plan)
        self.set_interval(POLL_S, self.poll)
        self.poll()

    # -- state
    @property
    def state(self) -> StudyState | None:
        return self.app.lab.study

    @property
    def running(self) -> bool:
        state = self.state
        return state is not None and not state.done

    def _set_form(self, plan: StudyPlan) -> None:
        if plan.name in BUILTIN and plan.source.startswith("built-in"):
            self.query_one("#study-name", Select).value = plan.name

    def _form_plan(self) -> tuple[StudyPlan, dict[str, Any]]:
        """The plan and run_study's options the form names; ConfigError names the field."""
        plan = plan_from_form(self.query_one("#study-name", Select).value,
                              self.query_one("#study-plan", Input).value,
                              self.query_one("#study-scale", Select).value,
                              self.query_one("#study-seeds", Input).value)
        backend = self.query_one("#study-backend", Select).value
        options: dict[str, Any] = {"backend": backend}
        if backend == "ray":
            from cnnprobe.studies.ray_backend import import_ray

            import_ray()  # a missing extra is said here, before the study starts
            options["address"] = self.query_one("#study-address", Input).value.strip() or None
        else:
            options["workers"] = parse_workers(self.query_one("#study-workers", Input).value)
        return plan, options

    def say(self, text: str) -> None:
        self.query_one("#study-error", Static).update(text)

    # -- actions
    def action_start(self) -> None:
        if self.running:
            self.notify("a study is running: ctrl+s stops it first", severity="warning",
                        timeout=4)
            return
        app = self.app
        if app.store is None:
            self.say(app.store_error or "no store")
            return
        try:
            plan, options = self._form_plan()
        except (ConfigError, StoreError, OSError) as exc:
            self.say(first_line(exc))
            self.notify(first_line(exc), title="fix this first", severity="error", timeout=6)
            return
        trials = len(plan.trials())
        if trials > CONFIRM_TRIALS and self._confirmed != (plan.name, plan.source, trials):
            # A big grid starts on a second press, after it was said how big it is.
            self._confirmed = (plan.name, plan.source, trials)
            self.say(f"study {plan.name} has {trials:,} trials (more than {CONFIRM_TRIALS}): "
                     "ctrl+r again starts it")
            return
        self._confirmed = None
        self.say("")
        state, cancel = app.lab.start_study(plan)
        self._drawn = self._reported = (-1, -1)
        workers = options.get("workers", 1)
        where = (f"on Ray ({options.get('address') or 'a local instance'})"
                 if options["backend"] == "ray" else
                 f"{workers} worker{'s' if workers > 1 else ''}")
        app.log_pane.event(f"study {plan.name}: {len(state.rows())} trials ({plan.source}), "
                           f"{where}")
        app.run_worker(lambda: run_study_thread(app, state, cancel, options), thread=True,
                       group="study", description=f"study {plan.name}", exit_on_error=False)
        self.poll()

    def action_stop(self) -> None:
        if not self.app.lab.stop_study():
            self.notify("no study is running", timeout=3)
            return
        self.notify("stopping the study's trials at their next step…", timeout=4)

    def action_open_trial(self) -> None:
        table = self.query_one("#study-trials", DataTable)
        state = self.state
        if state is None or not table.row_count:
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        row = next((r for r in state.rows() if r.key == key), None)
        if row is None or row.run_id is None:
            self.notify("this trial has no run yet", timeout=3)
            return
        self.app.pop_screen()
        self.app.refresh_runs(select=row.run_id)
        self.app.controller.view_run(row.run_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "study-trials":
            self.action_open_trial()

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- drawing
    def poll(self) -> None:
        state = self.state
        if state is None:
            return
        if (id(state), state.version) != self._drawn:
            self._draw_trials(state)
        if (id(state), state.finished_version) != self._reported:
            self._reported = (id(state), state.finished_version)
            self._generation += 1
            self._report(self._generation, state.plan)

    def _draw_trials(self, state: StudyState) -> None:
        self._drawn = (id(state), state.version)
        table = self.query_one("#study-trials", DataTable)
        rows = state.rows()
        have = {str(k.value) for k in table.rows}
        for r in rows:
            cells = (Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                     f"{r.step}/{r.total}", num(r.metric) if r.metric is not None else "-",
                     str(r.seed), Text(shown(r.variant)), (r.run_id or "")[:8])
            if r.key not in have:
                table.add_row(*cells, key=r.key)
            else:
                for col, value in zip(GRID_COLUMNS, cells, strict=True):
                    table.update_cell(r.key, col, value, update_width=True)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(state.counts().items()))
        where = "done" if state.done else "running"
        line = f"{state.plan.name} ({state.plan.source}): {len(rows)} trials, {counts}; {where}"
        if state.error:
            line += "; stopped by an error (below)"
            self.say(state.error)
        elif state.summary:
            line += f"; {state.summary}"
        self.query_one("#study-status", Static).update(Text(shown(line)))  # not markup
        self.query_one("#study-progress", ProgressBar).update(progress=state.fraction())

    @work(thread=True, exit_on_error=False, group="study-report", exclusive=True)
    def _report(self, generation: int, plan: StudyPlan) -> None:
        from cnnprobe.studies.report import study_report

        try:
            with self.app.worker_store() as store:
                report = study_report(store, plan)
            plot = report_plot(report)
            self.post_message(ReportReady(generation, report, plot, ""))
        except Exception as exc:  # noqa: BLE001 - a bad store or plot: said on screen
            self.post_message(ReportReady(generation, None, "", first_line(exc)))

    def on_report_ready(self, message: ReportReady) -> None:
        if message.generation != self._generation or not self.is_mounted:
            return
        if message.report is None:
            self.say(f"report: {message.error}")
            return
        from cnnprobe.report.study import learned_cell

        report = message.report
        table = self.query_one("#study-report", DataTable)
        table.clear(columns=True)
        # The study's own metric first, then MAE beside its mean-guess baseline.
        metrics = [m for m in dict.fromkeys((report.metric, "mae", "mean_guess_mae", "r2",
                                             "accuracy", "heldout_mae", "heldout_r2",
                                             "finetune_mae"))
                   if any(m in ms for ms in report.variants.values())]
        table.add_columns("variant", "trials", "learned", *metrics)
        for label, ms in report.variants.items():
            status = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses[label].items()))
            g = report.learned.get(label)
            learned = learned_cell({"learned": g.as_dict() if g else None})
            cells = []
            for m in metrics:
                s = ms.get(m)
                cells.append("-" if s is None or s.n == 0 else
                             f"{num(s.mean)} ± {num(s.std, 2)} ({s.n})")
            table.add_row(Text(shown(label)), status or "-", learned, *cells)
        verdicts = [*report.measured_lines(), *(f"note: {n}" for n in report.notes)]
        verdicts += [f"verdict{f' ({g})' if g else ''}: {t}" for g, t in report.verdicts.items()]
        self.query_one("#study-verdict", Static).update(shown("\n".join(verdicts),
                                                              newlines=True))
        self.query_one("#study-plot", Static).update(message.plot)


def report_plot(report: StudyReport) -> str:
    """The study's metric per variant with error bars, and its sweep curves, as text."""
    from cnnprobe.report.study import plots

    return "\n\n".join(plots(report.as_dict()))


def _log(app: Any, line: str) -> None:
    """A line of the engine's (e.g. workers capped) into the lab's log, from a thread."""
    try:
        app.call_from_thread(app.log_pane.event, line, "warn")
    except RuntimeError:  # the app is closing
        pass


def run_study_thread(app: Any, state: StudyState, cancel: threading.Event,
                     options: dict[str, Any]) -> None:
    """The study's worker thread: the engine's run_study, its news into `state`."""
    from cnnprobe.studies.runner import run_study

    try:
        with app.worker_store() as store:
            progress = run_study(store, state.plan, cancel=cancel, on_trial=state.on_trial,
                                 on_step=state.on_step, on_note=lambda line: _log(app, line),
                                 **options)
        state.summary = (f"trained {len(progress.trained)}, kept {len(progress.kept)}, "
                         f"failed {len(progress.failed)}, skipped {len(progress.skipped)}"
                         + ("; stopped: ctrl+r continues it" if progress.cancelled else ""))
    except Exception as exc:  # noqa: BLE001 - one line on the screen, the app lives on
        state.error = first_line(exc)
        try:
            app.call_from_thread(app.log_pane.event,
                                 f"study {state.plan.name}: {state.error}", "error")
        except RuntimeError:  # the app is closing: the state has it
            pass
    finally:
        state.done = True
        state.version += 1
