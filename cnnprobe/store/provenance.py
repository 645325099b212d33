"""Where and with which code a run ran: versions, git commit, host and process liveness."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from cnnprobe import __version__


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """torch, torchvision and cnnprobe versions, and the git commit of the code if any."""
    import torch

    try:
        import torchvision

        tv = torchvision.__version__
    except Exception:  # noqa: BLE001 - a broken torchvision must not stop a run being recorded
        tv = ""
    return {"torch": torch.__version__, "torchvision": tv, "cnnprobe": __version__,
            "git_commit": git_commit(Path(__file__).resolve().parent) or ""}


def run_provenance() -> dict[str, object]:
    """`versions()` and how torch computes in this process at the moment a run is created:
    its intra-op threads (sums are ordered by them, so 1 and 2 threads give other numbers
    for one seed) and the determinism settings."""
    import torch

    return {**versions(), "threads": torch.get_num_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


def git_commit(start: Path) -> str | None:
    """The commit checked out in the git work tree holding `start`, read from .git directly.

    No `git` subprocess: it may not be installed, and a run must not wait on it.
    """
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.exists():
            try:
                return _read_head(dot_git)
            except OSError:
                return None
    return None


def _read_head(dot_git: Path) -> str | None:
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
        target = dot_git.read_text().strip().removeprefix("gitdir:").strip()
        dot_git = (dot_git.parent / target).resolve()
    head = (dot_git / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head or None  # detached HEAD
    ref = head.removeprefix("ref:").strip()
    common = dot_git
    if (dot_git / "commondir").is_file():
        common = (dot_git / (dot_git / "commondir").read_text().strip()).resolve()
    for base in (dot_git, common):
        if (base / ref).is_file():
            return (base / ref).read_text().strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None  # a branch with no commit yet


def hostname() -> str:
    return socket.gethostname()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name is parenthesised and may hold spaces: split after its last ")".
    return stat.rsplit(")", 1)[1].split()


def process_token(pid: int) -> str:
    """A token that changes when `pid` is reused: the process start time on Linux, else ""."""
    fields = _proc_stat(pid)
    return fields[19] if fields else ""


def process_alive(pid: int, token: str = "") -> bool:
    """True when process `pid` runs on this host and, if a token was recorded, is the same one."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc here: trust kill()
    if fields[0] in ("Z", "X"):  # killed, waiting to be reaped by its parent
        return False
    return not token or fields[19] == token
