"""`cnnprobe study run`, `study show` and `study export`: a study's trials trained into the
store (only the missing ones), and its per-variant statistics (final metrics, sweeps,
re-evaluations) with a computed verdict and plots, on the terminal or in files."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from cnnprobe.cli.records import confirm_delete
from cnnprobe.cli.tables import print_json
from cnnprobe.cli.training import first_ctrl_c_cancels
from cnnprobe.config import ConfigError
from cnnprobe.report.formatting import num
from cnnprobe.store import RunStore, StoreError

PLAN_HELP = "a built-in study (resolution, pretrained, pooling, position, distractors, " \
            "count, area) or a plan file ending in .toml"


def _plan(args: argparse.Namespace):
    from cnnprobe.studies import builtin_plan, load_plan

    if args.study.endswith(".toml"):
        return load_plan(args.study, seeds=args.seeds)
    return builtin_plan(args.study, args.scale, seeds=args.seeds)


def _same_study(args: argparse.Namespace) -> str:
    """The options that name the same trials again, for a hint's command."""
    out = "" if args.study.endswith(".toml") or args.scale == "cpu" else f" --scale {args.scale}"
    return out + (f" --seeds {args.seeds}" if args.seeds else "")


RAY_ONLY = ("address", "cpus_per_trial", "max_retries", "ship_code")


def _backend_options(args: argparse.Namespace) -> None:
    """An option of the other backend is refused, not ignored: `--address` without
    `--backend ray` would train on this machine while you think it runs on the cluster."""
    if args.backend != "ray":
        for dest in RAY_ONLY:
            value = getattr(args, dest)
            if value is not None and value is not False:  # --max-retries 0 is given
                raise ConfigError(f"--{dest.replace('_', '-')}", value,
                                  "only with --backend ray (add it, or leave this out)")
        return
    if args.workers is not None:
        raise ConfigError("--workers", args.workers, "only with --backend local: on Ray, "
                          "--cpus-per-trial and --gpus-per-trial set how many trials run at "
                          "once")
    from cnnprobe.studies.ray_backend import check_options, import_ray, resolve_address

    import_ray()  # these are said before the header line of the study
    check_options(2 if args.max_retries is None else args.max_retries,
                  1.0 if args.cpus_per_trial is None else args.cpus_per_trial,
                  args.gpus_per_trial)
    resolve_address(args.address)  # ray://, a malformed address; whether it answers: later


def cmd_study_run(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cnnprobe.studies.runner import run_study

    _backend_options(args)
    plan = _plan(args)  # a bad plan stops here, before anything is stored
    trials = plan.trials()
    if not args.json:
        console.print(f"study [bold]{plan.name}[/bold]: {len(plan.variants)} variants × "
                      f"{len(plan.seeds)} seeds = {len(trials)} trials ({plan.source})",
                      highlight=False)
    done = [0]
    steps: dict[str, int] = {}  # trial key -> training steps done
    # One bar over every training step of the trials to train: its ETA counts steps.
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(
        "{task.fields[trials]}"), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn())
    kept: set[str] = set()
    with Progress(*columns, console=console, disable=args.json, transient=True) as bar:
        task = bar.add_task(plan.name, total=None, trials="")

        def on_trial(trial, what: str, rec) -> None:
            if what == "training":
                steps.setdefault(trial.key, 0)
                bar.update(task, total=sum(t.config.train.total_steps for t in trials
                                           if t.key not in kept))
                return
            if what in ("kept", "running elsewhere"):
                kept.add(trial.key)
            done[0] += 1
            bar.update(task, trials=f"{done[0]}/{len(trials)} trials")
            if not args.json and what not in ("kept",):
                mae = num(rec.metrics.get(plan.metric)) if rec is not None and rec.metrics \
                    else "-"
                console.print(f"[{done[0]}/{len(trials)}] {trial.variant} seed {trial.seed}: "
                              f"{what} ({plan.metric} {mae})", highlight=False, markup=False)

        def on_step(trial, step: int, total: int) -> None:
            steps[trial.key] = step
            bar.update(task, completed=sum(steps.values()))

        with first_ctrl_c_cancels(console, "stopping the study's trials at their next step"
                                  ) as cancel:
            progress = run_study(store, plan, cancel=cancel, retry_failed=args.retry_failed,
                                 on_trial=on_trial, on_step=on_step, workers=args.workers,
                                 gpus_per_trial=args.gpus_per_trial, backend=args.backend,
                                 address=args.address,
                                 max_retries=2 if args.max_retries is None else
                                 args.max_retries,
                                 cpus_per_trial=1.0 if args.cpus_per_trial is None else
                                 args.cpus_per_trial,
                                 ship_code=args.ship_code)
    if args.json:
        print_json({"study": plan.name, "trained": progress.trained, "kept": progress.kept,
                    "failed": progress.failed, "skipped": progress.skipped,
                    "cancelled": progress.cancelled})
    else:
        console.print(f"trained {len(progress.trained)}, kept {len(progress.kept)}, failed "
                      f"{len(progress.failed)}, skipped {len(progress.skipped)}"
                      + ("; stopped: run it again to continue" if progress.cancelled else
                         f"; `cnnprobe study show {args.study}{_same_study(args)}` reports it"),
                      highlight=False)
    return 130 if progress.cancelled else 0


