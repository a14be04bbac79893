"""The deploy lock wait's decisions (lease_wait.step) as tables, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployer import lease_wait
from deployer.clocks import Instant
from deployer.lease_wait import LeaseAction, LeaseVerdict, LeaseWaitPolicy, LeaseWaitState

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
ME = "https://ci/run/2 (b2b2b2b2)"
OTHER = "https://ci/run/1 (a1a1a1a1)"


def lease(holder: str | None, renewed_at: float | None = 0.0, duration: int = 60) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": duration}
    if renewed_at is not None:
        spec["renewTime"] = (T0 + timedelta(seconds=renewed_at)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": "deployer-lock", "resourceVersion": "7"}, "spec": spec}


def wait_through(
    reads: list[tuple[float, dict[str, Any] | None]], timeout: float = 120, cancelled_at: float | None = None
) -> list[LeaseVerdict]:
    """Each read of the lease at a second of the fake clock (monotonic and UTC move together)."""
    policy = LeaseWaitPolicy(ME, 60, started=0.0, timeout=timeout)
    state, verdicts = LeaseWaitState(), []
    for second, read in reads:
        cancelled = cancelled_at is not None and second >= cancelled_at
        now = Instant(second, T0 + timedelta(seconds=second))
        state, verdict = lease_wait.step(policy, state, read, cancelled, now)
        verdicts.append(verdict)
    return verdicts


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        # No lease: create it. Ours already (a create whose answer was lost): hold it.
        ([(0, None)], [LeaseAction.CREATE]),
        ([(0, lease(ME))], [LeaseAction.OURS]),
        # Held by no one: take it.
        ([(0, lease(""))], [LeaseAction.TAKE]),
        # Held and renewed: wait; renewed all along: still waiting at 100 s.
        ([(0, lease(OTHER)), (30, lease(OTHER, 30)), (100, lease(OTHER, 90))], [LeaseAction.WAIT] * 3),
        # Its own renewTime says it ran out: take it at once.
        ([(0, lease(OTHER, renewed_at=-300))], [LeaseAction.TAKE]),
        ([(0, lease(OTHER, renewed_at=None))], [LeaseAction.TAKE]),
        # Renewed in the future by a skewed clock, but unchanged for the lease's duration on this machine's.
        (
            [(0, lease(OTHER, 1000)), (59.9, lease(OTHER, 1000)), (60, lease(OTHER, 1000))],
            [LeaseAction.WAIT] * 2 + [LeaseAction.TAKE],
        ),
    ],
)
def test_lease_wait_step_creates_takes_or_waits(
    reads: list[tuple[float, dict[str, Any] | None]], expected: list[LeaseAction]
) -> None:
    assert [v.action for v in wait_through(reads)] == expected


def test_lease_wait_gives_up_at_the_lock_timeout_naming_the_holder() -> None:
    *waiting, last = wait_through([(0, lease(OTHER)), (9.9, lease(OTHER, 9)), (10, lease(OTHER, 9))], timeout=10)
    assert [v.action for v in waiting] == [LeaseAction.WAIT, LeaseAction.WAIT]
    assert (last.action, last.holder) == (LeaseAction.TIMED_OUT, OTHER)


def test_lease_wait_without_timeout_waits_as_long_as_the_holder_renews() -> None:
    reads = [(s, lease(OTHER, s)) for s in (0.0, 3600.0, 86400.0)]
    assert [v.action for v in wait_through(reads, timeout=0)] == [LeaseAction.WAIT] * 3


def test_a_cancel_ends_the_lease_wait_but_the_timeout_is_said_first() -> None:
    cancelled = wait_through([(0, lease(OTHER)), (5, lease(OTHER, 5))], cancelled_at=5)
    assert [v.action for v in cancelled] == [LeaseAction.WAIT, LeaseAction.CANCELLED]
    both = wait_through([(0, lease(OTHER)), (10, lease(OTHER, 9))], timeout=10, cancelled_at=10)
    assert both[-1].action is LeaseAction.TIMED_OUT


def test_lease_wait_announces_each_holder_once_and_watches_until_the_lease_would_expire() -> None:
    verdicts = wait_through([(0, lease(OTHER)), (20, lease(OTHER, 0)), (30, lease("https://ci/run/3 (c3)", 30))])
    assert [v.announce for v in verdicts] == [True, False, True]
    # Unchanged since 0 at 20 s: the lease would expire 40 s later (plus half a second of margin).
    assert verdicts[1].wait_seconds == pytest.approx(40.5)
