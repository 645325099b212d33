"""TUI overhead: samples/s of one training run headless, and inside the running TUI.

The same run (same config, same store code path `cnnprobe.runs.train_run`) is trained
alternately headless (as the CLI does, on the main thread) and from the TUI (a thread
worker while the app runs headless under `App.run_test`, Loss tab visible and redrawing).
Throughput is samples_seen / wall_time_s as the store records it. The UI thread's own CPU
time over the run (time.thread_time) is reported too: it is what rendering takes from the
training thread through the GIL, and varies far less than throughput on a shared machine.
The goal: the TUI, watched (Loss tab redrawing, progress line moving), keeps at least 95%
of the headless throughput. A second TUI run also gets a plot-tab key every --key-every
seconds, and the time each key takes to act is reported: keys answer while a run trains.

    python bench/bench_tui.py [--repeats 3] [--steps 4000] [--size 32] [--batch 16]
                              [--key-every 1] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from cnnprobe.runs import train_run  # noqa: E402
from cnnprobe.store import RunStore  # noqa: E402
from tui.app import CnnprobeApp  # noqa: E402


def config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(task=TaskConfig(name="distance", height=args.size, width=args.size),
                     model=ModelConfig(name=args.model),
                     train=TrainConfig(batch_size=args.batch, steps=args.steps,
                                       eval_every=max(1, args.steps // 5), val_size=256,
                                       lr=1e-3, device=args.device))


def rate(store_root: Path, run_id: str) -> float:
    with RunStore(store_root) as store:
        rec = store.get(run_id)
    return rec.samples_seen / rec.wall_time_s


def headless(cfg: RunConfig, root: Path) -> float:
    with RunStore(root) as store:
        run_id, result = train_run(store, cfg)
    assert result.status == "finished", result.reason
    return rate(root, run_id)


async def in_tui(cfg: RunConfig, root: Path, size: tuple[int, int], key_every_s: float | None
                 ) -> tuple[float, list[float], float]:
    """One run trained from the TUI, the Loss tab redrawing. With `key_every_s`, a user
    also flips to the next plot tab that often and the time each key takes to act is kept."""
    app = CnnprobeApp(root, config=cfg, watch_store=False)
    latencies: list[float] = []
    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()  # the model table, before timing anything
        await pilot.pause(0.2)
        app.simulate_key("ctrl+r")
        while not app.lab.active:
            await asyncio.sleep(0.005)
        job = app.lab.viewed_job
        wall0, cpu0 = time.perf_counter(), time.thread_time()  # this thread is the UI's
        while app.lab.active:
            if key_every_s is None:
                # Seldom: every wake-up of this loop takes the GIL from the training thread,
                # a cost of the bench, not of the TUI (polling at 20 Hz cost several % of
                # throughput here). The rate comes from the store, not from this loop.
                await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(key_every_s)
            before = app.plots.active
            t0 = time.perf_counter()
            app.simulate_key("right_square_bracket")
            while app.plots.active == before and app.lab.active:
                await asyncio.sleep(0.001)
            if app.plots.active != before:
                latencies.append(time.perf_counter() - t0)
            if app.plots.active == "compare":
                app.plots.set_tab("loss")
        ui_share = (time.thread_time() - cpu0) / (time.perf_counter() - wall0)
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
    assert job.run_id is not None and job.view.status == "finished", job.view.reason
    return rate(root, job.run_id), latencies, ui_share


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model", default="seednet")
    p.add_argument("--device", default="cpu")
    p.add_argument("--terminal", default="160x48", help="TUI size, WxH")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--key-every", type=float, default=1.0,
                   help="seconds between keys in the keyed TUI run")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config(args)
    size = tuple(int(v) for v in args.terminal.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        headless(RunConfig(cfg.task, cfg.model, TrainConfig(**{**cfg.train.__dict__,
                                                                "steps": 20})), root)  # warm
        plain, watch, keys, lat, ui_watch, ui_keys = [], [], [], [], [], []
        for i in range(args.repeats):  # interleaved, so drift on a shared machine hits all
            plain.append(headless(cfg, root))
            r, _, share = asyncio.run(in_tui(cfg, root, size, None))
            watch.append(r)
            ui_watch.append(share)
            r, latencies, share = asyncio.run(in_tui(cfg, root, size, args.key_every))
            keys.append(r)
            ui_keys.append(share)
            lat += latencies
            print(f"repeat {i + 1}: headless {plain[-1]:,.0f}, TUI watching {watch[-1]:,.0f} "
                  f"({watch[-1] / plain[-1]:.1%}), TUI with a key every {args.key_every:g} s "
                  f"{keys[-1]:,.0f} ({keys[-1] / plain[-1]:.1%}) samples/s; UI thread CPU "
                  f"{ui_watch[-1]:.1%} / {ui_keys[-1]:.1%} of the time", flush=True)
    best = max(plain)
    out = {"config": cfg.to_dict(), "terminal": args.terminal, "repeats": args.repeats,
           "headless_samples_per_s": plain, "tui_watching_samples_per_s": watch,
           "tui_keys_samples_per_s": keys, "key_every_s": args.key_every,
           "ratio_watching": max(watch) / best, "ratio_keys": max(keys) / best,
           "ratio_watching_median": statistics.median(watch) / statistics.median(plain),
           "ui_thread_cpu_share_watching": ui_watch, "ui_thread_cpu_share_keys": ui_keys,
           "key_latency_ms_median": 1000 * statistics.median(lat) if lat else None,
           "key_latency_ms_max": 1000 * max(lat) if lat else None,
           "torch": torch.__version__, "device": args.device}
    print(f"\nheadless {best:,.0f} samples/s (best of {args.repeats})")
    print(f"TUI watching the Loss plot: {max(watch):,.0f} samples/s = "
          f"{out['ratio_watching']:.1%} of headless (median {out['ratio_watching_median']:.1%})"
          f"; goal >= 95%")
    print(f"TUI with a plot-tab key every {args.key_every:g} s: {max(keys):,.0f} samples/s = "
          f"{out['ratio_keys']:.1%}")
    print(f"UI thread CPU while training (what the GIL takes from the training thread): "
          f"watching {statistics.median(ui_watch):.1%}, a key every {args.key_every:g} s "
          f"{statistics.median(ui_keys):.1%} of the wall time (medians; steadier than the "
          "samples/s ratios on a shared machine)")
    if lat:
        print(f"key latency while training: median {out['key_latency_ms_median']:.0f} ms, "
              f"max {out['key_latency_ms_max']:.0f} ms ({len(lat)} keys)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
