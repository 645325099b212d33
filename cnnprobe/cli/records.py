"""`cnnprobe runs`, `show`, `rm`, `tag` and `note`: looking at and tidying stored runs."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cnnprobe.cli.tables import (
    RUN_REF_HELP,
    frame_table,
    literal,
    metrics_table,
    print_json,
    probes_table,
    record_json,
    runs_table,
    status_text,
)
from cnnprobe.config import ConfigError, RunConfig
from cnnprobe.measurement import best_of, describe
from cnnprobe.report.formatting import ago, counted, duration, num
from cnnprobe.shown import shown
from cnnprobe.store import STATUSES, RunStore, StoreError

RUN_HELP = RUN_REF_HELP


# A table on the terminal shows this many runs unless --limit says otherwise: thousands of
# lines scroll everything else away (and `--json` or `--limit 0` give them all).
TABLE_LIMIT = 100


def cmd_runs(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    if args.limit is not None and args.limit < 0:
        raise ConfigError("--limit", args.limit, "0 (every run) or more")
    limit = args.limit or None  # 0: every run
    if args.limit is None and not args.json:
        limit = TABLE_LIMIT
    filters = {"task": args.task, "model": args.model, "status": args.status, "tag": args.tag}
    if args.filter:  # the TUI's `/` query (cnnprobe.store.query), over every run
        from cnnprobe.store.query import filter_runs

        records = filter_runs(store.list_runs(**filters), args.filter)
        total, records = len(records), records[:limit] if limit else records
    else:
        records = store.list_runs(**filters, limit=limit)
        total = None
    if args.json:
        print_json([record_json(r) for r in records])
    elif not records:
        console.print(f"no runs in {store.path}" + (" match" if any(
            (args.task, args.model, args.status, args.tag, args.filter))
            else " yet: `cnnprobe train`"))
    else:
        if total is None:  # how many there are, said always (not only past 100)
            total = len(records) if limit is None or len(records) < limit else \
                store.count_runs(**filters)
        matching = " matching" if any((args.task, args.model, args.status, args.tag,
                                        args.filter)) else ""
        console.print(runs_table(records, f"{counted(total, 'run')}{matching} in "
                                          f"{store.path} (newest first)"))
        console.print("MAE: each run's final validation with the weights, BatchNorm "
                      "statistics and input normalisation its record names (`cnnprobe show "
                      "RUN`)" + ("; * the best validation MAE so far of a run that did not "
                                 "finish (selected on validation)" if any(
                                     "mae" not in r.metrics and r.best_val_mae is not None
                                     for r in records) else ""),
                      style="dim", highlight=False)
        if args.limit is None and len(records) == limit:
            if total > limit:
                console.print(f"the newest {limit} of {total:,} runs; --limit N for more, "
                              "--limit 0 for all", style="dim", highlight=False)
    return 0


def _config_lines(config: RunConfig) -> list[str]:
    """Settings that differ from the defaults, one line per section."""
    default, actual = RunConfig().to_dict(), config.to_dict()
    lines = []
    for section, values in actual.items():
        changed = [f"{k}={literal(num(v))}" for k, v in values.items()
                   if default[section].get(k) != v]
        lines.append(f"[bold]{section}[/bold]: " + (", ".join(changed) or "defaults"))
    return lines


def cmd_show(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    run_id = store.resolve(args.run)
    rec = store.get(run_id)
    if args.json:
        from cnnprobe.report.summary import run_summary

        summary = run_summary(store, run_id)
        summary.pop("predictions")  # per-sample arrays: `cnnprobe export --format json`
        for sweep in summary["sweeps"].values():
            sweep.pop("samples")
        print_json(summary)
        return 0
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    v = rec.versions
    for label, value in (
            ("id", rec.id), ("name", rec.name), ("status", status_text(rec)),
            ("reason", rec.reason), ("kind", rec.kind + (f" of {rec.parent_id}"
                                                         if rec.parent_id else "")),
            ("tags", ", ".join(rec.tags)), ("note", rec.note),
            ("created", ago(rec.created_at)), ("finished", ago(rec.finished_at)),
            ("steps", f"{rec.steps_done} of {rec.total_steps}, {rec.samples_seen:,} samples, "
                      f"{duration(rec.wall_time_s)}"),
            ("resumed at step", ", ".join(map(str, rec.resumed_at))),
            ("device", f"{rec.device} ({rec.device_name})" if rec.device else ""),
            ("parameters", f"{rec.parameters:,}" if rec.parameters else ""),
            ("code", f"cnnprobe {v.get('cnnprobe', '?')}, torch {v.get('torch', '?')}, "
                     f"torchvision {v.get('torchvision', '?')}"
                     + (f", commit {v['git_commit'][:12]}" if v.get("git_commit") else "")
                     + (f"; {v['threads']} torch thread{'s' if v['threads'] != 1 else ''}"
                        if v.get("threads") else "")),
            ("warning", rec.config_warning)):
        if value:  # status is markup of our own; the rest is text as stored
            info.add_row(label, value if label == "status" else
                         literal(value, newlines=label == "note"))
    console.print(info)
    for line in _config_lines(rec.config):
        console.print(line, highlight=False)
    if rec.metrics:
        console.print(metrics_table(rec.metrics, "final metrics"))
        console.print(f"measured with: {literal(describe(rec.measured))}", highlight=False)
        best = best_of(store.val_history(run_id))
        if best is not None and best["step"] != rec.steps_done:
            console.print(f"best validation: MAE {num(best['mae'])}, R² {num(best.get('r2'))} "
                          f"at step {best['step']} (the `best` checkpoint, selected on validation: "
                          "optimistic; `cnnprobe eval RUN --which best` scores it on a test "
                          "set)", highlight=False)
    elif rec.best_val_mae is not None:
        console.print(f"best validation MAE so far: {num(rec.best_val_mae)} (selected on "
                      "validation: optimistic; `cnnprobe eval RUN --which best` scores it on "
                      "a test set)")
    for info_row in store.sweeps(run_id):
        sweep = store.sweep_table(run_id, info_row["kind"])  # its samples file is not read
        console.print(frame_table(sweep, literal(
            f"{info_row['kind']} sweep ({info_row['options'].get('which')} checkpoint, "
            f"{ago(info_row['created_at'])})")))
        console.print(f"  measured with: {literal(describe(info_row['options'].get('measured')))}",
                      highlight=False)
    probes, info = store.probes(run_id), store.probes_info(run_id)
    if probes is not None and info is not None:
        o = info["options"]
        console.print(probes_table(probes.to_dict(orient="records"), literal(
            f"linear probes: {o.get('which')} @ step {o.get('step')}, {o.get('height')}x"
            f"{o.get('width')}, {o.get('n_train')}/{o.get('n_test')} samples, "
            f"{ago(info['created_at'], short=True)}")))
        console.print(f"  measured with: {literal(describe(o.get('measured')))}",
                      highlight=False)
    evals = store.evaluations(run_id)
    if evals:
        table = Table(title="re-evaluations")
        for col in ("when", "checkpoint", "BatchNorm", "size", "distractors", "region", "n",
                    "MAE", "R²"):
            table.add_column(col)
        for e in evals:
            o, m = e["options"], e["metrics"]
            table.add_row(*(literal(cell) for cell in (
                ago(e["created_at"], short=True), f"{o.get('which')} @ {o.get('step')}",
                (o.get("measured") or {}).get("batchnorm", "not recorded"),
                f"{o.get('height')}x{o.get('width')}", o.get("distractors"), o.get("region"),
                o.get("n"), num(m.get("mae")), num(m.get("r2")))))
        console.print(table)
    files = [f"{w} (step {_ckpt_step(store, run_id, w)})"
             for w in ("last", "best") if store.checkpoint_path(run_id, w).is_file()]
    console.print("checkpoints: " + (", ".join(files) if files else "none"), highlight=False)
    children = store.list_runs(parent_id=run_id)
    if children:
        console.print(runs_table(children, "fine-tuned from this run"))
    return 0


def _ckpt_step(store: RunStore, run_id: str, which: str) -> str:
    try:
        return str(store.checkpoint_step(run_id, which))
    except StoreError:
        return "unreadable"


def confirm_delete(console: Console, yes: bool, what: str) -> bool:
    """Whether to delete `what`: yes with --yes, else asked on a terminal; StoreError
    without one (a script must say --yes)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise StoreError("refusing to delete without confirmation: pass --yes")
    answer = console.input(f"delete {escape(shown(what))}? \\[y/N] ")  # not rich markup
    if answer.strip().lower() in ("y", "yes"):
        return True
    console.print("nothing deleted")
    return False


