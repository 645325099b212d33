"""Bad input and hostile text, as a careful user and an attacker would try them (issue 19):
run references that could mean two runs, control characters and Rich markup in names,
notes and tags, numbers beyond what the store keeps, bad environment values, empty or
odd plan files, empty and read-only stores. Every refusal is one line that changes
nothing; the next case found is one more row of CLI_ERRORS. Runs are made in the store
directly (no training), so the whole file runs in seconds."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run, store_files

from cnnprobe.cli import main
from cnnprobe.config import RunConfig, TaskConfig, TrainConfig
from cnnprobe.report.markdown import summary_markdown, table
from cnnprobe.report.study import study_markdown
from cnnprobe.shown import shown
from cnnprobe.store import RunStore, StoreError, database, export_run, import_run
from cnnprobe.studies.plan import load_plan

SHADOWED = "346542"  # run "b1"'s id starts so; run "b2" is renamed to it
EVIL = "evil\x1b[2Jname\x1b]0;owned\x07[bold]x[/]"  # clears the screen, retitles, markup
TINY = RunConfig(task=TaskConfig(height=16, width=16),
                 train=TrainConfig(steps=1, batch_size=2, val_size=2, device="cpu"))


def _make(root: Path) -> dict[str, str]:
    """A store with runs b1 (id starting SHADOWED), b2, twin and twin (one name, two runs),
    and newest "newest"; name -> id (the last twin's id under "twin")."""
    store = RunStore(root)
    ids = {}
    for name in ("b1", "b2", "twin", "twin", "newest"):
        rid = store.create_run(TINY, name=name)
        store.set_status(rid, "finished")
        store.rename(rid, name)
        ids[name] = rid
    old = ids["b1"]
    new = SHADOWED + old[len(SHADOWED):]
    with store._write() as c:
        c.execute("UPDATE runs SET id = ? WHERE id = ?", (new, old))
        c.execute("UPDATE runs SET created_at = created_at - 100 WHERE name != 'newest'")
    (root / old).rename(root / new)
    ids["b1"] = new
    store.close()
    return ids


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "store"
    _make(root)
    return root


@pytest.fixture
def root(template, tmp_path, monkeypatch):
    dest = tmp_path / "store"
    shutil.copytree(template, dest)
    monkeypatch.chdir(tmp_path)  # a default ./checkpoints would land here
    return dest


def snapshot(root: Path):
    """Every run's row and tags, and every file of the store: what a refusal must keep."""
    conn = sqlite3.connect(root / "cnnprobe.db")
    runs = conn.execute("SELECT id, name, note, status, seed FROM runs ORDER BY id").fetchall()
    tags = conn.execute("SELECT * FROM tags ORDER BY run_id, tag").fetchall()
    conn.close()
    return runs, tags, store_files(root)


def _plan(tmp: Path, name: str, text: str) -> None:
    (tmp / name).write_text(text, encoding="utf-8")


BASE = '[base]\n"task.height" = 16\n"train.steps" = 1\n"train.batch_size" = 2\n' \
       '"train.val_size" = 2\n"train.device" = "cpu"\n'


def _rename(to: str):
    def prepare(tmp: Path, root: Path, monkeypatch) -> None:
        store = RunStore(root)
        store.rename(store.resolve("b2"), to)
        store.close()
    return prepare


def _read_only_mount(tmp: Path, root: Path, monkeypatch) -> None:
    """The store as on a read-only mount: SQLite opens it with mode=ro, and the check a
    real mount answers (statvfs's ST_RDONLY) says read-only."""
    monkeypatch.setattr(database, "read_only_mount", lambda path: True)


def _running_elsewhere(tmp: Path, root: Path, monkeypatch) -> None:
    """Run b2 still running on a host whose name carries an escape sequence."""
    conn = sqlite3.connect(root / "cnnprobe.db")
    with conn:
        conn.execute("UPDATE runs SET status = 'running', host = ?, heartbeat_at = "
                     "strftime('%s', 'now') WHERE name = 'b2'", ("gpu\x1b[2J1",))
    conn.close()


CLI_ERRORS = [
    # (name, prepare(tmp_path, root, monkeypatch) or None, args ({tmp}: tmp_path),
    #  environment, exit code, words in the one line)
    ("a name that is another run's id prefix", _rename(SHADOWED), ["rm", SHADOWED, "--yes"],
     {}, 1, f"run '{SHADOWED}' is ambiguous, it could mean 2 runs: "),
    ("a name that is another run's id prefix, show", _rename(SHADOWED), ["show", SHADOWED],
     {}, 1, "('b1', by id prefix)"),
    ("a run named latest that is not the newest", _rename("latest"), ["rm", "latest", "--yes"],
     {}, 1, "'latest', by name); "),
    ("two runs with the name", None, ["rm", "twin", "--yes"], {}, 1,
     "run 'twin' is ambiguous, it could mean 2 runs"),
    ("two runs with the name, note", None, ["note", "twin", "x"], {}, 1, "give the full id"),
    ("an empty run reference", None, ["rm", " ", "--yes"], {}, 1, "empty run id"),
    ("plan axis field not a string", lambda t, r, m: _plan(t, "p.toml", 'name = "p"\n' + BASE
     + "[[axis]]\nfield = 7\nvalues = [1]\n"), ["study", "run", "{tmp}/p.toml"], {}, 2,
     "axis 1: field=7 is not allowed: a setting's name in quotes"),
    ("plan seed beyond 2**63", lambda t, r, m: _plan(t, "p.toml", 'name = "p"\nseeds = '
     "[0, 100000000000000000000]\n" + BASE), ["study", "run", "{tmp}/p.toml"], {}, 2,
     "seeds=[0, 100000000000000000000] is not allowed"),
    ("an empty plan", lambda t, r, m: _plan(t, "p.toml", "# nothing yet\n"),
     ["study", "run", "{tmp}/p.toml"], {}, 2, "p.toml is empty: a plan needs at least name"),
    ("a plan without a name", lambda t, r, m: _plan(t, "p.toml", BASE),
     ["study", "run", "{tmp}/p.toml"], {}, 2, "p.toml has no name: a plan needs"),
    ("--seed 2**63", None, ["train", "--seed", str(2**63)], {}, 2,
     f"train.seed={2**63} is not allowed: an integer from 0 to {2**63 - 1}"),
    ("--steps 2**63", None, ["train", "--steps", str(2**63)], {}, 2,
     f"train.steps={2**63} is not allowed: an integer up to {2**63 - 1}"),
    ("--epochs whose steps pass 2**63", None, ["train", "--epochs", str(2**62),
                                               "--samples-per-epoch", "1024", "--batch-size",
                                               "1"], {}, 2, "train.epochs="),
    *((f"CNNPROBE_LOCK_TIMEOUT={v}", None, ["runs"], {"CNNPROBE_LOCK_TIMEOUT": v}, 1,
       f"CNNPROBE_LOCK_TIMEOUT='{v}' is not allowed: the seconds a write waits")
      for v in ("nan", "inf", "-1", "1e400", "soon")),
    ("--store ''", None, ["--store", "", "runs"], {}, 2, "--store '' is empty: give a folder"),
    ("--store '' after the command", None, ["runs", "--store", ""], {}, 2, "is empty"),
    ("a write to a store on a read-only mount", _read_only_mount, ["tag", "b2", "x"], {}, 1,
     "is on a read-only file system: its runs can be listed and shown, not changed"),
    ("rm on a read-only mount", _read_only_mount, ["rm", "b2", "--yes"], {}, 1,
     "read-only file system"),
    ("an error quoting a host with an escape sequence", _running_elsewhere,
     ["rm", "b2", "--yes"], {}, 1, "is still running (pid "),
]


@pytest.mark.parametrize("name,prepare,args,env,code,words", CLI_ERRORS,
                         ids=[e[0] for e in CLI_ERRORS])
def test_bad_input_is_one_line_and_changes_nothing(root, tmp_path, capsys, monkeypatch, name,
                                                   prepare, args, env, code, words):
    if prepare:
        prepare(tmp_path, root, monkeypatch)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(root)
    listing = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(tmp=tmp_path) for a in args]
    argv = args if args[0].startswith("--store") else ["--store", str(root), *args]
    got = main(argv)
    out, err = capsys.readouterr()
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnprobe: error: "), err
    assert words in lines[0], lines[0]
    assert "Traceback" not in err and "chmod" not in err and "\x1b" not in err
    assert snapshot(root) == before  # no run deleted, renamed, tagged or added
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no ./checkpoints


