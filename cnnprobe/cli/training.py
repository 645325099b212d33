"""`cnnprobe train`, `resume` and `finetune`: a run trained with a progress bar, recorded
in the store. The first Ctrl-C, a SIGTERM or a SIGHUP (the terminal gone) stops at the
next step and keeps the run (cancelled, with a checkpoint to resume from; exit status
128 + the signal); a second Ctrl-C aborts."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cnnprobe.admission import SLOW_STEP_S
from cnnprobe.cli.flags import add_config_flags, add_option_flags, config_from_args, first_given
from cnnprobe.cli.tables import RUN_REF_HELP, literal, metrics_table, print_json
from cnnprobe.events import EvaluationEvent, RunStarted, StepEvent
from cnnprobe.measurement import best_of, describe
from cnnprobe.stopping import STOP_SIGNALS, StopFlag, detach_if_hung_up, exit_code, signal_name
from cnnprobe.store import RunStore

Start = Callable[[list, threading.Event, Callable[[str], None]], tuple]


@contextmanager
def first_ctrl_c_cancels(console: Console, what: str = "stopping at the next step"
                         ) -> Iterator[StopFlag]:
    """A cancel flag the first Ctrl-C sets (the second raises KeyboardInterrupt), and
    SIGTERM and SIGHUP too (cnnprobe/stopping.py): the run stops at its next step, stored
    as cancelled. A hung-up terminal is detached first, so that nothing printed after fails;
    a SIGTERM or SIGHUP while stopping changes nothing (a shell resends SIGHUP to its jobs)."""
    cancel = StopFlag()

    def say(text: str) -> None:
        try:
            console.log(text)
        except OSError:
            pass  # the terminal is gone: the run is stored all the same

    def on_sigint(signum: int, frame: object) -> None:
        say(f"{what} (Ctrl-C again to abort)")
        cancel.stop_by(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_stop(signum: int, frame: object) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            detach_if_hung_up()
        if cancel.stop_by(signum):
            say(f"{signal_name(signum)}: {what}")

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_sigint)}
    for signum in STOP_SIGNALS:
        previous[signum] = signal.signal(signum, on_stop)
    try:
        yield cancel
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stopped_line(cancel: StopFlag, what: str) -> str | None:
    """The line said after a stop by SIGTERM or SIGHUP (None for Ctrl-C or no signal)."""
    if cancel.signum not in STOP_SIGNALS:
        return None
    return f"stopped by {signal_name(cancel.signum)}: {what}"


def train_with_progress(args: argparse.Namespace, console: Console, store: RunStore,
                        label: str, start: Start) -> int:
    """Run `start(callbacks, cancel, on_created)` under a progress bar; report the result."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    quiet = args.json or args.quiet
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        # Hidden until a run exists: a command refused before (a bad size, a device this
        # machine lacks, a step that would take minutes) prints its one error line alone.
        bar = progress.add_task(label, total=None, loss="-", rate="", visible=False)

        def on_created(run_id: str) -> None:
            console.print(f"run [bold]{run_id}[/bold] recording into {store.root}",
                          highlight=False)
            progress.update(bar, visible=True)

        def on_event(ev: object) -> None:
            if isinstance(ev, RunStarted):
                progress.update(bar, total=ev.total_steps, completed=ev.start_step,
                                visible=True)
                progress.console.log(f"device {ev.device} ({ev.device_name}), "
                                     f"{ev.parameters:,} parameters")
            elif isinstance(ev, StepEvent):
                progress.update(bar, completed=ev.step, loss=f"{ev.loss:.4g}",
                                rate=f"{ev.samples_per_s:,.0f} samples/s")
            elif isinstance(ev, EvaluationEvent) and not quiet:
                progress.console.log(f"step {ev.step}: val MAE {ev.metrics['mae']:.4g}, "
                                     f"R² {ev.metrics['r2']:.3f}")

        with first_ctrl_c_cancels(progress.console) as cancel:
            try:
                run_id, result = start([on_event], cancel, on_created)
            except KeyboardInterrupt:
                console.print("aborted: the run is marked interrupted; `cnnprobe resume` "
                              "continues it from its last checkpoint")
                return 130
    cfg = result.config
    best = best_of(store.val_history(run_id))
    if args.json:
        print_json({"id": run_id, "status": result.status, "reason": result.reason,
                    "steps": result.steps_done, "samples_seen": result.samples_seen,
                    "wall_time_s": result.wall_time_s, "device": result.device,
                    "metrics": result.final_metrics, "measured": result.measured,
                    "best_validation": best, "config": cfg.to_dict()})
    else:
        console.print(f"{cfg.task.name}/{cfg.model.name} at {cfg.task.height}x"
                      f"{cfg.task.width}: {result.status} after {result.steps_done} steps, "
                      f"{result.wall_time_s:.1f}s", highlight=False)
        if result.final_metrics:
            console.print(metrics_table(result.final_metrics, "final metrics"))
            console.print(f"measured with: {describe(result.measured)}", highlight=False)
            if best is not None and best["step"] != result.steps_done:
                console.print(f"best validation: MAE {best['mae']:.4g}, R² {best['r2']:.3f} at "
                              f"step {best['step']} (the `best` checkpoint; `--which best` "
                              "evaluates it)", highlight=False)
        if result.evaluation is not None:
            console.print(result.evaluation.describe().T.to_string(float_format="%.4g"))
    console.print(f"run [bold]{run_id}[/bold] {result.status}", highlight=False)
    if result.status == "failed":
        console.print(f"[red]run failed:[/red] {literal(result.reason)}", highlight=False)
        return 1
    if result.status != "cancelled":
        return 0
    line = stopped_line(cancel, f"run {run_id[:8]} stored as cancelled at step "
                                f"{result.steps_done}; `cnnprobe resume {run_id[:8]} --steps "
                                "N` continues it")
    if line:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return exit_code(cancel.signum or signal.SIGINT)


