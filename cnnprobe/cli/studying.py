"""`cnnprobe study run`, `study show` and `study export`: a study's trials trained into the
store (only the missing ones), and its per-variant statistics (final metrics, sweeps,
re-evaluations) with a computed verdict and plots, on the terminal or in files."""

from __future__ import annotations

import argparse
import signal
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cnnprobe.cli.records import confirm_delete
from cnnprobe.cli.tables import literal, print_json, warn
from cnnprobe.cli.training import first_ctrl_c_cancels, stopped_line
from cnnprobe.config import ConfigError
from cnnprobe.report.formatting import counted, num
from cnnprobe.shown import shown
from cnnprobe.stopping import exit_code
from cnnprobe.store import RunStore, StoreError
from cnnprobe.studies.capacity import CONFIRM_TRIALS, WORKER_MEMORY

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
        console.print(f"study [bold]{literal(plan.name)}[/bold]: "
                      f"{counted(len(plan.variants), 'variant')} × "
                      f"{counted(len(plan.seeds), 'seed')} = {counted(len(trials), 'trial')} "
                      f"({literal(plan.source)})",
                      highlight=False)
    if not _confirm_size(args, console, store, plan):
        return 1
    done = [0]
    steps: dict[str, int] = {}  # trial key -> training steps done
    # One bar over every training step of the trials to train: its ETA counts steps.
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(
        "{task.fields[trials]}"), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn())
    kept: set[str] = set()
    waited: set[str] = set()  # trials first found running elsewhere
    with Progress(*columns, console=console, disable=args.json, transient=True) as bar:
        task = bar.add_task(literal(plan.name), total=None, trials="")

        def on_trial(trial, what: str, rec) -> None:
            if what == "training":
                kept.discard(trial.key)  # taken over from a driver that is gone
                steps.setdefault(trial.key, 0)
                bar.update(task, total=sum(t.config.train.total_steps for t in trials
                                           if t.key not in kept))
                return
            if what.startswith("running elsewhere"):  # not done: its end is said later
                kept.add(trial.key)
                waited.add(trial.key)
                if not args.json:
                    console.print(f"{trial.variant} seed {trial.seed}: {what}; waiting for "
                                  "it (taken over if its driver stops)", highlight=False,
                                  markup=False)
                return
            if what == "kept":
                kept.add(trial.key)
                if trial.key in waited:
                    what = f"{rec.status} elsewhere" if rec is not None else "done elsewhere"
            done[0] += 1
            bar.update(task, trials=f"{done[0]}/{len(trials)} trials")
            if not args.json and what != "kept":
                value = _trial_metric(store, rec, plan.metric)
                number = f" ({plan.metric} {num(value)})" if value is not None else ""
                console.print(f"[{done[0]}/{len(trials)}] {shown(trial.variant)} seed "
                              f"{trial.seed}: {what}{number}", highlight=False, markup=False)

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
                                 ship_code=args.ship_code, on_note=lambda line: console.print(
                                     line, highlight=False, markup=False))
    if args.json:
        print_json({"study": plan.name, "trained": progress.trained, "kept": progress.kept,
                    "failed": progress.failed, "skipped": progress.skipped,
                    "cancelled": progress.cancelled, "elsewhere": progress.elsewhere})
    else:
        elsewhere = (f", running elsewhere {len(progress.elsewhere)}" if progress.elsewhere
                     else "")
        console.print(f"trained {len(progress.trained)}, kept {len(progress.kept)}, failed "
                      f"{len(progress.failed)}, skipped {len(progress.skipped)}{elsewhere}"
                      + ("; stopped: run it again to continue" if progress.cancelled else
                         f"; `cnnprobe study show {args.study}{_same_study(args)}` reports it"),
                      highlight=False)
        line = stopped_line(cancel, "the trials in flight are stored as cancelled; run it "
                                    "again to continue") if progress.cancelled else None
        if line:
            console.print(line, highlight=False, markup=False)
    return exit_code(cancel.signum or signal.SIGINT) if progress.cancelled else 0


def _trial_metric(store: RunStore, rec, metric: str) -> float | None:
    """The study's metric of a finished trial, derived ones (resolution_ratio) included;
    None when it has none (failed, stopped, or the number could not be made)."""
    from cnnprobe.studies.stored import trial_metrics

    if rec is None or rec.status != "finished":
        return None
    if rec.metrics and metric in rec.metrics:
        return rec.metrics[metric]
    return trial_metrics(store, rec, []).get(metric)


