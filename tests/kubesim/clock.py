"""The simulator's clock: epoch seconds that can run faster than real time and be pushed forward.

It owns simulated time for everything in the simulator (timestamps, controllers' deadlines, token
expiry). It must not sleep or schedule anything itself: callers poll ``now()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """``now()`` starts at the real epoch time and advances ``speed`` simulated seconds per real second."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self._lock = threading.Lock()
        self._speed = float(speed)
        self._origin_sim = time.time() if start is None else start
        self._origin_real = time.monotonic()
        self._advance_listeners: list[Callable[[], None]] = []

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every ``advance`` (the control loop re-checks deadlines at once)."""
        self._advance_listeners.append(listener)

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        with self._lock:
            return self._origin_sim + (time.monotonic() - self._origin_real) * self._speed

    def advance(self, seconds: float) -> None:
        """Jump forward (never back): deadlines that fall inside the jump pass at once."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._origin_sim += seconds
        for listener in self._advance_listeners:
            listener()

    def real_seconds(self, sim_seconds: float) -> float:
        """How long ``sim_seconds`` of simulated time take in real time."""
        return sim_seconds / self._speed

    def timestamp(self, at: float | None = None) -> str:
        """RFC 3339 with second precision, as metadata.creationTimestamp and conditions carry it."""
        moment = self.now() if at is None else at
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def micro_timestamp(self, at: float | None = None) -> str:
        """RFC 3339 with microseconds, as managedFields[].time and MicroTime fields carry it."""
        moment = self.now() if at is None else at
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp written by ``SimClock.timestamp``/``micro_timestamp``."""
    cleaned = text.replace("Z", "+00:00")
    return datetime.fromisoformat(cleaned).timestamp()
