"""`cnnprobe eval` and `sweep`: a stored run's weights on other sizes, distractor counts
or regions, without retraining."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cnnprobe.cli.flags import add_option_flags, first_given
from cnnprobe.cli.tables import (
    RUN_REF_HELP,
    describe_table,
    frame_table,
    metrics_table,
    print_json,
)
from cnnprobe.cli.training import first_ctrl_c_cancels
from cnnprobe.config import ConfigError
from cnnprobe.measurement import describe
from cnnprobe.store import RunStore

RUN_HELP = RUN_REF_HELP


def parse_resolutions(text: str) -> list[int]:
    """--resolutions: options.parse_resolutions, refused as a usage error."""
    from cnnprobe.options import parse_resolutions as parse

    try:
        return parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give {exc.allowed}") from None


def cmd_eval(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.runs import evaluate_run

    run_id = store.resolve(args.run)
    ev = evaluate_run(store, run_id, height=first_given(args.height, args.resolution),
                      width=first_given(args.width, args.resolution), distractors=args.distractors,
                      region=args.region, n=args.n, which=args.which, device=args.device,
                      save=not args.no_save, precise_bn=args.precise_bn)
    done = store.evaluations(run_id)[-1]["options"] if not args.no_save else {}
    if args.json:
        out = {"id": run_id, "options": done or {"which": args.which, "n": args.n,
                                                 "region": args.region},
               "metrics": ev.metrics, "measured": ev.measured}
        if args.by_label:
            out["error_by_label"] = ev.error_by_label(args.by_label).to_dict(orient="records")
        print_json(out)
        return 0
    where = (f"{done['height']}x{done['width']}, {done['distractors']} distractors, "
             f"{done['region']} region, {args.which} checkpoint (step {done['step']})"
             if done else f"{args.which} checkpoint")
    console.print(f"run {run_id[:8]} on {where}", highlight=False)
    console.print(f"measured with: {describe(ev.measured)}", highlight=False)
    if args.which == "best" and args.region == "train":
        console.print("samples: a test set drawn apart from the validation set that selected "
                      "this checkpoint", highlight=False)
    console.print(metrics_table(ev.metrics, "metrics"))
    console.print(describe_table(ev))
    if args.by_label:
        console.print(frame_table(ev.error_by_label(args.by_label), "absolute error by label"))
    return 0


def cmd_sweep(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.config import DEFAULT_RESOLUTIONS
    from cnnprobe.runs import sweep_run

    run_id = store.resolve(args.run)
    count = (len(args.resolutions or DEFAULT_RESOLUTIONS) if args.kind == "resolution"
             else args.max_distractors + 1)
    columns = (TextColumn(f"[bold]{args.kind} sweep"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[last]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=args.json, transient=True) as progress:
        bar = progress.add_task("sweep", total=count, last="")

        def on_row(row: dict) -> None:
            progress.update(bar, advance=1,
                            last=f"{args.kind} {row[args.kind]}: MAE {row['mae']:.4g}")

        with first_ctrl_c_cancels(progress.console, "stopping after this size") as cancel:
            sweep = sweep_run(store, run_id, args.kind, resolutions=args.resolutions,
                              max_distractors=args.max_distractors, n=args.n, which=args.which,
                              device=args.device, cancel=cancel, on_row=on_row,
                              precise_bn=args.precise_bn)
    if args.json:
        print_json({"id": run_id, "kind": args.kind, "cancelled": sweep.cancelled,
                    "measured": sweep.measured, "table": sweep.table.to_dict(orient="records")})
    else:
        console.print(f"run {run_id[:8]}: {args.kind} sweep of the {args.which} checkpoint, "
                      f"{args.n} samples each", highlight=False)
        console.print(f"measured with: {describe(sweep.measured)}", highlight=False)
        console.print(frame_table(sweep.table, f"{args.kind} sweep"))
        console.print("stopped early: not saved" if sweep.cancelled else
                      f"saved with run {run_id[:8]} (`cnnprobe show {run_id[:8]}`)")
    return 130 if sweep.cancelled else 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="evaluate a stored run again",
                       description="Evaluate a stored run's weights on other task options "
                                   "(size, distractors, region); nothing is retrained. The "
                                   "metrics are kept with the run.")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--resolution", type=int, metavar="N", help="square images of N pixels")
    add_option_flags(p, "eval", metavars={"distractors": "K"})
    p.add_argument("--by-label", type=int, nargs="?", const=10, default=0, metavar="BINS",
                   help="also show the error binned by label (default 10 bins)")
    p.add_argument("--no-save", action="store_true", help="do not keep the metrics with the run")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sweep", parents=[common],
                       help="metrics of a stored run across resolutions or distractor counts",
                       description="Evaluate a stored run across resolutions or distractor "
                                   "counts; the table and every sample are kept with the run.")
    p.add_argument("run", help=RUN_HELP)
    add_option_flags(p, "sweep", types={"resolutions": parse_resolutions},
                     metavars={"resolutions": "LIST", "max_distractors": "K"})
    p.set_defaults(func=cmd_sweep)

