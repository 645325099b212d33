"""`cnnprobe inspect`: look inside a stored run's model. One sample goes through every layer
(feature maps as terminal heatmaps and PNGs, the raw tensors as .npz), and a linear probe
per layer says where the answer becomes linearly readable; the probe table is kept with
the run, so `show` and `export` include it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cnnprobe.cli.flags import add_weights_flags, first_given
from cnnprobe.cli.tables import RUN_REF_HELP, literal, print_json, probes_table
from cnnprobe.cli.training import first_ctrl_c_cancels
from cnnprobe.config import ConfigError
from cnnprobe.measurement import describe
from cnnprobe.options import DEVICE_HELP
from cnnprobe.report.formatting import num
from cnnprobe.report.palettes import CMAPS, NORMALIZE, RESAMPLE
from cnnprobe.store import RunStore

RUN_HELP = RUN_REF_HELP
DEFAULT_CHANNELS = 16


def parse_layers(text: str) -> list[str]:
    """'conv1,layer1.0' -> ['conv1', 'layer1.0']."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give layer names separated by commas "
                                         "(`--list-layers` lists them)")
    return names


def _out_dir(args: argparse.Namespace, short_id: str) -> Path | None:
    """Where the files go, checked before any work: --out, else exports/<id>-inspect (or
    -2, -3, ... when taken, unless --overwrite)."""
    from cnnprobe.report.files import DEFAULT_DIR
    from cnnprobe.report.inspection import check_out_dir, free_out_dir

    if args.no_export or args.list_layers:
        return None
    base = DEFAULT_DIR / f"{short_id}-inspect"
    out = Path(args.out) if args.out else base if args.overwrite else free_out_dir(base)
    return check_out_dir(out, args.overwrite)


def _sample_line(insp: Any, val_size: int) -> str:
    where = (f"validation sample {insp.sample} of {val_size}" if insp.sample is not None
             else f"a fresh draw (seed {insp.seed})")
    err = abs(insp.prediction - insp.label)
    return (f"{where} at {insp.task_cfg.height}x{insp.task_cfg.width}: label "
            f"{num(insp.label)}, prediction {num(insp.prediction)} (error {num(err)})")


def _layers_table(activations: list) -> Table:
    table = Table(title="layers (`--layers a,b` picks some)")
    for col in ("#", "layer", "module", "kind", "shape"):
        table.add_column(col, justify="right" if col == "#" else "left")
    for depth, act in enumerate(activations):
        table.add_row(str(depth), act.name, act.module, act.kind,
                      "×".join(str(s) for s in act.shape))
    return table