def cmd_rm(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    refs = [store.lookup(r) for r in args.runs]  # all found before any goes
    records = [store.get(ref.id) for ref in dict((ref.id, ref) for ref in refs).values()]
    for rec in records:
        if rec.status == "running":
            raise StoreError(f"run {rec.short_id} is still running (pid {rec.pid} on "
                             f"{shown(rec.host)}): stop it first")
    # Full ids and names, and how a reference that was not the run's id or name found it:
    # what goes is seen before it goes, with --yes too.
    how = {ref.id: f", by {ref.how} '{shown(arg.strip())}'"
           for arg, ref in zip(args.runs, refs, strict=True) if ref.how in ("id prefix", "latest")}
    listed = [f"run {r.id} ({shown(r.name)}, {r.status}{how.get(r.id, '')})" for r in records]
    if args.yes and how:
        for line in listed:
            console.print(f"deleting {line}", markup=False, highlight=False, soft_wrap=True)
    what = (listed[0] + " and its files" if len(listed) == 1
            else f"{len(listed)} runs and their files: " + "; ".join(listed))
    if not confirm_delete(console, args.yes, what):
        return 1
    for rec in records:
        store.delete(rec.id)
        console.print(f"deleted run {rec.id} ({shown(rec.name)})", markup=False,
                      highlight=False)
    return 0


def cmd_tag(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    run_id = store.resolve(args.run)
    tags = store.get(run_id).tags
    tags = ([t for t in tags if t not in args.tags] if args.remove
            else tags + [t for t in args.tags if t not in tags])
    store.set_tags(run_id, tags)
    tags = store.get(run_id).tags
    if args.json:
        print_json({"id": run_id, "tags": tags})
    else:
        console.print(f"run {run_id[:8]} tags: {shown(', '.join(tags)) or '(none)'}",
                      markup=False, highlight=False)
    return 0


def cmd_note(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    run_id = store.resolve(args.run)
    if args.text is not None:
        store.set_note(run_id, args.text)
    if args.name is not None:
        store.rename(run_id, args.name)
    rec = store.get(run_id)
    if args.json:
        print_json({"id": run_id, "name": rec.name, "note": rec.note})
    else:
        console.print(f"run {run_id[:8]} ({shown(rec.name)}): "
                      f"{shown(rec.note, newlines=True) or '(no note)'}", markup=False,
                      highlight=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("runs", parents=[common], help="list stored runs, newest first",
                       description="List the runs in the store, newest first.")
    p.add_argument("--task", help="only runs of this task")
    p.add_argument("--model", help="only runs of this model")
    p.add_argument("--status", choices=STATUSES, help="only runs with this status")
    p.add_argument("--tag", help="only runs with this tag")
    p.add_argument("--filter", metavar="QUERY",
                   help="the TUI's filter: words and field:value terms (name, task, model, "
                        "status, tag, study, res, id), !word negates, all must match; e.g. "
                        "'status:failed model:resnet18' or 'study:pooling !tag:old'")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"at most N runs; 0: all (default: the newest {TABLE_LIMIT} in the "
                        "table, all with --json)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", parents=[common], help="one run: record, metrics, sweeps",
                       description="Show a run's record, configuration, final metrics, sweeps, "
                                   "linear probes (`cnnprobe inspect`) and re-evaluations.")
    p.add_argument("run", help=RUN_HELP)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("rm", parents=[common], help="delete runs and their files",
                       description="Delete runs with their history and checkpoints.")
    p.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("tag", parents=[common], help="add (or --remove) tags on a run",
                       description="Add tags to a run, or remove them with --remove.")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("tags", nargs="+", metavar="TAG", help="one word each")
    p.add_argument("--remove", action="store_true", help="remove these tags instead")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("note", parents=[common], help="show or set a run's note (and name)",
                       description="Show a run's note, or set it (an empty TEXT clears it).")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("text", nargs="?", help="the new note")
    p.add_argument("--name", help="also rename the run")
    p.set_defaults(func=cmd_note)
