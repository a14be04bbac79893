"""The deploy lock wait's decision at each read of the lease: pure, so that it is table-tested with a fake clock.

``step(policy, state, lease, cancelled, now) -> (state, verdict)``: create the lease when there is none; the
lock is ours when the lease names this run; take it over when no one holds it or its holder stopped renewing
it (its own renewTime says so, or this machine saw it unchanged for the lease's duration); otherwise wait, and
say once per holder who holds it, until ``--lock-timeout`` or a cancel. The loop (kube/locking.py) reads the
lease and the clocks and writes; this module does neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from deployer.clocks import Instant
from deployer.kinds import KubeObject


class LeaseAction(StrEnum):
    CREATE = "create"
    OURS = "ours"
    TAKE = "take"
    WAIT = "wait"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class LeaseWaitPolicy:
    """This run's ``identity`` in the lease, the ``lease_seconds`` it asks for, and its wait: ``timeout``
    seconds from ``started`` (monotonic; 0: as long as it takes)."""

    identity: str
    lease_seconds: int
    started: float
    timeout: float


@dataclass(frozen=True)
class LeaseWaitState:
    """Since when (monotonic) the holder's record has stayed as it is, and the holder last announced."""

    unchanged: str | None = None
    unchanged_since: float = 0.0
    announced: str | None = None


@dataclass(frozen=True)
class LeaseVerdict:
    """What to do now; ``holder`` holds the lock; ``announce``: say it is waited for; ``wait_seconds``: how long
    to watch the lease for a change (it would expire then)."""

    action: LeaseAction
    holder: str = ""
    announce: bool = False
    wait_seconds: float = 0.0


def step(
    policy: LeaseWaitPolicy, state: LeaseWaitState, lease: KubeObject | None, cancelled: bool, now: Instant
) -> tuple[LeaseWaitState, LeaseVerdict]:
    """One look at the lease (see the module's docstring)."""
    if lease is None:
        return state, LeaseVerdict(LeaseAction.CREATE)
    spec = lease.get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    if holder == policy.identity:
        # Our create or take-over went through but its answer was lost (the retry then met a conflict with
        # ourselves): the lock is ours, not someone's to wait for.
        return state, LeaseVerdict(LeaseAction.OURS, holder)
    duration = int(spec.get("leaseDurationSeconds") or policy.lease_seconds)
    # Expiry is judged on this machine's clock too: since when has the holder's record stayed unchanged?
    signature = f"{holder}@{spec.get('renewTime')}"
    if state.unchanged != signature:
        state = LeaseWaitState(signature, now.monotonic, state.announced)
    unchanged_for = now.monotonic - state.unchanged_since
    if not holder or unchanged_for >= duration or lease_expired(spec, duration, now.utc):
        return state, LeaseVerdict(LeaseAction.TAKE, holder)
    announce = state.announced != holder
    state = LeaseWaitState(state.unchanged, state.unchanged_since, holder)
    deadline = policy.started + policy.timeout if policy.timeout > 0 else math.inf
    remaining = deadline - now.monotonic
    if remaining <= 0:
        return state, LeaseVerdict(LeaseAction.TIMED_OUT, holder, announce)
    if cancelled:
        return state, LeaseVerdict(LeaseAction.CANCELLED, holder, announce)
    # Wake on any change of the lease, or when it would expire, whichever comes first.
    until_expiry = duration - unchanged_for + 0.5
    return state, LeaseVerdict(LeaseAction.WAIT, holder, announce, min(remaining, until_expiry))


def lease_expired(spec: KubeObject, duration: int, now: datetime) -> bool:
    """Whether the lease's own times say it ran out (renewed, or acquired, longer than ``duration`` ago)."""
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    try:
        when = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    except ValueError:
        return True
    return now > when + timedelta(seconds=duration)
