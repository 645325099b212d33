"""A study's worker process ends when the driver that started it is gone.

A driver killed outright (SIGKILL, the OOM killer, a crash) cannot tell its workers: they
were reparented and lived on, finishing their trial and then waiting on a task queue no
one writes to (each ~1 GB; seen for 38+ minutes), their trials shown as "running
elsewhere". Each worker runs a `ParentWatch`: a daemon thread that compares os.getppid()
with the driver's pid every WATCH_S. When it differs, the trial in flight is cancelled (its
cancel flag reads `orphaned`): it stops at its next step and is stored as cancelled with a
checkpoint at that step. The process then exits, at once when idle and at the latest after
GRACE_S. The driver's claims on the trials are stale with it (claims.py), so the next
`study run` trains them again.

Why a thread and not prctl(PR_SET_PDEATHSIG): that fires when the *thread* that spawned the
child exits, not the process (the pool spawns from whichever thread submits, in the TUI a
worker thread that may end first); it is Linux-only; it misses a parent that died before
the child set it; and the signal it sends kills the trial unsaved unless handled, which
needs the same logic as here. os.getppid() is POSIX, cheap, and compared against the pid
given at spawn, it catches a parent that died before the watch started.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

WATCH_S = 0.5
GRACE_S = 20.0  # a trial in flight gets this long to store itself as cancelled
EXIT_ORPHANED = 3  # the worker's exit status when its driver was gone


class ParentWatch:
    """Watch for the death of process `parent_pid` from inside its child."""

    def __init__(self, parent_pid: int, *, every_s: float = WATCH_S,
                 grace_s: float = GRACE_S) -> None:
        self.parent_pid = parent_pid
        self.every_s, self.grace_s = every_s, grace_s
        self.orphaned = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> ParentWatch:
        threading.Thread(target=self._watch, daemon=True, name="cnnprobe-parent-watch").start()
        return self

    def is_set(self) -> bool:
        """As a cancel flag: set once the parent is gone."""
        return self.orphaned.is_set()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Around a trial: the process exits only once it has stored its end."""
        with self._lock:
            self._busy += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

    def _watch(self) -> None:
        while os.getppid() == self.parent_pid:
            time.sleep(self.every_s)
        self.orphaned.set()
        self._idle.wait(self.grace_s)
        time.sleep(0.05)  # the trial's last store write is committed; nothing else is owed
        os._exit(EXIT_ORPHANED)
