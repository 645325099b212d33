"""Engine benchmark: batch generation and seednet training, ours against the seed notebook's.

Both sides run in the same process, on the same device, one after the other, and the
ratios printed are ours / notebook's. Usage:

    python bench/bench_engine.py [--device cpu|cuda] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_baseline import make_net, measure_dataset, train_model  # noqa: E402

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from cnnprobe.engine.device import device_name, resolve_device  # noqa: E402
from cnnprobe.engine.train import train  # noqa: E402
from cnnprobe.tasks import make_generator, make_task  # noqa: E402

BATCH, SIZE = 512, 128


def best_rate(fn, samples: int, repeats: int, device: torch.device) -> float:
    """Samples per second of the fastest of `repeats` timed calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return samples / best


def bench_generation(device: torch.device, batches: int, repeats: int) -> dict[str, float]:
    task = make_task(TaskConfig(name="distance", height=SIZE, width=SIZE))
    g = make_generator(0, device)
    stream = task.stream(BATCH, g)

    def ours_stream():
        for _ in range(batches):
            next(stream)

    def ours_fresh():
        for _ in range(batches):
            task.sample(BATCH, g)

    loader = DataLoader(measure_dataset((SIZE, SIZE), BATCH * batches), batch_size=BATCH,
                        drop_last=True)

    def notebook():
        for x, _y in loader:  # the notebook moved float64 batches to the device as float32
            x.to(torch.float32).to(device)

    n = BATCH * batches
    return {"ours_stream": best_rate(ours_stream, n, repeats, device),
            "ours_fresh": best_rate(ours_fresh, n, repeats, device),
            "notebook": best_rate(notebook, n, repeats, device)}


def bench_training(device: torch.device, steps: int) -> dict[str, float]:
    cfg = RunConfig(task=TaskConfig(name="distance", height=SIZE, width=SIZE),
                    model=ModelConfig(name="seednet"),
                    train=TrainConfig(batch_size=BATCH, steps=steps, eval_every=steps,
                                      val_size=BATCH, lr=1e-4, device=str(device)))
    train(RunConfig(cfg.task, cfg.model, TrainConfig(**{**cfg.train.__dict__, "steps": 2})))
    result = train(cfg)
    rows = result.train_history
    # Time of the loop itself, from the first read-back to the last (no setup, no eval).
    span = rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]
    ours = (rows[-1]["step"] - rows[0]["step"]) * BATCH / span

    model = make_net(device)  # the notebook's own Net, not our faster seednet
    loader = DataLoader(measure_dataset((SIZE, SIZE), BATCH * (steps + 1)), batch_size=BATCH,
                        drop_last=True)
    train_model(loader, model, epochs=1, device=device, max_steps=1)
    t0 = time.perf_counter()
    train_model(loader, model, epochs=1, device=device, max_steps=steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    notebook = steps * BATCH / (time.perf_counter() - t0)
    return {"ours": ours, "notebook": notebook}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", type=int, default=8, help="batches per generation timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30, help="training steps per side")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    device = resolve_device(args.device)
    info = {"device": str(device), "device_name": device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}
    print(f"# {info['device_name']} ({device}), torch {info['torch']}, "
          f"{info['threads']} threads; distance task {SIZE}x{SIZE}, batch {BATCH}")
    gen = bench_generation(device, args.batches, args.repeats)
    print(f"generation  ours (stream, as the trainer uses it): {gen['ours_stream']:>10,.0f} "
          f"samples/s  = {gen['ours_stream'] / gen['notebook']:.1f}x notebook")
    print(f"generation  ours (fresh tensor each batch):        {gen['ours_fresh']:>10,.0f} "
          f"samples/s  = {gen['ours_fresh'] / gen['notebook']:.1f}x notebook")
    print(f"generation  notebook Dataset + DataLoader:         {gen['notebook']:>10,.0f} "
          "samples/s")
    tr = bench_training(device, args.steps)
    print(f"training    seednet, our trainer:                  {tr['ours']:>10,.0f} "
          f"samples/s  = {tr['ours'] / tr['notebook']:.1f}x notebook")
    print(f"training    seednet, notebook loop:                {tr['notebook']:>10,.0f} "
          "samples/s")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "generation": gen, "training": tr},
                                        indent=2))


if __name__ == "__main__":
    main()
