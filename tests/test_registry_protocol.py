"""The pure reading of the registry API (deployer/registry_protocol.py) and the --digest flag's checks, as
tables: challenges, API addresses, token requests, what an answer to a manifest HEAD means."""

from __future__ import annotations

import pytest

from deployer import images
from deployer.commits import GitState
from deployer.errors import OptionError, RegistryAuthError, RegistryError
from deployer.images import parse_image_reference
from deployer.registry_protocol import (
    Challenge,
    judge_manifest_answer,
    manifest_location,
    parse_challenges,
    token_from_answer,
    token_request,
)
from deployer.settings import ImageSettings, check_image_settings, resolve_image_target

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/web:pull"',
            [
                Challenge(
                    "bearer",
                    {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:acme/web:pull"},
                )
            ],
        ),
        ('Basic realm="deployer-ci"', [Challenge("basic", {"realm": "deployer-ci"})]),
        ('BASIC Realm = "a \\"quoted\\" realm"', [Challenge("basic", {"realm": 'a "quoted" realm'})]),
        (
            'Basic realm="x", Bearer realm="https://t/x",service=s',
            [
                Challenge("basic", {"realm": "x"}),
                Challenge("bearer", {"realm": "https://t/x", "service": "s"}),
            ],
        ),
        ("", []),
        ("=nonsense", []),
    ],
)
def test_challenges_are_read_as_the_registry_sends_them(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


@pytest.mark.parametrize(
    ("reference", "base_url", "path"),
    [
        ("ghcr.io/acme/web:1", "https://ghcr.io", "acme/web"),
        ("127.0.0.1:5055/acme/web", "http://127.0.0.1:5055", "acme/web"),
        ("localhost:5000/web", "http://localhost:5000", "web"),
        ("nginx", "https://registry-1.docker.io", "library/nginx"),
        ("docker.io/acme/web", "https://registry-1.docker.io", "acme/web"),
        ("registry.example:8443/a/b/c", "https://registry.example:8443", "a/b/c"),
    ],
)
def test_manifests_are_asked_of_the_registry_api_host(reference: str, base_url: str, path: str) -> None:
    location = manifest_location(parse_image_reference(reference))

    assert (location.base_url, location.path) == (base_url, path)
    assert location.manifest_url(DIGEST) == f"{base_url}/v2/{path}/manifests/{DIGEST}"


def test_a_token_request_asks_for_pull_on_the_repository_unless_the_challenge_names_a_scope() -> None:
    location = manifest_location(parse_image_reference("ghcr.io/acme/web"))

    plain = token_request(
        Challenge("bearer", {"realm": "https://ghcr.io/token", "service": "ghcr.io"}), location, sends_credentials=True
    )
    scoped = token_request(
        Challenge("bearer", {"realm": "https://ghcr.io/token", "scope": "repository:acme/web:pull,push"}),
        location,
        sends_credentials=False,
    )

    assert (plain.url, dict(plain.params)) == (
        "https://ghcr.io/token",
        {"scope": "repository:acme/web:pull", "service": "ghcr.io"},
    )
    assert dict(scoped.params) == {"scope": "repository:acme/web:pull,push"}


def test_credentials_are_never_sent_to_a_plain_http_realm_off_this_machine() -> None:
    location = manifest_location(parse_image_reference("ghcr.io/acme/web"))
    challenge = Challenge("bearer", {"realm": "http://evil.example/token"})

    with pytest.raises(RegistryAuthError, match="plain http"):
        token_request(challenge, location, sends_credentials=True)
    assert token_request(challenge, location, sends_credentials=False).url == "http://evil.example/token"
    with pytest.raises(RegistryError, match="not a URL"):
        token_request(Challenge("bearer", {}), location, sends_credentials=False)


@pytest.mark.parametrize(
    ("answer", "token"),
    [({"token": "t1"}, "t1"), ({"access_token": "t2"}, "t2"), ({"token": ""}, None), ([], None), ({}, None)],
)
def test_the_token_is_read_from_either_field(answer: object, token: str | None) -> None:
    assert token_from_answer(answer) == token


@pytest.mark.parametrize(
    ("status", "content_digest", "error", "message", "retryable"),
    [
        (200, DIGEST, None, "", False),
        (200, None, None, "", False),
        (200, "sha256:" + "cd" * 32, RegistryError, "another manifest", False),
        (404, None, RegistryError, f"acme/web@{DIGEST}: the registry holds no such manifest in acme/web", False),
        (401, None, RegistryAuthError, "refused to show the manifest (HTTP 401)", False),
        (403, None, RegistryAuthError, "HTTP 403", False),
        (503, None, RegistryError, "HTTP 503", True),
        (501, None, RegistryError, "HTTP 501", False),
    ],
)
def test_the_answer_to_a_manifest_head_says_whether_the_repository_holds_it(
    status: int, content_digest: str | None, error: type[Exception] | None, message: str, retryable: bool
) -> None:
    if error is None:
        judge_manifest_answer(status, content_digest, "acme/web", DIGEST)
        return
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        judge_manifest_answer(status, content_digest, "acme/web", DIGEST)
    assert getattr(raised.value, "retryable", False) is retryable


@pytest.mark.parametrize(
    ("digest", "good"),
    [
        (DIGEST, True),
        ("sha512:" + "0f" * 64, True),
        ("sha256:" + "AB" * 32, False),
        ("sha256:" + "ab" * 31, False),
        ("ab" * 32, False),
        ("md5:" + "ab" * 16, False),
        (DIGEST + "\n", False),
        ("", False),
    ],
)
def test_a_digest_is_a_registered_algorithm_and_its_exact_hex(digest: str, good: bool) -> None:
    assert (images.digest_problem(digest) is None) is good


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ImageSettings(build=False, digest="sha256:abc"), "--digest: 'sha256:abc' is not a digest"),
        (ImageSettings(build=True, digest=DIGEST), "--digest: .* add --no-build"),
        (ImageSettings(build=False, pin_digest=True, digest=DIGEST), "--digest: .* drop --pin-digest"),
    ],
)
def test_a_bad_digest_flag_is_an_error_naming_it(settings: ImageSettings, message: str) -> None:
    with pytest.raises(OptionError, match=message) as raised:
        check_image_settings(settings)
    assert raised.value.exit_code == 2


def test_a_digest_deploys_the_repository_pinned_to_it_without_a_tag() -> None:
    settings = ImageSettings(repository="ghcr.io/acme/web", tag="abc1234", build=False, digest=DIGEST)

    target = resolve_image_target(settings, {}, None, GitState())

    assert str(target.reference) == f"ghcr.io/acme/web@{DIGEST}"
