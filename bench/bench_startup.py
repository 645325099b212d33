"""How fast the lab opens: time to first paint of `cnnprobe-tui` on a store of many runs,
the time until its engine (torch) has loaded, and the wall time of `cnnprobe --help` and
`cnnprobe runs`, each beside `python -c "import torch"` measured in the same run (the
machine is shared: compare the ratios, not the seconds across runs).

    python bench/bench_startup.py [--runs 3000] [--repeats 3] [--store DIR]

First paint: the TUI runs in a pseudo-terminal of 120x40; the clock stops when the screen
it has written shows the newest run's name in the runs table, the status line and the
footer (its layout and the store's runs, drawn). "Forms filled": when a form field's label
shows (the forms' fields mount right after the first frame). "Engine ready": when the
status line stops saying that the engine is loading. Each figure is the median of
--repeats.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fabricate import fabricate  # noqa: E402

BIN = Path(sys.executable).parent
FORM_MARK = "learning rate"  # a form field's label: on screen once the forms have filled in
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]"  # CSI: cursor moves, colours, modes
                  r"|\x1b\][^\x07\x1b]*(\x07|\x1b\\)"  # OSC: title, clipboard
                  r"|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=env)
    return time.perf_counter() - start


def tui_times(store: Path, marker: str, size: tuple[int, int] = (120, 40),
              timeout: float = 90.0) -> tuple[float, float | None, float | None]:
    """(seconds to first paint, to the forms filled in, until the engine is ready) of one
    TUI start. The first frame holds the layout, the runs, the status line and the footer;
    the forms' fields mount right after it (FormPane.fill), then the engine loads."""
    master, slave = os.openpty()
    cols, rows = size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
    start = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "cnnprobe-tui"), "--store", str(store)], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True,
                            close_fds=True)
    os.close(slave)
    seen = ""
    painted = forms = ready = None
    try:
        while time.perf_counter() - start < timeout and ready is None:
            r, _, _ = select.select([master], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += ANSI.sub("", chunk.decode("utf-8", "replace"))
            now = time.perf_counter() - start
            if painted is None and marker in seen and "palette" in seen \
                    and "loading the engine" in seen:
                painted = now
            if painted is not None and forms is None and FORM_MARK in seen:
                forms = now
            if painted is not None and ("idle" in seen.split("loading the engine")[-1]):
                ready = now
    finally:
        os.write(master, b"\x11")  # ctrl+q
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
    if painted is None:
        raise RuntimeError(f"no first paint within {timeout:.0f}s; screen so far: "
                           f"{seen[-500:]!r}")
    return painted, forms, ready


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="runs in the store")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", help="use (and keep) this store; made when missing")
    args = parser.parse_args()
    tmp = None
    if args.store:
        store = Path(args.store)
    else:
        tmp = tempfile.mkdtemp(prefix="cnnprobe-startup-")
        store = Path(tmp) / "store"
    if not (store / "cnnprobe.db").exists():
        t = time.perf_counter()
        fabricate(store, args.runs)
        print(f"fabricated {args.runs} runs in {time.perf_counter() - t:.0f}s ({store})")
    sys.path.insert(0, str(ROOT))
    from cnnprobe.store import RunStore

    with RunStore(store) as s:
        newest = s.list_runs(limit=1)[0].name
        count = s.count_runs()
    py = sys.executable
    figures: dict[str, list[float]] = {k: [] for k in (
        "python -c pass", "python -c 'import torch'", "cnnprobe --help", "cnnprobe runs",
        "cnnprobe-tui first paint", "cnnprobe-tui forms filled", "cnnprobe-tui engine ready")}
    for _ in range(args.repeats):
        figures["python -c pass"].append(wall([py, "-c", "pass"]))
        figures["python -c 'import torch'"].append(wall([py, "-c", "import torch"]))
        figures["cnnprobe --help"].append(wall([str(BIN / "cnnprobe"), "--help"]))
        figures["cnnprobe runs"].append(wall([str(BIN / "cnnprobe"), "--store", str(store),
                                              "runs"]))
        painted, forms, ready = tui_times(store, newest)
        figures["cnnprobe-tui first paint"].append(painted)
        if forms is not None:
            figures["cnnprobe-tui forms filled"].append(forms)
        if ready is not None:
            figures["cnnprobe-tui engine ready"].append(ready)
    torch_s = median(figures["python -c 'import torch'"])
    print(f"\nstore: {count:,} runs; median of {args.repeats}; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'what':28s} {'seconds':>8s} {'÷ import torch':>15s}")
    for what, xs in figures.items():
        if xs:
            print(f"{what:28s} {median(xs):8.2f} {median(xs) / torch_s:15.2f}")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
