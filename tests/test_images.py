"""Image references: the distribution grammar (registries with ports, digests), short SHAs, GHCR names."""

from __future__ import annotations

import pytest

from deployer.errors import ImageReferenceError, RevisionError
from deployer.images import (
    ImageReference,
    default_repository,
    image_for_commit,
    parse_image_reference,
    registry_host,
    repository_and_tag,
    short_sha,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ImageReference(None, "nginx")),
        ("nginx:1.27", ImageReference(None, "nginx", tag="1.27")),
        ("library/nginx:latest", ImageReference(None, "library/nginx", tag="latest")),
        ("localhost/a", ImageReference("localhost", "a")),
        ("localhost:5000/a/b:tag", ImageReference("localhost:5000", "a/b", tag="tag")),
        ("127.0.0.1:5000/x/y:z", ImageReference("127.0.0.1:5000", "x/y", tag="z")),
        ("ghcr.io/acme/web@" + DIGEST_A, ImageReference("ghcr.io", "acme/web", digest=DIGEST_A)),
        ("ghcr.io/acme/web:v1@" + DIGEST_B, ImageReference("ghcr.io", "acme/web", tag="v1", digest=DIGEST_B)),
        ("[::1]:5000/a:b", ImageReference("[::1]:5000", "a", tag="b")),
        ("localhost:65535/a", ImageReference("localhost:65535", "a")),
        ("ghcr.io/acme/" + "w" * 242, ImageReference("ghcr.io", "acme/" + "w" * 242)),
        (
            "registry.example.com/team/app-name_x.y:1.0-rc.1",
            ImageReference("registry.example.com", "team/app-name_x.y", tag="1.0-rc.1"),
        ),
        # Without a dot, colon or "localhost" the first component is a path, as docker reads it.
        ("acme/web:abc1234", ImageReference(None, "acme/web", tag="abc1234")),
    ],
)
def test_parse_splits_registry_path_tag_and_digest(text: str, expected: ImageReference) -> None:
    parsed = parse_image_reference(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ghcr.io/Acme/web:1", "must be lowercase"),
        ("Acme/web", "must be lowercase"),
        ("", "empty"),
        (" nginx", "white space"),
        ("nginx:b!d", "tag 'b!d'"),
        ("nginx:" + "x" * 129, "128 at most"),
        ("nginx:-leading-dash", "tag '-leading-dash'"),
        ("nginx@sha256:xyz", "digest 'sha256:xyz'"),
        ("nginx@md5", "digest 'md5'"),
        ("ghcr.io/:tag", "repository path is empty"),
        ("ghcr.io/acme//web", "path component ''"),
        ("ghcr.io/acme/we..b", "path component 'we..b'"),
        ("bad_host.io:port/x", "registry 'bad_host.io:port'"),
        # A port is 1-65535: the engine would try to push to 127.0.0.1:99999 and fail only then.
        ("127.0.0.1:99999/acme/web:v1", "port 99999, outside 1-65535"),
        ("localhost:0/acme/web", "port 0, outside 1-65535"),
        ("[::1]:70000/a", "port 70000, outside 1-65535"),
        # The distribution grammar's limit on the whole name, registry included.
        ("ghcr.io/acme/" + "w" * 243, "longer than 255 characters"),
    ],
)
def test_parse_rejects_invalid_reference_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_image_reference(text)
    assert message in str(caught.value)
    assert repr(text) in str(caught.value)
    assert caught.value.exit_code == 2


def test_tag_with_non_ascii_letters_is_rejected() -> None:
    # Docker's tag grammar is [A-Za-z0-9_][A-Za-z0-9_.-]*: a registry refuses anything else.
    with pytest.raises(ImageReferenceError, match="tag"):
        parse_image_reference("nginx:über")