def _command(args: argparse.Namespace, plan) -> str:
    """The command that trains the study's missing trials (and, as `study show` with the
    same arguments, reports it)."""
    if args.study.endswith(".toml"):
        seeds = f" --seeds {len(plan.seeds)}" if plan.seeds == tuple(range(len(plan.seeds))) \
            else ""
        return f"cnnprobe study run {args.study}{seeds}"
    return f"cnnprobe study run {plan.name} --scale {args.scale} --seeds {len(plan.seeds)}"


def _report(args: argparse.Namespace, store: RunStore):
    from cnnprobe.studies.report import study_report

    plan = _plan(args)
    return study_report(store, plan, command=_command(args, plan))


def cmd_study_show(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.report.study import (
        SHOWN_METRICS,
        evaluation_settings,
        interval,
        mean_sd,
        plots,
        sweep_kinds,
        sweep_table_rows,
    )

    report = _report(args, store)
    data = report.as_dict()
    if args.json:
        print_json(data)
        return 0
    console.print(f"study [bold]{report.name}[/bold]: {report.question}", highlight=False)
    metrics = [m for m in (report.metric, *SHOWN_METRICS)
               if any(m in ms for ms in report.variants.values())]
    metrics = list(dict.fromkeys(metrics))
    table = Table(title="mean ± SD over seeds (n), 95% interval of the mean")
    table.add_column("variant")
    table.add_column("trials")
    for m in metrics:
        table.add_column(m, justify="right")
    for label, v in data["variants"].items():
        status = ", ".join(f"{n} {s}" for s, n in sorted(v["statuses"].items()))
        cells = []
        for m in metrics:
            s = v["metrics"].get(m)
            cells.append("-" if mean_sd(s) == "-" else f"{mean_sd(s)}\n{interval(s)}")
        table.add_row(label, status or "none yet", *cells, end_section=len(metrics) > 0)
    console.print(table)
    for kind in sweep_kinds(data):
        header, rows = sweep_table_rows(data, kind)
        sweep = Table(title=f"{kind} sweep: {data['sweep_metrics'][kind]}, mean ± SD (n)")
        sweep.add_column("variant")
        for h in header[1:]:
            sweep.add_column(h, justify="right")
        for row in rows:
            sweep.add_row(*row)
        console.print(sweep)
    settings = evaluation_settings(data)
    if settings:
        ev = Table(title="re-evaluations: mae, mean ± SD (n)")
        ev.add_column("variant")
        for setting in settings:
            ev.add_column(setting, justify="right")
        for label, v in data["variants"].items():
            ev.add_row(label, *(mean_sd(v["evaluations"].get(s, {}).get("mae"))
                                for s in settings))
        console.print(ev)
    if report.missing:
        console.print(f"{report.missing} trials not run yet: `{report.command}` trains them",
                      highlight=False, markup=False)
    for group, text in report.verdicts.items():
        console.print(f"verdict{f' ({group})' if group else ''}: {text}", highlight=False,
                      markup=False)
    if not args.no_plots:
        for plot in plots(data):
            console.print(plot, highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_study_export(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.report.formatting import slug
    from cnnprobe.report.study import export_study

    report = _report(args, store)
    stem = f"study-{slug(report.name)}" + ("" if args.study.endswith(".toml") else
                                           f"-{args.scale}")
    written = export_study(report.as_dict(), args.format, args.out, force=args.force,
                           stem=stem)
    if args.json:
        print_json({"files": [str(p) for p in written]})
    else:
        for path in written:  # whole, for scripts: a long path is not wrapped
            console.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_study_list(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.studies.runner import stored_studies

    studies = stored_studies(store)
    if args.json:
        print_json([{"study": s, "trials": counts} for s, counts in studies.items()])
        return 0
    if not studies:
        console.print("no studies in this store: `cnnprobe study run pooling --scale smoke` "
                      "runs one", highlight=False)
        return 0
    table = Table(title=f"studies in {store.root}")
    table.add_column("study")
    table.add_column("trials", justify="right")
    table.add_column("by status")
    for name, counts in studies.items():
        table.add_row(name, str(sum(counts.values())),
                      ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    console.print(table)
    return 0


def cmd_study_rm(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    records = store.list_runs(tag=f"study:{args.study}")
    if not records:
        raise StoreError(f"no study {args.study!r} in {store.root}: `cnnprobe study list` "
                         "lists them")
    running = [r for r in records if r.status == "running"]
    if running:
        raise StoreError(f"study {args.study} has {len(running)} running trials (e.g. "
                         f"{running[0].short_id}): stop them first")
    if not confirm_delete(console, args.yes,
                          f"study {args.study}: {len(records)} runs and their files"):
        return 1
    for rec in records:
        store.delete(rec.id)
    console.print(f"deleted study {args.study}: {len(records)} runs", highlight=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("study", help="run a study (configs × seeds) and report it",
                       description="A study answers one question with a grid of run "
                                   "configs × seeds; every trial is an ordinary stored run.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, func, text in (("run", cmd_study_run, "train the trials not yet in the store"),
                             ("show", cmd_study_show, "per-variant statistics and verdict"),
                             ("export", cmd_study_export,
                              "write the report to a file (md, json or csv)")):
        v = verbs.add_parser(verb, parents=[common], help=text, description=text)
        v.add_argument("study", help=PLAN_HELP)
        v.add_argument("--scale", choices=("smoke", "cpu", "full"), default="cpu",
                       help="a built-in study's scale (default: cpu)")
        v.add_argument("--seeds", type=int, help="seeds per variant (default: the plan's)")
        if verb == "run":
            v.add_argument("--retry-failed", action="store_true",
                           help="train failed and skipped trials again")
            v.add_argument("--workers", type=int, default=None,
                           help="trials in parallel worker processes (default: one per GPU, "
                                "else 1); on the CPU they share its cores")
            v.add_argument("--gpus-per-trial", type=float, default=None, metavar="F",
                           help="share of a GPU per trial, e.g. 0.25 runs four on each GPU")
            v.add_argument("--backend", choices=("local", "ray"), default="local",
                           help="local worker processes (default), or Ray tasks "
                                "(pip install -e '.[ray]'; docs/scale-out.md)")
            v.add_argument("--address", default=None,
                           help="with --backend ray: the cluster to join (auto, or HOST:PORT "
                                "of its GCS); default: $RAY_ADDRESS, else start a local Ray "
                                "instance that listens on 127.0.0.1 only")
            v.add_argument("--max-retries", type=int, default=None,
                           help="with --backend ray: runs of a trial whose worker died "
                                "(default 2), then it is stored as failed")
            v.add_argument("--cpus-per-trial", type=float, default=None,
                           help="with --backend ray: CPUs a trial reserves (default 1)")
            v.add_argument("--ship-code", action="store_true",
                           help="with --backend ray: send this checkout's cnnprobe/ to "
                                "the workers (the files git tracks, nothing else; Ray's "
                                "runtime_env working_dir) instead of their installed one")
        if verb == "show":
            v.add_argument("--no-plots", action="store_true",
                           help="leave out the text plots")
        if verb == "export":
            v.add_argument("--format", choices=("md", "json", "csv"), default="md",
                           help="md (tables, verdict, plots), json or csv (default: md)")
            v.add_argument("--out", metavar="PATH", help="a file, or a folder (existing, or "
                           "ending in /); default: exports/")
            v.add_argument("--force", action="store_true", help="overwrite existing files")
        v.set_defaults(func=func)
    v = verbs.add_parser("list", parents=[common], help="the studies in the store",
                         description="The studies with trials in the store.")
    v.set_defaults(func=cmd_study_list)
    v = verbs.add_parser("rm", parents=[common], help="delete a study's trials (asks first)",
                         description="Delete every run of a study, with its files.")
    v.add_argument("study", help="the study's name")
    v.add_argument("--yes", action="store_true", help="do not ask")
    v.set_defaults(func=cmd_study_rm)
