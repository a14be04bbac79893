"""List + watch: a thread per kind and namespace that keeps a caller's view current, and waiting for one change.

A watch resumes from the last resourceVersion it saw (re-listing on 410 Gone) and never polls: one request per
WATCH_WINDOW_SECONDS while nothing changes. While the API is unavailable it retries with back-off
(deployer/retries.py) until its deadline.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import urllib3

from deployer.errors import KubernetesError
from deployer.kinds import KubeDict
from deployer.kube.answers import error_class, unavailable_status
from deployer.kube.api import CONNECT_TIMEOUT_SECONDS, KubeAPI, advised_wait, decoded, unreachable
from deployer.kube.resources import Resource
from deployer.retries import Transient

# A watch is re-opened from its last resourceVersion after this long: one request per window, not polling.
WATCH_WINDOW_SECONDS = 300
# A watch the server has not ended (timeoutSeconds) nor written to this long after its window is dead.
WATCH_READ_TIMEOUT_SECONDS = WATCH_WINDOW_SECONDS + 30.0
# How often a waiting loop looks at the clock without news from a watch: for the cancel event, the deadline
# and failures whose tolerance window runs out. Local only, never a request.
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class Listed:
    """A LIST's items: the whole state of the watched kind (a sync)."""

    items: list[KubeDict]


@dataclass(frozen=True)
class Changed:
    """One watch event (ADDED, MODIFIED, DELETED) and the object as it carried it."""

    event_type: str
    obj: KubeDict


@dataclass(frozen=True)
class GaveUp:
    """The watcher stopped on an error that retrying did not heal."""

    error: Exception


WatchMessage = Listed | Changed | GaveUp


def watch_once(
    api: KubeAPI,
    resource: Resource,
    namespace: str | None,
    resource_version: str,
    seconds: float,
    *,
    field_selector: str | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Block until one change arrives on a watch, the time is up, or ``cancel`` is set."""
    changed = threading.Event()
    deadline = time.monotonic() + max(seconds, 0.0)
    watcher = Watcher(
        api, resource, namespace, lambda _: changed.set(), field_selector=field_selector, deadline=deadline
    )
    watcher.start(resource_version=resource_version)
    try:
        while not changed.is_set() and time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return
            changed.wait(min(TICK_SECONDS * 5, max(deadline - time.monotonic(), 0.0)))
    finally:
        watcher.stop()


class Watcher:
    """List, then watch from the list's resourceVersion, forever: re-watch when the server ends a watch,
    re-list on 410 Gone. While the API is unavailable (a dropped stream, connection errors, 429, 5xx) it
    retries with back-off until ``deadline`` (on time.monotonic; None: until stopped), resuming from the
    last resourceVersion it saw so that no event is lost. Hands every list (``("sync", items)``) and event
    (``("event", type, obj)``) to ``sink``; ``("error", exception)`` when it gives up. Runs in a daemon
    thread until ``stop``."""

    def __init__(
        self,
        api: KubeAPI,
        resource: Resource,
        namespace: str | None,
        sink: Callable[[WatchMessage], None],
        *,
        field_selector: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self._api = api
        self.resource = resource
        self.namespace = namespace
        self._sink = sink
        self._field_selector = field_selector
        self._deadline = deadline if deadline is not None else math.inf
        self._stopped = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._response_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._resource_version: str | None = None

    def start(self, *, resource_version: str | None = None) -> None:
        """Start; with ``resource_version``, skip the first list and watch from there."""
        self._resource_version = resource_version
        self._thread = threading.Thread(target=self._run, name=f"deployer-watch-{self.resource.plural}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop, without waiting for it (``stop`` waits)."""
        self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()
        with self._response_lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the read in the watching thread
            except Exception:  # noqa: BLE001 - already closed or released: nothing left to stop
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _query(self) -> dict[str, str | int | bool]:
        return {"fieldSelector": self._field_selector} if self._field_selector else {}

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                # One Retrying per watch: a watch that ran its window resets the back-off.
                self._api.retrier.call(
                    self._list_and_watch,
                    deadline=self._deadline,
                    sleep=self._stopped.wait,
                    stop=self._stopped.is_set,
                )
            except Exception as e:  # noqa: BLE001 - reported to the waiting loop, which raises it
                if not self._stopped.is_set():
                    self._sink(GaveUp(e))
                return

    def _list_and_watch(self) -> None:
        """List when there is no resourceVersion to resume from, then watch until the server ends the watch."""
        if self._stopped.is_set():
            return
        try:
            if not self._resource_version:
                listed = self._api.list(self.resource, self.namespace, self._query(), retried=False)
                self._resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                self._sink(Listed(list(listed.get("items") or [])))
            self._watch(self._resource_version)
        except _Gone:
            self._resource_version = None
        except KubernetesError as e:
            if e.retryable:
                raise Transient(e) from e
            raise
        except (urllib3.exceptions.HTTPError, OSError) as e:
            # The stream broke (a control plane restarting cuts every connection): resume from where it was.
            raise Transient(unreachable(self._api.host, e)) from e

    def _watch(self, resource_version: str) -> None:
        """One watch request, until the server ends it; ``_resource_version`` follows every event."""
        query = {
            **self._query(),
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": WATCH_WINDOW_SECONDS,
        }
        path = self.resource.path(self.namespace if self.resource.namespaced else None)
        response = self._api.send(
            "GET", path, query=query, timeout=(CONNECT_TIMEOUT_SECONDS, WATCH_READ_TIMEOUT_SECONDS)
        )
        with self._response_lock:
            self._response = response
        finished = False
        try:
            if self._stopped.is_set():
                return
            if response.status == 410:
                raise _Gone()
            if response.status >= 300:
                parsed = decoded(response.data)
                error = self._api.error("GET", path, int(response.status), parsed, response.headers)
                if error.retryable:
                    raise Transient(error, advised_wait(response.headers))
                raise error
            for line in _lines(response):
                try:
                    event = json.loads(line)
                except ValueError as e:
                    raise KubernetesError("a watch stream broke off mid-event", retryable=True) from e
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    code = obj.get("code") if isinstance(obj.get("code"), int) else None
                    raise error_class(code)(
                        str(obj.get("message") or "watch error"),
                        status=code,
                        retryable=code is not None and unavailable_status(code),
                    )
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._resource_version = str(version)
                if kind != "BOOKMARK":
                    self._sink(Changed(str(kind), obj))
            finished = not self._stopped.is_set()
        finally:
            with self._response_lock:
                self._response = None
            try:
                if not finished:
                    # Unread watch data (or a shut-down socket) must never go back to the pool for reuse.
                    response.close()
                response.release_conn()
            except Exception:  # noqa: BLE001 - the connection was shut down by stop()
                pass


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The newline-delimited JSON of a watch, as it arrives."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending
