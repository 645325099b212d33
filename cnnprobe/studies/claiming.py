"""Which trials of a study this driver trains, when another `study run` of the same study
may be running (in another terminal, process or machine on the same store).

Each trial is claimed in the store right before it starts (`RunStore.claim_trials`, one
transaction), so that two drivers share a study's trials as they go: a trial another live
driver holds is "running elsewhere" and left to it; a claimed one is decided again from its
stored record, read after the claim (kept, or removed and trained again), and its claim is
held until its run ends. A driver with nothing left of its own waits for the
trials running elsewhere: one that ends there is reported kept, and one whose claim goes
stale (its driver killed) is taken over and trained here. A thread renews this driver's
claims every CLAIM_RENEW_S, so that drivers on other hosts see it alive.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from cnnprobe.store import RunRecord, RunStore, StoreError
from cnnprobe.store.claims import CLAIM_RENEW_S
from cnnprobe.studies.plan import StudyPlan, Trial

POLL_S = 1.0  # how often a driver waiting for trials running elsewhere looks again


class TrialClaimer:
    """This driver's claims on one study's trials; a context manager that gives them all
    back when it ends (also on an error or a second Ctrl-C)."""

    def __init__(self, store: RunStore, plan: StudyPlan, *, retry_failed: bool,
                 kept: list[str], on_trial: Callable[[Trial, str, Any], None] | None,
                 records: Callable[[RunStore, str], dict[str, RunRecord]],
                 delete: Callable[[RunStore, str, str, str], None]) -> None:
        self.store, self.plan, self.retry_failed = store, plan, retry_failed
        self.kept, self.on_trial = kept, on_trial
        self._records, self._delete = records, delete
        self.owner = uuid.uuid4().hex  # this driver, also among several in one process
        self.elsewhere: dict[str, Trial] = {}  # held by another live driver, or running
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, daemon=True,
                                         name="cnnprobe-claims")

    def __enter__(self) -> TrialClaimer:
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._renewer.join()
        try:
            self.store.release_claims(self.owner)
        except StoreError:
            pass  # a store that fails now: the claims go stale with this process

    def _renew(self) -> None:
        while not self._stop.wait(CLAIM_RENEW_S):
            try:
                self.store.renew_claims(self.owner)
            except StoreError:
                pass  # busy for long: tried again next time

    def pending(self, trials: Iterable[Trial]) -> list[Trial]:
        """The trials that may need training (each claimed when it starts, `start`): those
        done are reported kept, those being trained in another process go to `elsewhere`."""
        stored = self._records(self.store, self.plan.name)
        return [t for t in trials if self._decide(t, stored.get(t.key), claimed=False)]

    def start(self, trial: Trial) -> bool:
        """Claim `trial` to train it now: True when this driver has it (a stale record of it
        removed); False when it is done (kept) or another driver has it (`elsewhere`)."""
        held = self.store.claim_trials(self.plan.name, [trial.key], self.owner)
        if trial.key in held:
            self._elsewhere(trial, f"running elsewhere: {held[trial.key].describe()}")
            return False
        return self._decide(trial, self._record(trial), claimed=True)

    def _record(self, trial: Trial) -> RunRecord | None:
        """The trial's newest stored record, read after claiming it (what another driver
        stored before it let go is seen)."""
        tag = f"study:{self.plan.name}"
        return next((r for r in self.store.list_runs(tag=f"trial:{trial.key}")
                     if tag in r.tags), None)

    def _decide(self, trial: Trial, rec: RunRecord | None, *, claimed: bool) -> bool:
        """Whether `trial` is to be trained, from its record; kept and running ones are
        reported (and their claim, if `claimed`, given back)."""
        if rec is not None and rec.status == "running":  # its process is alive
            if claimed:
                self.release(trial)
            self._elsewhere(trial, f"running elsewhere: pid {rec.pid} on {rec.host}", rec)
            return False
        self.elsewhere.pop(trial.key, None)
        if rec is not None and (rec.status == "finished" or (
                rec.status in ("failed", "skipped") and not self.retry_failed)):
            if claimed:
                self.release(trial)
            self.kept.append(trial.key)
            if self.on_trial:
                self.on_trial(trial, "kept", rec)
            return False
        if rec is not None and claimed:  # cancelled, interrupted, or failed to retry
            self._delete(self.store, self.plan.name, trial.key, rec.id)
        return True

    def _elsewhere(self, trial: Trial, what: str, rec: Any = None) -> None:
        if trial.key not in self.elsewhere and self.on_trial:
            self.on_trial(trial, what, rec)  # said once; its end is said when it comes
        self.elsewhere[trial.key] = trial

    def wait(self, cancel: Any) -> list[Trial]:
        """Wait until a trial running elsewhere has ended there (reported kept) or its
        driver is gone (returned, to train here); [] when none is left or on `cancel`."""
        while self.elsewhere:
            if cancel is not None and cancel.is_set():
                return []
            waiting = list(self.elsewhere.values())
            held = self.store.claim_trials(self.plan.name, [t.key for t in waiting],
                                           self.owner)
            todo = [t for t in waiting if t.key not in held
                    and self._decide(t, self._record(t), claimed=True)]
            if todo:
                return todo
            if self.elsewhere:
                (cancel if hasattr(cancel, "wait") else self._stop).wait(POLL_S)
        return []

    def release(self, trial: Trial) -> None:
        """The trial's run has ended (or it is left to another): its claim is given back."""
        self.store.release_claim(self.plan.name, trial.key, self.owner)
