"""Image references: parsing, formatting and the tag deployer gives a commit.

Pure: no I/O. Follows the grammar of the distribution reference (the one `docker` and the kubelet use):
``[registry[:port]/]path[:tag][@algorithm:hex]``, where the first component is a registry only when it
contains a dot or a colon or is ``localhost``; a port is 1-65535 and the name (registry and path) at most
255 characters, as a registry accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from deployer.errors import ImageReferenceError, RevisionError

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_REGISTRY = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}")
_HEX = re.compile(r"[0-9a-f]+")
# The digest algorithms the OCI image specification registers, with the length of their lowercase hex.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_PORT = re.compile(r":([0-9]+)\Z")
# The distribution grammar's limit on a repository name, registry included.
NAME_MAX_LENGTH = 255
# Where docker sends a reference that names no registry (``nginx``, ``acme/web``).
DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference. ``registry`` is None for Docker Hub short names (``nginx:1.27``)."""

    registry: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The reference without tag or digest: ``ghcr.io/acme/web``."""
        return f"{self.registry}/{self.path}" if self.registry else self.path

    def with_tag(self, tag: str) -> ImageReference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageReference:
        """Pinned to an immutable digest; the tag is dropped because a digest alone is what is pulled."""
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_image_reference(reference: str) -> ImageReference:
    """Parse ``reference``; raises ImageReferenceError naming what is wrong."""
    if not reference or reference != reference.strip():
        raise ImageReferenceError(reference, "empty or surrounded by white space")
    rest, digest = reference, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ImageReferenceError(reference, f"digest {digest!r} is not of the form sha256:<hex>")
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageReferenceError(reference, f"tag {tag!r} may hold only letters, digits, _ . - (128 at most)")
    registry = None
    first, sep, remainder = rest.partition("/")
    if sep and _names_registry(first):
        problem = registry_problem(first)
        if problem:
            raise ImageReferenceError(reference, problem)
        registry, rest = first, remainder
    if not rest:
        raise ImageReferenceError(reference, "the repository path is empty")
    if len(rest) + (len(registry) + 1 if registry else 0) > NAME_MAX_LENGTH:
        raise ImageReferenceError(reference, f"the repository name is longer than {NAME_MAX_LENGTH} characters")
    for component in rest.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            problem = (
                "repository name must be lowercase"
                if _PATH_COMPONENT.fullmatch(component.lower())
                else f"path component {component!r} may hold only a-z, 0-9 and single separators . _ -"
            )
            raise ImageReferenceError(reference, problem)
    return ImageReference(registry=registry, path=rest, tag=tag, digest=digest)


def digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not a manifest digest a registry would serve (``sha256:`` and 64 lowercase hex
    digits, or ``sha512:`` and 128), or None."""
    algorithm, sep, hex_digits = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if not sep or length is None or len(hex_digits) != length or not _HEX.fullmatch(hex_digits):
        return f"{digest!r} is not a digest: expected sha256: followed by 64 lowercase hexadecimal digits"
    return None


def repository_and_tag(reference: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``): what docker pushes. Refuses, with an
    ImageReferenceError, a digest reference and one without a tag, as neither can be pushed."""
    if "@" in reference:
        raise ImageReferenceError(reference, "a digest reference cannot be pushed; give a tag")
    parsed = None if reference.endswith(":") else parse_image_reference(reference)
    if parsed is None or parsed.tag is None:
        raise ImageReferenceError(reference, "no tag (expected registry/name:tag)")
    return parsed.repository, parsed.tag


def registry_host(reference: str) -> str:
    """The registry docker sends ``reference`` to: its first component when that names a registry, else
    Docker Hub. Does not validate: it names the registry in messages about a refused push."""
    first, _, rest = reference.partition("/")
    return first if rest and _names_registry(first) else DOCKER_HUB


def _names_registry(component: str) -> bool:
    """Whether the first component of a reference is a registry (the distribution grammar's rule)."""
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def registry_problem(registry: str) -> str | None:
    """Why ``registry`` is not a ``host[:port]`` an image can be pushed to, or None."""
    if not _REGISTRY.fullmatch(registry):
        return f"registry {registry!r} is not a valid host[:port]"
    port = _PORT.search(registry)
    if port and not 1 <= int(port.group(1)) <= 65535:
        return f"registry {registry!r} has port {port.group(1)}, outside 1-65535"
    return None


def short_sha(sha: str, length: int) -> str:
    """The first ``length`` characters of a commit SHA: the tag of the origin pipeline (7 by default)."""
    sha = sha.strip().lower()
    if not _HEX.fullmatch(sha) or len(sha) < 7:
        raise RevisionError(f"commit SHA {sha!r} is not a hexadecimal git object name")
    if not 4 <= length <= 40:
        raise RevisionError(f"a SHA length of {length} is outside 4..40")
    return sha[:length]


def default_repository(registry: str, owner: str, name: str) -> str:
    """``<registry>/<owner>/<name>``, lowercased as GHCR demands for owners like ``Acme``."""
    return f"{registry.rstrip('/')}/{owner.lower()}/{name.lower()}"


def image_for_commit(repository: str, tag: str) -> ImageReference:
    """The reference deployer pushes and deploys: ``repository:tag``, validated."""
    return parse_image_reference(f"{repository}:{tag}")
