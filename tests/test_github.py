"""GitHub Deployments reporting against a fake of GitHub's REST API on 127.0.0.1 (tests/fakes/github_api.py)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from deployer.github import DESCRIPTION_LIMIT, DeploymentReporter, PullRequestComment
from tests.fakes.github_api import FakeGitHubAPI

SHA = "0123456789abcdef0123456789abcdef01234567"
LOG_URL = "https://github.com/acme/hello-app/actions/runs/77"
PAYLOAD = {"image": "ghcr.io/acme/hello-app:0123456", "digest": "sha256:" + "ab" * 32}


@pytest.fixture
def fake() -> Iterator[FakeGitHubAPI]:
    with FakeGitHubAPI() as api:
        yield api
        assert api.validation_problems == [], "the fake saw traffic outside GitHub's OpenAPI description"


class Recorder:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.sleeps: list[float] = []

    def reporter(self, fake: FakeGitHubAPI, *, token: str | None = None, url: str | None = None) -> DeploymentReporter:
        return DeploymentReporter(
            token=token or fake.token,
            repository=fake.repository,
            api_url=url or fake.url,
            warn=self.warnings.append,
            sleep=self.sleeps.append,
            seconds_between_writes=0,
        )


def deploy(reporter: DeploymentReporter, state: str = "success", environment_url: str | None = None) -> None:
    reporter.start(environment="production", ref=SHA, payload=PAYLOAD, description="deploying 0123456", log_url=LOG_URL)
    reporter.finish(
        state=state,
        log_url=LOG_URL,
        environment_url=environment_url,  # type: ignore[arg-type]
        description=f"deploy {state}",
    )


def test_successful_deploy_creates_a_deployment_then_in_progress_then_success(fake: FakeGitHubAPI) -> None:
    recorder = Recorder()
    deploy(recorder.reporter(fake), environment_url="https://hello.example.com")

    deployment_path = f"/repos/acme/hello-app/deployments/{fake.deployments()[0]['id']}"
    assert fake.operations() == [
        "GET /repos/acme/hello-app",
        "POST /repos/acme/hello-app/deployments",
        f"POST {deployment_path}/statuses",
        f"POST {deployment_path}/statuses",
        "GET /repos/acme/hello-app/deployments",
    ]
    created = fake.requests[1].body
    assert created == {
        "ref": SHA,
        "task": "deploy",
        "auto_merge": False,
        "required_contexts": [],
        "payload": PAYLOAD,
        "environment": "production",
        "description": "deploying 0123456",
    }
    assert [r.body["state"] for r in fake.requests[2:4]] == ["in_progress", "success"]
    assert fake.requests[3].body["log_url"] == LOG_URL
    assert fake.requests[3].body["environment_url"] == "https://hello.example.com"
    assert fake.requests[3].body["environment"] == "production"
    assert recorder.warnings == []


def test_every_request_carries_the_token_in_the_authorization_header(fake: FakeGitHubAPI) -> None:
    deploy(Recorder().reporter(fake))

    assert fake.requests
    assert {r.headers.get("Authorization") for r in fake.requests} == {f"token {fake.token}"}


def test_success_marks_the_replaced_deployment_inactive_and_nothing_else(fake: FakeGitHubAPI) -> None:
    failed_before = fake.add_deployment(environment="production", sha="1" * 40, states=["in_progress", "failure"])
    replaced = fake.add_deployment(environment="production", sha="2" * 40, states=["in_progress", "success"])
    other_environment = fake.add_deployment(environment="staging", sha="3" * 40, states=["success"])

    deploy(Recorder().reporter(fake))

    assert [s["state"] for s in fake.statuses(replaced)] == ["in_progress", "success", "inactive"]
    assert fake.statuses(replaced)[-1]["environment"] == "production"
    assert [s["state"] for s in fake.statuses(failed_before)] == ["in_progress", "failure"]
    assert [s["state"] for s in fake.statuses(other_environment)] == ["success"]


def test_failed_deploy_leaves_the_previous_deployment_active(fake: FakeGitHubAPI) -> None:
    previous = fake.add_deployment(environment="production", sha="2" * 40, states=["success"])

    deploy(Recorder().reporter(fake), state="failure")

    ours = max(d["id"] for d in fake.deployments())
    assert [s["state"] for s in fake.statuses(ours)] == ["in_progress", "failure"]
    assert fake.statuses(ours)[-1]["log_url"] == LOG_URL
    assert [s["state"] for s in fake.statuses(previous)] == ["success"]
    assert "GET /repos/acme/hello-app/deployments" not in fake.operations()


def test_a_502_when_creating_the_deployment_is_retried_without_a_warning(fake: FakeGitHubAPI) -> None:
    fake.fail("POST", r"/deployments$", 502)
    recorder = Recorder()

    deploy(recorder.reporter(fake))

    assert [r.status for r in fake.requests if r.operation == "POST /repos/acme/hello-app/deployments"] == [502, 201]
    assert len(recorder.sleeps) == 1
    assert len(fake.deployments()) == 1
    assert recorder.warnings == []


def test_a_502_that_persists_warns_once_after_three_attempts_and_never_raises(fake: FakeGitHubAPI) -> None:
    fake.fail("POST", r"/deployments$", 502, times=10)
    recorder = Recorder()

    deploy(recorder.reporter(fake))

    assert fake.operations().count("POST /repos/acme/hello-app/deployments") == 3
    assert len(recorder.sleeps) == 2
    assert len(recorder.warnings) == 1
    warning = recorder.warnings[0]
    assert "creating a deployment of" in warning and "HTTP 502" in warning and "request id FAKE:" in warning
    assert not any("statuses" in op for op in fake.operations()), "finish() must not post without a deployment"


def test_a_403_only_warns_names_the_missing_permission_and_is_not_retried(fake: FakeGitHubAPI) -> None:
    fake.fail("POST", r"/deployments$", 403, times=10)
    recorder = Recorder()

    deploy(recorder.reporter(fake))

    assert fake.operations().count("POST /repos/acme/hello-app/deployments") == 1
    assert recorder.sleeps == []
    [warning] = recorder.warnings
    assert "HTTP 403" in warning and "Resource not accessible by integration" in warning
    assert "deployments: write" in warning
    assert fake.token not in warning


def test_a_403_on_the_final_status_only_warns(fake: FakeGitHubAPI) -> None:
    recorder = Recorder()
    reporter = recorder.reporter(fake)
    reporter.start(environment="production", ref=SHA, payload=PAYLOAD, description="deploying")
    fake.fail("POST", r"/statuses$", 403)

    reporter.finish(state="success", log_url=LOG_URL, description="done")

    [warning] = recorder.warnings
    [deployment] = fake.deployments()
    assert f"setting deployment {deployment['id']} to success failed" in warning
    assert "GET /repos/acme/hello-app/deployments" not in fake.operations()


def test_a_wrong_token_warns_bad_credentials_without_showing_the_token(fake: FakeGitHubAPI) -> None:
    recorder = Recorder()

    deploy(recorder.reporter(fake, token="ghp_wrong-secret-token"))

    [warning] = recorder.warnings
    assert "HTTP 401" in warning and "Bad credentials" in warning
    assert "ghp_wrong-secret-token" not in warning
    assert fake.operations() == ["GET /repos/acme/hello-app"]


def test_an_unreachable_api_is_retried_then_warns() -> None:
    warnings: list[str] = []
    sleeps: list[float] = []
    # Bound but never listening: connections are refused, and no other server can take the port meanwhile
    # (as one could once the socket were closed).
    with socket.socket() as unreachable:
        unreachable.bind(("127.0.0.1", 0))
        port = unreachable.getsockname()[1]
        reporter = DeploymentReporter(
            token="t",
            repository="acme/hello-app",
            api_url=f"http://127.0.0.1:{port}",
            warn=warnings.append,
            sleep=sleeps.append,
            timeout=5,
        )

        reporter.start(environment="production", ref=SHA, payload={}, description="d")
        reporter.finish(state="success", log_url=None, description="d")

    assert len(sleeps) == 2
    [warning] = warnings
    assert "reading repository acme/hello-app failed" in warning and "ConnectionError" in warning


@pytest.mark.parametrize(
    ("description", "expected_length"),
    [("short", 5), ("x" * DESCRIPTION_LIMIT, DESCRIPTION_LIMIT), ("y" * 500, DESCRIPTION_LIMIT)],
)
def test_descriptions_are_cut_to_githubs_limit(fake: FakeGitHubAPI, description: str, expected_length: int) -> None:
    reporter = Recorder().reporter(fake)
    reporter.start(environment="production", ref=SHA, payload={}, description=description)

    assert len(fake.requests[1].body["description"]) == expected_length
    assert len(fake.requests[2].body["description"]) == expected_length


def test_the_fake_flags_a_request_that_githubs_description_forbids() -> None:
    with FakeGitHubAPI() as api:
        deployment = api.add_deployment(environment="production", sha=SHA, states=[])
        request = urllib.request.Request(
            f"{api.url}/repos/acme/hello-app/deployments/{deployment}/statuses",
            data=json.dumps({"state": "finished"}).encode(),
            headers={"Authorization": f"token {api.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()

        assert refused.value.code == 422
        assert api.statuses(deployment) == []
        [problem] = api.validation_problems
        assert "finished" in problem


# --- a dry run's pull request comment --------------------------------------------------------------------

MARKER = "<!-- deployer diff namespace=shop -->"


def commenter(fake: FakeGitHubAPI, recorder: Recorder) -> PullRequestComment:
    return PullRequestComment(
        token=fake.token,
        repository=fake.repository,
        api_url=fake.url,
        warn=recorder.warnings.append,
        sleep=recorder.sleeps.append,
        seconds_between_writes=0,
    )


def test_the_comment_is_created_once_then_edited_in_place(fake: FakeGitHubAPI) -> None:
    recorder = Recorder()
    fake.add_comment(7, "Looks good, but see " + MARKER)  # quotes the marker, but is not deployer's
    first = commenter(fake, recorder).publish(7, MARKER, f"{MARKER}\nfirst diff")
    second = commenter(fake, recorder).publish(7, MARKER, f"{MARKER}\nsecond diff")

    comments = fake.comments(7)
    assert [c["body"] for c in comments] == ["Looks good, but see " + MARKER, f"{MARKER}\nsecond diff"]
    assert first == second == comments[1]["html_url"]
    assert fake.operations() == [
        "GET /repos/acme/hello-app/issues/7/comments",
        "POST /repos/acme/hello-app/issues/7/comments",
        "GET /repos/acme/hello-app/issues/7/comments",
        f"PATCH /repos/acme/hello-app/issues/comments/{comments[1]['id']}",
    ]
    assert recorder.warnings == []


def test_the_comment_is_found_on_a_later_page(fake: FakeGitHubAPI) -> None:
    recorder = Recorder()
    commenter(fake, recorder).publish(7, MARKER, f"{MARKER}\nfirst")
    for index in range(35):  # more than PyGithub's page of 30
        fake.add_comment(7, f"review comment {index}")
    commenter(fake, recorder).publish(7, MARKER, f"{MARKER}\nlater")

    assert [c["body"] for c in fake.comments(7) if c["body"].startswith(MARKER)] == [f"{MARKER}\nlater"]


def test_a_403_on_the_comment_warns_naming_the_permission_and_never_raises(fake: FakeGitHubAPI) -> None:
    recorder = Recorder()
    fake.fail("POST", r"/issues/7/comments$", 403)

    assert commenter(fake, recorder).publish(7, MARKER, f"{MARKER}\nbody") is None

    assert len(recorder.warnings) == 1
    assert recorder.warnings[0].startswith("pull request comment not written: commenting on pull request #7 failed")
    assert "pull-requests: write" in recorder.warnings[0]
    assert fake.comments(7) == []