def test_an_ambiguous_reference_lists_every_candidate_with_id_and_name(tmp_path):
    ids = _make(tmp_path / "s")
    store = RunStore(tmp_path / "s")
    store.rename(ids["b2"], SHADOWED)
    with pytest.raises(StoreError) as err:
        store.resolve(SHADOWED)
    assert f"{ids['b1']} ('b1', by id prefix)" in str(err.value)
    assert f"{ids['b2']} ('{SHADOWED}', by name)" in str(err.value)
    twins = [r.id for r in store.list_runs() if r.name == "twin"]
    with pytest.raises(StoreError) as err:
        store.resolve("twin")
    assert all(f"{rid} ('twin', by name)" in str(err.value) for rid in twins)


def test_lookup_rule_exact_id_then_name_then_unique_prefix(tmp_path):
    ids = _make(tmp_path / "s")
    store = RunStore(tmp_path / "s")
    assert store.resolve(ids["b2"]) == ids["b2"]  # an exact id, any case
    assert store.resolve(ids["b2"].upper()) == ids["b2"]
    assert store.resolve("b2") == ids["b2"]  # a name
    assert store.resolve(ids["b2"][:10]) == ids["b2"]  # a unique prefix
    assert store.resolve("latest") == ids["newest"]
    # A name that is a prefix of its own id is one run, not an ambiguity.
    store.rename(ids["b2"], ids["b2"][:6])
    assert store.resolve(ids["b2"][:6]) == ids["b2"]
    # An exact id wins over a run named with it.
    store.rename(ids["newest"], ids["b2"])
    assert store.resolve(ids["b2"]) == ids["b2"]
    assert store.lookup(ids["b1"][:7]).how == "id prefix"
    # "latest" names the newest run when a run called latest is the newest.
    store.rename(ids["newest"], "latest")
    assert store.lookup("latest").id == ids["newest"]
    with pytest.raises(StoreError, match="no run 'nothere'"):
        store.resolve("nothere")
    # Under four characters a hex word is a name only: run "b2" stays "b2" beside an id
    # that starts b2 (as git, which abbreviates to no fewer than four).
    store.rename(ids["b2"], "b2")
    with store._write() as c:
        c.execute("UPDATE runs SET id = 'b2' || substr(id, 3) WHERE id = ?", (ids["newest"],))
    assert store.resolve("b2") == ids["b2"]


