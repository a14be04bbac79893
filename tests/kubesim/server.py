"""The simulator's HTTPS front: the Kubernetes REST paths, bearer-token authentication, discovery,
watch streaming, Table output for kubectl, pod logs, request counting, and the canned answers a test asks for.

It owns HTTP: parsing paths and query parameters, choosing the verb, encoding bodies and Status errors.
It must not decide anything the API server's storage decides (the store does) nor run controllers.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import resources, statuses
from .clock import SimClock
from .resources import ResourceType, resource_for_path
from .selectors import (
    FieldRequirement,
    Requirement,
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .statuses import ApiError
from .store import PATCH_APPLY, PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, ObjectStore, WatchEvent, clone
from .tables import table_for

Obj = dict[str, Any]
LogsProvider = Callable[[str, str, str, bool], str]

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.2",
    "gitCommit": "67a30c0adcf52bd3f56ff0893ce19966be12991f",
    "gitTreeState": "clean",
    "buildDate": "2025-02-12T21:19:47Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# The media types pods/log answers in (the log itself goes out as text/plain whichever is chosen).
_LOG_ACCEPTABLE = {
    "*/*",
    "application/*",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
}
_PUBLIC_PATHS = {"/version", "/healthz", "/livez", "/readyz"}
_MAX_WATCH_SECONDS = 1800.0
_POD = next(r for r in resources.RESOURCE_TYPES if r.kind == "Pod")


class TokenRegistry:
    """Bearer tokens and their expiry on the simulator's clock (None: never expires)."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float | None] = {}

    def issue(self, expiry_seconds: float | None = None) -> str:
        token = "kubesim-" + secrets.token_urlsafe(24)
        with self._lock:
            self._expiry[token] = None if expiry_seconds is None else self._clock.now() + expiry_seconds
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            if token not in self._expiry:
                return False
            expiry = self._expiry[token]
        return expiry is None or self._clock.now() < expiry


@dataclass
class RequestCounter:
    counts: collections.Counter[tuple[str, str]]
    lock: threading.Lock

    def add(self, verb: str, resource: str) -> None:
        with self.lock:
            self.counts[(verb, resource)] += 1

    def snapshot(self) -> collections.Counter[tuple[str, str]]:
        with self.lock:
            return collections.Counter(self.counts)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()


@dataclass
class CannedAnswer:
    """A test's answer to the next request of ``method`` on ``path`` (no watch): a server that answers what no
    API server would (a broken proxy, a bug), for the client's handling of the unexpected."""

    method: str
    path: str
    status: int
    body: Any
    # Carry the request out first, then answer this instead: an answer lost on its way back (a proxy's 503
    # after the API server did the work), which a client that retries must not mistake for "not done".
    served: bool = False


@dataclass
class ResourceRequest:
    rtype: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped type)
    name: str | None
    subresource: str


class KubeApiServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose TLS handshake happens in the request thread, not the accept loop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        port: int,
        ssl_context: ssl.SSLContext,
        store: ObjectStore,
        tokens: TokenRegistry,
        counter: RequestCounter,
        logs: LogsProvider,
    ) -> None:
        super().__init__(("127.0.0.1", port), ApiRequestHandler)
        self.ssl_context = ssl_context
        self.store = store
        self.tokens = tokens
        self.counter = counter
        self.logs = logs
        self.stopping = threading.Event()
        self.canned: list[CannedAnswer] = []
        self.canned_lock = threading.Lock()

    def take_canned(self, method: str, path: str) -> CannedAnswer | None:
        with self.canned_lock:
            for answer in self.canned:
                if answer.method == method and answer.path == path:
                    self.canned.remove(answer)
                    return answer
        return None

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            ApiRequestHandler(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-watch are routine; anything else would surface as a test failure elsewhere.
        pass


def _parse_resource_path(parts: list[str]) -> tuple[str, str, list[str]] | None:
    """Split /api/v1/... or /apis/G/V/... into (group, version, rest)."""
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


def resolve_resource(group: str, version: str, rest: list[str]) -> ResourceRequest | None:
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        rtype = resource_for_path(group, version, rest[2])
        if rtype is None or not rtype.namespaced:
            return None
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else ""
        if len(rest) > 5:
            return None
        return ResourceRequest(rtype, rest[1], name, sub)
    rtype = resource_for_path(group, version, rest[0])
    if rtype is None or len(rest) > 3:
        return None
    return ResourceRequest(rtype, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else "")


class ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KubeApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        pass

    # ------------------------------------------------------------ plumbing

    def _send_json(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, error: ApiError) -> None:
        self._send_json(error.code, error.status())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _parse_body(self, raw: bytes, allow_yaml: bool = False) -> Any:
        if not raw.strip():
            return None
        content_type = self.headers.get("Content-Type") or ""
        if "protobuf" in content_type or "cbor" in content_type:
            # Typed clients (kubectl create deployment/namespace/secret, kubectl run) encode bodies in
            # protobuf; the simulator has no protobuf schemas, so it refuses them plainly.
            raise statuses.ApiError(
                415,
                "UnsupportedMediaType",
                f"kubesim cannot decode {content_type} request bodies; send JSON or YAML "
                "(kubectl apply/create -f, or a JSON client)",
            )
        try:
            return json.loads(raw)
        except ValueError as e:
            if allow_yaml:
                try:
                    return yaml.safe_load(raw)
                except yaml.YAMLError as ye:
                    raise statuses.bad_request(f"error decoding YAML: {ye}") from ye
            raise statuses.bad_request(f"couldn't get version/kind; json parse error: {e}") from e

    def _authenticated(self, path: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header:
            return path in _PUBLIC_PATHS
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.server.tokens.valid(token.strip())

    # ------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        try:
            if not self._authenticated(path):
                self.server.counter.add("unauthorized", path)
                raise statuses.unauthorized()
            canned = None if query.get("watch") in ("true", "1") else self.server.take_canned(method, path)
            if canned is not None:
                if canned.served:
                    self._serve_unanswered(method, path, query, raw)
                self._send_json(canned.status, canned.body)
                return
            self._route(method, path, query, raw)
        except ApiError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _serve_unanswered(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        """Carry a request out with its answer thrown away (written to a buffer, not to the client)."""
        client = self.wfile
        self.wfile = io.BytesIO()
        try:
            self._route(method, path, query, raw)
        except ApiError:
            pass
        finally:
            self.wfile = client

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        if path in _PUBLIC_PATHS or path in ("/api", "/apis") or path.startswith("/openapi"):
            self.server.counter.add("get", path)
            self._non_resource(method, path)
            return
        parts = path.strip("/").split("/")
        watch_prefix = False
        if len(parts) > 3 and parts[0] == "apis" and parts[3] == "watch":
            parts = parts[:3] + parts[4:]
            watch_prefix = True
        elif len(parts) > 2 and parts[0] == "api" and parts[2] == "watch":
            parts = parts[:2] + parts[3:]
            watch_prefix = True
        split = _parse_resource_path(parts)
        if split is None:
            raise statuses.path_not_found(path)
        group, version, rest = split
        if not rest:
            self.server.counter.add("get", path)
            if not resources.has_group_version(group, version):
                raise statuses.path_not_found(path)
            self._send_json(200, resources.api_resource_list_document(group, version))
            return
        if group and len(parts) == 2:
            self.server.counter.add("get", path)
            if not resources.has_group(group):
                raise statuses.path_not_found(path)
            self._send_json(200, resources.api_group_document(group))
            return
        request = resolve_resource(group, version, rest)
        if request is None:
            self.server.counter.add("unknown", path)
            raise statuses.path_not_found(path)
        if request.rtype.namespaced is False and request.namespace is not None:
            raise statuses.path_not_found(path)
        watching = watch_prefix or query.get("watch") in ("true", "1")
        self._resource(method, request, query, raw, watching)

    def _non_resource(self, method: str, path: str) -> None:
        if path == "/version":
            self._send_json(200, SERVER_VERSION)
        elif path in ("/healthz", "/livez", "/readyz"):
            self._send_text(200, "ok")
        elif path == "/api":
            self._send_json(200, resources.api_versions_document())
        elif path == "/apis":
            self._send_json(200, resources.api_group_list_document())
        elif path == "/openapi/v2":
            # kubectl (validate=strict) must download this document, but needs no schema in it: with no
            # definitions it skips client-side validation. It asks for protobuf, where an empty message is
            # the empty Document.
            if "protobuf" in (self.headers.get("Accept") or ""):
                self.send_response(200)
                self.send_header("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send_json(
                    200,
                    {
                        "swagger": "2.0",
                        "info": {"title": "Kubernetes", "version": "v1.32.2"},
                        "paths": {},
                        "definitions": {},
                    },
                )
        else:
            # No OpenAPI v3: kubectl falls back to v2 where it would use it.
            raise statuses.path_not_found(path)

    # ------------------------------------------------------------ resources

    def _count(self, verb: str, request: ResourceRequest) -> None:
        resource = request.rtype.plural + (f"/{request.subresource}" if request.subresource else "")
        self.server.counter.add(verb, resource)

    def _resource(
        self, method: str, request: ResourceRequest, query: dict[str, str], raw: bytes, watching: bool
    ) -> None:
        store = self.server.store
        rtype = request.rtype
        ns = request.namespace if rtype.namespaced else None
        dry_run = query.get("dryRun") == "All"
        manager = query.get("fieldManager") or self._default_manager()
        if request.name is None:
            if method in ("GET", "HEAD"):
                self._count("watch" if watching else "list", request)
                if watching:
                    self._watch(request, query)
                else:
                    self._list(request, query)
            elif method == "POST":
                self._count("create", request)
                body = self._parse_body(raw)
                if not isinstance(body, dict):
                    raise statuses.bad_request("the body of a create must be an object")
                self._check_body_kind(rtype, body)
                if rtype.namespaced and ns is None:
                    raise statuses.path_not_found(f"/{rtype.plural}")
                body_ns = (body.get("metadata") or {}).get("namespace")
                if rtype.namespaced and body_ns and body_ns != ns:
                    raise statuses.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                created = store.create(body, ns, manager, dry_run)
                self._send_json(201, created)
            elif method == "DELETE":
                self._count("deletecollection", request)
                items, _ = store.list_stored(rtype, ns, *self._selectors(query))
                options = self._delete_options(query, raw)
                for item in list(items):
                    try:
                        store.delete(
                            rtype.api_version,
                            rtype.kind,
                            item["metadata"].get("namespace"),
                            item["metadata"]["name"],
                            options[0],
                            dry_run or options[1],
                        )
                    except ApiError as e:
                        if e.code != 404:
                            raise
                self._send_json(
                    200,
                    {
                        "kind": f"{rtype.kind}List",
                        "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(store.resource_version)},
                        "items": [clone(i) for i in items],
                    },
                )
            else:
                raise statuses.method_not_allowed(method)
            return
        name = request.name
        if rtype.namespaced and ns is None:
            raise statuses.path_not_found(f"/{rtype.plural}/{name}")
        sub = request.subresource
        if sub and sub not in rtype.subresources:
            raise statuses.path_not_found(f"/{rtype.plural}/{name}/{sub}")
        if sub == "log":
            self._count("get", request)
            self._pod_logs(ns or "default", name, query)
            return
        if sub == "scale":
            self._scale(method, request, query, raw)
            return
        if method in ("GET", "HEAD"):
            self._count("get", request)
            obj = store.get_stored(rtype, ns or "", name)
            self._send_object(obj, query)
        elif method == "PUT":
            self._count("update", request)
            body = self._parse_body(raw)
            if not isinstance(body, dict):
                raise statuses.bad_request("the body of an update must be an object")
            self._check_body_kind(rtype, body)
            body_name = (body.get("metadata") or {}).get("name")
            if body_name and body_name != name:
                raise statuses.bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL ({name})"
                )
            body.setdefault("metadata", {})["name"] = name
            if store.find(rtype.api_version, rtype.kind, ns, name) is None and not sub:
                self._send_json(201, store.create(body, ns, manager, dry_run))
                return
            self._send_json(200, store.update(body, ns, manager, sub, dry_run))
        elif method == "PATCH":
            self._count("patch", request)
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type not in (PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, PATCH_APPLY):
                raise statuses.unsupported_media_type(content_type)
            body = self._parse_body(raw, allow_yaml=content_type == PATCH_APPLY)
            if content_type == PATCH_APPLY:
                manager = query.get("fieldManager", "")
            force = query.get("force") in ("true", "1")
            existed = store.find(rtype.api_version, rtype.kind, ns, name) is not None
            result = store.patch(
                rtype.api_version, rtype.kind, ns, name, content_type, body, manager, force, sub, dry_run
            )
            self._send_json(200 if existed else 201, result)
        elif method == "DELETE":
            self._count("delete", request)
            propagation, options_dry_run, preconditions = self._delete_options(query, raw)
            result = store.delete(
                rtype.api_version, rtype.kind, ns, name, propagation, dry_run or options_dry_run, preconditions
            )
            self._send_json(200, result)
        else:
            raise statuses.method_not_allowed(method)

    def _default_manager(self) -> str:
        agent = self.headers.get("User-Agent") or "unknown"
        return agent.split("/", 1)[0] or "unknown"

    @staticmethod
    def _check_body_kind(rtype: ResourceType, body: Obj) -> None:
        if body.get("kind") not in (None, rtype.kind) or body.get("apiVersion") not in (None, rtype.api_version):
            raise statuses.bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({rtype.api_version})"
            )
        body.setdefault("apiVersion", rtype.api_version)
        body.setdefault("kind", rtype.kind)

    def _delete_options(self, query: dict[str, str], raw: bytes) -> tuple[str | None, bool, Obj | None]:
        body = self._parse_body(raw) or {}
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        if propagation is None and body.get("orphanDependents") is True:
            propagation = "Orphan"
        dry_run = "All" in (body.get("dryRun") or [])
        return propagation, dry_run, body.get("preconditions")

    @staticmethod
    def _selectors(query: dict[str, str]) -> tuple[list[Requirement], list[FieldRequirement]]:
        try:
            labels = parse_label_selector(query["labelSelector"]) if query.get("labelSelector") else []
            fields = parse_field_selector(query["fieldSelector"]) if query.get("fieldSelector") else []
        except SelectorError as e:
            raise statuses.bad_request(str(e)) from e
        return labels, fields

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _send_object(self, obj: Obj, query: dict[str, str]) -> None:
        if self._wants_table():
            self._send_json(
                200,
                table_for(
                    [obj],
                    obj["metadata"]["resourceVersion"],
                    query.get("includeObject", "Metadata"),
                    self.server.store.clock.now(),
                ),
            )
        else:
            self._send_json(200, obj)

    def _list(self, request: ResourceRequest, query: dict[str, str]) -> None:
        rtype = request.rtype
        labels, fields = self._selectors(query)
        items, rv = self.server.store.list_stored(rtype, request.namespace, labels, fields)
        continue_token = query.get("continue")
        if continue_token:
            try:
                after = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
            except ValueError as e:
                raise statuses.bad_request(f"invalid continue token: {e}") from e
            rv = int(after["rv"])
            items = [
                i for i in items if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > tuple(after["key"])
            ]
        limit = int(query.get("limit") or 0)
        metadata: Obj = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": rv, "key": [last.get("namespace", ""), last["name"]]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if self._wants_table():
            table = table_for(
                items, str(rv), query.get("includeObject", "Metadata"), self.server.store.clock.now(), rtype
            )
            table["metadata"].update(metadata)
            self._send_json(200, table)
            return
        stripped = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
        self._send_json(
            200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": metadata, "items": stripped}
        )

    def _watch(self, request: ResourceRequest, query: dict[str, str]) -> None:
        store = self.server.store
        labels, fields = self._selectors(query)
        timeout = min(float(query.get("timeoutSeconds") or _MAX_WATCH_SECONDS), _MAX_WATCH_SECONDS)
        deadline = time.monotonic() + timeout
        requested = query.get("resourceVersion") or ""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = False

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            if request.namespace is not None and obj["metadata"].get("namespace") != request.namespace:
                return False
            return labels_match(labels, obj["metadata"].get("labels")) and fields_match(fields, obj)

        as_table = self._wants_table()
        include_object = query.get("includeObject", "Metadata")

        def send(event_type: str, obj: Obj) -> None:
            if as_table and event_type != "ERROR":
                obj = table_for(
                    [obj], obj["metadata"].get("resourceVersion", ""), include_object, store.clock.now(), request.rtype
                )
            line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        try:
            if requested in ("", "0"):
                items, position = store.list_stored(request.rtype, request.namespace, labels, fields)
                for item in items:
                    send("ADDED", item)
            else:
                try:
                    position = int(requested)
                except ValueError:
                    raise statuses.bad_request(f"invalid resource version {requested!r}") from None
            while not self.server.stopping.is_set() and not store.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    events = store.wait_for_events(position, min(remaining, 1.0))
                except ApiError as e:
                    send("ERROR", e.status())
                    break
                for event in events:
                    position = event.rv
                    if event.rtype is not request.rtype:
                        continue
                    self._send_watch_event(event, matches, send)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except ApiError as e:
            send("ERROR", e.status())
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    @staticmethod
    def _send_watch_event(
        event: WatchEvent, matches: Callable[[Obj | None], bool], send: Callable[[str, Obj], None]
    ) -> None:
        was, now = matches(event.old), matches(event.new)
        if event.new is None:
            if was:
                send("DELETED", event.deleted_snapshot or event.old or {})
        elif was and now:
            send("MODIFIED", event.new)
        elif now:
            send("ADDED", event.new)
        elif was:
            send("DELETED", event.new)

    def _pod_logs(self, namespace: str, name: str, query: dict[str, str]) -> None:
        # As the real API server negotiates: the log is plain text, yet an Accept that names none of its
        # serializers (e.g. a bare text/plain) is refused with 406.
        accept = self.headers.get("Accept") or "*/*"
        if not any(kind.split(";")[0].strip() in _LOG_ACCEPTABLE for kind in accept.split(",")):
            raise statuses.ApiError(
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json, application/yaml, "
                "application/vnd.kubernetes.protobuf",
            )
        pod = self.server.store.get_stored(_POD, namespace, name)
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = query.get("container")
        if not container:
            if len(containers) != 1:
                raise statuses.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise statuses.bad_request(f"container {container} is not valid for pod {name}")
        previous = query.get("previous") in ("true", "1")
        try:
            text = self.server.logs(namespace, name, container, previous)
        except LookupError as e:
            raise statuses.bad_request(str(e)) from e
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) > 0 else ""
        self._send_text(200, text)

    def _scale(self, method: str, request: ResourceRequest, query: dict[str, str], raw: bytes) -> None:
        store = self.server.store
        rtype = request.rtype
        ns = request.namespace or ""
        name = request.name or ""
        if method == "GET":
            self._count("get", request)
        elif method == "PUT":
            self._count("update", request)
            body = self._parse_body(raw) or {}
            replicas = (body.get("spec") or {}).get("replicas")
            store.patch(
                rtype.api_version,
                rtype.kind,
                ns,
                name,
                PATCH_MERGE,
                {"spec": {"replicas": replicas}},
                query.get("fieldManager") or self._default_manager(),
            )
        elif method == "PATCH":
            self._count("patch", request)
            body = self._parse_body(raw) or {}
            replicas = (body.get("spec") or {}).get("replicas") if isinstance(body, dict) else None
            if replicas is None:
                raise statuses.bad_request("only spec.replicas can be patched through /scale")
            store.patch(
                rtype.api_version,
                rtype.kind,
                ns,
                name,
                PATCH_MERGE,
                {"spec": {"replicas": replicas}},
                query.get("fieldManager") or self._default_manager(),
            )
        else:
            raise statuses.method_not_allowed(method)
        obj = store.get_stored(rtype, ns, name)
        selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
        self._send_json(
            200,
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    k: obj["metadata"][k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                    if k in obj["metadata"]
                },
                "spec": {"replicas": obj["spec"].get("replicas", 0)},
                "status": {
                    "replicas": (obj.get("status") or {}).get("replicas", 0),
                    "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
                },
            },
        )
