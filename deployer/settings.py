"""The settings of one run, and what follows from them: the image reference, the change-cause.

Pure: the CLI fills ``RunSettings`` from flags and DEPLOYER_* variables; the functions here check them
(``check_run_settings``: every name and reference a flag gives, before anything remote happens) and derive
values from settings and from facts the workspace gathered. Secrets are fields like any other but
never appear in ``repr`` (a traceback or a debug print must not leak them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from deployer import commits, images, names
from deployer.errors import ImageReferenceError, OptionError, RevisionError
from deployer.images import ImageReference

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
# The longest duration a flag takes unless it says otherwise: a typo such as 99999999h must be an error at
# once, not an overflow once the rollout is half applied. 0 is always accepted (what it means is the flag's).
MAX_DURATION_SECONDS = 24 * 3600.0
# --kubeconfig-expiry: DigitalOcean's own default token lifetime; a longer-lived token only adds risk.
MAX_KUBECONFIG_EXPIRY_SECONDS = 7 * 24 * 3600.0
# The deploy lock's lease: renewed every third of it; shorter would renew too often to be safe on a slow link.
MIN_LOCK_LEASE_SECONDS = 3.0


def parse_duration(text: str, flag: str, maximum: float = MAX_DURATION_SECONDS) -> float:
    """Seconds in ``text``: ``600``, ``90s``, ``10m``, ``1h30m``, ``1.5s``, as kubectl reads durations; at most
    ``maximum`` seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return _at_most(float(text), text, flag, maximum)
    position, total = 0, 0.0
    unit_seconds = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * unit_seconds[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise OptionError(flag, f"{text!r} is not a duration: use e.g. 600, 90s, 10m or 1h30m")
    return _at_most(total, text, flag, maximum)


def _at_most(seconds: float, text: str, flag: str, maximum: float) -> float:
    if seconds > maximum:
        raise OptionError(flag, f"{text!r} is longer than the maximum of {format_duration(maximum)}")
    return seconds


def format_duration(seconds: float) -> str:
    """How every message prints a duration, in the form parse_duration reads: ``1.9s``, ``45s``, ``2m5s``,
    ``1h30m``; a tenth of a second below a minute, whole seconds above."""
    if seconds < 59.95:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, whole_seconds = divmod(rest, 60)
    parts = ((hours, "h"), (minutes, "m"), (whole_seconds, "s"))
    return "".join(f"{value}{unit}" for value, unit in parts if value)


def parse_key_values(pairs: Sequence[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs (for --build-arg and --image-ref); the value may contain '='."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(flag, f"{pair!r} is not of the form KEY=VALUE")
        parsed[key.strip()] = value
    return parsed


@dataclass(frozen=True)
class ImageSettings:
    registry: str = "ghcr.io"
    repository: str | None = None  # --image: overrides <registry>/<owner>/<name>
    name: str | None = None  # --image-name: overrides the repository name part
    tag: str | None = None
    sha_length: int = 7
    build_context: str = "."
    dockerfile: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    extra_tags: Sequence[str] = ()
    build: bool = True
    reuse_existing: bool = False
    pin_digest: bool = False
    digest: str | None = None  # --digest: deploy <repository>@<digest>, an image pushed by an earlier run
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    docker_cli: str | None = None


@dataclass(frozen=True)
class ClusterSettings:
    cluster: str | None = None
    digitalocean_token: str | None = field(default=None, repr=False)
    digitalocean_api_url: str = "https://api.digitalocean.com"
    kubeconfig: str | None = None
    kubeconfig_data: str | None = field(default=None, repr=False)
    kube_context: str | None = None
    kubeconfig_expiry: int | None = None

    @property
    def given(self) -> bool:
        return bool(self.cluster or self.kubeconfig or self.kubeconfig_data)


@dataclass(frozen=True)
class RolloutSettings:
    timeout: float = 600.0
    rollback_timeout: float = 300.0
    rollback: bool = True
    tolerate_failures_for: float = 0.0
    create_namespace: bool = True
    force_conflicts: bool = True
    delete_created_on_failure: bool = False
    lock_timeout: float = 300.0
    lock_lease: float = 60.0
    strategy: str = "rolling"  # or "canary" (deployer/canaries.py)
    canary_replicas: int = 1
    canary_hold: float = 60.0
    canary_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PruneSettings:
    """--prune: delete what the manifests no longer hold, tracked as an ApplySet; deployer.applysets checks
    these (it reads manifests, which ``deployer --help`` must not load)."""

    enabled: bool = False
    allow: frozenset[str] = frozenset()  # --prune-allow: kinds that hold data, pruned only when named (any case)
    applyset: str | None = None  # --applyset NAME; default applysets.default_name of the repository


@dataclass(frozen=True)
class GitHubSettings:
    token: str | None = field(default=None, repr=False)
    environment: str | None = None
    environment_url: str | None = None
    api_url: str = "https://api.github.com"
    comment_on_pr: bool = False  # a dry run on a pull_request event keeps its diff in a PR comment


@dataclass(frozen=True)
class RunSettings:
    manifests: Sequence[str] = ()
    kustomize: str | None = None  # -k DIR: the manifests `kubectl kustomize DIR` builds
    namespace: str | None = None
    placeholder: str = "<IMAGE>"
    image_refs: Mapping[str, str] = field(default_factory=dict)  # --image-ref NAME=REFERENCE
    image: ImageSettings = field(default_factory=ImageSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    github: GitHubSettings = field(default_factory=GitHubSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    dry_run: bool = False
    render_only: bool = False
    output_dir: str | None = None
    output_format: str = "text"


def _reference_problem(reference: str) -> str | None:
    try:
        images.parse_image_reference(reference)
    except ImageReferenceError as e:
        return e.problem
    return None


def check_image_settings(image: ImageSettings) -> None:
    """Raise OptionError, naming the flag, for a registry, repository, name or tag no registry would take."""
    registry = None if image.repository else image.registry  # --image names the registry itself
    checks: list[tuple[str, str | None, str]] = [
        ("--image", image.repository, image.repository or ""),
        ("--registry", registry, images.default_repository(image.registry, "owner", "name")),
        ("--image-name", image.name, images.default_repository("ghcr.io", "owner", image.name or "name")),
        ("--tag", image.tag, f"example/name:{image.tag}"),
        *(("--extra-tag", tag, f"example/name:{tag}") for tag in image.extra_tags),
    ]
    for flag, given, reference in checks:
        problem = _reference_problem(reference) if given else None
        if problem:
            raise OptionError(flag, f"{given!r}: {problem}")
    if image.digest is not None:
        _check_digest_settings(image)


def _check_digest_settings(image: ImageSettings) -> None:
    """--digest deploys what the registry holds already: it cannot come with a build or a second digest."""
    problem = images.digest_problem(image.digest or "")
    if problem:
        raise OptionError("--digest", problem)
    if image.build:
        raise OptionError("--digest", "deploys an image already in the registry, so nothing is built: add --no-build")
    if image.pin_digest:
        raise OptionError("--digest", "already names the digest to deploy: drop --pin-digest")


def check_run_settings(settings: RunSettings) -> None:
    """Raise OptionError, naming the flag, for a value the run would fail on only after building and pushing:
    an empty placeholder, a namespace the API server refuses, an image reference that does not parse."""
    if not settings.placeholder.strip():
        raise OptionError("--placeholder", "must not be empty: it is the text the image reference replaces")
    if settings.namespace:
        problem = names.dns1123_label_problem(settings.namespace)
        if problem:
            raise OptionError("--namespace", f"{problem} (the rule for namespaces)")
    for name, reference in settings.image_refs.items():
        problem = _reference_problem(reference)
        if problem:
            raise OptionError("--image-ref", f"{name}={reference!r}: {problem}")
    check_image_settings(settings.image)


@dataclass(frozen=True)
class ImageTarget:
    """The image a run deploys, and the commit it came from."""

    reference: ImageReference
    commit: commits.Commit | None
    extra_references: tuple[ImageReference, ...] = ()


def resolve_image_target(
    settings: ImageSettings,
    env: Mapping[str, str],
    event: Mapping[str, Any] | None,
    git: commits.GitState,
) -> ImageTarget:
    """``<registry>/<owner>/<name>:<sha7>``, each part overridable, each missing part a clear error."""
    if settings.repository:
        repository = images.parse_image_reference(settings.repository)
        if repository.tag or repository.digest:
            raise OptionError(
                "--image", f"{settings.repository!r} must name a repository without tag or digest; use --tag"
            )
        repository_text = repository.repository
    else:
        repo = commits.choose_repository(env, git)
        repository_text = images.default_repository(settings.registry, repo.owner, settings.name or repo.name)
    if settings.digest:
        return _promoted_target(repository_text, settings.digest, env, event, git)
    commit: commits.Commit | None = None
    if settings.tag:
        tag = settings.tag
    else:
        commit = commits.choose_commit(env, event, git)
        tag = commits.tag_for_commit(images.short_sha(commit.sha, settings.sha_length), commit.dirty)
    reference = images.image_for_commit(repository_text, tag)
    extras = tuple(reference.with_tag(extra) for extra in settings.extra_tags if extra != tag)
    for extra in extras:
        images.parse_image_reference(str(extra))
    return ImageTarget(reference=reference, commit=commit, extra_references=extras)


def _promoted_target(
    repository: str, digest: str, env: Mapping[str, str], event: Mapping[str, Any] | None, git: commits.GitState
) -> ImageTarget:
    """--digest: ``repository@digest``, the bytes an earlier run pushed (a digest cannot move as a tag can).
    The commit only names the deploy in the change-cause, so one that cannot be told is no error here."""
    try:
        commit: commits.Commit | None = commits.choose_commit(env, event, git)
    except RevisionError:
        commit = None
    return ImageTarget(reference=images.parse_image_reference(f"{repository}@{digest}"), commit=commit)


def change_cause(target: ImageTarget, env: Mapping[str, str], run_url: str | None) -> str:
    """What `kubectl rollout history` shows for this deploy: the image, the commit and the run."""
    text = f"deployer: {target.reference}"
    if target.commit is not None:
        text += f" from commit {target.commit.sha[:12]}"
    if run_url:
        text += f" ({run_url})"
    elif env.get("USER"):
        text += f" by {env['USER']}"
    return text


def check_api_url(api_url: str, *, flag: str, secret: str) -> str:
    """An API base URL without its trailing slash; refuses one that would carry ``secret`` (e.g. "the GitHub
    token") in clear text to another host than this one (plain http is for local tests and proxies)."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(flag, f"{api_url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise OptionError(flag, f"refusing to send {secret} over plain http to {parts.hostname}; use https")
    return api_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
