"""The `cnnprobe` command line: a thin layer over the engine."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import MISSING, fields
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cnnprobe import __version__
from cnnprobe.config import (
    PRESETS,
    ConfigError,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    apply_preset,
)
from cnnprobe.events import EvaluationEvent, RunStarted, StepEvent

SECTIONS = (("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig))
HELP = {
    "height": "image height in pixels", "width": "image width in pixels",
    "coord_channels": "add the x/(W+1) and y/(H+1) coordinate channels",
    "units": "target units: pixels, or normalized (by the diagonal, or the area for area)",
    "distractors": "extra objects of another kind during training",
    "eval_distractors": "extra objects during evaluation (default: as in training)",
    "split": "uniform, or quadrant (training never uses the held-out quadrant)",
    "pretrained": "ImageNet weights (torchvision backbones)",
    "weights_path": "load backbone weights from this file instead of the download cache",
    "freeze_preconv": "seednet: really freeze the 1x1 preconv (the notebook did not)",
    "pool": "plaincnn: downsampling between blocks", "global_pool": "global pooling",
    "steps": "training steps (wins over --epochs)", "epochs": "epochs of --samples-per-epoch",
    "eval_every": "validate every N steps (0: ten times a run)",
    "log_every": "read the loss back every N steps (0: 1 on CPU, 20 on CUDA)",
    "amp": "bf16 autocast on CUDA", "device": "auto, cpu, cuda or cuda:N",
}
CHOICES = {"units": ("pixels", "normalized"), "split": ("uniform", "quadrant"),
           "loss": ("l1", "mse", "huber"), "optimizer": ("adam", "adamw", "sgd"),
           "pool": ("max", "avg", "stride", "none"), "global_pool": ("max", "avg")}


def _flag(section: str, name: str) -> str:
    """Task settings are unprefixed; model settings whose names clash get `model-`."""
    if name == "name":
        return f"--{section}"
    if section == "model" and name in ("width", "depth"):
        return f"--model-{name}"
    return "--" + name.replace("_", "-")


def _dest(section: str, name: str) -> str:
    return f"{section}__{name}"


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag for every field of the task, model and training configs."""
    p.add_argument("--preset", choices=sorted(PRESETS), help="fill in a preset's settings first")
    p.add_argument("--resolution", type=int, metavar="N", help="set --height and --width to N")
    for section, kind in SECTIONS:
        group = p.add_argument_group(f"{section} settings")
        for f in fields(kind):
            default = f.default if f.default is not MISSING else f.default_factory()
            kw: dict[str, Any] = {"dest": _dest(section, f.name), "default": argparse.SUPPRESS}
            ftype = f.type if isinstance(f.type, str) else str(f.type)
            if "bool" in ftype:
                kw["action"] = argparse.BooleanOptionalAction
            elif "int" in ftype:
                kw["type"] = int
            elif "float" in ftype:
                kw["type"] = float
            if f.name in CHOICES:
                kw["choices"] = CHOICES[f.name]
            kw["help"] = f"{HELP.get(f.name, f.name.replace('_', ' '))} (default: {default})"
            group.add_argument(_flag(section, f.name), **kw)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the preset, then the flags the user gave."""
    cfg = RunConfig()
    if getattr(args, "preset", None):
        cfg = apply_preset(cfg, args.preset)
    data = cfg.to_dict()
    res = getattr(args, "resolution", None)
    if res is not None:
        data["task"]["height"] = data["task"]["width"] = res
    for key, value in vars(args).items():
        if "__" in key:
            section, name = key.split("__", 1)
            data[section][name] = value
    if "train__steps" not in vars(args) and "train__epochs" in vars(args):
        data["train"]["steps"] = None  # --epochs given alone: the preset's steps give way
    return RunConfig.from_dict(data)


def _metrics_table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4g}")
    return table


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from cnnprobe.train import train

    cfg = config_from_args(args)
    cancel = threading.Event()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    quiet = args.json or args.quiet
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        bar = progress.add_task(f"{cfg.task.name}/{cfg.model.name}", total=None, loss="-",
                                rate="")

        def on_event(ev: object) -> None:
            if isinstance(ev, RunStarted):
                progress.update(bar, total=ev.total_steps, completed=ev.start_step)
                progress.console.log(f"device {ev.device} ({ev.device_name}), "
                                     f"{ev.parameters:,} parameters")
            elif isinstance(ev, StepEvent):
                progress.update(bar, completed=ev.step, loss=f"{ev.loss:.4g}",
                                rate=f"{ev.samples_per_s:,.0f} samples/s")
            elif isinstance(ev, EvaluationEvent) and not quiet:
                progress.console.log(f"step {ev.step}: val MAE {ev.metrics['mae']:.4g}, "
                                     f"R² {ev.metrics['r2']:.3f}")

        def on_sigint(signum: int, frame: object) -> None:
            # First Ctrl-C: stop at the next step and keep the partial result.
            progress.console.log("stopping at the next step (Ctrl-C again to abort)")
            cancel.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            result = train(cfg, [on_event], cancel)
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps({"status": result.status, "reason": result.reason,
                          "steps": result.steps_done, "samples_seen": result.samples_seen,
                          "wall_time_s": result.wall_time_s, "device": result.device,
                          "metrics": result.final_metrics, "config": cfg.to_dict()}, indent=2))
    else:
        if result.final_metrics:
            console.print(_metrics_table(result.final_metrics,
                                         f"{cfg.task.name}/{cfg.model.name}: {result.status} "
                                         f"after {result.steps_done} steps, "
                                         f"{result.wall_time_s:.1f}s"))
        if result.evaluation is not None:
            console.print(result.evaluation.describe().T.to_string(float_format="%.4g"))
    if result.status == "failed":
        console.print(f"[red]run failed:[/red] {result.reason}")
        return 1
    return 130 if result.status == "cancelled" else 0


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    from cnnprobe.models import model_table

    rows = model_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="models")
    for col in ("name", "parameters", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", r["description"])
    console.print(table)
    return 0


def cmd_tasks(args: argparse.Namespace, console: Console) -> int:
    from cnnprobe.tasks import task_table

    rows = task_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="tasks")
    table.add_column("name")
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"], r["description"])
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnprobe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cnnprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model on a probe task")
    add_config_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    for name, func, text in (("models", cmd_models, "list the models"),
                             ("tasks", cmd_tasks, "list the probe tasks")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--json", action="store_true", help="print as JSON")
        q.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=bool(getattr(args, "json", False)))
    try:
        return args.func(args, console)
    except ConfigError as exc:
        console.print(f"[red]cnnprobe: error:[/red] {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
