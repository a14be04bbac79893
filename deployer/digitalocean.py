"""The DigitalOcean API: find a Kubernetes cluster and have DigitalOcean issue short-lived credentials for it.

This module owns every HTTP call to DigitalOcean and is the only place that imports ``requests`` for it. It
does what ``doctl kubernetes cluster kubeconfig save --expiry-seconds N CLUSTER`` does: a UUID is used as
is, a name is resolved by paging ``GET /v2/kubernetes/clusters``; then
``GET /v2/kubernetes/clusters/{id}/kubeconfig?expiry_seconds=N`` returns a kubeconfig holding a fresh token.
Requests are retried (tenacity) on 429 and 5xx except 501, a bounded number of times, honouring
``retry-after`` and ``ratelimit-reset``; never on 401/403/404, which cannot heal by waiting.

It must not parse kubeconfigs (deployer/credentials.py does), print, or log anything, and the API token must
never reach an exception message, a repr or a log line: it lives only in the session's Authorization header.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import quote

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from deployer import settings
from deployer.errors import (
    ClusterLookupError,
    DigitalOceanAuthError,
    DigitalOceanError,
    OptionError,
)
from deployer.redaction import redact, secret_pieces

DEFAULT_API_URL = "https://api.digitalocean.com"
TOKEN_VARIABLE = "DIGITALOCEAN_ACCESS_TOKEN"
API_URL_FLAG = "--digitalocean-api-url"
USER_AGENT = "deployer (+https://github.com/digitalocean/openapi)"

# The API's own maximum page size: fewer round trips against the 250 requests/minute limit.
PAGE_SIZE = 200
# A token that sees more than 100 pages of clusters is not a real account; stop rather than loop forever.
MAX_PAGES = 100
MAX_NAMES_LISTED = 20  # in an error message, which must stay one readable line
# What DigitalOcean means by expiry_seconds=0: a 7-day token.
DEFAULT_TOKEN_LIFETIME = timedelta(days=7)
# doctl retries 1-30 s apart; a server asking for a longer wait (the hourly limit) will not be served
# within a deploy, so we report when to retry instead of blocking the run.
MAX_BACKOFF_SECONDS = 30.0
MAX_ADVISED_WAIT_SECONDS = 60.0
REQUEST_TIMEOUT = (10.0, 30.0)  # connect, read

UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Statuses where waiting may help (doctl's set): rate limited, and server errors except "not implemented".
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 505, 506, 507, 508, 509, 510, 511, 520, 522, 524})

READ_SCOPE = "kubernetes:read"
ACCESS_SCOPE = "kubernetes:access_cluster"

# A cluster in these states cannot take a deploy; in the others (degraded, upgrading) it may, so we warn.
BLOCKING_STATES = frozenset({"provisioning", "deleting", "error", "deleted"})
WARNING_STATES = frozenset({"degraded", "upgrading"})


@dataclass(frozen=True)
class DigitalOceanCluster:
    """A DOKS cluster as listed by the API; ``state`` is None when it was given by UUID and never listed."""

    id: str
    name: str | None = None
    region: str | None = None
    state: str | None = None
    status_message: str | None = None
    endpoint: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


@dataclass(frozen=True)
class IssuedKubeconfig:
    """A kubeconfig DigitalOcean just issued. ``expires_at`` is a lower bound on the token's real expiry:
    the moment the successful request was sent, plus the lifetime asked for."""

    text: str = field(repr=False)
    expires_at: datetime


def is_cluster_uuid(name_or_uuid: str) -> bool:
    return bool(UUID_PATTERN.match(name_or_uuid))


def cluster_state_warning(cluster: DigitalOceanCluster) -> str | None:
    """Judge whether a deploy may go to this cluster: None when running (or unknown because given by UUID),
    a warning text when degraded or upgrading; raises ClusterLookupError when it cannot take a deploy."""
    state = cluster.state
    if state is None or state == "running":
        return None
    detail = f": {cluster.status_message}" if cluster.status_message else ""
    if state in BLOCKING_STATES:
        raise ClusterLookupError(f"DigitalOcean cluster {cluster.label} is {state}{detail}; it cannot take a deploy")
    if state in WARNING_STATES:
        return f"DigitalOcean cluster {cluster.label} is {state}{detail}; deploying anyway"
    return f"DigitalOcean cluster {cluster.label} is in state {state!r}{detail}; deploying anyway"


def check_api_url(api_url: str) -> str:
    """The API base URL without its trailing slash; refuses to send a token in clear text off this host."""
    return settings.check_api_url(api_url, flag=API_URL_FLAG, secret="the DigitalOcean token")


def check_token(token: str) -> str:
    """The token, stripped; refuses characters that cannot go in an HTTP header (requests would quote the
    whole header, token included, in its exception)."""
    token = token.strip()
    if not token:
        raise OptionError(TOKEN_VARIABLE, "is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise OptionError(TOKEN_VARIABLE, "contains whitespace or control characters; check how it was set")
    return token


class DigitalOceanAPI:
    """A client for the three Kubernetes credential endpoints. ``sleep`` and ``now`` are injectable so tests
    count the waits without spending them."""

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        max_attempts: int = 5,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._token = check_token(token)
        self._hidden = secret_pieces([self._token])  # what messages quoted from the API must not show
        self.api_url = check_api_url(api_url)
        self._sleep = sleep
        self._now = now
        self.max_attempts = max_attempts
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        # Auth set on the session (not as a plain header) so that requests never replaces it with a
        # ~/.netrc entry; proxies and CA bundles from the environment still apply.
        self._session.auth = _BearerAuth(self._token)

    def __repr__(self) -> str:
        return f"DigitalOceanAPI(api_url={self.api_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DigitalOceanAPI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- operations ----------------------------------------------------------------------------------

    def list_clusters(self) -> list[DigitalOceanCluster]:
        """Every cluster the token can see, across all pages."""
        return list(self._iter_clusters())

    def find_cluster(self, name_or_uuid: str) -> DigitalOceanCluster:
        """A UUID is used as is (no listing, so a token with only kubernetes:access_cluster works); a name
        must match exactly one cluster the token can see."""
        if is_cluster_uuid(name_or_uuid):
            return DigitalOceanCluster(id=name_or_uuid.lower())
        clusters = self.list_clusters()
        matches = [c for c in clusters if c.name == name_or_uuid]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            names = sorted(c.name or c.id for c in clusters)
            visible = ", ".join(names[:MAX_NAMES_LISTED]) or "none"
            if len(names) > MAX_NAMES_LISTED:
                visible += f" and {len(names) - MAX_NAMES_LISTED} more"
            raise ClusterLookupError(
                f'no DigitalOcean Kubernetes cluster goes by the name "{name_or_uuid}"; '
                f"clusters this token can see: {visible}"
            )
        ids = ", ".join(c.id for c in matches)
        raise ClusterLookupError(
            f'many DigitalOcean Kubernetes clusters go by the name "{name_or_uuid}" ({ids}); '
            "pass the UUID of the one to deploy to with --cluster"
        )

    def kubeconfig(self, cluster_id: str, expiry_seconds: int) -> IssuedKubeconfig:
        """A kubeconfig (YAML text) with a token DigitalOcean mints for ``expiry_seconds``."""
        if expiry_seconds < 0:
            raise ValueError("expiry_seconds must not be negative")
        response, sent_at = self._get(
            f"/v2/kubernetes/clusters/{quote(cluster_id, safe='')}/kubeconfig",
            # type=token as godo sends: an SSO kubeconfig would need doctl to run the OAuth2 flow.
            {"expiry_seconds": str(expiry_seconds), "type": "token"},
            action=f"issue a kubeconfig for cluster {cluster_id}",
            scope=ACCESS_SCOPE,
            cluster_id=cluster_id,
        )
        content_type = response.headers.get("content-type", "")
        if "html" in content_type or "json" in content_type:
            # A login page from a proxy, or JSON from something that is not DigitalOcean.
            raise self._unexpected(
                response,
                f"issue a kubeconfig for cluster {cluster_id}",
                f"content type {content_type}, not a kubeconfig",
            )
        response.encoding = response.encoding or "utf-8"
        return IssuedKubeconfig(text=response.text, expires_at=sent_at + _lifetime(expiry_seconds))

    # --- plumbing ------------------------------------------------------------------------------------

    def _iter_clusters(self) -> Iterator[DigitalOceanCluster]:
        action = "list Kubernetes clusters"
        for page in range(1, MAX_PAGES + 1):
            # Page numbers rather than the links' URLs: the real API writes its own host into them, which
            # would bypass --digitalocean-api-url.
            response, _ = self._get(
                "/v2/kubernetes/clusters",
                {"page": str(page), "per_page": str(PAGE_SIZE)},
                action=action,
                scope=READ_SCOPE,
            )
            body = self._json_object(response, action)
            items = body.get("kubernetes_clusters")
            if not isinstance(items, list):
                raise self._unexpected(response, action, "kubernetes_clusters is not a list")
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise self._unexpected(response, action, "a cluster has no id")
                yield _cluster_from_json(item)
            links = body.get("links")
            pages = links.get("pages") if isinstance(links, dict) else None
            if not items or not isinstance(pages, dict) or not pages.get("next"):
                return
        raise DigitalOceanError(f"DigitalOcean listed more than {MAX_PAGES} pages of clusters; giving up")

    def _get(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        action: str,
        scope: str,
        cluster_id: str | None = None,
    ) -> tuple[requests.Response, datetime]:
        """One GET with bounded retries; returns the successful response and when that attempt was sent."""
        attempts = 0

        def attempt() -> tuple[requests.Response, datetime]:
            nonlocal attempts
            attempts += 1
            sent_at = datetime.fromtimestamp(self._now(), UTC)
            try:
                response = self._session.get(self.api_url + path, params=params, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as e:
                # The exception's text names host and path only; the token is in a header it never quotes.
                error = DigitalOceanError(
                    redact(
                        f"cannot reach the DigitalOcean API at {self.api_url} to {action}: {type(e).__name__}",
                        self._hidden,
                    ),
                    retryable=True,
                )
                raise _TransientFailure(error, None) from e
            if response.status_code < 400:
                return response, sent_at
            self._raise_for_status(response, action=action, scope=scope, cluster_id=cluster_id)

        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.max_attempts), _StopWhenAdvisedWaitTooLong()),
            wait=self._wait,
            retry=retry_if_exception_type(_TransientFailure),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _TransientFailure as failure:
            error = failure.error
            if failure.advised_wait is not None and failure.advised_wait > MAX_ADVISED_WAIT_SECONDS:
                error.message += (
                    f"; DigitalOcean asks to wait {settings.format_duration(failure.advised_wait)}, retry later"
                )
            else:
                error.message += f" (gave up after {attempts} attempt{'s' if attempts != 1 else ''})"
            raise error from failure.__cause__

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _TransientFailure) and failure.advised_wait is not None:
            return failure.advised_wait
        return float(_BACKOFF(state))

    def _raise_for_status(
        self, response: requests.Response, *, action: str, scope: str, cluster_id: str | None
    ) -> NoReturn:
        status = response.status_code
        error_id, api_message, request_id = _error_details(response)
        quoted = redact(f"{error_id}: {api_message}" if error_id else api_message, self._hidden)
        if status == 401:
            raise DigitalOceanAuthError(
                f"DigitalOcean rejected the token ({quoted}): check {TOKEN_VARIABLE}",
                status=status,
                request_id=request_id,
            )
        if status == 403:
            raise DigitalOceanAuthError(
                f"DigitalOcean refused to {action} ({quoted}): the token needs the {scope} scope",
                status=status,
                request_id=request_id,
            )
        if status == 404 and cluster_id is not None:
            raise ClusterLookupError(
                f"DigitalOcean has no Kubernetes cluster with id {cluster_id} that this token can see ({quoted})",
                status=status,
                request_id=request_id,
            )
        if status in RETRYABLE_STATUSES:
            what = "rate limit exceeded" if status == 429 else "failed"
            error = DigitalOceanError(
                f"DigitalOcean {what} while trying to {action} ({quoted})",
                status=status,
                request_id=request_id,
                retryable=True,
            )
            raise _TransientFailure(error, self._advised_wait(response))
        raise DigitalOceanError(f"DigitalOcean refused to {action} ({quoted})", status=status, request_id=request_id)

    def _advised_wait(self, response: requests.Response) -> float | None:
        """Seconds the server asks us to wait: retry-after (seconds or HTTP date), else, once the quota is
        spent, until ratelimit-reset (epoch seconds). None lets the exponential backoff decide."""
        retry_after = response.headers.get("retry-after")
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                try:
                    when = parsedate_to_datetime(retry_after)
                except (TypeError, ValueError):
                    when = None
                if when is not None:
                    return max(0.0, when.timestamp() - self._now())
        reset = response.headers.get("ratelimit-reset")
        if response.status_code == 429 and reset and response.headers.get("ratelimit-remaining", "0") == "0":
            try:
                return max(0.0, float(reset) - self._now())
            except ValueError:
                return None
        return None

    def _json_object(self, response: requests.Response, action: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._unexpected(response, action, "the body is not a JSON object")
        return body

    def _unexpected(self, response: requests.Response, action: str, problem: str) -> DigitalOceanError:
        _, _, request_id = _error_details(response)
        return DigitalOceanError(
            f"DigitalOcean answered an unexpected response when asked to {action}: {problem}",
            status=response.status_code,
            request_id=request_id,
        )


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth([token])"


class _TransientFailure(Exception):
    """Raised inside the retry loop for a failure that waiting may heal; carries the user-facing error."""

    def __init__(self, error: DigitalOceanError, advised_wait: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.advised_wait = advised_wait


_BACKOFF = wait_exponential_jitter(initial=1, max=MAX_BACKOFF_SECONDS, jitter=1)


class _StopWhenAdvisedWaitTooLong(stop_base):
    """Stop at once when the server asks for a wait longer than a deploy should block on."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        return (
            isinstance(failure, _TransientFailure)
            and failure.advised_wait is not None
            and failure.advised_wait > MAX_ADVISED_WAIT_SECONDS
        )


