"""The transport to the Kubernetes API: one request at a time, retried while the API is unavailable.

Owns the kubernetes client of one connection (kube/clients.py makes it), sends JSON requests on it (the objects
stay dicts shaped like the API's JSON), retries what is safe to repeat through deployer/retries.py, renews
refused credentials when their source can, and raises the error kube/answers.py chooses for a status. It
decides nothing about deploying; it must not print (``warn`` and ``inform`` are told when the API stops and
starts answering) nor let a token reach a message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import kubernetes.client
import urllib3

from deployer.credentials import KubeCredentials
from deployer.errors import APINotFoundError, CredentialsExpiredError, DeployerError, KubernetesError
from deployer.kinds import KubeDict
from deployer.kube.answers import status_error, unavailable_status
from deployer.kube.clients import client_for
from deployer.retries import Availability, Retrier, RetryPolicy, Transient, parse_retry_after

if TYPE_CHECKING:
    from deployer.kube.resources import Resource

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 60.0
# How long a request outside the wait and the rollback (record, apply, lock) keeps retrying while the API is
# unavailable: a control plane restarting for maintenance (DOKS's default is not highly available) is back
# within a minute or two.
REQUEST_RETRY_SECONDS = 120.0
# ... but only briefly while the API has not answered once (a wrong server address fails fast).
FIRST_CONTACT_RETRY_SECONDS = 10.0
REQUEST_RETRY_POLICY = RetryPolicy(budget=REQUEST_RETRY_SECONDS)

# A request body or query value: JSON (an object, a JSON patch) or a query's scalar.
Body = KubeDict | list[KubeDict]
Query = Mapping[str, str | int | bool]
Timeout = tuple[float, float]


class KubeAPI:
    """Requests to one cluster. Those safe to repeat (reads, server-side apply, the rollback's patches, lease
    updates) are retried while the API is unavailable (connection errors, 429, 5xx), within the deadline of the
    phase that sends them (``retrying_until``) or REQUEST_RETRY_SECONDS; ``warn`` is told once when the API
    stops answering, ``inform`` once when it is back."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        credentials: KubeCredentials,
        *,
        warn: Callable[[str], None],
        inform: Callable[[str], None],
        retry_policy: RetryPolicy = REQUEST_RETRY_POLICY,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self.host = str(client.configuration.host)
        self._inform = inform
        availability = Availability(
            f"the Kubernetes API at {self.host}", clock=time.monotonic, on_lost=warn, on_regained=inform
        )
        self.retrier = Retrier(retry_policy, availability, clock=time.monotonic, sleep=time.sleep)
        # The deadline of the phase the calling thread is in (the rollback's, the diagnosis's), if any.
        self._phase = threading.local()
        self._client_lock = threading.Lock()
        self._renewing = False
        # What closes the in-memory key files of each client this connection made.
        self._releases: list[Callable[[], None]] = []
        # The first 401 any request of this connection got (the lock's renewal included): it ends a wait.
        self.refused: KubernetesError | None = None

    @classmethod
    def connect(
        cls, credentials: KubeCredentials, *, warn: Callable[[str], None], inform: Callable[[str], None]
    ) -> KubeAPI:
        """A client for the credentials' context, loaded in memory. Makes no request."""
        client, release = client_for(credentials)
        api = cls(client, credentials, warn=warn, inform=inform)
        api._releases.append(release)
        return api

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
        while self._releases:
            self._releases.pop()()

    # --- phases -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def retrying_until(self, deadline: float) -> Iterator[None]:
        """Requests of this thread retry until ``deadline`` (time.monotonic) within the block."""
        outer = getattr(self._phase, "deadline", None)
        self._phase.deadline = deadline
        try:
            yield
        finally:
            self._phase.deadline = outer

    def _request_deadline(self) -> float | None:
        deadline: float | None = getattr(self._phase, "deadline", None)
        if deadline is None and not self.retrier.availability.ever_answered:
            # A server that never answered this run is more likely a wrong address than a restart.
            return time.monotonic() + FIRST_CONTACT_RETRY_SECONDS
        return deadline

    @contextlib.contextmanager
    def renewing_credentials(self) -> Iterator[None]:
        """Within the block, a 401 has this thread renew the credentials once (when their source can: a
        DigitalOcean token mints new ones) and repeat the request: a rollback must not fail because the wait
        outlived the token."""
        outer = getattr(self._phase, "renew", False)
        self._phase.renew = True
        try:
            yield
        finally:
            self._phase.renew = outer

    # --- requests ---------------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Body | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: Timeout = (CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS),
    ) -> urllib3.BaseHTTPResponse:
        """One request; returns the urllib3 response, unread (the caller reads or streams it). A connection
        failure is a retryable KubernetesError whose cause says whether the request was ever sent."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()]
        with self._client_lock:
            client = self._client
        try:
            serialized = client.param_serialize(
                method=method,
                resource_path=path,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response: urllib3.BaseHTTPResponse = client.call_api(*serialized, _request_timeout=timeout).response
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise unreachable(self.host, e) from e
        except kubernetes.client.exceptions.ApiException as e:
            raise KubernetesError(f"{method} {path}: {e.reason}", status=e.status or None) from e
        if not unavailable_status(int(response.status)):
            self.retrier.availability.answered()
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Body | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, object]:
        """A request whose answer is JSON: its status and decoded body; raises the status's error class
        (kube/answers.py) for a status outside 2xx.

        Retried while the API is unavailable, except a POST, whose repetition could create twice: it is
        retried only when it was never sent or was refused with 429. Refused credentials are renewed once
        when the source can mint new ones (see ``renewing_credentials``)."""

        def attempt() -> tuple[int, object]:
            return self.attempt(method, path, query=query, body=body, content_type=content_type)

        try:
            return self.retrier.call(attempt, deadline=self._request_deadline())
        except KubernetesError as e:
            if e.status != 401 or not self._renew_credentials():
                raise
        return self.retrier.call(attempt, deadline=self._request_deadline())

    def attempt(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Body | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, object]:
        """One try of ``request``; raises Transient for a failure that repeating may heal."""
        repeatable = method != "POST"
        try:
            response = self.send(method, path, query=query, body=body, content_type=content_type)
            try:
                data = response.data
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Transient(unreachable(self.host, e)) from e
        except KubernetesError as e:
            if e.retryable and (repeatable or never_sent(e)):
                raise Transient(e) from e.__cause__
            raise
        status = int(response.status)
        parsed = decoded(data)
        if 200 <= status < 300:
            return status, parsed
        error = self.error(method, path, status, parsed, response.headers)
        if error.retryable and (repeatable or status == 429):
            raise Transient(error, advised_wait(response.headers))
        raise error

    def get(self, resource: Resource, namespace: str | None, name: str) -> KubeDict | None:
        """The object, or None when it does not exist."""
        try:
            _, body = self.request("GET", resource.path(namespace, name))
        except APINotFoundError:
            return None
        return dict(body) if isinstance(body, Mapping) else {}

    def list(
        self, resource: Resource, namespace: str | None, query: Query | None = None, *, retried: bool = True
    ) -> KubeDict:
        """LIST; with ``retried`` False one try that raises Transient, for a caller that retries itself."""
        path = resource.path(namespace if resource.namespaced else None)
        _, body = self.request("GET", path, query=query) if retried else self.attempt("GET", path, query=query)
        listed = dict(body) if isinstance(body, Mapping) else {}
        # A list's items come without kind and apiVersion; the pure modules read them.
        for item in listed.get("items") or ():
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return listed

    # --- errors and credentials -------------------------------------------------------------------------

    def error(
        self, method: str, path: str, status: int, body: object, headers: Mapping[str, str] | None
    ) -> KubernetesError:
        """The error for a non-2xx answer; a 401 is also kept as ``refused`` (it ends a wait)."""
        request_id = headers.get("Audit-Id") if headers is not None else None
        if status != 401:
            return status_error(status, body, request_id, f"{method} {path} failed")
        refusal = self._refusal(request_id)
        with self._client_lock:
            self.refused = self.refused or refusal
        return refusal

    def _refusal(self, request_id: str | None) -> KubernetesError:
        if self._credentials.has_expired():
            expired = self._credentials.expires_at
            return CredentialsExpiredError(
                f"the cluster refused the credentials from {self._credentials.description}: they expired at "
                f"{expired.isoformat() if expired else 'an unknown time'}",
                status=401,
                request_id=request_id,
            )
        return KubernetesError(
            f"the cluster refused the credentials from {self._credentials.description}",
            status=401,
            request_id=request_id,
        )

    def _renew_credentials(self) -> bool:
        """New credentials from their source and a client for them; False when this thread may not renew
        (outside ``renewing_credentials``), the source cannot, or it was done already."""
        if not getattr(self._phase, "renew", False) or self._credentials.renew is None:
            return False
        with self._client_lock:
            if self._renewing:
                return False
            self._renewing = True
        try:
            fresh = self._credentials.renew()
        except DeployerError as e:
            # Still a refusal by the cluster (what the rollback reports), with why no new ones came.
            raise KubernetesError(
                f"the cluster refused the credentials from {self._credentials.description}, and new ones could "
                f"not be fetched: {e}",
                status=401,
            ) from e
        client, release = client_for(fresh)
        self._releases.append(release)
        with self._client_lock:
            stale, self._client, self._credentials = self._client, client, fresh
            self.refused = None
        self.retrier.availability.answered()
        self._inform(f"the cluster refused the credentials; using new ones: {fresh.description}")
        stale.close()  # type: ignore[no-untyped-call]
        return True


def decoded(data: bytes) -> object:
    """A body as JSON, or as text when it is not JSON; None when empty."""
    if not data:
        return None
    try:
        parsed: object = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")
    return parsed


def unreachable(host: str, error: BaseException) -> KubernetesError:
    """A connection failure, said in one short line (urllib3's text repeats the pool, URL and retries)."""
    reason: BaseException | None = error
    while isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    text = str(reason)
    if isinstance(reason, urllib3.exceptions.NewConnectionError) and ": " in text:
        text = text.rsplit(": ", 1)[-1]
    elif isinstance(reason, urllib3.exceptions.ProtocolError) and reason.args:
        text = str(reason.args[0])
    return KubernetesError(f"cannot reach the Kubernetes API at {host}: {text}", retryable=True)


def never_sent(error: KubernetesError) -> bool:
    """True when the request could not have reached the server (no connection was made)."""
    cause: BaseException | None = error.__cause__
    while isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    return isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


def advised_wait(headers: Mapping[str, str] | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    return parse_retry_after(value, time.time())
