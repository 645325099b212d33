"""The `cnnprobe` command line: a thin layer over the engine.

Every run it trains is recorded in the store (`--store DIR`, $CNNPROBE_STORE, or
./checkpoints). Errors a user can cause print one line, `cnnprobe: error: ...`, and exit
2 for a usage or config error, 1 for a store or run error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import NoReturn

from rich.console import Console

from cnnprobe import __version__
from cnnprobe.cli import (
    catalog,
    evaluation,
    exporting,
    inspecting,
    records,
    studying,
    training,
)
from cnnprobe.cli.flags import add_config_flags, config_from_args
from cnnprobe.config import ConfigError
from cnnprobe.report.files import ExportError
from cnnprobe.store import RunStore, StoreError

__all__ = ["add_config_flags", "build_parser", "config_from_args", "main"]

STORE_HELP = "the store folder (default: $CNNPROBE_STORE or ./checkpoints)"


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as the same one line as every other error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("cnnprobe").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"cnnprobe: error: {where}{message} (`{self.prog} --help` lists the "
                     "options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cnnprobe", description="Train and probe CNNs on spatial tasks (distance, area, "
        "position, count); every run is recorded in a local store.",
        epilog="`cnnprobe COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"cnnprobe {__version__}")
    parser.add_argument("--store", metavar="DIR", help=STORE_HELP)
    # Also accepted after the command (`cnnprobe runs --store DIR`); given there, it wins.
    common = Parser(add_help=False)
    common.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS, help=STORE_HELP)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (training, evaluation, inspecting, records, exporting, catalog, studying):
        module.add_parsers(sub, common)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"cnnprobe: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=bool(getattr(args, "json", False)))
    try:
        store = None
        if getattr(args, "needs_store", True):
            store = RunStore(args.store or os.environ.get("CNNPROBE_STORE") or None)
        return args.func(args, console, store)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except (StoreError, ExportError) as exc:
        return _fail(str(exc), 1)
    except sqlite3.Error as exc:  # the store wraps these; one that slips through is still one line
        return _fail(f"store: {exc}", 1)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
