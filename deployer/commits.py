"""Which commit and which repository a run deploys, decided from what the workspace tells.

Pure: the caller (deployer.workspace) reads the environment, the event payload and git; this module
only chooses, so that every source and its precedence is visible in one place and tested as a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployer.errors import RevisionError

PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_GITHUB_REMOTE = re.compile(r"(?:github\.com[:/])(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class Commit:
    """The commit a run deploys. ``dirty`` means local changes are not in it; ``source`` says where it came from."""

    sha: str
    dirty: bool
    source: str


@dataclass(frozen=True)
class Repository:
    owner: str
    name: str


@dataclass(frozen=True)
class GitState:
    """What ``git`` says about the work tree; all None outside a repository."""

    head: str | None = None
    dirty: bool = False
    origin_url: str | None = None


def choose_commit(env: Mapping[str, str], event: Mapping[str, Any] | None, git: GitState) -> Commit:
    """The commit to tag the image with.

    On pull_request events GITHUB_SHA is the merge commit GitHub made, which no one can check out later,
    so the PR head from the event payload wins there, as the docker/metadata-action does.
    """
    if env.get("GITHUB_EVENT_NAME") in PULL_REQUEST_EVENTS and event:
        head = _pull_request_head(event, env.get("GITHUB_EVENT_PATH") or "GITHUB_EVENT_PATH")
        if head:
            return Commit(head, dirty=False, source="the pull request head (GITHUB_EVENT_PATH)")
    if env.get("GITHUB_SHA"):
        return Commit(env["GITHUB_SHA"], dirty=False, source="GITHUB_SHA")
    if git.head:
        return Commit(git.head, dirty=git.dirty, source="git rev-parse HEAD")
    raise RevisionError(
        "cannot tell which commit to deploy: GITHUB_SHA is not set and this is not a git work tree; pass --tag"
    )


def pull_request_number(env: Mapping[str, str], event: Mapping[str, Any] | None) -> int | None:
    """The number of the pull request a ``pull_request`` (or ``pull_request_target``) event is about, from its
    payload; None for other events or a payload without one."""
    if env.get("GITHUB_EVENT_NAME") not in PULL_REQUEST_EVENTS or not event:
        return None
    pull_request = event.get("pull_request")
    number = pull_request.get("number") if isinstance(pull_request, Mapping) else event.get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else None


def _pull_request_head(event: Mapping[str, Any], path: str) -> str | None:
    """``pull_request.head.sha`` of an event payload, None when absent. A field that is there but malformed
    is an error naming the file and the field: falling back to another commit would deploy the wrong image."""
    pull_request = event.get("pull_request")
    if pull_request is None:
        return None
    if not isinstance(pull_request, Mapping):
        raise RevisionError(f"{path}: pull_request in the event payload is not an object")
    head = pull_request.get("head")
    if head is None:
        return None
    if not isinstance(head, Mapping):
        raise RevisionError(f"{path}: pull_request.head in the event payload is not an object")
    sha = head.get("sha")
    if sha is None:
        return None
    if not isinstance(sha, str) or not _COMMIT_SHA.fullmatch(sha):
        raise RevisionError(f"{path}: pull_request.head.sha in the event payload is not a commit SHA: {sha!r:.80}")
    return sha


def choose_repository(env: Mapping[str, str], git: GitState) -> Repository:
    """Owner and name of the repository, from GITHUB_REPOSITORY or else a GitHub origin remote."""
    github_repository = env.get("GITHUB_REPOSITORY", "")
    if github_repository:
        owner, sep, name = github_repository.partition("/")
        if sep and owner and name and "/" not in name:
            return Repository(owner, name)
        raise RevisionError(f"GITHUB_REPOSITORY={github_repository!r} is not of the form owner/name")
    if git.origin_url:
        match = _GITHUB_REMOTE.search(git.origin_url)
        if match:
            return Repository(match["owner"], match["name"])
    raise RevisionError(
        "cannot tell the image owner: GITHUB_REPOSITORY is not set and the git remote 'origin' is not on "
        "GitHub; pass --image REPOSITORY"
    )


def tag_for_commit(short: str, dirty: bool) -> str:
    """A dirty work tree's image is not the commit's image, so its tag must say so."""
    return f"{short}-dirty" if dirty else short
