"""The registry's HTTP API client (deployer/registry_api.py) against the real test registry (htpasswd, Basic
auth), and through tests/fakes/registry_proxy.py: in front of it as a token-auth registry (the dance GHCR and
Docker Hub ask for), and failing on demand. No Docker engine: the test image is pushed through the API too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deployer.errors import RegistryAuthError, RegistryError
from deployer.images import parse_image_reference
from deployer.registry_api import RegistryAPI
from tests.conftest import TestRegistry
from tests.fakes.registry_proxy import MANIFEST, running_proxy

ABSENT = "sha256:" + "0" * 64


@dataclass(frozen=True)
class PushedImage:
    path: str  # the repository inside the registry
    digest: str


def _send(registry: TestRegistry, method: str, url: str, body: bytes, content_type: str) -> urllib.request.Request:
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": content_type}
    return urllib.request.Request(url, data=body, method=method, headers=headers)


def push_empty_image(registry: TestRegistry, path: str, tag: str) -> str:
    """An OCI image with a config and no layer, pushed through the registry API; returns its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    config_bytes = config.encode()
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    start = _send(registry, "POST", registry.url(f"/v2/{path}/blobs/uploads/"), b"", "application/octet-stream")
    with urllib.request.urlopen(start, timeout=10) as answer:
        location = answer.headers["Location"]
    upload = location if location.startswith("http") else registry.url(location)
    separator = "&" if "?" in upload else "?"
    put = _send(registry, "PUT", f"{upload}{separator}digest={config_digest}", config_bytes, "application/octet-stream")
    urllib.request.urlopen(put, timeout=10).close()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [],
        }
    ).encode()
    media_type = "application/vnd.oci.image.manifest.v1+json"
    request = _send(registry, "PUT", registry.url(f"/v2/{path}/manifests/{tag}"), manifest, media_type)
    with urllib.request.urlopen(request, timeout=10) as answer:
        digest: str = answer.headers["Docker-Content-Digest"]
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    return digest


@pytest.fixture(scope="module")
def pushed(registry: TestRegistry) -> Iterator[PushedImage]:
    path = f"deployer-test-registry-api-{uuid.uuid4().hex[:8]}/web"
    digest = push_empty_image(registry, path, "staging")
    yield PushedImage(path, digest)
    registry.request("DELETE", f"/v2/{path}/manifests/{digest}")


class Notices:
    """The callbacks the client reports an outage through, recorded."""

    def __init__(self) -> None:
        self.lost: list[str] = []
        self.regained: list[str] = []


def client(host: str, path: str, credentials: tuple[str, str] | None, notices: Notices | None = None) -> RegistryAPI:
    notices = notices or Notices()
    return RegistryAPI(
        parse_image_reference(f"{host}/{path}"),
        credentials,
        on_lost=notices.lost.append,
        on_regained=notices.regained.append,
        sleep=lambda seconds: None,
    )


def test_a_pushed_digest_is_found_with_basic_auth(registry: TestRegistry, pushed: PushedImage) -> None:
    with client(registry.host, pushed.path, (registry.username, registry.password)) as api:
        api.check_manifest(pushed.digest)


def test_an_absent_digest_is_an_error_naming_repository_and_digest(registry: TestRegistry, pushed: PushedImage) -> None:
    with client(registry.host, pushed.path, (registry.username, registry.password)) as api:
        with pytest.raises(RegistryError) as raised:
            api.check_manifest(ABSENT)

    message = str(raised.value)
    assert f"{registry.host}/{pushed.path}@{ABSENT}" in message and "no such manifest" in message
    assert "\n" not in message and not raised.value.retryable


def test_a_wrong_password_is_refused_credentials_and_never_quoted(registry: TestRegistry, pushed: PushedImage) -> None:
    wrong = "wrong-password-1234567890"
    with client(registry.host, pushed.path, (registry.username, wrong)) as api:
        with pytest.raises(RegistryAuthError) as raised:
            api.check_manifest(pushed.digest)

    assert "HTTP 401" in str(raised.value) and wrong not in str(raised.value)


