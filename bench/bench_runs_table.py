"""The runs pane with thousands of runs: how long a store poll's `set_records` and a filter
keystroke take, in a headless app holding only the pane (no training, no store: the runs
are fabricated RunRecords).

Each figure is the best of --repeats: "call" is the method itself, "+ frame" adds the
wait for the next screen update (`pilot.pause()`, which has a floor of its own: see the
"nothing changed" line).

    python bench/bench_runs_table.py [--runs 3000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from cnnprobe.store import RunRecord  # noqa: E402
from tui.widgets.runs_pane import RunsPane  # noqa: E402

NOW = time.time()


def fake(i: int) -> RunRecord:
    task = ("distance", "area", "count", "locate")[i % 4]
    model, size = ("seednet", "plaincnn", "resnet18")[i % 3], (32, 64, 128)[i % 3]
    status = ("finished", "failed", "cancelled", "finished")[i % 4]
    cfg = RunConfig(task=TaskConfig(name=task, height=size, width=size),
                    model=ModelConfig(name=model), train=TrainConfig(device="cpu"))
    return RunRecord(id=f"{i + 10:08x}" + "0" * 24, name=f"{task}-{model}-{size}",
                     status=status, reason="", config=cfg, seed=0, created_at=NOW - 60 * i,
                     finished_at=None, device="cpu", device_name="cpu", versions={},
                     wall_time_s=1.0, samples_seen=1, steps_done=1,
                     metrics={"mae": 1 + i % 97 / 10} if status == "finished" else {},
                     tags=[f"study:s{i % 7}"] if i % 2 else [])


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RunsPane(id="runs")


async def bench(n: int, repeats: int) -> None:
    records = [fake(i) for i in range(n)]
    app = PaneApp()
    async with app.run_test(size=(160, 48)) as pilot:
        pane = app.query_one(RunsPane)

        async def timed(label: str, action, times: int = repeats) -> None:
            calls, frames = [], []
            for _ in range(times):
                start = time.perf_counter()
                action()
                calls.append(time.perf_counter() - start)
                await pilot.pause()
                frames.append(time.perf_counter() - start)
            print(f"{label:<44} call {1000 * min(calls):7.1f} ms   + frame "
                  f"{1000 * min(frames):7.1f} ms")

        await timed(f"set_records: first ({n:,} runs)", lambda: pane.set_records(records), 1)
        await timed("set_records: nothing changed", lambda: pane.set_records(records))
        changed = [replace(records[0], status="failed")] + records[1:]
        flip = iter([changed, records] * repeats)
        await timed("set_records: one run's status changed", lambda: pane.set_records(next(flip)))
        newer = [[fake(-k)] + records for k in range(1, repeats + 1)]
        await timed("set_records: a new run on top", lambda: pane.set_records(newer.pop()))
        pane.set_records(records)
        pane.open_filter()
        await pilot.pause()
        # typed one key after another, then deleted back: each step from the one before
        steps = ["s", "se", "see", "seed", "seed ", "seed s", "seed st", "seed status:f",
                 "seed status:", "seed", "", "study:s3", "", "zzz", ""]
        best: dict[int, list[float]] = {}
        for _ in range(repeats):
            for i, query in enumerate(steps):
                start = time.perf_counter()
                pane.set_query(query)
                call = time.perf_counter() - start
                await pilot.pause()
                frame = time.perf_counter() - start
                was = best.get(i)
                best[i] = [min(was[0], call), min(was[1], frame), len(pane.shown)] if was \
                    else [call, frame, len(pane.shown)]
        for i, query in enumerate(steps):
            call, frame, shown = best[i]
            print(f"{'filter -> ' + repr(query):<44} call {1000 * call:7.1f} ms   + frame "
                  f"{1000 * frame:7.1f} ms   {shown:,} rows")
        await timed("sort by MAE (again: reversed)", lambda: pane.sort_by("mae"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(bench(args.runs, args.repeats))


if __name__ == "__main__":
    main()