def _error_details(response: requests.Response) -> tuple[str | None, str, str | None]:
    """The error body's id, message and request id (falling back to the x-request-id header)."""
    error_id: str | None = None
    message = response.reason or f"HTTP {response.status_code}"
    request_id = response.headers.get("x-request-id") or None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("id"), str):
            error_id = body["id"]
        if isinstance(body.get("message"), str) and body["message"]:
            message = body["message"]
        if isinstance(body.get("request_id"), str) and body["request_id"]:
            request_id = body["request_id"]
    return error_id, _one_line(message), request_id


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _cluster_from_json(item: Mapping[str, Any]) -> DigitalOceanCluster:
    status = item.get("status") if isinstance(item.get("status"), dict) else {}
    assert isinstance(status, dict)

    def text(value: object) -> str | None:
        return value if isinstance(value, str) and value else None

    return DigitalOceanCluster(
        id=str(item["id"]),
        name=text(item.get("name")),
        region=text(item.get("region")),
        state=text(status.get("state")),
        status_message=text(status.get("message")),
        endpoint=text(item.get("endpoint")),
    )


def _lifetime(expiry_seconds: int) -> timedelta:
    return timedelta(seconds=expiry_seconds) if expiry_seconds > 0 else DEFAULT_TOKEN_LIFETIME
