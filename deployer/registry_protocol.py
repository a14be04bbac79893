"""The Docker Registry HTTP API v2 as deployer reads it: which URL holds a manifest, how a registry's
``WWW-Authenticate`` challenge is read, what a token request looks like, and what an answer means.

Pure: no I/O. deployer/registry_api.py sends the requests and hands the answers here. The rules are the
distribution specification's and the token-auth flow every public registry follows (GHCR, Docker Hub):
a request without credentials gets 401 and a challenge; ``Basic`` asks for the credentials themselves,
``Bearer realm=...,service=...,scope=...`` for a token fetched from ``realm`` (with the credentials, or
anonymously for a public image) and sent as ``Authorization: Bearer``.

Must not: decide which credentials to use (the caller holds them) or put one into a message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from deployer.errors import RegistryAuthError, RegistryError
from deployer.images import DOCKER_HUB, ImageReference

# Every manifest kind a registry may hold for an image. A registry answers 404 to a request whose Accept
# leaves out the kind it holds (GHCR and Docker Hub do for an OCI index: "accept header does not support
# OCI indexes"), so a missing type would read as a missing image.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# docker.io is a name, not a host: its API is served here, and a one-component path lives under library/.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
# Statuses where asking again may help: rate limited, or the registry failed (501 never heals).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_TOKEN_CHARS = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN_CHARS})(?=\s|,|$)")
_PARAM = re.compile(rf"\s*({_TOKEN_CHARS})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s,]*)\s*,?")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: ``scheme`` lowercased, parameter names too."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges in a ``WWW-Authenticate`` header (RFC 9110 11.6.1), in order; what does not parse ends
    the list (a registry sends one well-formed challenge in practice)."""
    challenges: list[Challenge] = []
    position = 0
    while position < len(header):
        scheme = _SCHEME.match(header, position)
        if scheme is None:
            break
        position = scheme.end()
        params: dict[str, str] = {}
        while (param := _PARAM.match(header, position)) is not None:
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            position = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ManifestLocation:
    """Where the registry API serves one repository's manifests."""

    base_url: str  # https://ghcr.io, or http://127.0.0.1:5000 for a registry on this machine
    path: str  # the repository inside the registry: acme/web

    def manifest_url(self, digest: str) -> str:
        return f"{self.base_url}/v2/{self.path}/manifests/{digest}"

    @property
    def pull_scope(self) -> str:
        return f"repository:{self.path}:pull"


def manifest_location(reference: ImageReference) -> ManifestLocation:
    """The API address of ``reference``'s repository. A registry on a loopback address is spoken to in plain
    HTTP (as the Docker engine treats 127.0.0.0/8 as insecure); every other one in HTTPS."""
    registry = reference.registry or DOCKER_HUB
    path = reference.path
    if registry in (DOCKER_HUB, "index.docker.io"):
        registry = DOCKER_HUB_API_HOST
        if "/" not in path:
            path = f"library/{path}"
    host = urlsplit(f"//{registry}").hostname or registry
    scheme = "http" if is_loopback_host(host) else "https"
    return ManifestLocation(f"{scheme}://{registry}", path)


@dataclass(frozen=True)
class TokenRequest:
    url: str
    params: Mapping[str, str]


def token_request(challenge: Challenge, location: ManifestLocation, *, sends_credentials: bool) -> TokenRequest:
    """The request for a pull token a ``Bearer`` challenge asks for. Refuses a realm that would carry the
    credentials in clear text off this machine (a registry cannot make deployer leak them)."""
    realm = challenge.params.get("realm", "")
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistryError(f"the registry at {location.base_url} asks for a token from {realm!r}, not a URL")
    if sends_credentials and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise RegistryAuthError(
            f"the registry at {location.base_url} asks for the credentials over plain http ({parts.hostname}); refused"
        )
    params = {"scope": challenge.params.get("scope") or location.pull_scope}
    if challenge.params.get("service"):
        params["service"] = challenge.params["service"]
    return TokenRequest(realm, params)


def token_from_answer(answer: object) -> str | None:
    """The token in a token endpoint's JSON answer (``token``, or OAuth's ``access_token``), or None."""
    if not isinstance(answer, Mapping):
        return None
    for key in ("token", "access_token"):
        value = answer.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def judge_manifest_answer(status: int, content_digest: str | None, repository: str, digest: str) -> None:
    """Raise unless the answer to ``HEAD .../manifests/<digest>`` (after authentication) says the repository
    holds that manifest. 401 and 403 are refused credentials; 404 an absent manifest or repository."""
    if status == 200:
        if content_digest and content_digest != digest:
            raise RegistryError(
                f"{repository}: the registry answered for {digest} with another manifest, {content_digest}"
            )
        return
    where = f"{repository}@{digest}"
    if status == 404:
        raise RegistryError(f"{where}: the registry holds no such manifest in {repository} (HTTP 404)")
    if status in (401, 403):
        raise RegistryAuthError(
            f"{where}: the registry refused to show the manifest (HTTP {status}); check --registry-username, "
            "--registry-password and the token's read access to the package"
        )
    raise RegistryError(f"{where}: the registry answered HTTP {status}", retryable=status in RETRYABLE_STATUSES)
