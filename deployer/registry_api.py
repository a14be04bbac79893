"""The image registry's HTTP API (Docker Registry HTTP API v2), spoken without a Docker engine: whether a
repository holds a manifest, for ``deployer run --no-build --digest``.

Owns the HTTP conversation (``requests``): ``HEAD /v2/<name>/manifests/<digest>``, and on a 401 the
challenge it names: the credentials themselves for ``Basic``, or a pull token fetched from the challenge's
realm for ``Bearer`` (GHCR, Docker Hub; anonymous when no credentials are given, which serves public
images). Connection errors, 429 and 5xx are retried through deployer/retries.py; refusals are not. What the
answers mean is deployer/registry_protocol.py's (pure) decision.

Must not: print (it reports through the callbacks it is given), or let the password or a token reach a
message, a repr or a log line: they travel only in Authorization headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

import requests
import requests.auth

from deployer.errors import RegistryAuthError, RegistryError
from deployer.images import ImageReference
from deployer.redaction import redact, secret_pieces
from deployer.registry_protocol import (
    MANIFEST_MEDIA_TYPES,
    RETRYABLE_STATUSES,
    Challenge,
    judge_manifest_answer,
    manifest_location,
    parse_challenges,
    token_from_answer,
    token_request,
)
from deployer.retries import Availability, Retrier, RetryPolicy, Transient, parse_retry_after

REQUEST_TIMEOUT = (10.0, 30.0)  # connect, read
USER_AGENT = "deployer"
# How long a registry may be unavailable before the run gives up; nothing has been changed yet.
RETRY_POLICY = RetryPolicy(initial=0.5, maximum=5.0, budget=60.0)


class _Authorization(requests.auth.AuthBase):
    """A fixed Authorization header, set as requests' auth so that a ~/.netrc entry never replaces it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request


class RegistryAPI:
    """One repository's manifests, read through the registry's API. ``credentials`` is (username, password)
    or None for anonymous access."""

    def __init__(
        self,
        repository: ImageReference,
        credentials: tuple[str, str] | None,
        *,
        on_lost: Callable[[str], None],
        on_regained: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.repository = repository.repository
        self.location = manifest_location(repository)
        self._credentials = credentials
        self._hidden = secret_pieces([credentials[1] if credentials else None])
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT})
        availability = Availability(
            f"the registry at {self.location.base_url}", clock=clock, on_lost=on_lost, on_regained=on_regained
        )
        self._retrier = Retrier(RETRY_POLICY, availability, clock=clock, sleep=sleep)
        self._auth: requests.auth.AuthBase | None = None

    def __repr__(self) -> str:
        return f"RegistryAPI(repository={self.repository!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryAPI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_manifest(self, digest: str) -> None:
        """Return when the repository holds the manifest ``digest``; raise RegistryError (RegistryAuthError
        for refused credentials) naming the repository and the digest otherwise."""
        url = self.location.manifest_url(digest)

        def attempt() -> None:
            response = self._head(url)
            if response.status_code == 401 and self._auth is None:
                self._auth = self._authenticate(response.headers.get("WWW-Authenticate", ""))
                response = self._head(url)
            judge_manifest_answer(
                response.status_code, response.headers.get("Docker-Content-Digest"), self.repository, digest
            )

        self._retrier.call(attempt)

    # --- the exchange -------------------------------------------------------------------------------

    def _head(self, url: str) -> requests.Response:
        return self._send("HEAD", url, headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}, auth=self._auth)

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        auth: requests.auth.AuthBase | None = None,
    ) -> requests.Response:
        """One request; what may heal by asking again (no answer, 429, 5xx) raises Transient."""
        try:
            response = self._session.request(
                method, url, headers=headers, params=params, auth=auth, timeout=REQUEST_TIMEOUT, allow_redirects=True
            )
        except requests.RequestException as e:
            problem = redact(f"{type(e).__name__}: {e}", self._hidden)
            raise Transient(RegistryError(f"{self.location.base_url} did not answer: {problem}", retryable=True)) from e
        with response:
            if response.status_code in RETRYABLE_STATUSES:
                error = RegistryError(
                    f"{self.location.base_url} answered HTTP {response.status_code} for {self.repository}",
                    retryable=True,
                )
                raise Transient(error, parse_retry_after(response.headers.get("Retry-After"), time.time()))
            return response  # its body is read already (no stream): closing it frees the connection

    def _authenticate(self, header: str) -> requests.auth.AuthBase:
        """The Authorization the registry's 401 challenge asks for."""
        challenges = {challenge.scheme: challenge for challenge in parse_challenges(header)}
        if "bearer" in challenges:
            return _Authorization(f"Bearer {self._fetch_token(challenges['bearer'])}")
        if "basic" in challenges and self._credentials is not None:
            return requests.auth.HTTPBasicAuth(*self._credentials)
        if "basic" in challenges:
            raise RegistryAuthError(
                f"{self.repository}: the registry asks for credentials: give --registry-username and "
                "--registry-password"
            )
        raise RegistryAuthError(f"{self.repository}: the registry answered 401 with no challenge deployer can answer")

    def _fetch_token(self, challenge: Challenge) -> str:
        request = token_request(challenge, self.location, sends_credentials=self._credentials is not None)
        auth = requests.auth.HTTPBasicAuth(*self._credentials) if self._credentials else None
        response = self._send("GET", request.url, params=dict(request.params), auth=auth)
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"{self.repository}: the registry's token service refused the credentials (HTTP "
                f"{response.status_code}); check --registry-username and --registry-password"
            )
        try:
            token = token_from_answer(response.json()) if response.status_code == 200 else None
        except ValueError:
            token = None
        if token is None:
            raise RegistryError(
                f"{self.repository}: the registry's token service answered HTTP {response.status_code} without a token"
            )
        self._hidden = secret_pieces([*self._hidden, token])
        return token
