"""Stopping a training from outside the program, the same way however it is asked.

Ctrl-C (SIGINT), SIGTERM (`kill`, systemd, a batch system ending a job) and SIGHUP (the
terminal went away: an SSH connection dropped, the window closed) all set the run's cancel
flag: it stops at its next step and is stored as cancelled, with a checkpoint at that step
(`cnnprobe resume` continues it). The process then exits with 128 + the signal's number
(130, 143, 129), the shells' convention for "ended by this signal". The CLI
(cli/training.py) and the TUI (tui/app.py) install the handlers; this module only holds
what they share. Imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import threading

# The signals that stop a training as ctrl+q / the first Ctrl-C do (SIGHUP: not on Windows).
STOP_SIGNALS: tuple[int, ...] = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                                      if hasattr(signal, name))


class StopFlag(threading.Event):
    """A cancel flag that remembers the signal that set it (None: set another way)."""

    signum: int | None = None

    def stop_by(self, signum: int) -> bool:
        """Set by `signum`; False (nothing changes) when already set."""
        if self.is_set():
            return False
        self.signum = signum
        self.set()
        return True


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The exit status of a program ended by `signum`: 128 + its number."""
    return 128 + int(signum)


def detach_if_hung_up() -> bool:
    """After a hangup every write to the terminal fails (EIO): the progress bar, the TUI's
    last frames and the final lines would raise. Point stdout and stderr at /dev/null when
    they are such a terminal, so that the program finishes storing its run and exits as
    usual. True when the terminal was gone; a live one is left as it is."""
    gone = False
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError:
            gone = True
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
            except OSError:
                pass
    return gone