def _confirm_size(args: argparse.Namespace, console: Console, store: RunStore, plan) -> bool:
    """Whether to start: yes unless more than CONFIRM_TRIALS trials are to be trained, then
    with --yes, or asked on a terminal with the count and a time estimate; StoreError-style
    refusal (one line, exit 1) without a terminal."""
    from cnnprobe.studies.capacity import estimate, usable_cpus
    from cnnprobe.studies.runner import pending_trials

    todo = pending_trials(store, plan, args.retry_failed)
    if len(todo) <= CONFIRM_TRIALS:
        return True
    workers = 1 if args.backend == "ray" else min(args.workers or 1, usable_cpus())
    size = (f"study {plan.name} would train {len(todo):,} trials (more than "
            f"{CONFIRM_TRIALS}), {estimate(store, plan.name, todo, workers)}")
    if args.yes:
        console.print(size, highlight=False, markup=False)
        return True
    if not sys.stdin.isatty():
        raise StoreError(f"{size}: pass --yes to start it, or ask for fewer trials "
                         "(--seeds, --scale, a smaller axis)")
    answer = console.input(f"{escape(size)}. Start? \\[y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    console.print("nothing started")
    return False


def _command(args: argparse.Namespace, plan) -> str:
    """The command that trains the study's missing trials (and, as `study show` with the
    same arguments, reports it)."""
    if args.study.endswith(".toml"):
        seeds = f" --seeds {len(plan.seeds)}" if plan.seeds == tuple(range(len(plan.seeds))) \
            else ""
        return f"cnnprobe study run {args.study}{seeds}"
    return f"cnnprobe study run {plan.name} --scale {args.scale} --seeds {len(plan.seeds)}"


def _pick_scale(args: argparse.Namespace, store: RunStore) -> None:
    """`--scale` of a built-in study when not given: cpu, unless the store holds the study
    at one other scale only (then that one, said in a line). A scale asked for without any
    trials while the store holds others: one line naming them and the flag to pass."""
    from cnnprobe.studies.stored import study_scales

    given = args.scale is not None
    args.scale = args.scale or "cpu"
    if args.study.endswith(".toml"):
        return
    scales = study_scales(store, args.study)
    if not scales or args.scale in scales:
        return
    held = ", ".join(f"{s} ({n} trials)" for s, n in scales.items())
    if not given and len(scales) == 1:
        args.scale = next(iter(scales))
        warn(f"study {args.study} has no trials at the default --scale cpu; showing its "
             f"only stored scale, {args.scale} ({scales[args.scale]} trials)")
        return
    how = " or ".join(f"--scale {s}" for s in scales)
    raise StoreError(f"study {args.study} has no trials at --scale {args.scale}"
                     f"{'' if given else ' (the default)'}; the store holds it at {held}: "
                     f"pass {how}")


def _report(args: argparse.Namespace, store: RunStore):
    from cnnprobe.studies.report import study_report

    plan = _plan(args)
    report = study_report(store, plan, command=_command(args, plan))
    for line in report.unreadable:  # the rest of the report is shown; these are named
        warn(line)
    return report


def cmd_study_show(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.report.study import (
        SHOWN_METRICS,
        evaluation_settings,
        interval,
        learned_cell,
        mean_sd,
        plots,
        sweep_kinds,
        sweep_table_rows,
    )

    _pick_scale(args, store)
    report = _report(args, store)
    data = report.as_dict()
    if args.json:
        print_json(data)
        return 0
    console.print(f"study [bold]{literal(report.name)}[/bold]: {literal(report.question)}",
                  highlight=False)
    if report.controls:
        console.print(f"design: {shown(report.controls)}", highlight=False, markup=False)
    metrics = [m for m in (report.metric, *SHOWN_METRICS)
               if any(m in ms for ms in report.variants.values())]
    metrics = list(dict.fromkeys(metrics))

    def tables(name, keyed: int | None = None) -> list[Table]:
        """The report's tables, variants named by `name`; `keyed`: the keys' width."""
        table = Table(title="mean ± SD over seeds (n), 95% interval of the mean")
        table.add_column("variant", width=keyed)
        table.add_column("trials")
        table.add_column("learned")
        for m in metrics:  # a long metric's name folds rather than loses its end
            table.add_column(m, justify="right", overflow="fold")
        for label, v in data["variants"].items():
            status = ", ".join(f"{n} {s}" for s, n in sorted(v["statuses"].items()))
            cells = []
            for m in metrics:
                s = v["metrics"].get(m)
                cells.append("-" if mean_sd(s) == "-" else f"{mean_sd(s)}\n{interval(s)}")
            table.add_row(name(label), literal(status) or "none yet", learned_cell(v),
                          *cells, end_section=len(metrics) > 0)
        out = [table]
        for kind in sweep_kinds(data):
            header, rows = sweep_table_rows(data, kind)
            sweep = Table(title=f"{kind} sweep: {data['sweep_metrics'][kind]}, mean ± SD (n)")
            sweep.add_column("variant", width=keyed)
            for h in header[1:]:
                sweep.add_column(h, justify="right")
            for row in rows:
                sweep.add_row(name(row[0]), *(literal(cell) for cell in row[1:]))
            out.append(sweep)
        settings = evaluation_settings(data)
        if settings:
            ev = Table(title="re-evaluations: mae, mean ± SD (n)")
            ev.add_column("variant", width=keyed)
            for setting in settings:
                ev.add_column(setting, justify="right")
            for label, v in data["variants"].items():
                ev.add_row(name(label), *(mean_sd(v["evaluations"].get(s, {}).get("mae"))
                                          for s in settings))
            out.append(ev)
        return out

    shown_tables = tables(literal)
    wide = console.options.update_width(10_000)
    if any(console.measure(t, options=wide).maximum > console.width for t in shown_tables):
        # Labels cut to `name=dist…` cannot be told apart: a short key each, named once.
        keys = {label: f"v{i}" for i, label in enumerate(data["variants"], 1)}
        console.print("variants:", highlight=False)
        for label, key in keys.items():
            console.print(f"  {key:>{len(str(len(keys))) + 1}}  {shown(label)}",
                          highlight=False, markup=False, soft_wrap=True)
        shown_tables = tables(lambda label: keys.get(label, literal(label)),
                              keyed=max(len("variant"), *map(len, keys.values())))
    for table in shown_tables:
        console.print(table)
    if report.missing:
        console.print(f"{report.missing} trials not run yet: `{report.command}` trains them",
                      highlight=False, markup=False)
    for line in [*report.measured_lines(), *(f"note: {n}" for n in report.notes)]:
        console.print(shown(line), highlight=False, markup=False)
    for group, text in report.verdicts.items():
        console.print(shown(f"verdict{f' ({group})' if group else ''}: {text}"),
                      highlight=False, markup=False)
    if not args.no_plots:
        for plot in plots(data):
            console.print(shown(plot, newlines=True), highlight=False, markup=False,
                          soft_wrap=True)
    return 0


def cmd_study_export(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.report.formatting import slug
    from cnnprobe.report.study import export_study

    _pick_scale(args, store)
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
    from cnnprobe.studies.stored import stored_studies, study_scales

    studies = stored_studies(store)
    scales = {s: study_scales(store, s) for s in studies}
    if args.json:
        print_json([{"study": s, "trials": counts, "scales": scales[s]}
                    for s, counts in studies.items()])
        return 0
    if not studies:
        console.print("no studies in this store: `cnnprobe study run pooling --scale smoke` "
                      "runs one", highlight=False)
        return 0
    table = Table(title=f"studies in {store.root}")
    table.add_column("study")
    table.add_column("scale")
    table.add_column("trials", justify="right")
    table.add_column("by status")
    for name, counts in studies.items():
        table.add_row(literal(name), ", ".join(scales[name]) or "-",
                      str(sum(counts.values())),
                      literal(", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
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
                          f"study {shown(args.study)}: {len(records)} runs and their files"):
        return 1
    for rec in records:
        store.delete(rec.id)
    console.print(f"deleted study {shown(args.study)}: {len(records)} runs", highlight=False,
                  markup=False)
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
        v.add_argument("--scale", choices=("smoke", "cpu", "full"),
                       default="cpu" if verb == "run" else None,
                       help="a built-in study's scale (default: cpu" + (
                           ")" if verb == "run" else ", or the only scale the store "
                           "holds the study at)"))
        v.add_argument("--seeds", type=int, help="seeds per variant (default: the plan's)")
        if verb == "run":
            v.add_argument("--retry-failed", action="store_true",
                           help="train failed and skipped trials again")
            v.add_argument("--yes", action="store_true",
                           help=f"start a study of more than {CONFIRM_TRIALS} trials to train "
                                "without asking (it shows the count and a time estimate)")
            v.add_argument("--workers", type=int, default=None,
                           help="trials in parallel worker processes (default: one per GPU, "
                                "else 1); on the CPU they share its cores; capped to the "
                                f"usable CPUs, the memory (about {WORKER_MEMORY / 2**30:.1f} "
                                "GiB each) and the trials")
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
