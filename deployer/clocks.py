"""The clocks the control loops read, injected so that their decisions are tested with a fake clock.

``Instant`` is one reading, handed to a pure step; ``Clocks`` is where a loop takes readings (the real clocks
unless a test passes others). Nothing here sleeps or waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Instant:
    """One reading of the clocks: ``monotonic`` seconds (deadlines) and the UTC time (what the API's
    timestamps, a lease's renewTime or a pod failure's first sighting, are compared with)."""

    monotonic: float
    utc: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clocks:
    """Where a loop reads the time."""

    monotonic: Callable[[], float] = time.monotonic
    utc: Callable[[], datetime] = _utc_now

    def now(self) -> Instant:
        return Instant(self.monotonic(), self.utc())
