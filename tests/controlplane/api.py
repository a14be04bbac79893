"""A small JSON client of the real API server for the node agent and the start-up checks.

It owns HTTP to the API server (client certificate, the cluster CA, JSON in and out, watch streams) and nothing
of what the calls mean. Each thread gets a session of its own, so the agent's threads never share a connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

JSON = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class ApiClient:
    def __init__(self, server: str, ca_cert: Path, client_cert: Path, client_key: Path) -> None:
        self.server = server.rstrip("/")
        self._ca = str(ca_cert)
        self._cert = (str(client_cert), str(client_key))
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Not the environment's proxies or REQUESTS_CA_BUNDLE: that would override the cluster CA below.
            session.trust_env = False
            session.verify = self._ca
            session.cert = self._cert
            session.headers["User-Agent"] = "deployer-test-node-agent"
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> JSON | None:
        """The decoded answer; None for 404; ApiError for any other answer that is not 2xx."""
        data = json.dumps(body).encode() if body is not None else None
        response = self._session().request(
            method,
            self.server + path,
            data=data,
            params=params,
            timeout=timeout,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        if response.status_code == 404:
            return None
        if not 200 <= response.status_code < 300:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
            raise ApiError(method, path, response.status_code, message.strip())
        decoded: JSON = response.json() if response.content else {}
        return decoded

    def healthy(self, path: str) -> bool:
        """A health endpoint (/readyz, /livez) answers 200; it answers text, not JSON."""
        return self._session().get(self.server + path, timeout=5).status_code == 200

    def get(self, path: str, params: dict[str, str] | None = None) -> JSON | None:
        return self.request("GET", path, params=params)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 60) -> Iterator[JSON]:
        """The watch events of one stream (ends when the server closes it after ``timeout_seconds``)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        with self._session().get(
            self.server + path, params=params, stream=True, timeout=(10, timeout_seconds + 30)
        ) as response:
            if response.status_code != 200:
                raise ApiError("WATCH", path, response.status_code, response.text.strip())
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)
