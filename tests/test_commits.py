"""Which commit and repository a run deploys: every source and its precedence, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.commits import GitState, Repository, choose_commit, choose_repository, tag_for_commit
from deployer.errors import RevisionError

PR_HEAD = "1111111111111111111111111111111111111111"
MERGE_SHA = "2222222222222222222222222222222222222222"
LOCAL_HEAD = "3333333333333333333333333333333333333333"
PR_EVENT = {"pull_request": {"head": {"sha": PR_HEAD}}}
NO_GIT = GitState()
CLEAN_GIT = GitState(head=LOCAL_HEAD, dirty=False)
DIRTY_GIT = GitState(head=LOCAL_HEAD, dirty=True)


@pytest.mark.parametrize(
    ("env", "event", "git", "expected_sha", "expected_dirty", "source_mentions"),
    [
        # On pull requests GITHUB_SHA is a merge commit no one can check out: the PR head wins.
        ({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_SHA": MERGE_SHA}, PR_EVENT, NO_GIT, PR_HEAD, False, "pull"),
        (
            {"GITHUB_EVENT_NAME": "pull_request_target", "GITHUB_SHA": MERGE_SHA},
            PR_EVENT,
            CLEAN_GIT,
            PR_HEAD,
            False,
            "pull",
        ),
        ({"GITHUB_EVENT_NAME": "push", "GITHUB_SHA": MERGE_SHA}, PR_EVENT, DIRTY_GIT, MERGE_SHA, False, "GITHUB_SHA"),
        ({"GITHUB_SHA": MERGE_SHA}, None, DIRTY_GIT, MERGE_SHA, False, "GITHUB_SHA"),
        # A pull_request event whose payload lacks the head falls back to GITHUB_SHA.
        ({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_SHA": MERGE_SHA}, {}, NO_GIT, MERGE_SHA, False, "GITHUB_SHA"),
        ({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_SHA": MERGE_SHA}, None, NO_GIT, MERGE_SHA, False, "GITHUB_SHA"),
        ({}, None, CLEAN_GIT, LOCAL_HEAD, False, "git"),
        ({}, None, DIRTY_GIT, LOCAL_HEAD, True, "git"),
        ({"GITHUB_SHA": ""}, None, DIRTY_GIT, LOCAL_HEAD, True, "git"),
    ],
)
def test_choose_commit_follows_event_then_github_sha_then_git(
    env: dict[str, str],
    event: dict[str, Any] | None,
    git: GitState,
    expected_sha: str,
    expected_dirty: bool,
    source_mentions: str,
) -> None:
    commit = choose_commit(env, event, git)
    assert (commit.sha, commit.dirty) == (expected_sha, expected_dirty)
    assert source_mentions in commit.source


@pytest.mark.parametrize("env", [{}, {"GITHUB_EVENT_NAME": "push"}, {"GITHUB_SHA": ""}])
def test_choose_commit_without_any_source_is_a_revision_error_suggesting_tag(env: dict[str, str]) -> None:
    with pytest.raises(RevisionError, match="--tag") as caught:
        choose_commit(env, None, NO_GIT)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"pull_request": "12"}, "pull_request in the event payload is not an object"),
        ({"pull_request": {"head": ["sha"]}}, "pull_request.head in the event payload is not an object"),
        ({"pull_request": {"head": {"sha": 12}}}, "pull_request.head.sha in the event payload is not a commit SHA"),
        ({"pull_request": {"head": {"sha": "main"}}}, "pull_request.head.sha in the event payload is not a commit SHA"),
    ],
)
def test_a_malformed_pull_request_in_the_event_is_an_error_naming_the_file_and_field(
    event: dict[str, Any], field: str
) -> None:
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_SHA": MERGE_SHA, "GITHUB_EVENT_PATH": "/runner/event.json"}
    with pytest.raises(RevisionError) as caught:
        choose_commit(env, event, NO_GIT)
    assert str(caught.value).startswith(f"/runner/event.json: {field}")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("short", "dirty", "tag"), [("abc1234", False, "abc1234"), ("abc1234", True, "abc1234-dirty")])
def test_dirty_work_tree_gets_a_dirty_tag(short: str, dirty: bool, tag: str) -> None:
    assert tag_for_commit(short, dirty) == tag


@pytest.mark.parametrize(
    ("env", "origin", "expected"),
    [
        ({"GITHUB_REPOSITORY": "Acme/Web"}, None, Repository("Acme", "Web")),
        ({"GITHUB_REPOSITORY": "acme/web"}, "git@github.com:other/thing.git", Repository("acme", "web")),
        ({}, "git@github.com:Acme/hello-app.git", Repository("Acme", "hello-app")),
        ({}, "git@github.com:acme/hello-app", Repository("acme", "hello-app")),
        ({}, "ssh://git@github.com/acme/hello-app.git", Repository("acme", "hello-app")),
        ({}, "https://github.com/acme/hello-app.git", Repository("acme", "hello-app")),
        ({}, "https://github.com/acme/hello-app", Repository("acme", "hello-app")),
        ({}, "https://github.com/acme/hello-app/", Repository("acme", "hello-app")),
        ({}, "https://x-access-token:secret@github.com/acme/hello.app.git", Repository("acme", "hello.app")),
    ],
)
def test_choose_repository_from_github_repository_or_github_origin(
    env: dict[str, str], origin: str | None, expected: Repository
) -> None:
    assert choose_repository(env, GitState(head=LOCAL_HEAD, origin_url=origin)) == expected


@pytest.mark.parametrize(
    ("env", "origin", "message"),
    [
        ({}, None, "pass --image"),
        ({}, "https://gitlab.com/acme/web.git", "pass --image"),
        ({}, "/srv/git/web.git", "pass --image"),
        ({"GITHUB_REPOSITORY": "no-slash"}, None, "'no-slash' is not of the form owner/name"),
        ({"GITHUB_REPOSITORY": "/web"}, None, "not of the form owner/name"),
        # Three parts would push to ghcr.io/a/b/c, a repository nobody asked for.
        ({"GITHUB_REPOSITORY": "a/b/c"}, None, "GITHUB_REPOSITORY='a/b/c' is not of the form owner/name"),
    ],
)
def test_choose_repository_without_a_github_source_is_a_revision_error(
    env: dict[str, str], origin: str | None, message: str
) -> None:
    with pytest.raises(RevisionError, match=message):
        choose_repository(env, GitState(origin_url=origin))