def cmd_inspect(args: argparse.Namespace, console: Console, store: RunStore) -> int:
    from cnnprobe.report.heatmap import render_activation, truecolor_available
    from cnnprobe.report.inspection import export_inspection
    from cnnprobe.runs import inspect_run, save_inspection

    if args.channels < 1:
        raise ConfigError("channels", args.channels, "an integer of at least 1")
    run_id = store.resolve(args.run)
    rec = store.get(run_id)
    out = _out_dir(args, rec.short_id)
    probes = args.probes and not args.list_layers
    columns = (TextColumn("[bold]linear probes"), BarColumn(), MofNCompleteColumn(),
               TextColumn("batches"), TimeElapsedColumn())
    quiet = args.json or not probes or not console.is_terminal
    with Progress(*columns, console=console, disable=quiet, transient=True) as progress:
        bar = progress.add_task("probes", total=None)

        def on_batch(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        with first_ctrl_c_cancels(progress.console, "stopping the probes") as cancel:
            insp = inspect_run(
                store, run_id, sample=args.sample, seed=args.seed, layers=args.layers,
                outer=args.outer, height=first_given(args.height, args.resolution),
                width=first_given(args.width, args.resolution), which=args.which, probes=probes,
                n_train=args.n_train, n_test=args.n_test, device=args.device, save=False,
                cancel=cancel, progress=on_batch, precise_bn=args.precise_bn)
    if insp.cancelled:
        console.print("stopped: nothing written, nothing saved")
        return 130
    if args.list_layers:
        if args.json:
            print_json([{"depth": d, "name": a.name, "module": a.module, "kind": a.kind,
                         "shape": list(a.shape)} for d, a in enumerate(insp.activations)])
        else:
            console.print(_layers_table(insp.activations))
        return 0
    # Files first, then the store: a failed write leaves the run's stored probes as they were.
    files = [] if out is None else export_inspection(
        out, insp.activations, insp.probe_table, args.overwrite, normalize=args.normalize,
        cmap=args.cmap)
    saved = not args.no_save and save_inspection(store, insp)
    rows = None if insp.probe_table is None else insp.probe_table.to_dict(orient="records")
    if args.json:
        print_json({"id": run_id, "name": rec.name, "which": insp.which, "step": insp.step,
                    "sample": insp.sample, "seed": None if insp.sample is not None else insp.seed,
                    "height": insp.task_cfg.height, "width": insp.task_cfg.width,
                    "label": insp.label, "prediction": insp.prediction,
                    "layers": [{"name": a.name, "module": a.module, "kind": a.kind,
                                "shape": list(a.shape)} for a in insp.activations],
                    "measured": insp.options.get("measured"),
                    "probes": rows, "probe_options": insp.options if rows else None,
                    "saved": saved, "out": None if out is None else str(out),
                    "files": [str(p) for p in files]})
        return 0
    cfg = rec.config
    console.print(f"run [bold]{rec.short_id}[/bold] ({literal(rec.name)}): {cfg.task.name}/"
                  f"{cfg.model.name}, {insp.which} checkpoint (step {insp.step})",
                  highlight=False)
    console.print(f"measured with: {describe(insp.options.get('measured'))}", highlight=False)
    console.print(_sample_line(insp, cfg.train.val_size), highlight=False)
    show = console.is_terminal if args.show is None else args.show
    if show:
        colour = truecolor_available(console)
        for act in insp.activations:
            console.print()
            console.print(render_activation(
                act, console.width, max_channels=args.channels, normalize=args.normalize,
                cmap=args.cmap, truecolor=colour, resample=args.resample))
        console.print()
    if rows:
        o = insp.options
        console.print(probes_table(rows, f"linear probes: a ridge read-out of each layer "
                                         f"({o['n_train']} fit, {o['n_test']} scored)"))
    if files:
        console.print(f"wrote {len(files)} files to {out}", highlight=False)
    if saved:
        console.print(f"probes saved with run {rec.short_id}: `cnnprobe show {rec.short_id}`",
                      highlight=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "inspect", parents=[common], help="look inside a stored run: feature maps and probes",
        description="Run one sample through a stored run's model and look at every layer: "
                    "feature maps as heatmaps in the terminal and as PNGs, the raw tensors as "
                    "activations.npz, and a linear probe per layer (a ridge read-out of its "
                    "pooled activations: where does the answer become linearly readable?). "
                    "The files go to exports/<id>-inspect (-2, -3, ... when that is taken) "
                    "or --out; the probe table is saved with the run for `show` and `export`.",
        epilog="examples: `cnnprobe inspect latest`; `cnnprobe inspect abc123 --sample 17 "
               "--layers fc1,fc8`; `cnnprobe inspect abc123 --resolution 96 --no-probes`.")
    p.add_argument("run", help=RUN_HELP)
    what = p.add_argument_group("which sample, layers and weights")
    pick = what.add_mutually_exclusive_group()
    pick.add_argument("--sample", type=int, metavar="N",
                      help="sample N of the run's validation set (the one its metrics and "
                           "stored predictions come from)")
    pick.add_argument("--seed", type=int, default=0, metavar="S",
                      help="a fresh draw from the task with this seed (default: 0)")
    what.add_argument("--layers", type=parse_layers, metavar="A,B,...",
                      help="only these layers (default: every conv, pool, block and linear "
                           "layer; --list-layers names them)")
    what.add_argument("--outer", action="store_true",
                      help="only the outermost layers (a ResNet block, not the convs in it)")
    what.add_argument("--list-layers", action="store_true",
                      help="list the layers with their output shapes, and stop")
    what.add_argument("--resolution", type=int, metavar="N", help="square images of N pixels")
    what.add_argument("--height", type=int, help="image height (default: the run's)")
    what.add_argument("--width", type=int, help="image width (default: the run's)")
    add_weights_flags(what)
    what.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default: auto)")
    probe = p.add_argument_group("linear probes")
    probe.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                       help="fit a linear probe per layer (default: on)")
    probe.add_argument("--n-train", type=int, default=512, metavar="N",
                       help="samples each probe is fitted on (default: 512)")
    probe.add_argument("--n-test", type=int, default=256, metavar="N",
                       help="other samples each probe is scored on (default: 256)")
    probe.add_argument("--no-save", action="store_true",
                       help="do not keep the probe table with the run")
    files = p.add_argument_group("files")
    files.add_argument("--out", metavar="DIR", help="the folder to write (default: "
                                                    "exports/<id>-inspect, numbered when taken)")
    files.add_argument("--overwrite", action="store_true",
                       help="replace the inspection files in a folder that has some")
    files.add_argument("--no-export", action="store_true", help="write no files")
    look = p.add_argument_group("terminal heatmaps")
    look.add_argument("--show", action=argparse.BooleanOptionalAction, default=None,
                      help="draw the input and each layer's feature maps in the terminal "
                           "(default: when stdout is a terminal and not --json)")
    look.add_argument("--channels", type=int, default=DEFAULT_CHANNELS, metavar="K",
                      help=f"channels drawn per layer (default: {DEFAULT_CHANNELS}; the PNGs "
                           "hold up to 32)")
    look.add_argument("--normalize", choices=NORMALIZE, default="channel",
                      help="colour range: each channel its own, or one per layer (default: "
                           "channel; the PNGs too)")
    look.add_argument("--resample", choices=RESAMPLE, default="peak",
                      help="shrinking a map to fit: peak keeps each cell's most extreme "
                           "pixel, area averages (and hides single-pixel markers); default: "
                           "peak")
    look.add_argument("--cmap", choices=tuple(CMAPS), default="viridis",
                      help="colour map (default: viridis; the PNGs too)")
    p.set_defaults(func=cmd_inspect)