def test_rm_by_prefix_says_what_it_deletes_before_it_goes(root, capsys):
    ids = {r.name: r.id for r in RunStore(root).list_runs()}
    code, out, err = run(capsys, root, "rm", SHADOWED[:4], "--yes")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"deleting run {ids['b1']} (b1, finished, by id prefix '{SHADOWED[:4]}')"
    assert lines[1] == f"deleted run {ids['b1']} (b1)"
    assert "b2" in {r.name for r in RunStore(root).list_runs()}


def test_rm_asks_with_full_ids_and_names(root, capsys, monkeypatch):
    ids = {r.name: r.id for r in RunStore(root).list_runs()}
    asked = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("rich.console.Console.input",
                        lambda self, prompt="", **kw: asked.append(str(prompt)) or "n")
    code, out, _ = run(capsys, root, "rm", SHADOWED, "b2")
    assert code == 1 and "nothing deleted" in out
    assert f"run {ids['b1']} (b1, finished, by id prefix '{SHADOWED}')" in asked[0]
    assert f"run {ids['b2']} (b2, finished)" in asked[0]


# -- control characters and markup: shown, never obeyed

SHOWN = [
    ("plain", "plain"),
    ("evil\x1b[2Jname", "evil\\x1b[2Jname"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("a\tb\r\nc", "a\\tb\\r\\nc"),
    ("csi\x9b2J del\x7f nul\x00", "csi\\x9b2J del\\x7f nul\\x00"),
    ("bidi\u202egnp.exe", "bidi\\u202egnp.exe"),
    ("ünïcödé ✓ 名前", "ünïcödé ✓ 名前"),
]


@pytest.mark.parametrize("text,expected", SHOWN, ids=[s[0][:8] for s in SHOWN])
def test_shown_writes_control_characters_as_visible_escapes(text, expected):
    assert shown(text) == expected


def test_shown_keeps_line_breaks_where_asked():
    assert shown("one\r\ntwo\n\x1b[1m", newlines=True) == "one\ntwo\n\\x1b[1m"


def _evil(root: Path) -> str:
    store = RunStore(root)
    rid = store.resolve("b2")
    store.rename(rid, EVIL)
    store.set_note(rid, "line one\x1b[31m\nline two [red]not red[/red]")
    store.set_tags(rid, ["t\x1b[5m", "[bold]tag"])
    store.close()
    return rid


@pytest.mark.parametrize("args", [["runs"], ["show", "{id}"], ["note", "{id}"],
                                  ["tag", "{id}", "more"], ["runs", "--filter", "evil"],
                                  ["rm", "{id}", "--yes"]])
def test_terminal_output_shows_control_characters_and_markup_as_text(root, capsys, args,
                                                                     monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")  # the runs table cuts a long name to fit 80
    rid = _evil(root)
    code, out, err = run(capsys, root, *(a.format(id=rid) for a in args))
    assert code == 0, err
    assert "\x1b" not in out + err and "\x07" not in out
    if args[0] != "tag":
        assert "evil\\x1b[2Jname" in out
    if args[0] in ("show", "note"):  # the note keeps its line break, and no more
        assert "line one\\x1b[31m" in out and "line two [red]not red[/red]" in out
    if args[0] == "show":
        assert "[bold]x[/]" in out and "[bold]tag" in out  # markup shown, not applied


def test_markdown_exports_carry_no_control_characters(root, capsys, tmp_path):
    rid = _evil(root)
    code, _, err = run(capsys, root, "export", rid, "--format", "md", "--out",
                       str(tmp_path / "one.md"))
    assert code == 0, err
    text = (tmp_path / "one.md").read_text()
    assert "\x1b" not in text and "\x07" not in text
    assert text.startswith("# evil\\x1b[2Jname\\x1b]0;owned\\x07[bold]x[/]\n")
    assert "| note | line one\\x1b[31m line two [red]not red[/red] |" in text
    code, _, err = run(capsys, root, "compare", rid, "b1", "--format", "md", "--out",
                       str(tmp_path / "two.md"))
    assert code == 0, err
    assert "\x1b" not in (tmp_path / "two.md").read_text()


def test_markdown_tables_escape_pipes_and_controls_in_headers_too():
    md = table(["a|b\x1b", "c"], [["x\x1b[2J|y", "line\nbreak"]])
    assert md.splitlines() == ["| a\\|b\\x1b | c |", "|---|---|",
                               "| x\\x1b[2J\\|y | line break |"]


def test_a_run_summary_in_markdown_with_a_crafted_reason():
    summary = {"id": "f" * 32, "name": EVIL, "config": TINY.to_dict(), "status": "failed",
               "reason": "boom\x1b[2J", "versions": {}, "kind": "train", "parent_id": None,
               "tags": [], "note": "", "created_at": None, "finished_at": None,
               "wall_time_s": 0.0, "steps_done": 0, "total_steps": 1, "resumed_at": [],
               "samples_seen": 0, "seed": 0, "device": "cpu", "device_name": "cpu",
               "parameters": 0, "metrics": {}, "describe": {}, "val_history": [],
               "train_history": [], "sweeps": {}, "evaluations": []}
    text = summary_markdown(summary)
    assert "\x1b" not in text and "boom\\x1b[2J" in text


def test_a_study_report_with_crafted_labels_and_question():
    s = {"mean": 1.0, "std": 0.1, "n": 2, "ci95": [0.9, 1.1]}
    data = {"name": "st\x1b[2J", "question": "why\x1b]0;t\x07?", "metric": "mae",
            "seeds": [0, 1], "sweep_metrics": {},
            "variants": {"v\x1b[31m": {"metrics": {"mae": s}, "sweeps": {}, "runs": ["x"],
                                       "statuses": {"finished": 2}}},
            "verdicts": {"": "v\x1b[31m is best"}}
    text = study_markdown(data)
    assert "\x1b" not in text and "\x07" not in text
    assert "# Study st\\x1b[2J" in text and "v\\x1b[31m is best" in text


def test_a_run_imported_from_another_machine_is_shown_safely(root, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")
    rid = _evil(root)
    other = RunStore(tmp_path / "other")
    import_run(other, export_run(RunStore(root), rid))
    other.close()
    code, out, err = run(capsys, tmp_path / "other", "runs")
    assert code == 0 and "\x1b" not in out and "evil\\x1b[2Jname" in out, err
    code, out, err = run(capsys, tmp_path / "other", "show", rid)
    assert code == 0 and "\x1b" not in out, err


async def test_the_tui_runs_table_and_compare_labels_show_names_as_text():
    from test_tui_runs import WIDE, FakeStore, settle

    from tui.app import CnnprobeApp
    from tui.run_view import RunView
    from tui.widgets.plots import compare_label

    store = FakeStore(3)
    store.records[0].name = EVIL
    app = CnnprobeApp("/fake/store", store=store, watch_store=False)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        cells = [c.text for row in app.runs.table.rows for c in row]
        assert any(c.startswith("evil\\x1b[2Jname") for c in cells)
        assert not any("\x1b" in c or "\x07" in c for c in cells)
    view = RunView.from_store(store, store.records[0])
    assert "\x1b" not in compare_label(view) and "evil\\x1b" in compare_label(view)


# -- plans, numbers, stores


def test_a_plan_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + ('name = "bom"\nseeds = 1\n' + BASE).encode())
    plan = load_plan(path)
    assert plan.name == "bom" and plan.base.task.height == 16


def test_a_refused_seed_stores_no_trial_first(root, capsys, tmp_path):
    """The whole plan is checked before a trial runs: seed 0 is fine, 10**20 is not, and
    seed 0's trial must not be trained and stored before that is found."""
    _plan(tmp_path, "p.toml", 'name = "p"\nseeds = [0, 100000000000000000000]\n' + BASE)
    before = snapshot(root)
    code, _, err = run(capsys, root, "study", "run", str(tmp_path / "p.toml"))
    assert code == 2 and "seeds=" in err
    assert snapshot(root) == before


def test_a_store_on_a_read_only_mount_is_read(root, capsys, monkeypatch):
    _read_only_mount(root, root, monkeypatch)
    before = snapshot(root)
    code, out, err = run(capsys, root, "runs")
    assert code == 0 and "b1" in out and "twin" in out, err
    code, out, err = run(capsys, root, "show", "b2")
    assert code == 0 and "b2" in out, err
    assert snapshot(root) == before
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["cnnprobe.db"]


def _unshare_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and mount namespaces")
def test_a_real_read_only_mount(root, tmp_path):
    """A bind mount made read-only in a mount namespace of its own: the store is listed, a
    write is one line without a chmod hint (no chmod works on a read-only file system)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cnnprobe = [sys.executable, "-c", "import sys; from cnnprobe.cli import main; "
                "sys.exit(main())", "--store", str(mnt)]
    script = (f"mount --bind {root} {mnt} && mount -o remount,bind,ro {mnt} || exit 99; "
              f"{' '.join(map(repr, cnnprobe))} runs; echo rc=$?; "
              f"{' '.join(map(repr, cnnprobe))} tag b2 x; echo rc=$?")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    if done.returncode == 99:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    assert "twin" in done.stdout and "rc=0" in done.stdout, done.stderr
    assert "rc=1" in done.stdout
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "is on a read-only file system" in err[0], done.stderr
    assert "chmod" not in err[0] and "Traceback" not in done.stderr
