"""Claims on study trials: which driver trains which trial, so that two `study run`s of the
same study share its trials instead of training each twice.

A claim is one row of the `claims` table (schema v4): study, trial key, the owner (a token
per running study driver, so that two drivers in one process are told apart), its host and
pid, and when it was taken and last renewed. `claim_trials` takes every free trial of a list
in one BEGIN IMMEDIATE transaction, so two drivers never both get one. A claim is released
when its trial ends (finished, failed, cancelled) and all of a driver's claims when it
exits; one whose owner is gone without releasing it is stale and taken over: on this host
when its process no longer runs (SIGKILL, a crash), on another host when it has not been
renewed for CLAIM_STALE_AFTER_S (its driver renews them every CLAIM_RENEW_S).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cnnprobe.store.database import StoreDatabase
from cnnprobe.store.provenance import hostname, process_alive, process_token

CLAIM_RENEW_S = 30.0
# A claim from another host not renewed for this long is taken for dead: ten missed renewals.
CLAIM_STALE_AFTER_S = 300.0


@dataclass(frozen=True)
class Claim:
    """Who holds a trial."""

    study: str
    trial: str
    owner: str
    host: str
    pid: int
    claimed_at: float
    heartbeat_at: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def claim_is_stale(host: str, pid: int, token: str, heartbeat_at: float,
                   now: float | None = None) -> bool:
    """Whether a claim's owner is gone: its process is not running on this host, or (on
    another host) it has not renewed the claim for CLAIM_STALE_AFTER_S."""
    if host == hostname():
        return not process_alive(pid, token)
    return (now if now is not None else time.time()) - heartbeat_at > CLAIM_STALE_AFTER_S


class TrialClaims(StoreDatabase):
    """The store's claims table; RunStore has these methods."""

    def claim_trials(self, study: str, trials: Iterable[str], owner: str
                     ) -> dict[str, Claim]:
        """Claim every trial of `trials` that is free, stale or `owner`'s already, for
        `owner` (this process); returns the live claims of others, by trial: those are
        trained elsewhere. One transaction: two drivers never both get a trial."""
        now, pid, host = time.time(), os.getpid(), hostname()
        token = process_token(pid)
        held: dict[str, Claim] = {}
        with self._write() as c:
            for trial in trials:
                row = c.execute("SELECT * FROM claims WHERE study = ? AND trial = ?",
                                (study, trial)).fetchone()
                if row is not None and row["owner"] != owner and not claim_is_stale(
                        row["host"], row["pid"], row["pid_token"], row["heartbeat_at"], now):
                    held[trial] = _claim(row)
                    continue
                c.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (study, trial, owner, host, pid, token, now, now))
        return held

    def release_claim(self, study: str, trial: str, owner: str) -> None:
        """Give the trial back (its run has ended); only `owner`'s claim is removed."""
        with self._write() as c:
            c.execute("DELETE FROM claims WHERE study = ? AND trial = ? AND owner = ?",
                      (study, trial, owner))

    def release_claims(self, owner: str) -> int:
        """Give back every claim of `owner` (its driver is done); how many there were."""
        with self._write() as c:
            return c.execute("DELETE FROM claims WHERE owner = ?", (owner,)).rowcount

    def renew_claims(self, owner: str) -> None:
        """Move the heartbeat of `owner`'s claims: they stay live for other hosts."""
        with self._write() as c:
            c.execute("UPDATE claims SET heartbeat_at = ? WHERE owner = ?", (time.time(), owner))

    def claims(self, study: str | None = None) -> list[Claim]:
        """The claims held now (stale ones included), oldest first."""
        where, args = ("WHERE study = ?", (study,)) if study is not None else ("", ())
        return [_claim(r) for r in self._read(
            f"SELECT * FROM claims {where} ORDER BY claimed_at", args)]


def _claim(row) -> Claim:
    return Claim(row["study"], row["trial"], row["owner"], row["host"], row["pid"],
                 row["claimed_at"], row["heartbeat_at"])
