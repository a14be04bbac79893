"""A fake DigitalOcean API on 127.0.0.1: the three Kubernetes credential endpoints, over real HTTP.

It implements ``GET /v2/kubernetes/clusters`` (page/per_page, links.pages, meta.total),
``GET /v2/kubernetes/clusters/{id}/kubeconfig`` (application/yaml) and ``.../credentials`` (JSON), with
bearer-token auth, per-token scopes, ratelimit-* and x-request-id headers, error bodies
``{id, message, request_id}``, and scripted faults (429 with retry-after or ratelimit-reset, 5xx, 401, 403).
Every exchange is logged so tests can count attempts and validate each response against the OpenAPI excerpt.

The kubeconfigs it issues point at ``server_url`` with ``ca_pem``, and carry a token from
``mint_token(expiry_seconds)``: give it the real control plane's ``issue_token`` (a TokenRequest token, at
least 10 minutes long, revocable) or the Kubernetes simulator's (it expires on the simulator's clock).
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ALL_SCOPES = frozenset({"kubernetes:read", "kubernetes:access_cluster"})
SEVEN_DAYS = 7 * 24 * 3600
RATE_LIMIT = 5000

ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
    500: "server_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
ERROR_MESSAGES = {
    401: "Unable to authenticate you",
    403: "You are not authorized to perform this operation",
    404: "The resource you were accessing could not be found.",
    429: "API rate limit exceeded.",
    500: "Server was unable to give you a response.",
    501: "Not implemented.",
    503: "Service is temporarily unavailable.",
}


class RecordedSleeps(list[float]):
    """An injectable sleep that records the waits instead of spending them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class CountingMinter:
    """A ``mint_token`` for tests without the Kubernetes simulator: distinct, recognisable tokens."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, expiry_seconds: int) -> str:
        self.count += 1
        return f"doks-minted-{self.count:04d}-{expiry_seconds}-c0ffee"


@dataclass
class FakeCluster:
    name: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "nyc1"
    state: str = "running"
    message: str | None = None
    version: str = "1.32.2-do.0"

    def as_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {"state": self.state}
        if self.message is not None:
            status["message"] = self.message
        return {
            "id": self.id,
            "name": self.name,
            "region": self.region,
            "version": self.version,
            "cluster_subnet": "10.244.0.0/16",
            "service_subnet": "10.245.0.0/16",
            "vpc_uuid": "c33931f2-a26a-4e61-b85c-4e95a2ec431b",
            "ipv4": "",
            "endpoint": f"https://{self.id}.k8s.ondigitalocean.com",
            "tags": ["k8s", f"k8s:{self.id}"],
            "node_pools": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
                    "name": "pool-1",
                    "size": "s-2vcpu-4gb",
                    "count": 1,
                    "tags": ["k8s", f"k8s:{self.id}", "k8s:worker"],
                    "labels": None,
                    "taints": [],
                    "auto_scale": False,
                    "min_nodes": 0,
                    "max_nodes": 0,
                    "nodes": [],
                }
            ],
            "maintenance_policy": {"start_time": "00:00", "duration": "4h0m0s", "day": "any"},
            "auto_upgrade": False,
            "status": status,
            "created_at": "2026-01-05T10:00:00Z",
            "updated_at": "2026-01-05T10:00:00Z",
            "surge_upgrade": False,
            "registry_enabled": False,
            "ha": False,
        }


@dataclass
class Fault:
    """A scripted failure: ``times`` answers (None: forever) with ``status`` for the operation ("list",
    "kubeconfig", "credentials", or None for any). ``retry_after`` sets the retry-after header;
    ``reset_in`` spends the quota (ratelimit-remaining 0) with ratelimit-reset that many seconds ahead."""

    status: int
    operation: str | None = None
    times: int | None = 1
    retry_after: str | None = None
    reset_in: int | None = None
    message: str | None = None
    body: bytes | None = None  # a raw body instead of the JSON error, e.g. an HTML page from a proxy
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Exchange:
    """One request and the response the fake gave."""

    method: str
    path: str
    query: dict[str, str]
    request_headers: dict[str, str]
    operation: str | None
    status: int
    response_headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")


class FakeDigitalOceanAPI:
    """Start with ``FakeDigitalOceanAPI(...).start()`` (or as a context manager); ``url`` is the base URL."""

    def __init__(
        self,
        *,
        token: str,
        server_url: str,
        ca_pem: bytes,
        mint_token: Callable[[int], str],
        clusters: list[FakeCluster] | None = None,
        scopes: frozenset[str] = ALL_SCOPES,
    ) -> None:
        self.token = token
        self.server_url = server_url
        self.ca_pem = ca_pem
        self.mint_token = mint_token
        self.clusters: list[FakeCluster] = list(clusters or [])
        self.scopes = scopes
        self.faults: list[Fault] = []
        self.exchanges: list[Exchange] = []
        self.minted: list[str] = []
        self._remaining = RATE_LIMIT
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeDigitalOceanAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        server = self._server
        # A short poll keeps stop() quick: shutdown() waits for the loop to notice.
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="fake-digitalocean", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeDigitalOceanAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- scripting and inspection --------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def requests_for(self, operation: str) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.operation == operation]

    # --- serving -------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path_parts = parts.path.strip("/").split("/")
        operation: str | None = None
        cluster_id: str | None = None
        if path_parts == ["v2", "kubernetes", "clusters"]:
            operation = "list"
        elif (
            len(path_parts) == 5
            and path_parts[:3] == ["v2", "kubernetes", "clusters"]
            and path_parts[4] in ("kubeconfig", "credentials")
        ):
            operation, cluster_id = path_parts[4], path_parts[3]
        status, headers, body = self._respond(handler, operation, cluster_id, query)
        request_id = str(uuid.uuid4())
        headers.setdefault("content-type", "application/json; charset=utf-8")
        headers["x-request-id"] = request_id
        if status >= 400 and body is None:
            body = json.dumps(
                {
                    "id": ERROR_IDS.get(status, "error"),
                    "message": headers.pop("x-fake-message", None) or ERROR_MESSAGES.get(status, "error"),
                    "request_id": request_id,
                }
            ).encode()
        headers.pop("x-fake-message", None)
        assert body is not None
        with self._lock:
            self._remaining = max(0, self._remaining - 1)
            headers.setdefault("ratelimit-limit", str(RATE_LIMIT))
            headers.setdefault("ratelimit-remaining", str(self._remaining))
            headers.setdefault("ratelimit-reset", str(int(time.time()) + 60))
            self.exchanges.append(
                Exchange(
                    method=handler.command,
                    path=parts.path,
                    query=query,
                    request_headers={k.lower(): v for k, v in handler.headers.items()},
                    operation=operation,
                    status=status,
                    response_headers=dict(headers),
                    body=body,
                )
            )
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _respond(
        self,
        handler: BaseHTTPRequestHandler,
        operation: str | None,
        cluster_id: str | None,
        query: dict[str, str],
    ) -> tuple[int, dict[str, str], bytes | None]:
        if operation is None:
            return 404, {}, None
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, None
        fault = self._take_fault(operation)
        if fault is not None:
            headers: dict[str, str] = {"content-type": fault.content_type}
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            if fault.reset_in is not None:
                headers["ratelimit-remaining"] = "0"
                headers["ratelimit-reset"] = str(int(time.time()) + fault.reset_in)
            if fault.message:
                headers["x-fake-message"] = fault.message
            return fault.status, headers, fault.body
        needed = "kubernetes:read" if operation == "list" else "kubernetes:access_cluster"
        if needed not in self.scopes:
            return 403, {}, None
        if operation == "list":
            return self._list(query)
        cluster = next((c for c in self.clusters if c.id == cluster_id), None)
        if cluster is None:
            return 404, {}, None
        try:
            expiry = int(query.get("expiry_seconds", "0"))
        except ValueError:
            return 400, {"x-fake-message": "expiry_seconds must be an integer"}, None
        if expiry < 0:
            return 400, {"x-fake-message": "expiry_seconds must not be negative"}, None
        lifetime = expiry or SEVEN_DAYS
        token = self.mint_token(lifetime)
        with self._lock:
            self.minted.append(token)
        if operation == "kubeconfig":
            return 200, {"content-type": "application/yaml"}, self._kubeconfig(cluster, token).encode()
        expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
        body = {
            "server": self.server_url,
            "certificate_authority_data": base64.b64encode(self.ca_pem).decode(),
            "client_certificate_data": None,
            "client_key_data": None,
            "token": token,
            "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        return 200, {}, json.dumps(body).encode()

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes | None]:
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "20"))
        except ValueError:
            return 400, {"x-fake-message": "page and per_page must be integers"}, None
        if page < 1 or not 1 <= per_page <= 200:
            return 400, {"x-fake-message": "page must be >= 1 and per_page within 1..200"}, None
        total = len(self.clusters)
        last = max(1, -(-total // per_page))
        chunk = self.clusters[(page - 1) * per_page : page * per_page]

        def link(n: int) -> str:
            # Like the real API: absolute links on its own public host, not on the address asked.
            return f"https://api.digitalocean.com/v2/kubernetes/clusters?page={n}&per_page={per_page}"

        pages: dict[str, str] = {}
        if page > 1:
            pages.update(first=link(1), prev=link(page - 1))
        if page < last:
            pages.update(next=link(page + 1), last=link(last))
        body = {
            "kubernetes_clusters": [c.as_json() for c in chunk],
            "links": {"pages": pages},
            "meta": {"total": total},
        }
        return 200, {}, json.dumps(body).encode()

    def _kubeconfig(self, cluster: FakeCluster, token: str) -> str:
        name = f"do-{cluster.region}-{cluster.name}"
        ca_data = base64.b64encode(self.ca_pem).decode()
        return (
            "apiVersion: v1\n"
            "clusters:\n"
            "- cluster:\n"
            f"    certificate-authority-data: {ca_data}\n"
            f"    server: {self.server_url}\n"
            f"  name: {name}\n"
            "contexts:\n"
            "- context:\n"
            f"    cluster: {name}\n"
            f"    user: {name}-admin\n"
            f"  name: {name}\n"
            f"current-context: {name}\n"
            "kind: Config\n"
            "preferences: {}\n"
            "users:\n"
            f"- name: {name}-admin\n"
            "  user:\n"
            f"    token: {token}\n"
        )

    def _take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.operation not in (None, operation):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None


# --- validation against the OpenAPI excerpt ------------------------------------------------------------

# An excerpt kept in the repository, in DigitalOcean's own layout so its relative $refs resolve (its origin:
# tests/openapi/digitalocean/SOURCE.txt).
OPENAPI_ROOT = (
    Path(__file__).resolve().parents[1]
    / "openapi"
    / "digitalocean"
    / "specification"
    / "DigitalOcean-public.v2.EXCERPT.yaml"
)
PUBLIC_HOST = "https://api.digitalocean.com"


@functools.cache
def resolved_openapi() -> dict[str, Any]:
    """The excerpt with every $ref resolved (prance), as a plain dict."""
    import prance  # type: ignore[import-untyped]

    parser = prance.ResolvingParser(str(OPENAPI_ROOT), backend="openapi-spec-validator", strict=False)
    spec: dict[str, Any] = parser.specification
    return spec


@functools.cache
def _openapi() -> Any:
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(resolved_openapi())


def openapi_problems(exchange: Exchange) -> list[str]:
    """Everything about one exchange that the OpenAPI excerpt does not allow: the request our client sent,
    the response's status, content type, body schema, and the headers declared for that response."""
    from openapi_core.testing import MockRequest, MockResponse

    request = MockRequest(
        PUBLIC_HOST,
        exchange.method.lower(),
        exchange.path,
        args=exchange.query,
        headers=exchange.request_headers,
    )
    media_type = exchange.content_type.split(";")[0].strip()
    response = MockResponse(exchange.body, exchange.status, headers=exchange.response_headers, content_type=media_type)
    problems: list[str] = []
    api = _openapi()
    checks: tuple[tuple[str, Callable[[], None]], ...] = (
        ("request", lambda: api.validate_request(request)),
        ("response", lambda: api.validate_response(request, response)),
    )
    for label, check in checks:
        try:
            check()
        except Exception as e:  # openapi-core raises a family of validation errors; report any
            causes = "; ".join(str(c) for c in getattr(e, "schema_errors", ()) or ())
            problems.append(f"{label}: {type(e).__name__}: {e}{' (' + causes + ')' if causes else ''}")
    declared = _declared_response(exchange)
    if declared is None:
        problems.append(f"status {exchange.status} is not declared for {exchange.path}")
    else:
        for header in declared.get("headers", {}):
            if header.lower() not in exchange.response_headers:
                problems.append(f"header {header} is declared but missing")
    return problems


def _declared_response(exchange: Exchange) -> dict[str, Any] | None:
    spec = resolved_openapi()
    template = {
        "list": "/v2/kubernetes/clusters",
        "kubeconfig": "/v2/kubernetes/clusters/{cluster_id}/kubeconfig",
        "credentials": "/v2/kubernetes/clusters/{cluster_id}/credentials",
    }.get(exchange.operation or "")
    if template is None:
        return None
    responses: dict[str, Any] = spec["paths"][template]["get"]["responses"]
    found = responses.get(str(exchange.status)) or responses.get("default")
    return found if isinstance(found, dict) else None
