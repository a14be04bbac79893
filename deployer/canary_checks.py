"""The ``--canary-check`` URLs: HTTP GETs of the user's service during the canary's hold.

Owns the thread that GETs each URL, one after the other, every CHECK_INTERVAL_SECONDS, each with a timeout of
CHECK_TIMEOUT_SECONDS, and keeps a ``CheckReading`` per URL; canaries.hold_step decides from the readings
(CHECK_ATTEMPTS failures in a row fail the canary). What a server answers is untrusted: only its status code
is kept, never its body or reason phrase. Must not decide, print, or show a URL's user, password or query
(canaries.shown_url).
"""

from __future__ import annotations

import http
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace

from deployer.canaries import CHECK_INTERVAL_SECONDS, CHECK_TIMEOUT_SECONDS, CheckReading
from deployer.settings import format_duration


class CanaryChecks:
    """GET every URL in turn until stopped; ``readings()`` is what was found so far. Use as a context manager."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        interval: float = CHECK_INTERVAL_SECONDS,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self._readings = {url: CheckReading(url) for url in urls}
        self._interval = interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deployer-canary-checks", daemon=True)
        # No redirect is followed: a check answers for itself, and a redirect could lead the GET anywhere.
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __enter__(self) -> CanaryChecks:
        if self._readings:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout + 1)

    def readings(self) -> list[CheckReading]:
        with self._lock:
            return list(self._readings.values())

    def _run(self) -> None:
        while not self._stopped.is_set():
            for url in list(self._readings):
                problem = self._get(url)
                with self._lock:
                    reading = self._readings[url]
                    if problem is None:
                        reading = replace(reading, answered_ok=reading.answered_ok + 1, failed_in_a_row=0)
                    else:
                        reading = replace(reading, failed_in_a_row=reading.failed_in_a_row + 1, last_problem=problem)
                    self._readings[url] = reading
                if self._stopped.is_set():
                    return
            self._stopped.wait(self._interval)

    def _get(self, url: str) -> str | None:
        """None when ``url`` answered 2xx, else what went wrong."""
        request = urllib.request.Request(url, method="GET", headers={"User-Agent": "deployer-canary-check"})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as e:
            status = int(e.code)
            e.close()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
                return f"no answer within {format_duration(self._timeout)}"
            return f"no answer ({type(reason).__name__})"
        if 200 <= status < 300:
            return None
        return f"answered {_status_text(status)}"


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
