"""GitHub Deployments and pull request comments: the only module that imports PyGithub.

Owns the record a deploy leaves on GitHub: a Deployment for the environment (ref = the commit, payload with
image and digest), its statuses ``in_progress`` (again for a phase worth telling: the canary) then ``success``
/ ``failure`` / ``error`` (with the run's log URL and the environment URL), and ``inactive`` for the
deployment this one replaced; and the one comment a dry run keeps up to date on its pull request (found again
by the hidden marker it starts with).

Must not fail a deploy: every GitHub API failure is retried when it may be transient (HTTP 5xx, connection
errors) and then reported once through the ``warn`` callback as a one-line ``GitHubError`` message (HTTP
status, request id). Nothing here raises to the caller, prints, or puts the token in any message.

Import this module lazily: PyGithub is slow to import and ``deployer --help`` must not pay for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import tenacity
from github import Auth, Github, GithubException
from github.Deployment import Deployment
from github.IssueComment import IssueComment

from deployer.errors import GitHubError

FinalState = Literal["success", "failure", "error"]
Result = TypeVar("Result")

DEFAULT_API_URL = "https://api.github.com"
# GitHub cuts deployment and status descriptions at 140 characters and refuses longer ones on some paths.
DESCRIPTION_LIMIT = 140
# How many recent deployments of the environment to look at when marking the replaced one inactive.
PREVIOUS_DEPLOYMENTS_EXAMINED = 20

_PERMISSION_HINT = "the workflow needs `permissions: deployments: write` (and a token that has it)"
_COMMENT_PERMISSION_HINT = "the workflow needs `permissions: pull-requests: write` (and a token that has it)"


def _short(description: str) -> str:
    text = " ".join(description.split())
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, GithubException):
        return error.status >= 500 or error.status == 429
    # requests' ConnectionError and Timeout are OSErrors: the network, not the request, failed.
    return isinstance(error, OSError)


def _as_github_error(action: str, error: Exception, permission_hint: str = _PERMISSION_HINT) -> GitHubError:
    """Turn a PyGithub or transport exception into our one-line error, without the token or the body."""
    if isinstance(error, GithubException):
        headers = {key.lower(): value for key, value in (error.headers or {}).items()}
        data = error.data if isinstance(error.data, dict) else {}
        reason = str(data.get("message") or error.message or "no message")
        hint = f"; {permission_hint}" if error.status in (403, 404) else ""
        return GitHubError(
            f"{action} failed: {reason}{hint}",
            status=error.status,
            request_id=headers.get("x-github-request-id"),
            retryable=_is_transient(error),
        )
    return GitHubError(f"{action} failed: {type(error).__name__}: {error}", retryable=_is_transient(error))


class _GitHubWriter:
    """What the GitHub records share: a client for ``repository``, and calls that retry transient failures
    and then warn once instead of raising.

    ``warn`` receives one line per GitHub failure (after retries); ``sleep`` is what the retries wait with,
    so tests can pass a recorder instead of waiting. ``seconds_between_writes`` is PyGithub's pause between
    mutating requests, which GitHub asks for to stay clear of its secondary rate limits.
    """

    # What a failure's warning starts with, and the permission it names on 403 and 404.
    failure_prefix = "GitHub deployment not recorded"
    permission_hint = _PERMISSION_HINT

    def __init__(
        self,
        *,
        token: str,
        repository: str,
        api_url: str = DEFAULT_API_URL,
        warn: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 3,
        timeout: int = 15,
        seconds_between_writes: float = 1.0,
    ) -> None:
        self._repository_name = repository
        self._warn = warn
        self._sleep = sleep
        self._attempts = attempts
        # retry=None: PyGithub's own urllib3 retries would multiply ours and hide the attempts from tests.
        self._github = Github(
            auth=Auth.Token(token),
            base_url=api_url.rstrip("/"),
            timeout=timeout,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=seconds_between_writes or None,
        )
        self.failures: list[GitHubError] = []

    def _call(self, action: str, operation: Callable[[], Result]) -> Result | None:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_exponential(multiplier=1, min=1, max=8),
            retry=tenacity.retry_if_exception(_is_transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(operation)
        except (GithubException, OSError, ValueError, KeyError, TypeError) as e:
            # ValueError/KeyError/TypeError: a malformed answer PyGithub could not read; still not our failure.
            error = _as_github_error(action, e, self.permission_hint)
            self.failures.append(error)
            self._warn(f"{self.failure_prefix}: {error}")
            return None


class DeploymentReporter(_GitHubWriter):
    """Records one deploy as a GitHub Deployment; ``start`` then ``finish``, both never raise (see
    _GitHubWriter for the arguments)."""

    _environment: str | None = None
    _deployment: Deployment | None = None

    def _post_status(
        self,
        deployment: Deployment,
        state: str,
        *,
        description: str,
        log_url: str | None,
        environment_url: str | None = None,
    ) -> bool:
        parameters: dict[str, Any] = {"state": state, "description": _short(description)}
        if self._environment is not None:
            parameters["environment"] = self._environment
        if log_url:
            # log_url replaces target_url; PyGithub's create_status predates it, so post it directly.
            parameters["log_url"] = log_url
        if environment_url:
            parameters["environment_url"] = environment_url
        url = f"{deployment.url}/statuses"

        def post() -> bool:
            self._github.requester.requestJsonAndCheck("POST", url, input=parameters)
            return True

        return self._call(f"setting deployment {deployment.id} to {state}", post) is True

    def start(
        self,
        *,
        environment: str,
        ref: str,
        payload: Mapping[str, Any],
        description: str,
        log_url: str | None = None,
    ) -> None:
        """Create the deployment of ``ref`` to ``environment`` and mark it in progress."""
        self._environment = environment
        repository = self._call(
            f"reading repository {self._repository_name}", lambda: self._github.get_repo(self._repository_name)
        )
        if repository is None:
            return
        deployment = self._call(
            f"creating a deployment of {ref} to {environment}",
            lambda: repository.create_deployment(
                ref,
                task="deploy",
                # auto_merge would merge the default branch into ref; required_contexts=[] because the
                # workflow running this deploy is itself a pending check of the commit.
                auto_merge=False,
                required_contexts=[],
                payload=dict(payload),
                environment=environment,
                description=_short(description),
            ),
        )
        if deployment is None:
            return
        self._deployment = deployment
        self._post_status(deployment, "in_progress", description=description, log_url=log_url)

    def progress(self, *, description: str, log_url: str | None) -> None:
        """Another ``in_progress`` status, saying what the deploy is doing now (e.g. holding a canary)."""
        if self._deployment is not None:
            self._post_status(self._deployment, "in_progress", description=description, log_url=log_url)

    def finish(
        self,
        *,
        state: FinalState,
        log_url: str | None,
        environment_url: str | None = None,
        description: str,
    ) -> None:
        """Set the final state; after a success, the deployment it replaced becomes inactive."""
        deployment = self._deployment
        if deployment is None:
            return  # start() already warned why there is no deployment
        posted = self._post_status(
            deployment, state, description=description, log_url=log_url, environment_url=environment_url
        )
        if posted and state == "success":
            self._mark_replaced_inactive(deployment)

    def _mark_replaced_inactive(self, current: Deployment) -> None:
        # GitHub's auto_inactive skips production environments, so the replaced deployment is marked here.
        # After a failed deploy nothing is marked: the rollback left the previous deployment running.
        environment = self._environment or ""
        repository_name = self._repository_name

        def active_predecessors() -> list[Deployment]:
            repository = self._github.get_repo(repository_name, lazy=True)
            found = []
            for index, candidate in enumerate(repository.get_deployments(environment=environment)):
                if index >= PREVIOUS_DEPLOYMENTS_EXAMINED:
                    break
                if candidate.id == current.id or candidate.id > current.id:
                    continue
                latest = next(iter(candidate.get_statuses()), None)
                if latest is not None and latest.state == "success":
                    found.append(candidate)
            return found

        replaced = self._call(f"listing earlier deployments to {environment}", active_predecessors)
        for previous in replaced or []:
            self._post_status(
                previous,
                "inactive",
                description=f"replaced by deployment {current.id}",
                log_url=None,
            )


class PullRequestComment(_GitHubWriter):
    """The one comment deployer keeps on a pull request, found again by the hidden ``marker`` its body starts
    with; ``publish`` never raises (see _GitHubWriter for the arguments)."""

    failure_prefix = "pull request comment not written"
    permission_hint = _COMMENT_PERMISSION_HINT

    def publish(self, number: int, marker: str, body: str) -> str | None:
        """Edit the pull request's comment that starts with ``marker`` to ``body``, or create it; the
        comment's URL, or None when GitHub refused (warned). Requests: the pages of the pull request's
        comments (30 each), then one PATCH or POST."""
        # Lazy: a pull request's comments are its issue's, and neither object needs a GET of its own.
        issue = self._github.get_repo(self._repository_name, lazy=True).get_issue(number)

        def find() -> IssueComment | None:
            return next((c for c in issue.get_comments() if (c.body or "").startswith(marker)), None)

        existing = self._call(f"reading the comments of pull request #{number}", find)
        if self.failures:
            return None
        if existing is not None:
            self._call(f"editing comment {existing.id} of pull request #{number}", lambda: existing.edit(body))
            return None if self.failures else str(existing.html_url)
        created = self._call(f"commenting on pull request #{number}", lambda: issue.create_comment(body))
        return str(created.html_url) if created is not None else None
