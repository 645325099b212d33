"""The `cnnprobe` command line: a thin layer over the engine.

Every run it trains is recorded in the store (`--store DIR`, $CNNPROBE_STORE, or
./checkpoints). Errors a user can cause print one line, `cnnprobe: error: ...`, and exit
2 for a usage or config error, 1 for a store or run error, 128 + the signal when a
training is stopped by one (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP: stored as cancelled).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Any, NoReturn

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
from cnnprobe.shown import shown
from cnnprobe.store import RunStore, StoreError

__all__ = ["add_config_flags", "build_parser", "config_from_args", "main"]

STORE_HELP = "the store folder (default: $CNNPROBE_STORE or ./checkpoints)"


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as the same one line as every other error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("cnnprobe").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"cnnprobe: error: {where}{shown(message)} (`{self.prog} --help` lists "
                     "the options)\n")


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
    # One line whatever it quotes: a run's host or name from another machine is text here.
    print(f"cnnprobe: error: {shown(message)}", file=sys.stderr)
    return code


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> how the user wrote it (`--note`, or the positional's metavar), every command."""
    names: dict[str, str] = {}
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.dest not in names:
                names[action.dest] = (action.option_strings[-1] if action.option_strings
                                      else str(action.metavar or action.dest).upper())
    return names


def not_utf8(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """One line naming the first argument that is not valid UTF-8 text (a name, note, tag,
    run id or path typed with bytes from another encoding), or None. The store keeps text
    as UTF-8, and a path is shown and recorded as text too."""
    for dest, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = text.encode("utf-8", "surrogateescape")[exc.start:exc.end]
                name = _flag_names(parser).get(dest, dest)
                raw = text.encode("utf-8", "surrogateescape")
                shown = raw.decode("utf-8", "backslashreplace")
                return (f"{name}='{shown}' is not valid UTF-8 text (byte {bad.hex(' ')} at "
                        f"position {exc.start}); type it in UTF-8 (check the terminal's "
                        "encoding, e.g. LANG=C.UTF-8)")
    return None


class QuietPipe:
    """stdout that goes quiet when its reader goes away (`cnnprobe runs --json | head -1`,
    `cnnprobe train ... | grep -q x`): the rest of the output is dropped, without Python's
    "Broken pipe" noise and without Rich's SystemExit(1), and the command goes on to its
    end. A training whose output pipe closes keeps training and records its run as usual;
    Ctrl-C (or kill) stops it as cancelled."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._went_away()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went_away()

    def _went_away(self) -> None:
        self.gone = True
        try:  # Python flushes stdout once more at exit: let that write land in /dev/null
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno... as the stream's
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    if not isinstance(stdout, QuietPipe):
        sys.stdout = QuietPipe(stdout)
    try:
        return _main(argv)
    finally:
        sys.stdout = stdout


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    bad_text = not_utf8(args, parser)
    if bad_text:
        return _fail(bad_text, 2)
    if args.store is not None and not args.store.strip():  # `--store "$UNSET_VAR"`
        return _fail(f"--store {args.store!r} is empty: give a folder, or leave --store out "
                     "for $CNNPROBE_STORE or ./checkpoints", 2)
    # log_path off: a progress line is not followed by `training.py:71` (where it was made)
    console = Console(stderr=bool(getattr(args, "json", False)), log_path=False)
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
