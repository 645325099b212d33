"""`cnnprobe models` and `tasks`: what the lab can train, and on what."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from cnnprobe.cli.tables import print_json


def cmd_models(args: argparse.Namespace, console: Console, store: object = None) -> int:
    from cnnprobe.models import model_table

    rows = model_table()
    if args.json:
        print_json(rows)
        return 0
    table = Table(title="models")
    for col in ("name", "parameters", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", r["description"])
    console.print(table)
    return 0


def cmd_tasks(args: argparse.Namespace, console: Console, store: object = None) -> int:
    from cnnprobe.tasks import task_table

    rows = task_table()
    if args.json:
        print_json(rows)
        return 0
    table = Table(title="tasks")
    table.add_column("name")
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"], r["description"])
    console.print(table)
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for name, func, text in (("models", cmd_models, "list the models"),
                             ("tasks", cmd_tasks, "list the probe tasks")):
        p = sub.add_parser(name, parents=[common], help=text, description=text.capitalize() + ".")
        p.set_defaults(func=func, needs_store=False)
