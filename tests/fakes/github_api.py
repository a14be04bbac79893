"""A fake of the GitHub REST endpoints deployer's reporting uses, as a real HTTP server on 127.0.0.1.

Serves GET /repos/{owner}/{repo}, GET/POST .../deployments, GET .../deployments/{id}, GET/POST
.../deployments/{id}/statuses, and a pull request's comments (GET/POST .../issues/{number}/comments, PATCH
.../issues/comments/{id}) with state kept in memory, records every request (method, path, query,
headers, JSON body), and checks each request and each response it gives against GitHub's own OpenAPI
description (tests/openapi/github/, which also holds the pull-request and issue-comment endpoints);
``validation_problems`` lists what did not conform.
Responses with a status the description does not document (an injected 502, a 401) are not checked.

Faults are injected by rule: ``fail(method, path_regex, status, times)`` answers the next ``times`` matching
requests with ``status`` and GitHub's error body, before any state changes.

Must not: be imported by deployer/ (it is test code), listen anywhere but 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

# Excerpts of GitHub's description kept in the repository (their origin: SOURCE.txt beside them). They share
# everything but their paths, so the validator reads them as one description.
SPEC_DIRECTORY = Path(__file__).resolve().parents[1] / "openapi" / "github"
SPEC_FILES = ("deployments.json", "pull-comments.json")
SPEC_SERVER = "https://api.github.com"
TIMESTAMP = "2026-01-02T03:04:05Z"
DOCS_URL = "https://docs.github.com/rest/deployments/deployments"

_OPERATIONS = [
    ("GET", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)$"), "/repos/{owner}/{repo}"),
    ("GET", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments$"), "/repos/{owner}/{repo}/deployments"),
    ("POST", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments$"), "/repos/{owner}/{repo}/deployments"),
    (
        "GET",
        re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments/(?P<deployment_id>\d+)$"),
        "/repos/{owner}/{repo}/deployments/{deployment_id}",
    ),
    (
        "GET",
        re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments/(?P<deployment_id>\d+)/statuses$"),
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
    ),
    (
        "POST",
        re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments/(?P<deployment_id>\d+)/statuses$"),
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
    ),
    *(
        (
            method,
            re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<issue_number>\d+)/comments$"),
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        )
        for method in ("GET", "POST")
    ),
    (
        "PATCH",
        re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/comments/(?P<comment_id>\d+)$"),
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
]


def _load_spec() -> tuple[dict[str, Any], OpenAPI]:
    first, *others = (json.loads((SPEC_DIRECTORY / name).read_text()) for name in SPEC_FILES)
    spec: dict[str, Any] = first
    for name, other in zip(SPEC_FILES[1:], others, strict=True):
        if repeated := spec["paths"].keys() & other["paths"].keys():
            raise ValueError(f"{name} describes paths an earlier excerpt already does: {sorted(repeated)}")
        spec["paths"].update(other["paths"])
    return spec, OpenAPI.from_dict(spec)


_spec_cache: tuple[dict[str, Any], OpenAPI] | None = None
_spec_lock = threading.Lock()


def github_openapi() -> tuple[dict[str, Any], OpenAPI]:
    """The parsed description and its validator, loaded once per test session (it is 700 kB)."""
    global _spec_cache
    with _spec_lock:
        if _spec_cache is None:
            _spec_cache = _load_spec()
        return _spec_cache


def _example(schema: Mapping[str, Any], name: str, base: str) -> Any:
    """A value that satisfies ``schema``, for the required fields the fake has no real value for."""
    if schema.get("nullable"):
        return None
    for combinator in ("oneOf", "anyOf", "allOf"):
        if combinator in schema:
            return _example(schema[combinator][0], name, base)
    kind = schema.get("type")
    if kind == "object":
        return filled(schema, {}, base)
    if kind == "array":
        return []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("format") == "date-time":
        return TIMESTAMP
    if schema.get("format") == "uri":
        return f"{base}/unused/{name}"
    return name


def filled(schema: Mapping[str, Any], given: Mapping[str, Any], base: str) -> dict[str, Any]:
    """``given`` plus an example for every required property of ``schema`` it lacks."""
    properties = schema.get("properties", {})
    result = {
        key: _example(properties.get(key, {}), key, base) for key in schema.get("required", []) if key not in given
    }
    result.update(given)
    return result


def _response_schema(path_pattern: str, method: str, status: int) -> Mapping[str, Any] | None:
    spec, _ = github_openapi()
    response = spec["paths"][path_pattern][method.lower()]["responses"].get(str(status))
    if response is None or "content" not in response:
        return None
    schema: Mapping[str, Any] = response["content"]["application/json"]["schema"]
    return schema["items"] if schema.get("type") == "array" else schema


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0

    @property
    def operation(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class _FaultRule:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    message: str


@dataclass
class _State:
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # by id; "issue_url" says whose


class FakeGitHubAPI:
    """The fake API; use as a context manager. ``url`` is the base URL to give PyGithub."""

    def __init__(self, *, token: str = "ghs_fake-token-for-tests", owner: str = "acme", repo: str = "hello-app"):
        self.token = token
        self.owner = owner
        self.repo = repo
        self.requests: list[RecordedRequest] = []
        self.validation_problems: list[str] = []
        self._faults: list[_FaultRule] = []
        self._state = _State()
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHubAPI:
        github_openapi()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                fake._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def do_PATCH(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github-api", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.repo}"

    # --- test controls -----------------------------------------------------------------------------

    def fail(self, method: str, path_regex: str, status: int, *, times: int = 1, message: str = "") -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path_regex`` with ``status``."""
        default = {403: "Resource not accessible by integration", 401: "Bad credentials"}.get(status, "Server Error")
        with self._lock:
            self._faults.append(_FaultRule(method.upper(), re.compile(path_regex), status, times, message or default))

    def add_deployment(self, *, environment: str, sha: str, states: list[str]) -> int:
        """Seed a deployment made by an earlier run, with its statuses in order (the last is current)."""
        with self._lock:
            deployment = self._new_deployment(
                {"ref": sha, "environment": environment, "payload": {}, "description": "earlier run"}
            )
            for state in states:
                self._new_status(deployment["id"], {"state": state})
            return int(deployment["id"])

    def add_comment(self, number: int, body: str, *, login: str = "a-reviewer") -> int:
        """Seed a comment someone wrote on pull request ``number``; its id."""
        with self._lock:
            comment = self._new_comment(number, {"body": body})
            comment["user"] = self._user() | {"login": login, "type": "User"}
            return int(comment["id"])

    def comments(self, number: int) -> list[dict[str, Any]]:
        """The comments of pull request ``number``, oldest first."""
        with self._lock:
            return [dict(c) for c in self._state.comments.values() if c["issue_url"].endswith(f"/issues/{number}")]

    def deployments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._state.deployments.values()]

    def statuses(self, deployment_id: int) -> list[dict[str, Any]]:
        """Statuses of a deployment, oldest first."""
        with self._lock:
            return [dict(s) for s in self._state.statuses.get(deployment_id, [])]

    def operations(self) -> list[str]:
        with self._lock:
            return [r.operation for r in self.requests]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """The recorded requests once there are at least ``count`` (the server answers on its own thread)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests to the fake GitHub API, got {len(self.requests)}")

    # --- resources -----------------------------------------------------------------------------------

    def _repo_url(self) -> str:
        return f"{self.url}/repos/{self.owner}/{self.repo}"

    def _user(self) -> dict[str, Any]:
        spec, _ = github_openapi()
        schema = spec["paths"]["/repos/{owner}/{repo}"]["get"]["responses"]["200"]["content"]["application/json"]
        return filled(
            schema["schema"]["properties"]["owner"],
            {"login": "github-actions[bot]", "id": 41898282, "type": "Bot", "url": f"{self.url}/users/bot"},
            self.url,
        )

    def _repository(self) -> dict[str, Any]:
        schema = _response_schema("/repos/{owner}/{repo}", "GET", 200)
        assert schema is not None
        return filled(
            schema,
            {
                "id": 4242,
                "name": self.repo,
                "full_name": self.repository,
                "owner": self._user() | {"login": self.owner, "type": "Organization"},
                "url": self._repo_url(),
                "deployments_url": f"{self._repo_url()}/deployments",
                "default_branch": "main",
                "private": False,
            },
            self.url,
        )

    def _new_deployment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        schema = _response_schema("/repos/{owner}/{repo}/deployments", "POST", 201)
        assert schema is not None
        deployment_id = next(self._ids)
        url = f"{self._repo_url()}/deployments/{deployment_id}"
        payload = body.get("payload", {})
        deployment = filled(
            schema,
            {
                "id": deployment_id,
                "node_id": f"DE_{deployment_id}",
                "sha": str(body["ref"]),
                "ref": str(body["ref"]),
                "task": body.get("task", "deploy"),
                "environment": body.get("environment", "production"),
                "original_environment": body.get("environment", "production"),
                "payload": json.loads(payload) if isinstance(payload, str) and payload else payload or {},
                "description": body.get("description", ""),
                "creator": self._user(),
                "url": url,
                "statuses_url": f"{url}/statuses",
                "repository_url": self._repo_url(),
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
                "transient_environment": body.get("transient_environment", False),
                "production_environment": body.get("production_environment", False),
            },
            self.url,
        )
        self._state.deployments[deployment_id] = deployment
        self._state.statuses[deployment_id] = []
        return deployment

    def _new_status(self, deployment_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        schema = _response_schema("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "POST", 201)
        assert schema is not None
        status_id = next(self._ids)
        deployment_url = f"{self._repo_url()}/deployments/{deployment_id}"
        log_url = body.get("log_url") or body.get("target_url") or ""
        status = filled(
            schema,
            {
                "id": status_id,
                "node_id": f"DES_{status_id}",
                "state": body["state"],
                "creator": self._user(),
                "description": body.get("description", ""),
                "environment": body.get("environment", self._state.deployments[deployment_id]["environment"]),
                "target_url": log_url,
                "log_url": log_url,
                "environment_url": body.get("environment_url", ""),
                "deployment_url": deployment_url,
                "repository_url": self._repo_url(),
                "url": f"{deployment_url}/statuses/{status_id}",
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
            },
            self.url,
        )
        self._state.statuses[deployment_id].append(status)
        return status

    def _new_comment(self, number: int, body: Mapping[str, Any]) -> dict[str, Any]:
        schema = _response_schema("/repos/{owner}/{repo}/issues/{issue_number}/comments", "POST", 201)
        assert schema is not None
        comment_id = next(self._ids)
        comment = filled(
            schema,
            {
                "id": comment_id,
                "node_id": f"IC_{comment_id}",
                "url": f"{self._repo_url()}/issues/comments/{comment_id}",
                "html_url": f"https://github.example/{self.repository}/pull/{number}#issuecomment-{comment_id}",
                "issue_url": f"{self._repo_url()}/issues/{number}",
                "body": str(body["body"]),
                "user": self._user(),
                "author_association": "NONE",
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
            },
            self.url,
        )
        self._state.comments[comment_id] = comment
        return comment

    # --- HTTP ----------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        recorded = RecordedRequest(
            method=handler.command,
            path=parsed.path,
            query=urllib.parse.parse_qs(parsed.query),
            headers={key: value for key, value in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
        refusal = self._validate_request(recorded, raw)
        with self._lock:
            if refusal is None:
                status, answer, pattern = self._answer(recorded)
            else:
                # GitHub answers 422 to a body its description forbids, and changes nothing.
                status, answer, pattern = 422, {"message": refusal, "documentation_url": DOCS_URL}, None
            recorded.status = status
        encoded = json.dumps(answer).encode() if answer is not None else b""
        if pattern is not None:
            self._validate_response(recorded, raw, pattern, status, encoded)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(encoded)))
        handler.send_header("X-GitHub-Request-Id", f"FAKE:{secrets.token_hex(6).upper()}")
        handler.end_headers()
        handler.wfile.write(encoded)

    def _answer(self, request: RecordedRequest) -> tuple[int, Any, str | None]:
        operation = self._operation_of(request)
        if operation is None:
            return 404, {"message": "Not Found", "documentation_url": DOCS_URL}, None
        pattern, match = operation
        if request.headers.get("Authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {"message": "Bad credentials", "documentation_url": DOCS_URL}, pattern
        for rule in self._faults:
            if rule.remaining > 0 and rule.method == request.method and rule.path.search(request.path):
                rule.remaining -= 1
                return rule.status, {"message": rule.message, "documentation_url": DOCS_URL}, pattern
        if (match["owner"], match["repo"]) != (self.owner, self.repo):
            return 404, {"message": "Not Found", "documentation_url": DOCS_URL}, pattern
        return (*self._serve(request, pattern, match), pattern)

    def _serve(self, request: RecordedRequest, pattern: str, match: re.Match[str]) -> tuple[int, Any]:
        if "/issues/" in pattern:
            return self._serve_comments(request, pattern, match)
        deployment_id = int(match["deployment_id"]) if "deployment_id" in match.groupdict() else None
        if deployment_id is not None and deployment_id not in self._state.deployments:
            return 404, {"message": "Not Found", "documentation_url": DOCS_URL}
        body = request.body if isinstance(request.body, dict) else {}
        if pattern == "/repos/{owner}/{repo}":
            return 200, self._repository()
        if pattern == "/repos/{owner}/{repo}/deployments":
            if request.method == "POST":
                return 201, self._new_deployment(body)
            environment = request.query.get("environment", [None])[0]
            newest_first = sorted(self._state.deployments.values(), key=lambda d: -int(d["id"]))
            chosen = [d for d in newest_first if environment is None or d["environment"] == environment]
            return 200, self._page(request, chosen)
        if pattern == "/repos/{owner}/{repo}/deployments/{deployment_id}":
            assert deployment_id is not None
            return 200, self._state.deployments[deployment_id]
        assert deployment_id is not None
        if request.method == "POST":
            return 201, self._new_status(deployment_id, body)
        return 200, self._page(request, list(reversed(self._state.statuses[deployment_id])))

    def _serve_comments(self, request: RecordedRequest, pattern: str, match: re.Match[str]) -> tuple[int, Any]:
        body = request.body if isinstance(request.body, dict) else {}
        if pattern == "/repos/{owner}/{repo}/issues/comments/{comment_id}":
            comment = self._state.comments.get(int(match["comment_id"]))
            if comment is None:
                return 404, {"message": "Not Found", "documentation_url": DOCS_URL}
            comment["body"] = str(body["body"])
            return 200, comment
        number = int(match["issue_number"])
        if request.method == "POST":
            return 201, self._new_comment(number, body)
        mine = [c for c in self._state.comments.values() if c["issue_url"].endswith(f"/issues/{number}")]
        return 200, self._page(request, mine)

    @staticmethod
    def _page(request: RecordedRequest, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        per_page = int(request.query.get("per_page", ["30"])[0])
        page = int(request.query.get("page", ["1"])[0])
        return items[(page - 1) * per_page : page * per_page]

    @staticmethod
    def _operation_of(request: RecordedRequest) -> tuple[str, re.Match[str]] | None:
        for method, regex, pattern in _OPERATIONS:
            if method == request.method and (match := regex.match(request.path)):
                return pattern, match
        return None

    def _mock_request(self, request: RecordedRequest, raw: bytes, pattern: str, match: re.Match[str]) -> MockRequest:
        return MockRequest(
            SPEC_SERVER,
            request.method,
            request.path,
            path_pattern=pattern,
            args={key: values[0] for key, values in request.query.items()},
            view_args=match.groupdict(),
            headers=request.headers,
            data=raw or None,
            content_type=(request.headers.get("Content-Type") or "application/json").split(";")[0],
        )

    def _validate_request(self, request: RecordedRequest, raw: bytes) -> str | None:
        """None when the request conforms (or is not one of ours); else the problem, also recorded."""
        operation = self._operation_of(request)
        if operation is None:
            return None
        _, openapi = github_openapi()
        try:
            openapi.validate_request(self._mock_request(request, raw, *operation))
        except Exception as e:  # the validator's errors carry the schema path in their text
            problem = f"request {request.operation}: {_describe(e)}"
            with self._lock:
                self.validation_problems.append(problem)
            return "Validation Failed"
        return None

    def _validate_response(
        self, request: RecordedRequest, raw: bytes, pattern: str, status: int, encoded: bytes
    ) -> None:
        operation = self._operation_of(request)
        if operation is None or _response_schema(pattern, request.method, status) is None:
            return
        _, openapi = github_openapi()
        mock_response = MockResponse(encoded, status_code=status, content_type="application/json")
        try:
            openapi.validate_response(self._mock_request(request, raw, *operation), mock_response)
        except Exception as e:
            with self._lock:
                self.validation_problems.append(f"response {status} to {request.operation}: {_describe(e)}")


def _describe(error: BaseException) -> str:
    details: Iterator[str] = (str(e) for e in getattr(error, "schema_errors", []) or [])
    inner = "; ".join(details)
    cause = error.__cause__
    cause_text = "; ".join(str(e) for e in getattr(cause, "schema_errors", []) or []) if cause else ""
    return " ".join(part for part in (str(error), inner, cause_text) if part)
