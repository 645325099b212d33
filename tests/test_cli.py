"""The `cnnprobe` command line, driven in-process: every command, and every error a user
can cause giving one line, a non-zero exit and an unchanged store."""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from cli_helpers import TRAIN, run, run_json, store_files

from cnnprobe.cli import build_parser, main
from cnnprobe.store import RunStore

COMMANDS = ["train", "eval", "sweep", "resume", "finetune", "inspect", "runs", "show", "compare",
            "export",
            "rm", "tag", "note", "models", "tasks"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store with one trained run, copied fresh for each test that needs it."""
    root = tmp_path_factory.mktemp("template")
    assert main(["--store", str(root), *TRAIN, "--name", "base", "--tag", "t1"]) == 0
    return root


@pytest.fixture
def root(template, tmp_path):
    dest = tmp_path / "store"
    shutil.copytree(template, dest)
    return dest


def snapshot(root):
    """Everything a user would call their stored runs."""
    store = RunStore(root)
    runs = [(r.id, r.name, r.status, r.steps_done, r.tags, r.note, r.metrics, r.resumed_at)
            for r in store.list_runs()]
    extra = [(len(store.evaluations(r[0])), store.sweeps(r[0])) for r in runs]
    files = store_files(root)
    store.close()
    return runs, extra, files


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnnprobe {command}")
    assert "--store" in out and "--json" in out


def test_top_level_help_lists_every_command(capsys):
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


def test_train_records_and_prints_the_run_id_at_start_and_end(tmp_path, capsys):
    code, out, err = run(capsys, tmp_path, *TRAIN, "--tag", "a", "--tag", "b")
    assert code == 0, err
    [rec] = RunStore(tmp_path).list_runs()
    lines = [line for line in out.splitlines() if rec.id in line]
    assert "recording into" in lines[0] and lines[-1].endswith("finished")
    assert "final metrics" in out and "prediction" in out
    assert rec.tags == ["a", "b"] and rec.status == "finished"


def test_store_from_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNPROBE_STORE", str(tmp_path / "env"))
    assert main([*TRAIN, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert RunStore(tmp_path / "env").get(data["id"]).status == "finished"


def test_a_whole_session(root, capsys, tmp_path):
    [base] = run_json(capsys, root, "runs")
    rid = base["id"]
    assert (base["name"], base["status"], base["tags"]) == ("base", "finished", ["t1"])

    shown = run_json(capsys, root, "show", rid[:6])
    assert shown["id"] == rid and shown["metrics"]["mae"] == base["metrics"]["mae"]
    assert [r["step"] for r in shown["val_history"]] == [10, 20]

    ev = run_json(capsys, root, "eval", rid[:6], "--resolution", "48", "--n", "64",
                  "--distractors", "1", "--which", "last", "--device", "cpu")
    assert ev["options"]["height"] == 48 and ev["options"]["distractors"] == 1
    assert ev["metrics"]["n"] == 64

    sw = run_json(capsys, root, "sweep", rid[:6], "--resolutions", "16:48:16", "--n", "16",
                  "--device", "cpu")
    assert [r["resolution"] for r in sw["table"]] == [16, 32, 48]
    sd = run_json(capsys, root, "sweep", rid[:6], "--kind", "distractors",
                  "--max-distractors", "2", "--n", "16", "--device", "cpu")
    assert [r["distractors"] for r in sd["table"]] == [0, 1, 2]

    resumed = run_json(capsys, root, "resume", rid[:6], "--steps", "10", "--quiet")
    assert resumed["id"] == rid and resumed["steps"] == 30

    ft = run_json(capsys, root, "finetune", rid[:6], "--resolution", "48", "--steps", "5",
                  "--quiet", "--tag", "ft")
    assert ft["id"] != rid and ft["config"]["task"]["height"] == 48

    listed = run_json(capsys, root, "runs")
    assert [r["id"] for r in listed] == [ft["id"], rid]  # newest first
    assert listed[0]["parent_id"] == rid and listed[0]["kind"] == "finetune"
    assert listed[1]["resumed_at"] == [20] and listed[1]["steps_done"] == 30
    assert [r["id"] for r in run_json(capsys, root, "runs", "--tag", "ft")] == [ft["id"]]
    assert run_json(capsys, root, "runs", "--status", "failed") == []

    code, out, _ = run(capsys, root, "show", rid[:6])
    assert code == 0
    for text in ("resolution sweep", "distractors sweep", "re-evaluations", "final metrics",
                 "checkpoints: last (step 30), best (step"):
        assert text in out, text

    comp = run_json(capsys, root, "compare", rid[:6], ft["id"][:6])
    assert "task.height" in comp["differences"] and "task.name" not in comp["differences"]
    code, out, _ = run(capsys, root, "compare", rid[:6], ft["id"][:6])
    assert code == 0 and "task.height" in out

    out_dir = tmp_path / "ex"
    files = run_json(capsys, root, "export", rid[:6], ft["id"][:6], "--format", "md",
                     "--out", f"{out_dir}/")["files"]
    assert len(files) == 2 and all(p.endswith(".md") for p in files)
    [cmp_file] = run_json(capsys, root, "compare", rid[:6], ft["id"][:6], "--format", "csv",
                          "--out", str(out_dir / "cmp.csv"))["files"]
    assert cmp_file.endswith("cmp.csv")

    assert run_json(capsys, root, "tag", rid[:6], "keep", "x")["tags"] == ["keep", "t1", "x"]
    assert run_json(capsys, root, "tag", rid[:6], "x", "--remove")["tags"] == ["keep", "t1"]
    noted = run_json(capsys, root, "note", rid[:6], "trained at 32", "--name", "renamed")
    assert (noted["note"], noted["name"]) == ("trained at 32", "renamed")

    code, out, _ = run(capsys, root, "rm", ft["id"][:6], "--yes")
    assert code == 0 and "deleted" in out
    assert [r["id"] for r in run_json(capsys, root, "runs")] == [rid]


def test_models_and_tasks(capsys):
    assert main(["models", "--json"]) == 0
    assert "seednet" in [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert main(["tasks", "--json"]) == 0
    assert "distance" in [r["name"] for r in json.loads(capsys.readouterr().out)]


def _id(root):
    return RunStore(root).list_runs()[0].id


def _truncate(root):
    path = root / _id(root) / "last.pt"
    path.write_bytes(path.read_bytes()[:500])


def _unbuildable(root):
    path = root / _id(root) / "last.pt"  # what eval uses by default
    data = torch.load(path, weights_only=True)
    data["config"]["model"]["name"] = "plaincnn"
    torch.save(data, path)


def _make_ambiguous(root):
    # A second run whose id shares the first one's first four characters.
    rid = _id(root)
    with sqlite3.connect(root / "cnnprobe.db") as conn:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (rid,)).fetchone()
        marks = ",".join("?" * len(row))
        conn.execute(f"INSERT INTO runs VALUES ({marks})", (rid[:4] + "f" * 28, *row[1:]))


ERRORS = [
    # (name, prepare(root) -> None, args with {id} for the run id, exit code, words)
    ("unknown id", None, ["show", "beef"], 1, "no run 'beef'"),
    ("ambiguous", _make_ambiguous, ["show", "{id4}"], 1, "ambiguous"),
    ("missing checkpoint", lambda r: (r / _id(r) / "last.pt").unlink(),
     ["resume", "{id}", "--steps", "5", "--quiet"], 1, "no last checkpoint"),
    ("truncated checkpoint", _truncate, ["eval", "{id}", "--which", "last"], 1, "unreadable"),
    ("config no longer builds", _unbuildable, ["eval", "{id}"], 1, "no longer builds a model"),
    ("bad config value", None, ["train", "--lr", "-1", "--steps", "2"], 2, "train.lr"),
    ("bad sweep size", None, ["sweep", "{id}", "--resolutions", "2", "--n", "4"], 2,
     "task.height=2"),
    ("bad region", None, ["eval", "{id}", "--region", "heldout"], 2, "task.split"),
    ("unwritable export", lambda r: (r / "afile").write_text(""),
     ["export", "{id}", "--out", "{root}/afile/x.md"], 1, "is a file, not a folder"),
    ("rm without a terminal", None, ["rm", "{id}"], 1, "pass --yes"),
    ("tag with a space", None, ["tag", "{id}", "two words"], 1, "one word"),
    # Text that is not UTF-8 (argv decoded with surrogateescape, as Python does for bytes a
    # terminal in another encoding sends): one line naming the argument, at every boundary.
    ("non-UTF-8 note", None, ["note", "{id}", "bad\udcff"], 2,
     "TEXT='bad\\xff' is not valid UTF-8"),
    ("non-UTF-8 name", None, ["note", "{id}", "ok", "--name", "n\udce9"], 2,
     "--name='n\\xe9' is not valid UTF-8"),
    ("non-UTF-8 tag", None, ["tag", "{id}", "x\udcfe"], 2, "TAG='x\\xfe' is not valid"),
    ("non-UTF-8 run id", None, ["show", "{id4}\udcff"], 2, "is not valid UTF-8"),
    ("non-UTF-8 train note", None, ["train", "--steps", "2", "--note", "\udcff"], 2,
     "--note="),
    ("non-UTF-8 train tag", None, ["train", "--steps", "2", "--tag", "a\udcff"], 2, "--tag="),
    # A number the user typed is checked like any other: 0 is not "not given".
    ("zero resolution, eval", None, ["eval", "{id}", "--resolution", "0"], 2,
     "task.height=0"),
    ("zero height, eval", None, ["eval", "{id}", "--height", "0"], 2, "task.height=0"),
    ("zero width, finetune", None, ["finetune", "{id}", "--width", "0", "--steps", "2",
                                    "--quiet"], 2, "task.width=0"),
    ("zero resolution, finetune", None, ["finetune", "{id}", "--resolution", "0", "--steps",
                                         "2", "--quiet"], 2, "task.height=0"),
    ("zero height, inspect", None, ["inspect", "{id}", "--height", "0"], 2, "task.height=0"),
    # Hints that work when followed, and refusals that leave no run behind.
    ("resume from a damaged last checkpoint", _truncate, ["resume", "{id}", "--steps", "2",
                                                         "--quiet"], 1,
     "resume needs the last checkpoint: continue from the best one as a new run instead, "
     "cnnprobe finetune"),
    ("text file as weights", lambda r: (r / "w.txt").write_text("hello"),
     ["train", "--model", "resnet18", "--resolution", "32", "--steps", "2", "--weights-path",
      "{root}/w.txt"], 2, "not a torch.save file"),
    ("folder as weights", None, ["train", "--model", "resnet18", "--resolution", "32",
                                 "--steps", "2", "--weights-path", "{root}"], 2, "is a folder"),
    ("malformed device", None, ["train", "--steps", "2", "--device", "cuda:-1"], 2,
     "cuda:N (N a device index from 0)"),
    ("a device this machine lacks", None, ["train", "--steps", "2", "--device", "cuda:99"], 2,
     "train.device='cuda:99'"),
    ("CUDA graphs on the CPU", None, ["train", "--steps", "2", "--device", "cpu", "--compile",
                                      "reduce-overhead"], 2,
     "train.compile='reduce-overhead' is not allowed: CUDA graphs need a CUDA device"),
]


@pytest.mark.parametrize("name,prepare,args,code,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_user_errors_are_one_line_and_change_nothing(root, capsys, name, prepare, args, code,
                                                     words):
    if prepare:
        prepare(root)
    rid = _id(root)
    args = [a.format(id=rid, id4=rid[:4], root=root) for a in args]
    before = snapshot(root)
    got, out, err = run(capsys, root, *args)
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnprobe: error: "), err
    assert words in lines[0]
    assert "Traceback" not in out + err
    assert snapshot(root) == before


@pytest.mark.parametrize("args,words", [
    (["sweep", "x", "--resolutions", "64:oops"], "--resolutions: '64:oops'"),
    (["runs", "--status", "sleeping"], "invalid choice: 'sleeping'"),
    (["eval"], "required: run"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors_are_one_line_too(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as exit_:
        main(["--store", str(tmp_path), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("cnnprobe: error: ")
    assert words in err


def test_a_store_that_is_not_a_database(tmp_path, capsys):
    (tmp_path / "cnnprobe.db").write_bytes(b"not sqlite" * 50)
    code, _, err = run(capsys, tmp_path, "runs")
    assert code == 1
    assert err == (f"cnnprobe: error: {tmp_path / 'cnnprobe.db'} is not a cnnprobe store "
                   "(file is not a database): move it away or pass --store DIR\n")
    assert (tmp_path / "cnnprobe.db").read_bytes() == b"not sqlite" * 50


def test_a_locked_store(root, capsys, monkeypatch):
    monkeypatch.setenv("CNNPROBE_LOCK_TIMEOUT", "0.2")
    before = snapshot(root)
    holder = sqlite3.connect(root / "cnnprobe.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = run(capsys, root, "tag", _id(root), "new")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1 and err.startswith("cnnprobe: error: ") and "locked" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(root) == before


def test_export_refuses_to_overwrite(root, capsys, tmp_path):
    out = tmp_path / "one.md"
    assert run(capsys, root, "export", _id(root), "--out", str(out))[0] == 0
    out.write_text("edited")
    code, _, err = run(capsys, root, "export", _id(root), "--out", str(out))
    assert code == 1 and "--force" in err and out.read_text() == "edited"
    assert run(capsys, root, "export", _id(root), "--out", str(out), "--force")[0] == 0
    assert out.read_text().startswith("# base")


def _closed_early(args: list[str], read: int = 10) -> tuple[int, str]:
    """Run `cnnprobe ARGS`, read a few bytes of its output and close the pipe (as `| head`
    does): its exit code and what it wrote to stderr."""
    import subprocess
    import sys
    from pathlib import Path

    cnnprobe = Path(sys.executable).parent / "cnnprobe"  # the installed command
    proc = subprocess.Popen([str(cnnprobe), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(read)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=300), err


def test_output_that_goes_away_is_neither_noise_nor_a_failed_run(root):
    """`runs --json | head -c 10` and `train ... | head -1`: exit 0, nothing on stderr, and
    the training goes on to the end and is recorded as finished."""
    code, err = _closed_early(["--store", str(root), "runs", "--json"])
    assert (code, err) == (0, "")
    loud = [a for a in TRAIN if a != "--quiet"]  # progress lines go to the closed pipe
    code, err = _closed_early(["--store", str(root), *loud, "--name", "piped"], read=5)
    assert (code, err) == (0, "")
    (rec,) = [r for r in RunStore(root).list_runs() if r.name == "piped"]
    assert rec.status == "finished" and rec.steps_done == 20


def test_a_lost_index_beside_run_folders_is_refused_and_the_fix_works(root, capsys):
    """A cnnprobe.db cut to 0 bytes would become a new empty store hiding every run: it is
    refused, nothing changes, and the command it suggests does leave a working store."""
    import shlex
    import subprocess

    for name in ("cnnprobe.db-wal", "cnnprobe.db-shm"):
        (root / name).unlink(missing_ok=True)
    (root / "cnnprobe.db").write_bytes(b"")
    before = store_files(root)
    code, out, err = run(capsys, root, "runs")
    assert code == 1 and "is empty (0 bytes) but 1 run folder(s) are beside it" in err
    assert store_files(root) == before and (root / "cnnprobe.db").stat().st_size == 0
    fix = err.split("move the run folders out of it first: ")[1].strip()
    subprocess.run(fix, shell=True, check=True)  # as a user pastes it
    assert run(capsys, root, "runs")[0] == 0
    moved = shlex.split(fix)[-1].rstrip("/")
    assert len(list(Path(moved).iterdir())) == 1


@pytest.mark.parametrize("task", [
    dict(name="locate", height=8, width=8),
    dict(name="count", height=16, width=16, count_max=8),
    dict(name="locate", height=32, width=32, object_max=12),
    dict(name="distance", height=12, width=12, distractors=6),
    dict(name="count", height=64, width=64, count_max=9, distractors=3, object_max=16),
])
def test_every_size_hint_works_when_followed(task):
    """A crowded task is refused with the changes that would make it fit, and each one
    does (at 8 px "a smaller task.object_max" was offered though nothing smaller exists)."""
    import re
    from dataclasses import replace

    from cnnprobe.config import ConfigError, RunConfig, TaskConfig, validate

    cfg = RunConfig(task=TaskConfig(**task))
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    text = str(info.value)
    side = int(re.search(r"images of at least (\d+)x", text).group(1))
    tries = [replace(cfg.task, height=side, width=side)]
    if m := re.search(r"at most (\d+) objects \(([^)]*)\)", text):
        fits, knobs = int(m.group(1)), m.group(2)
        t = cfg.task
        if "count_max" in knobs:
            t = replace(t, count_max=max(t.count_min, fits - max(t.distractors, 0)))
        if "distractors" in knobs:
            base = {"count": t.count_max, "locate": 2}.get(t.name, 1)
            t = replace(t, distractors=max(0, fits - base), eval_distractors=None)
        tries.append(t)
    if m := re.search(r"task.object_max=(\d+) or less", text):
        tries.append(replace(cfg.task, object_max=int(m.group(1))))
    for fixed in tries:
        validate(replace(cfg, task=fixed))  # each suggestion alone makes it fit


def _as_another_user():
    """A command prefix running as a user without root's right to write anything (`nobody`
    via setpriv when the tests run as root, as CI does; nothing when they do not)."""
    import os
    import pwd

    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: read-only files cannot be tested")
    user = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def test_read_only_parts_of_a_store_are_named_and_what_sqlite_left_is_mended():
    """The folder, the index, or the -wal/-shm files SQLite made while the index was
    read-only: the runs can still be listed, each refused write names the part and the chmod
    that fixes it, and once the index is writable again the leftovers are mended so the
    store writes again."""
    import os
    import pwd
    import subprocess
    import sys
    import tempfile

    prefix = _as_another_user()
    cnnprobe = str(Path(sys.executable).parent / "cnnprobe")
    top = Path(tempfile.mkdtemp(prefix="cnnprobe-ro-"))
    store = top / "s"
    try:
        if prefix:
            user = pwd.getpwnam("nobody")
            os.chown(top, user.pw_uid, user.pw_gid)

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*prefix, cnnprobe, "--store", str(store), *args],
                                  capture_output=True, text=True, timeout=120)

        tiny = ("--steps", "1", "--resolution", "16", "--batch-size", "4", "--val-size", "8",
                "--device", "cpu", "--quiet")
        made = cli("train", *tiny)  # a store and a run, made by that user
        assert made.returncode == 0, made.stderr
        db = store / "cnnprobe.db"
        store.chmod(0o555)
        for side in ("cnnprobe.db-wal", "cnnprobe.db-shm"):
            (store / side).unlink(missing_ok=True)
        listed = cli("runs")  # read-only: read, never changed (no -wal/-shm made)
        assert listed.returncode == 0 and "distance" in listed.stdout, listed.stderr
        assert sorted(p.name for p in store.iterdir() if p.is_file()) == ["cnnprobe.db"]
        done = cli("tag", "latest", "x")
        assert done.returncode == 1, done.stderr
        assert f"the store folder {store} is read-only" in done.stderr
        assert f"chmod u+w {store}," in done.stderr  # its owner can: the hint is given
        store.chmod(0o755)  # the fix it gave
        db.chmod(0o444)
        assert cli("runs").returncode == 0  # reading works; SQLite makes -shm read-only
        done = cli("tag", "latest", "x")
        assert done.returncode == 1 and f"{db} is read-only: chmod u+w {db}," in done.stderr
        db.chmod(0o644)  # the fix it gave: the index alone, -shm left as SQLite made it
        done = cli("tag", "latest", "y")
        assert done.returncode == 0, done.stderr
    finally:
        store.chmod(0o755) if store.exists() else None
        shutil.rmtree(top, ignore_errors=True)


def test_a_config_whose_steps_take_minutes_is_refused_unless_allowed(root, capsys,
                                                                    monkeypatch):
    """It passes the memory check and would make no step for minutes: timed first and
    refused with the way out; --allow-slow starts it anyway (the timing is faked here so
    that the test neither depends on this machine's speed nor trains a 4096 px model)."""
    import cnnprobe.admission as admission

    monkeypatch.setattr(admission, "estimate_step_seconds", lambda cfg: 600.0)
    before = snapshot(root)
    code, out, err = run(capsys, root, *TRAIN)
    assert code == 2 and "would take about 10 min on this CPU" in err
    assert "--allow-slow to start anyway" in err and snapshot(root) == before
    code, out, err = run(capsys, root, *TRAIN, "--allow-slow", "--name", "slow-but-asked")
    assert code == 0, err
    assert [r.status for r in RunStore(root).list_runs() if r.name == "slow-but-asked"] == \
        ["finished"]


def test_the_step_time_is_timed_only_when_it_may_be_slow():
    from cnnprobe.admission import estimate_step_seconds
    from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

    small = RunConfig(task=TaskConfig(height=64, width=64), model=ModelConfig(name="plaincnn"),
                      train=TrainConfig(batch_size=8, device="cpu"))
    assert estimate_step_seconds(small) is None  # its floor is far under a second: no timing
    big = RunConfig(task=TaskConfig(height=1024, width=1024),
                    model=ModelConfig(name="plaincnn", width=8),
                    train=TrainConfig(batch_size=8, device="cpu"))
    seconds = estimate_step_seconds(big)
    assert seconds is not None and seconds > 0


def test_the_damaged_checkpoint_hints_work_when_followed(root, capsys):
    """Resume on a damaged last checkpoint points at finetune --which best; eval points at
    --which best: both commands, as given, run."""
    import re

    _truncate(root)
    rid = _id(root)
    code, out, err = run(capsys, root, "resume", rid, "--steps", "2", "--quiet")
    assert code == 1
    hint = re.search(r"cnnprobe (finetune \S+ --which best) --steps N", err).group(1).split()
    code, out, err = run(capsys, root, *hint, "--steps", "2", "--quiet")
    assert code == 0, err
    code, out, err = run(capsys, root, "eval", rid)
    assert code == 1 and err.strip().endswith("--which best")
    assert run(capsys, root, "eval", rid, "--which", "best")[0] == 0


@pytest.mark.parametrize("command", ["train", "resume", "finetune"])
def test_allow_slow_help_gives_the_step_time_the_readme_gives(command, capsys):
    """--help said a step "would take minutes", the README "over 30 s": one number."""
    from pathlib import Path

    from cnnprobe.admission import SLOW_STEP_S

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    words = f"would take over {SLOW_STEP_S:.0f} s on the CPU"
    assert words in text
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert f"would take over {SLOW_STEP_S:.0f} s on the CPU" in readme


def test_progress_lines_do_not_name_the_source_line(tmp_path, capsys):
    """The device and validation lines ended in `training.py:71`, where they were logged."""
    assert main(["--store", str(tmp_path), "train", "--steps", "2", "--resolution", "16",
                 "--batch-size", "4", "--val-size", "8", "--eval-every", "1",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "val MAE" in out and "device cpu" in out
    assert ".py:" not in out, out


def test_compare_says_when_a_sweep_is_of_other_weights_than_the_final_metrics(tmp_path,
                                                                                capsys):
    """A sweep made at step 2, then the run resumed to step 3: compare showed the sweep
    beside the step-3 metrics without saying so."""
    root = str(tmp_path)
    tiny = ["--resolution", "16", "--batch-size", "4", "--val-size", "8", "--device", "cpu",
            "--quiet"]
    assert main(["--store", root, "train", "--steps", "2", *tiny]) == 0
    assert main(["--store", root, "train", "--steps", "2", *tiny]) == 0
    first, second = [r.id for r in RunStore(root).list_runs()][::-1]
    for rid in (first, second):
        assert main(["--store", root, "sweep", rid[:8], "--resolutions", "16,24", "--n",
                     "8"]) == 0
    assert main(["--store", root, "resume", first[:8], "--steps", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["--store", root, "compare", first[:8], second[:8]]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (f"note: {first[:8]}'s resolution sweep is of step 2, its final metrics of step "
            f"3: `cnnprobe sweep {first[:8]} --kind resolution` sweeps it again") in out
    assert f"note: {second[:8]}" not in out and "last @ 2" in out