def test_with_tag_drops_digest_and_with_digest_drops_tag() -> None:
    reference = parse_image_reference("ghcr.io/acme/web:v1@" + DIGEST_A)
    assert str(reference.with_tag("v2")) == "ghcr.io/acme/web:v2"
    assert str(reference.with_digest(DIGEST_B)) == "ghcr.io/acme/web@" + DIGEST_B
    assert reference.repository == "ghcr.io/acme/web"


@pytest.mark.parametrize(
    ("sha", "length", "expected"),
    [
        ("0123456789abcdef0123456789abcdef01234567", 7, "0123456"),
        ("0123456789ABCDEF0123456789ABCDEF01234567", 7, "0123456"),
        ("0123456789abcdef0123456789abcdef01234567", 12, "0123456789ab"),
        ("0123456789abcdef0123456789abcdef01234567", 40, "0123456789abcdef0123456789abcdef01234567"),
        ("  0123456789abcdef0123456789abcdef01234567\n", 4, "0123"),
    ],
)
def test_short_sha_takes_the_first_characters_lowercased(sha: str, length: int, expected: str) -> None:
    assert short_sha(sha, length) == expected


@pytest.mark.parametrize(
    ("sha", "length", "message"),
    [
        ("not-a-sha", 7, "not a hexadecimal"),
        ("abc12", 7, "not a hexadecimal"),
        ("", 7, "not a hexadecimal"),
        ("0123456789abcdef0123456789abcdef01234567", 3, "outside 4..40"),
        ("0123456789abcdef0123456789abcdef01234567", 41, "outside 4..40"),
    ],
)
def test_short_sha_rejects_what_is_not_a_commit(sha: str, length: int, message: str) -> None:
    with pytest.raises(RevisionError, match=message):
        short_sha(sha, length)


@pytest.mark.parametrize(
    ("registry", "owner", "name", "expected"),
    [
        ("ghcr.io", "acme", "web", "ghcr.io/acme/web"),
        ("ghcr.io", "Acme-Corp", "Web", "ghcr.io/acme-corp/web"),
        ("ghcr.io/", "ACME", "web", "ghcr.io/acme/web"),
        ("127.0.0.1:5000", "Someone", "hello-app", "127.0.0.1:5000/someone/hello-app"),
    ],
)
def test_default_repository_lowercases_owner_as_ghcr_demands(
    registry: str, owner: str, name: str, expected: str
) -> None:
    assert default_repository(registry, owner, name) == expected
    # The result must itself be a valid reference: GHCR refuses uppercase owners.
    assert parse_image_reference(expected).repository == expected


def test_image_for_commit_validates_the_result() -> None:
    assert str(image_for_commit("ghcr.io/acme/web", "abc1234")) == "ghcr.io/acme/web:abc1234"
    with pytest.raises(ImageReferenceError):
        image_for_commit("ghcr.io/acme/web", "bad tag")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ghcr.io/acme/app:abc1234", ("ghcr.io/acme/app", "abc1234")),
        ("127.0.0.1:5000/acme/app:latest", ("127.0.0.1:5000/acme/app", "latest")),
        ("app:1", ("app", "1")),
    ],
)
def test_repository_and_tag_splits_what_docker_pushes(reference: str, expected: tuple[str, str]) -> None:
    assert repository_and_tag(reference) == expected


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("127.0.0.1:5000/acme/app", "no tag"),
        ("ghcr.io/acme/app:", "no tag"),
        ("ghcr.io/acme/app@sha256:" + "0" * 64, "digest reference"),
        ("ghcr.io/Acme/app:1", "lowercase"),
    ],
)
def test_repository_and_tag_refuses_what_cannot_be_pushed(reference: str, problem: str) -> None:
    with pytest.raises(ImageReferenceError, match=problem):
        repository_and_tag(reference)


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("ghcr.io/acme/app:1", "ghcr.io"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
        ("localhost/app:1", "localhost"),
        ("acme/app:1", "docker.io"),
        ("app:1", "docker.io"),
    ],
)
def test_registry_host_names_the_host_docker_would_use(reference: str, registry: str) -> None:
    assert registry_host(reference) == registry
