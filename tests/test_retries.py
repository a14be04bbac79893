"""The retry policy for an API that is unavailable for a while, on an injected clock: no test waits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from deployer.errors import KubernetesError
from deployer.retries import Availability, Retrier, RetryPolicy, Transient, parse_retry_after


@dataclass
class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Said:
    lost: list[str] = field(default_factory=list)
    regained: list[str] = field(default_factory=list)


def retrier(time: FakeTime, said: Said, policy: RetryPolicy | None = None) -> Retrier:
    availability = Availability("the API", clock=time.clock, on_lost=said.lost.append, on_regained=said.regained.append)
    return Retrier(policy or RetryPolicy(budget=60), availability, clock=time.clock, sleep=time.sleep)


def unavailable(advised: float | None = None) -> Transient:
    return Transient(KubernetesError("service unavailable", status=503, retryable=True), advised)


def down_until(time: FakeTime, moment: float, advised: float | None = None) -> Callable[[], str]:
    """A call that fails as transient until the clock reaches ``moment``."""

    def call() -> str:
        if time.now < moment:
            raise unavailable(advised)
        return "answered"

    return call


@pytest.mark.parametrize(
    ("attempt", "advised", "expected"),
    [
        (1, None, 0.5),
        (2, None, 1.0),
        (3, None, 2.0),
        (4, None, 4.0),
        (5, None, 5.0),  # capped
        (40, None, 5.0),  # no overflow however long the outage
        (1, 7.0, 7.0),  # Retry-After wins over the back-off
        (3, 0.0, 0.0),
        (1, 3600.0, 60.0),  # an advice longer than a deploy can wait is capped; the deadline decides
    ],
)
def test_delay_backs_off_exponentially_and_honours_retry_after(
    attempt: int, advised: float | None, expected: float
) -> None:
    assert RetryPolicy(initial=0.5, maximum=5.0).delay(attempt, advised) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("Thu, 01 Jan 1970 00:16:50 GMT", 10.0),  # an HTTP date, 10 s after now (epoch 1000)
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now_epoch=1000.0) == expected


def test_a_five_second_outage_is_ridden_out_with_one_warning_and_one_notice() -> None:
    time, said = FakeTime(), Said()

    result = retrier(time, said).call(down_until(time, 1005.0))

    assert result == "answered"
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0]  # back at 1007.5, the first try after the API came back
    assert said.lost == ["the API is unavailable (service unavailable (HTTP 503)); retrying"]
    assert said.regained == ["the API is available again after 7.5s"]


def test_retry_after_is_honoured_instead_of_the_back_off() -> None:
    time, said = FakeTime(), Said()

    retrier(time, said).call(down_until(time, 1004.0, advised=2.0))

    assert time.sleeps == [2.0, 2.0]


def test_retrying_ends_at_the_deadline_with_the_last_error_and_how_long_it_tried() -> None:
    time, said = FakeTime(), Said()

    with pytest.raises(KubernetesError) as raised:
        retrier(time, said).call(down_until(time, 2000.0), deadline=1010.0)

    assert raised.value.status == 503
    # 0.5 + 1 + 2 + 4 = 7.5; the next 5 s would pass the deadline: no sleep past it.
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert "still failing after retrying for 7.5s" in str(raised.value)
    assert said.regained == []


def test_without_a_deadline_the_policys_budget_bounds_the_retries() -> None:
    time, said = FakeTime(), Said()

    with pytest.raises(KubernetesError):
        retrier(time, said, RetryPolicy(initial=1, maximum=1, budget=3)).call(down_until(time, 2000.0))

    assert time.sleeps == [1, 1, 1]


def test_an_error_that_cannot_heal_is_raised_at_once_and_counts_as_an_answer() -> None:
    time, said = FakeTime(), Said()
    calls = []

    def refused() -> str:
        calls.append(time.now)
        if len(calls) < 3:
            raise unavailable()
        raise KubernetesError("the cluster refused the credentials", status=401)

    with pytest.raises(KubernetesError) as raised:
        retrier(time, said).call(refused)

    assert raised.value.status == 401
    assert len(calls) == 3
    assert said.lost and said.regained == ["the API is available again after 1.5s"]


def test_stop_ends_the_retries_early() -> None:
    time, said = FakeTime(), Said()
    stopped = [False]

    def sleep_then_stop(seconds: float) -> None:
        time.sleep(seconds)
        stopped[0] = True

    with pytest.raises(KubernetesError) as raised:
        retrier(time, said).call(down_until(time, 2000.0), sleep=sleep_then_stop, stop=lambda: stopped[0])

    assert time.sleeps == [0.5]
    assert "still failing" not in str(raised.value)


def test_calls_sharing_an_availability_say_it_once() -> None:
    time, said = FakeTime(), Said()
    shared = retrier(time, said)

    shared.call(down_until(time, 1001.0))
    shared.call(down_until(time, 1001.0))  # the API is back: no new warning, no new notice
    shared.call(down_until(time, 1003.0))  # a second outage is said again

    assert len(said.lost) == 2
    assert len(said.regained) == 2


def test_an_api_that_never_answered_is_told_apart_from_one_that_went_away() -> None:
    time, said = FakeTime(), Said()
    shared = retrier(time, said)
    assert not shared.availability.ever_answered

    shared.call(down_until(time, 1001.0))

    assert shared.availability.ever_answered
