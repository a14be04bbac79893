"""canary_checks.CanaryChecks against real HTTP servers on 127.0.0.1: what each answer counts as."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployer.canaries import CheckReading
from deployer.canary_checks import CanaryChecks
from tests.deploy_scenarios import wait_until


@pytest.fixture
def server() -> Iterator[str]:
    """``http://127.0.0.1:PORT``: /ok answers 200, /broken 500, /moved a redirect to /ok, /slow nothing for 2 s."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path == "/slow":
                release.wait(2)
            status = {"/ok": 204, "/broken": 500, "/moved": 302}.get(self.path, 200)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}"
    finally:
        release.set()
        http.shutdown()
        http.server_close()
        thread.join(timeout=10)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def readings_after(urls: list[str], wanted: int, **kwargs: float) -> list[CheckReading]:
    """The readings once every URL was asked at least ``wanted`` times."""
    with CanaryChecks(urls, interval=0.01, **kwargs) as checks:
        return wait_until(
            lambda: (
                (found := checks.readings())
                and all(r.answered_ok + r.failed_in_a_row >= wanted for r in found)
                and found
            ),
            30,
            f"{wanted} GETs of every URL",
        )


def test_a_2xx_counts_as_answered_and_anything_else_as_a_failure_in_a_row(server: str) -> None:
    ok, broken, moved = readings_after([f"{server}/ok", f"{server}/broken", f"{server}/moved"], 2)

    assert ok.answered_ok >= 2 and ok.failed_in_a_row == 0
    assert broken.answered_ok == 0 and broken.failed_in_a_row >= 2
    assert broken.last_problem == "answered 500 Internal Server Error"
    # A redirect is not followed: the check answers for itself.
    assert moved.answered_ok == 0 and moved.last_problem == "answered 302 Found"


def test_no_answer_and_a_slow_answer_are_failures_saying_so(server: str) -> None:
    refused, slow = readings_after([f"http://127.0.0.1:{closed_port()}/", f"{server}/slow"], 1, timeout=0.2)

    assert refused.failed_in_a_row >= 1 and refused.last_problem.startswith("no answer (")
    assert slow.failed_in_a_row >= 1 and slow.last_problem == "no answer within 0.2s"


def test_without_urls_nothing_is_asked() -> None:
    with CanaryChecks([]) as checks:
        assert checks.readings() == []
