"""Proves cnnprobe's CUDA path in one run, the day a GPU is there; runs its CPU half anywhere.

CPU half (every machine, well under a minute on 2 cores): the generator repeats itself for a
seed; the trainer's step is deterministic, and bf16 autocast keeps seednet exact and a conv
net within the bf16 limit; train() twice gives the same run; the compiled step (aot_eager
here, quick) trains like the eager one; the loop reads the loss once per `log_every` steps
(counted with a Tensor.item stand-in for the sync sensor, which is shown able to fail); and
small samples/s and study-time figures.

GPU half (when torch.cuda.is_available(); an estimated 5-8 minutes unbounded, most of it
compiling; --budget-s, 300 s by default, records the parts that would start later as skipped):
the generator on CUDA, and CPU vs CUDA (same distribution; identical batches are not
expected); CPU fp32 vs CUDA fp32 and bf16 for seednet and resnet18 on the same batches;
train() twice on CUDA; no host sync in the step loop but the loss read
(torch.cuda.set_sync_debug_mode), for every task; torch.compile default and reduce-overhead
(CUDA graphs) against eager, checked and timed; samples/s of seednet and resnet18 at
64/128/256 px, batch 512, bf16, channels-last on and off; the TUI's cost (bench_tui.py
--device cuda); and the full-scale built-in studies' trial times.

    python bench/gpu_check.py [--json PATH] [--markdown PATH] [--skip tui,studies,...]
                              [--budget-s 300]

Exit status: 0 when every check passed (without CUDA: the CPU half's), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpucheck import checks, measures, syncs  # noqa: E402
from gpucheck.results import Report, Result  # noqa: E402
from gpucheck.training import Copy  # noqa: E402

from cnnprobe.engine.device import device_name, resolve_device  # noqa: E402
from cnnprobe.studies.builtin import BUILTIN  # noqa: E402

GROUPS = ("generator", "agree", "repeat", "sync", "compile", "grid", "tui", "studies")
NO_CUDA = "CUDA is not available here: the GPU half was skipped (CPU half only)."


@dataclass
class Plan:
    """What one half runs, and at what sizes: (model, size, batch, steps) and so on."""

    agree: list[tuple[str, int, int, int, str]]  # model, size, batch, steps, "fp32,bf16"
    repeat: list[tuple[str, int, int, int]]
    sync: list[tuple[str, str, int, int]]  # model, task, size, batch
    compile: list[tuple[str, int, int]]
    compile_modes: tuple[str, ...]
    compiled_train: list[tuple[str, int, int, str]]  # model, size, batch, mode
    grid: list[tuple[str, int, int, str]]  # model, size, batch, channels_last
    studies: list[str]
    study_scale: str
    compile_backend: str = "inductor"
    compile_steps: int = 30
    compile_warm: int = 10
    sync_log_every: int = 10
    grid_steps: int = 40
    grid_log_every: int = 10
    study_steps: int = 15
    tui: bool = False
    tui_steps: int = 4000
    skip: set[str] = field(default_factory=set)


def cpu_plan(args: argparse.Namespace) -> Plan:
    # bf16 autocast is slow on this CPU (resnet18: ~5 s a step at batch 8): plaincnn stands in.
    return Plan(agree=[("seednet", 32, 32, 5, "fp32,bf16"), ("plaincnn", 32, 16, 5, "bf16"),
                       ("resnet18", 32, 8, 3, "fp32")],
                repeat=[("seednet", 16, 16, 6), ("plaincnn", 16, 16, 4)],
                sync=[("seednet", "distance", 16, 16), ("plaincnn", "count", 32, 16)],
                compile=[("seednet", 32, 32)], compile_modes=("default",),
                compiled_train=[("seednet", 16, 16, "default")],
                compile_backend=args.cpu_compile_backend, compile_steps=6, compile_warm=2,
                sync_log_every=4,
                grid=[("seednet", 32, 64, "off"), ("plaincnn", 32, 16, "off"),
                      ("plaincnn", 32, 16, "on")],
                grid_steps=12, grid_log_every=4,
                studies=args.cpu_studies, study_scale="smoke", study_steps=8,
                skip=set(args.skip))


def gpu_plan(args: argparse.Namespace) -> Plan:
    sizes, batch = args.sizes, args.batch
    return Plan(agree=[("seednet", 64, 64, 5, "fp32,bf16"), ("resnet18", 64, 32, 5, "fp32,bf16")],
                repeat=[("seednet", 64, 64, 20), ("resnet18", 64, 32, 10)],
                sync=[("seednet", "distance", 64, batch), ("resnet18", "distance", 64, batch),
                      ("plaincnn", "count", 64, batch), ("plaincnn", "area", 64, batch),
                      ("coordconv", "locate", 64, batch)],
                compile=[("seednet", 128, batch), ("resnet18", 128, batch)],
                compile_modes=("default", "reduce-overhead"),
                # the same shapes as above: inductor's cache makes these quick to compile
                compiled_train=[("seednet", 128, batch, "reduce-overhead"),
                                ("resnet18", 128, batch, "reduce-overhead")],
                grid=[(m, s, batch, cl) for m in ("seednet", "resnet18") for s in sizes
                      for cl in ("on", "off")],
                studies=args.studies, study_scale="full", tui=True, tui_steps=args.tui_steps,
                skip=set(args.skip))


def release(device: torch.device, *, compiled: bool = False) -> None:
    """Between parts: free what the last one held, so that the next one's memory and speed
    are its own. torch.compiler.reset() drops dynamo's caches (and with them CUDA-graph
    memory pools and automatic-dynamic shape state) so that every compile measure compiles
    fresh: https://pytorch.org/docs/stable/generated/torch.compiler.reset.html;
    empty_cache returns the caching allocator's free blocks (bench_tui runs in a subprocess
    that needs them): https://pytorch.org/docs/stable/generated/torch.cuda.empty_cache.html"""
    gc.collect()
    if compiled:
        torch.compiler.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_half(report: Report, half: str, device: torch.device, plan: Plan, *,
             sensor: syncs.Sensor | None = None, reference: torch.device | None = None,
             deadline: float | None = None) -> None:
    """Every check and measure of `plan` on `device`; CPU-vs-device agreement against
    `reference` (the CPU) when given, else the device against itself. Parts that would
    start after `deadline` (time.perf_counter()) are recorded as skipped (--budget-s)."""
    def run(group: str, name: str, fn: Callable[[], Result | list[Result]]) -> None:
        if group in plan.skip:
            return
        if deadline is not None and time.perf_counter() > deadline:
            report.add(Result(half, "skip", name, None, detail="skipped: over --budget-s"))
            return
        release(device, compiled=group == "compile")
        report.run(half, name, fn)

    ref = reference or device
    run("generator", "generator repeats", lambda: checks.generator_repeats(half, device))
    if reference is not None:
        run("generator", "generator across devices",
            lambda: checks.generator_across(half, reference, device))
    for model, size, batch, steps, kinds in plan.agree:
        pairs = {"fp32": (Copy(device), 0.0 if ref == device else checks.FP32_LIMIT),
                 "bf16": (Copy(device, bf16=True), checks.bf16_limit(model))}
        others = [pairs[k] for k in kinds.split(",")]
        run("agree", f"{model} agreement", lambda m=model, s=size, b=batch, st=steps,
            others=others: checks.agreement(half, m, s, b, st, Copy(ref), others))
    for model, size, batch, steps in plan.repeat:
        limit = 0.0 if device.type == "cpu" else checks.bf16_limit(model)
        run("repeat", f"{model} repeat run", lambda m=model, s=size, b=batch, st=steps,
            limit=limit: checks.repeat_run(half, device, m, s, b, st, limit))
    run("sync", "sync sensor control", lambda: syncs.sensor_control(half, device, sensor=sensor))
    for model, task, size, batch in plan.sync:
        run("sync", f"{model}/{task} syncs", lambda m=model, t=task, s=size, b=batch:
            syncs.loop_syncs(half, device, m, t, s, b, log_every=plan.sync_log_every,
                             sensor=sensor))
    for model, size, batch in plan.compile:
        run("compile", f"{model} compile", lambda m=model, s=size, b=batch: checks.compile_modes(
            half, device, m, s, b, modes=plan.compile_modes, steps=plan.compile_steps,
            warm=plan.compile_warm, bf16=device.type == "cuda", backend=plan.compile_backend))
    for model, size, batch, mode in plan.compiled_train:
        run("compile", f"{model} train() compiled", lambda m=model, s=size, b=batch, mode=mode:
            checks.compiled_train(half, device, m, s, b, mode, steps=plan.compile_steps,
                                  backend=plan.compile_backend))
    # The compiled step syncs no more than the eager one: the first model only (seednet,
    # quick to compile), as compiling resnet18 once more would cost a minute of the budget.
    for model, size, batch, mode in plan.compiled_train[:1]:
        run("compile", f"{model} compiled syncs", lambda m=model, s=size, b=batch, mode=mode:
            syncs.loop_syncs(half, device, m, "distance", s, b, log_every=plan.sync_log_every,
                             sensor=sensor, compile=mode, backend=plan.compile_backend))
    for model, size, batch, cl in plan.grid:
        run("grid", f"{model} {size} px", lambda m=model, s=size, b=batch, cl=cl:
            measures.training_rate(half, device, m, s, b, steps=plan.grid_steps,
                                   log_every=plan.grid_log_every, channels_last=cl))
    if plan.tui:
        run("tui", "TUI overhead", lambda: measures.tui_overhead(half, device,
                                                                 steps=plan.tui_steps))
    if plan.studies:
        run("studies", "study times", lambda: measures.study_times(
            half, device, plan.study_scale, plan.studies, steps=plan.study_steps))


def machine_info(cuda: torch.device | None, argv: list[str]) -> dict[str, object]:
    info: dict[str, object] = {
        "date": datetime.date.today().isoformat(),
        "command": "python bench/gpu_check.py" + (" " + shlex.join(argv) if argv else ""),
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
        "cuda_available": cuda is not None, "gpu": None}
    if cuda is not None:
        props = torch.cuda.get_device_properties(cuda)
        info.update(gpu=f"{device_name(cuda)} ({props.total_memory / 2**30:.0f} GiB)",
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    capability=f"{props.major}.{props.minor}")
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="write every result here (rewritten as they come)")
    p.add_argument("--markdown", type=Path, help="also write the table printed at the end here")
    p.add_argument("--skip", type=lambda s: [g for g in s.split(",") if g], default=[],
                   help=f"groups to leave out, comma-separated: {', '.join(GROUPS)}")
    p.add_argument("--device", default="cuda", help="the GPU half's device (cuda or cuda:N)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: 1 for the CPU half, whose tiny sizes gain nothing "
                        "from more and lose much when a shared core is taken away; torch's "
                        "default for the GPU half's CPU reference runs)")
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                   default=[64, 128, 256], help="GPU half: image sizes of the samples/s grid")
    p.add_argument("--batch", type=int, default=512, help="GPU half: batch of the grid")
    p.add_argument("--studies", type=lambda s: [v for v in s.split(",") if v],
                   default=list(BUILTIN), help="GPU half: built-in studies to time at full scale")
    p.add_argument("--tui-steps", type=int, default=1500, help="GPU half: bench_tui's steps")
    p.add_argument("--budget-s", type=float, default=300,
                   help="seconds after which the parts not yet started are recorded as "
                        "skipped (0: no limit); the checks run before the measures")
    p.add_argument("--cpu-studies", type=lambda s: [v for v in s.split(",") if v],
                   default=["distractors"], help="CPU half: studies to time at smoke scale")
    p.add_argument("--cpu-compile-backend", default="aot_eager", choices=("aot_eager", "inductor"),
                   help="CPU half: torch.compile backend of the compile check (aot_eager traces "
                        "and differentiates like inductor in seconds; inductor builds C++, "
                        "about 40 s cold)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.skip) - set(GROUPS))
    if unknown:
        p.error(f"--skip {unknown[0]}: not one of {', '.join(GROUPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or 1)
    cuda = resolve_device(args.device) if torch.cuda.is_available() else None
    if cuda is None:
        print(NO_CUDA, flush=True)
    for path in (args.json, args.markdown):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    report = Report(machine_info(cuda, argv), args.json,
                    echo=lambda line: print(line, flush=True))
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s if args.budget_s else None
    run_half(report, "cpu", torch.device("cpu"), cpu_plan(args), deadline=deadline)
    if cuda is not None:
        torch.set_num_threads(args.threads or default_threads)
        report.info["threads_cuda_half"] = torch.get_num_threads()
        # Events recorded without a stream go to the current device's stream: make it the
        # one measured (cuda:N). https://pytorch.org/docs/stable/generated/torch.cuda.set_device.html
        if cuda.index is None:
            cuda = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(cuda)
        run_half(report, "cuda", cuda, gpu_plan(args), reference=torch.device("cpu"),
                 deadline=deadline)
    report.info["seconds"] = round(time.perf_counter() - t0, 1)
    report.write_json()
    table = report.markdown()
    if args.markdown is not None:
        args.markdown.write_text(table)
    print("\n" + table, end="")
    summary = report.as_dict()["checks"]
    print(f"{summary['passed']}/{summary['total']} checks passed in {report.info['seconds']} s"
          + ("" if cuda is not None else " (CPU half)"))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