def test_no_credentials_for_a_registry_that_asks_for_them_names_the_flags(
    registry: TestRegistry, pushed: PushedImage
) -> None:
    with client(registry.host, pushed.path, None) as api:
        with pytest.raises(RegistryAuthError, match="--registry-username and --registry-password"):
            api.check_manifest(pushed.digest)


def test_the_token_dance_finds_the_digest_with_a_pull_token(registry: TestRegistry, pushed: PushedImage) -> None:
    with running_proxy(registry.host, token_auth=True) as proxy:
        with client(proxy.host, pushed.path, (registry.username, registry.password)) as api:
            api.check_manifest(pushed.digest)
            with pytest.raises(RegistryError, match="no such manifest"):
                api.check_manifest(ABSENT)

        heads = [(r.status, r.refused) for r in proxy.requests if r.method == "HEAD"]
        # Challenged once, then the token serves both questions.
        assert heads == [(401, True), (200, False), (404, False)]
        assert proxy.token_requests == [
            {"scope": [f"repository:{pushed.path}:pull"], "service": ["deployer-test-registry"]}
        ]


def test_the_token_service_refusing_the_credentials_is_an_auth_error(
    registry: TestRegistry, pushed: PushedImage
) -> None:
    with running_proxy(registry.host, token_auth=True) as proxy:
        with client(proxy.host, pushed.path, (registry.username, "not-the-password")) as api:
            with pytest.raises(RegistryAuthError, match="token service refused the credentials"):
                api.check_manifest(pushed.digest)


def test_a_registry_failing_for_a_while_is_asked_again_and_said_once(
    registry: TestRegistry, pushed: PushedImage
) -> None:
    notices = Notices()
    with running_proxy(registry.host) as proxy:
        proxy.fail_manifest_reads(3, status=503)
        with client(proxy.host, pushed.path, (registry.username, registry.password), notices) as api:
            api.check_manifest(pushed.digest)

        statuses = [r.status for r in proxy.requests if MANIFEST.match(r.path)]
    assert statuses[:3] == [503, 503, 503] and statuses[-1] == 200
    assert len(notices.lost) == 1 and "HTTP 503" in notices.lost[0]
    assert len(notices.regained) == 1


def test_a_registry_that_never_heals_fails_with_its_last_answer(registry: TestRegistry, pushed: PushedImage) -> None:
    ticks = iter(range(0, 10_000, 7))  # every look at the clock is 7 s later: the budget runs out quickly
    with running_proxy(registry.host) as proxy:
        proxy.fail_manifest_reads(None, status=502)
        api = RegistryAPI(
            parse_image_reference(f"{proxy.host}/{pushed.path}"),
            (registry.username, registry.password),
            on_lost=lambda text: None,
            on_regained=lambda text: None,
            clock=lambda: float(next(ticks)),
            sleep=lambda seconds: None,
        )
        with api, pytest.raises(RegistryError, match="HTTP 502.*still failing after retrying"):
            api.check_manifest(pushed.digest)


def test_nothing_answering_at_the_registry_is_a_registry_error(pushed: PushedImage) -> None:
    ticks = iter(range(0, 10_000, 7))
    api = RegistryAPI(
        parse_image_reference(f"127.0.0.1:9/{pushed.path}"),
        None,
        on_lost=lambda text: None,
        on_regained=lambda text: None,
        clock=lambda: float(next(ticks)),
        sleep=lambda seconds: None,
    )
    with api, pytest.raises(RegistryError, match="did not answer"):
        api.check_manifest(pushed.digest)


def test_the_registry_holds_the_manifest_it_answers_for(registry: TestRegistry, pushed: PushedImage) -> None:
    # The fixture's digest is the registry's own name for what it stored: the test above cannot pass by luck.
    assert registry.manifest_digest(pushed.path, "staging") == pushed.digest
    try:
        urllib.request.urlopen(registry.url(f"/v2/{pushed.path}/manifests/{pushed.digest}"), timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 401  # anonymous: the htpasswd registry asks for credentials
