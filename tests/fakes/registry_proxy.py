"""A small HTTP proxy on 127.0.0.1 in front of the real test registry, for the push tests.

It forwards every request unchanged (the Host header too, so the registry's upload URLs point back at the
proxy), records what it saw, and can refuse chosen requests with an HTTP status the way a failing registry
would: the first N blob uploads or manifest uploads, or all of them. It buffers whole bodies, which is fine
for the few-megabyte test images. It never touches the registry's storage itself.

With ``token_auth=True`` it stands in for a registry that authenticates as GHCR and Docker Hub do: a request
without a token it issued gets 401 and ``WWW-Authenticate: Bearer realm=<proxy>/token,service,scope``; the
realm takes the user's Basic credentials, checks them against the real registry and issues a random token,
which the proxy swaps back for those credentials when it forwards. So the token dance is exercised end to
end against the real registry's htpasswd.

The Docker engine treats 127.0.0.0/8 registries as insecure, so plain HTTP is what it speaks to the proxy
(after a TLS hello the proxy answers 400 to, which the engine takes as "no TLS here").
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business; bodies are re-framed with Content-Length.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

BLOB_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/")
MANIFEST = re.compile(r"^/v2/.+/manifests/[^/]+$")
MANIFEST_NAME = re.compile(r"^/v2/(.+)/manifests/[^/]+$")


# The error codes of the distribution API (docker/distribution registry/api/errcode) for the statuses used.
_ERROR_CODES = {429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}


def _registry_error_body(status: int) -> bytes:
    """A refusal shaped like the registry's own: {"errors": [{"code", "message", "detail"}]}."""
    code = _ERROR_CODES.get(status, "UNKNOWN")
    message = f"refused by the test proxy with HTTP {status}"
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str  # with the query string
    status: int  # what the proxy answered
    refused: bool  # True when the proxy answered itself instead of the registry


@dataclass
class FailureRule:
    """Answer ``status`` to ``method`` requests whose path matches ``pattern``: the next ``remaining`` of
    them, or every one when ``remaining`` is None."""

    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int | None

    def claims(self, method: str, path: str) -> bool:
        if method != self.method or not self.pattern.match(path):
            return False
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


TOKEN_SERVICE = "deployer-test-registry"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client closing its kept-alive connection while the handler waits for its next request is how
        # HTTP/1.1 ends, not an error worth a traceback on stderr.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class RegistryProxy:
    def __init__(self, upstream: str, *, token_auth: bool = False) -> None:
        self.upstream = upstream  # host:port of the real registry
        self.token_auth = token_auth
        self._issued: dict[str, str] = {}  # token -> the Basic Authorization it stands for
        self.token_requests: list[dict[str, list[str]]] = []  # the query of each token request
        self._lock = threading.Lock()
        self._log: list[ProxiedRequest] = []
        self._rules: list[FailureRule] = []
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry-proxy", daemon=True)

    @property
    def host(self) -> str:
        """host:port to use as the registry part of image references."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- failures -----------------------------------------------------------------------------

    def fail_blob_uploads(self, count: int | None, status: int = 503) -> None:
        """Refuse the next ``count`` blob upload starts (POST .../blobs/uploads/), or all when None."""
        self._add_rule(FailureRule("POST", BLOB_UPLOAD, status, count))

    def fail_manifest_uploads(self, count: int | None, status: int = 503) -> None:
        """Refuse the next ``count`` manifest uploads (PUT .../manifests/<tag>), or all when None."""
        self._add_rule(FailureRule("PUT", MANIFEST, status, count))

    def fail_manifest_reads(self, count: int | None, status: int = 503) -> None:
        """Refuse the next ``count`` manifest HEAD requests, or all when None."""
        self._add_rule(FailureRule("HEAD", MANIFEST, status, count))

    def heal(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add_rule(self, rule: FailureRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _refusal(self, method: str, path: str) -> int | None:
        with self._lock:
            for rule in self._rules:
                if rule.claims(method, path):
                    return rule.status
        return None

    # --- what happened ------------------------------------------------------------------------

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, pattern: re.Pattern[str] | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (pattern is None or pattern.match(r.path))
        )

    def writes(self) -> list[ProxiedRequest]:
        """Every request that could change the registry (anything but GET and HEAD)."""
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, entry: ProxiedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    # --- serving ------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass  # the request log above is what tests read; stderr noise helps nobody

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                proxy._record(ProxiedRequest(self.command, self.path, status, True))
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _issue_token(self) -> None:
                """The realm: a token for credentials the real registry accepts, else 401."""
                proxy.token_requests.append(parse_qs(urlsplit(self.path).query))
                basic = self.headers.get("Authorization", "")
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.request("GET", "/v2/", headers={"Authorization": basic} if basic else {})
                    accepted = upstream.getresponse().status == 200
                finally:
                    upstream.close()
                if not accepted:
                    self._answer(401, json.dumps({"details": "incorrect username or password"}).encode())
                    return
                token = secrets.token_urlsafe(24)
                with proxy._lock:
                    proxy._issued[token] = basic
                self._answer(200, json.dumps({"token": token, "expires_in": 300}).encode())

            def _authorization(self) -> str | None:
                """The Authorization to forward: the credentials behind the request's token, or None."""
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                with proxy._lock:
                    return proxy._issued.get(token) if scheme == "Bearer" else None

            def _challenge(self) -> None:
                name = MANIFEST_NAME.match(self.path)
                scope = f',scope="repository:{name.group(1)}:pull"' if name else ""
                realm = f"http://{proxy.host}/token"
                challenge = f'Bearer realm="{realm}",service="{TOKEN_SERVICE}"{scope}'
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
                self._answer(401, body.encode(), {"WWW-Authenticate": challenge})

            def _forward(self) -> None:
                body = self._read_body()
                forwarded_authorization = None
                if proxy.token_auth:
                    if self.path.startswith("/token"):
                        self._issue_token()
                        return
                    forwarded_authorization = self._authorization()
                    if forwarded_authorization is None:
                        self._challenge()
                        return
                status = proxy._refusal(self.command, self.path)
                if status is not None:
                    message = _registry_error_body(status)
                    # Recorded before answering: a client that has its answer must find it in the log.
                    proxy._record(ProxiedRequest(self.command, self.path, status, True))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                # The engine sends Accept once per media type; a dict would keep only the last one and make
                # the registry answer with another manifest format (and digest). Join them, as HTTP allows.
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                        continue
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
                if forwarded_authorization is not None:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                    headers["Authorization"] = forwarded_authorization
                headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    proxy._record(ProxiedRequest(self.command, self.path, response.status, False))
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    length = response.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler


@contextmanager
def running_proxy(upstream: str, *, token_auth: bool = False) -> Iterator[RegistryProxy]:
    proxy = RegistryProxy(upstream, token_auth=token_auth)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
