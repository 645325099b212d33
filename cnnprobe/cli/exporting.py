"""`cnnprobe export` and `compare`: runs as Markdown, JSON or CSV files, or side by side."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from cnnprobe.cli.tables import RUN_REF_HELP, literal, print_json, warn
from cnnprobe.measurement import describe_short
from cnnprobe.report.export import FORMATS, export_comparison, export_run
from cnnprobe.report.formatting import num
from cnnprobe.report.summary import comparison
from cnnprobe.store import RunStore

RUN_HELP = RUN_REF_HELP


def cmd_export(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    run_ids = list(dict.fromkeys(store.resolve(r) for r in args.runs))
    if len(run_ids) > 1 and args.out and not args.out.endswith("/"):
        from pathlib import Path

        if not Path(args.out).is_dir():
            from cnnprobe.config import ConfigError

            raise ConfigError("--out", args.out, "a folder (ending in /) when exporting "
                              "several runs")
    written = []
    for run_id in run_ids:
        written += export_run(store, run_id, args.format, args.out, force=args.force,
                              warn=warn)
    if args.json:
        print_json({"files": [str(p) for p in written]})
    else:
        for path in written:
            console.print(f"wrote {path}", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    run_ids = list(dict.fromkeys(store.resolve(r) for r in args.runs))
    if args.format or args.out:
        written = export_comparison(store, run_ids, args.format or "md", args.out,
                                    force=args.force)
        if args.json:
            print_json({"files": [str(p) for p in written]})
        else:
            console.print(f"wrote {written[0]}", highlight=False)
        return 0
    comp = comparison(store, run_ids)
    if args.json:
        print_json(comp)
        return 0
    runs = comp["runs"]
    table = Table(title=f"{len(runs)} runs: settings that differ, then final metrics")
    table.add_column("")
    for r in runs:
        table.add_column(f"{r['id'][:8]}\n{literal(r['name'])}", justify="right")
    table.add_row("status", *(literal(r["status"]) for r in runs))
    table.add_row("steps", *(str(r["steps_done"]) for r in runs))
    for key in comp["differences"]:
        table.add_row(literal(key), *(literal(num(r["config"][key])) for r in runs))
    table.add_section()
    for m in comp["metric_names"]:
        table.add_row(f"[bold]{literal(m)}[/bold]", *(num(r["metrics"].get(m)) for r in runs))
    table.add_row("measured with", *(literal(describe_short(r.get("measured")))
                                     for r in runs))
    table.add_row("[bold]best val mae[/bold] (selected on validation)",
                  *(num(r["best_val_mae"]) for r in runs))
    console.print(table)
    for kind, by_value in comp["sweep_mae"].items():
        sweep = Table(title=f"{kind} sweep MAE")
        sweep.add_column(kind, justify="right")
        for r in runs:
            sweep.add_column(r["id"][:8], justify="right")
        for value in sorted(by_value, key=float):
            sweep.add_row(value, *(num(by_value[value].get(r["id"])) for r in runs))
        measured = comp.get("sweep_measured", {}).get(kind, {})
        sweep.add_row("measured with", *(literal(describe_short(measured[r["id"]]))
                                         if r["id"] in measured else "-" for r in runs))
        console.print(sweep)
        for r in runs:  # a sweep made before a resume is not of the final metrics' weights
            at = (measured.get(r["id"]) or {}).get("step")
            final = (r.get("measured") or {}).get("step")
            if at is not None and final is not None and at != final:
                short = r["id"][:8]
                console.print(f"note: {short}'s {kind} sweep is of step {at}, its final "
                              f"metrics of step {final}: `cnnprobe sweep {short} --kind {kind}` "
                              "sweeps it again", highlight=False, markup=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="write run summaries to files",
                       description="Write each run's summary (config, metrics, describe(), "
                                   "sweeps, text plots; CSV: history, sweeps, predictions) to "
                                   "exports/ or --out. Existing files are kept unless --force; "
                                   "a device, FIFO or dangling symlink is never written.")
    p.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    p.add_argument("--format", choices=FORMATS, default="md", help="md, json or csv "
                   "(default: md)")
    _out_flags(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", parents=[common], help="runs side by side",
                       description="Runs side by side: the settings that differ, then the "
                                   "final metrics (and sweep MAEs). With --format or --out, "
                                   "written to a file instead.")
    p.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    p.add_argument("--format", choices=FORMATS, help="write the table as md, json or csv")
    _out_flags(p)
    p.set_defaults(func=cmd_compare)


def _out_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="PATH",
                   help="a file, or a folder (existing, or ending in /); default: exports/")
    p.add_argument("--force", action="store_true", help="overwrite existing files (regular "
                   "files only: never a device, FIFO or socket)")