def cmd_train(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.admission import admit
    from cnnprobe.runs import train_run

    # Refused here, before any bar (a bad value, no fit, no device, too slow); train_run
    # takes the admission as it is.
    admitted = admit(config_from_args(args), allow_slow=args.allow_slow)
    cfg = admitted.config
    return train_with_progress(
        args, console, store, f"{cfg.task.name}/{cfg.model.name}",
        lambda cbs, cancel, created: train_run(store, admitted, cbs, cancel, name=args.name,
                                               tags=args.tag, note=args.note,
                                               on_created=created,
                                               allow_slow=args.allow_slow))


def cmd_resume(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.options import resume_steps
    from cnnprobe.runs import resume_run

    run_id = store.resolve(args.run)
    rec = store.get(run_id)

    steps = first_given(args.steps, resume_steps(rec.config, rec.steps_done, rec.status))

    def start(cbs: list, cancel: threading.Event, created: Callable[[str], None]) -> tuple:
        console.print(f"run [bold]{run_id}[/bold] ({literal(rec.name)}) resumes from its last "
                      f"checkpoint for {steps} more steps", highlight=False)
        return resume_run(store, run_id, steps, cbs, cancel, device=args.device,
                          allow_slow=args.allow_slow)

    return train_with_progress(args, console, store, f"{literal(rec.name)} (resumed)", start)


def cmd_finetune(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.options import finetune_plan
    from cnnprobe.runs import finetune_run

    run_id = store.resolve(args.run)
    rec = store.get(run_id)
    height, width, steps = finetune_plan(
        rec.config, height=first_given(args.height, args.resolution),
        width=first_given(args.width, args.resolution), steps=args.steps)
    return train_with_progress(
        args, console, store, f"{literal(rec.name)} -> {height}x{width}",
        lambda cbs, cancel, created: finetune_run(
            store, run_id, height=height, width=width, steps=steps, lr=args.lr,
            callbacks=cbs, cancel=cancel, which=args.which, name=args.name, tags=args.tag,
            device=args.device, on_created=created, allow_slow=args.allow_slow))


SLOW_HELP = (f"start even when one training step would take over {SLOW_STEP_S:.0f} s on the "
             "CPU (refused by default; the step is timed at small sizes first)")


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a model on a probe task (recorded)",
                       description="Train a model on a probe task; the run is recorded in "
                                   "the store with its history and checkpoints.")
    add_config_flags(p)
    _run_flags(p)
    p.add_argument("--note", default="", help="a free-text note kept with the run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", parents=[common], help="continue a stored run for more steps",
                       description="Continue a run from its last checkpoint (optimizer and "
                                   "data stream included); the same record goes on.")
    p.add_argument("run", help=RUN_REF_HELP)
    add_option_flags(p, "resume")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-slow", action="store_true",
                   help=SLOW_HELP)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("finetune", parents=[common],
                       help="train a stored run further at another size, as a new run",
                       description="Start a new run from a stored run's weights at another "
                                   "resolution (the notebook's 128 -> 300); it records its "
                                   "parent. The optimizer starts fresh.")
    p.add_argument("run", help=RUN_REF_HELP)
    p.add_argument("--resolution", type=int, metavar="N", help="square images of N pixels")
    add_option_flags(p, "finetune")
    _run_flags(p)
    p.set_defaults(func=cmd_finetune)


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="a name for the run (default: task-model-size-ID, ID the "
                                  "first 4 characters of its id)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="tag the run (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-slow", action="store_true",
                   help=SLOW_HELP)
