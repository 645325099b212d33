"""What the CLI tests share: a tiny training command and in-process calls of `cnnprobe`."""

import json

from cnnprobe.cli import main

TRAIN = ["train", "--resolution", "32", "--steps", "20", "--batch-size", "32", "--eval-every",
         "10", "--val-size", "64", "--lr", "1e-3", "--device", "cpu", "--quiet"]


def run(capsys, root, *args):
    """`cnnprobe --store ROOT ARGS...`: (exit code, stdout, stderr)."""
    code = main(["--store", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, root, *args):
    code, out, err = run(capsys, root, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def store_files(root):
    """Every file of a store but its database, with sizes: what a failed command must keep."""
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith("cnnprobe.db"))
