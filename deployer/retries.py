"""Retrying calls to an API that may be unavailable for a while (a control plane restarting for maintenance).

It owns the policy: which delay comes next (exponential back-off, or the server's own ``Retry-After``), when
to give up (a deadline, the run's rollout or rollback budget), and saying once that the API is unavailable
and once that it is back. The loop is tenacity's; the clock and the sleep are injected, so the policy is
table-tested without waiting.

It does not know HTTP or Kubernetes: callers decide what is transient by raising ``Transient`` (wrapping the
error to report if retrying ends) and only for calls that are safe to repeat. It never prints: it reports
through the two callbacks it is given.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.stop import stop_base

from deployer.errors import ExternalError
from deployer.settings import format_duration

T = TypeVar("T")

# An advised wait longer than this is not honoured as is: the deadline and the back-off cap decide.
MAX_ADVISED_WAIT_SECONDS = 60.0


class Transient(Exception):
    """Raised by a call that may succeed if repeated; ``advised_wait`` is the server's Retry-After, if any."""

    def __init__(self, error: ExternalError, advised_wait: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.advised_wait = advised_wait


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off from ``initial`` seconds, doubling up to ``maximum``; ``budget`` bounds a call that has no
    deadline of its own."""

    initial: float = 0.5
    maximum: float = 5.0
    budget: float = 60.0

    def delay(self, attempt: int, advised_wait: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if advised_wait is not None and advised_wait >= 0:
            return min(advised_wait, MAX_ADVISED_WAIT_SECONDS)
        return min(self.initial * 2.0 ** max(attempt - 1, 0), self.maximum)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now_epoch)
    return max(0.0, seconds) if math.isfinite(seconds) else None


class Availability:
    """Whether the API answers, as the calls see it; says so once when it stops and once when it is back.

    Shared by every call and watch of one connection (from several threads), so that an outage is one
    warning and one notice, not one per request."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float],
        on_lost: Callable[[str], None],
        on_regained: Callable[[str], None],
    ) -> None:
        self.name = name
        self._clock = clock
        self._on_lost = on_lost
        self._on_regained = on_regained
        self._lock = threading.Lock()
        self._lost_at: float | None = None
        self._ever_answered = False

    @property
    def lost(self) -> bool:
        with self._lock:
            return self._lost_at is not None

    @property
    def ever_answered(self) -> bool:
        """False until the API answered once: before that, a failure is more likely a wrong address."""
        with self._lock:
            return self._ever_answered

    def failed(self, reason: str) -> None:
        with self._lock:
            if self._lost_at is not None:
                return
            self._lost_at = self._clock()
        self._on_lost(f"{self.name} is unavailable ({reason}); retrying")

    def answered(self) -> None:
        with self._lock:
            self._ever_answered = True
            if self._lost_at is None:
                return
            down_for = self._clock() - self._lost_at
            self._lost_at = None
        self._on_regained(f"{self.name} is available again after {format_duration(down_for)}")


class Retrier:
    """Runs calls again while they raise ``Transient``, waiting as ``policy`` says, until ``deadline``."""

    def __init__(
        self,
        policy: RetryPolicy,
        availability: Availability,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], object],
    ) -> None:
        self.policy = policy
        self.availability = availability
        self._clock = clock
        self._sleep = sleep

    def call(
        self,
        attempt: Callable[[], T],
        *,
        deadline: float | None = None,
        sleep: Callable[[float], object] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> T:
        """``attempt()`` until it returns or raises something else than Transient. ``deadline`` (on the
        injected clock; None: the policy's budget from now) ends the retries: the last error is raised with
        how long the API was unavailable. ``stop`` ends them early (e.g. the wait was cancelled); ``sleep``
        replaces the injected one (e.g. an Event's wait, which ``stop`` can cut short)."""
        started = self._clock()
        last_moment = deadline if deadline is not None else started + self.policy.budget

        def wait(state: RetryCallState) -> float:
            return self.policy.delay(state.attempt_number, _advised_wait(state))

        def succeeded(value: T) -> T:
            self.availability.answered()
            return value

        def failed(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            if isinstance(failure, Transient):
                self.availability.failed(str(failure.error))

        retrying = Retrying(
            stop=_StopAt(lambda state: self._clock() + wait(state) > last_moment or stop()),
            wait=wait,
            retry=retry_if_exception_type(Transient),
            sleep=_as_sleep(sleep or self._sleep),
            before_sleep=failed,
            reraise=True,
        )
        try:
            return succeeded(retrying(attempt))
        except ExternalError as e:
            if not e.retryable:
                self.availability.answered()  # a refusal is an answer: the API is there
            raise
        except Transient as transient:
            error = transient.error
            waited = self._clock() - started
            if waited > 0 and not stop():
                error.message += f" (still failing after retrying for {format_duration(waited)})"
            raise error from transient.__cause__


def _advised_wait(state: RetryCallState) -> float | None:
    failure = state.outcome.exception() if state.outcome else None
    return failure.advised_wait if isinstance(failure, Transient) else None


class _StopAt(stop_base):
    def __init__(self, decide: Callable[[RetryCallState], bool]) -> None:
        self._decide = decide

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._decide(retry_state)


def _as_sleep(sleep: Callable[[float], object]) -> Callable[[float], None]:
    """tenacity wants a sleep that returns None; an Event's wait returns whether it was set."""

    def sleeping(seconds: float) -> None:
        sleep(seconds)

    return sleeping
