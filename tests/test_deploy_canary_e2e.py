"""`deployer run --strategy canary` end to end on the real control plane, with the real kubectl as the judge.

Each test deploys web v1 (two pods behind a Service) the usual way, then the next image as a canary: a good
image is proven and rolled out; a crashing one, a canary that turns unready half-way through its hold, a
--canary-check URL answering 500 and a SIGTERM during the hold each leave the stable Deployment as it was (same
generation, same `kubectl rollout history`) and no canary behind. The check URLs are served by an HTTP server
of the test's own on 127.0.0.1. Holds are a few seconds, longer only where the test acts during the hold.
"""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_scenarios import (
    CRASH_LOG,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Kubectl,
    Running,
    deployed,
    deployment,
    wait_until,
    write_manifests,
)
from tests.fakes.github_api import FakeGitHubAPI

pytestmark = [pytest.mark.kubectl, pytest.mark.docker]

WEB_PORT = 8080  # where web_images' tags serve, and where deployment()'s readiness probe asks
CANARY_SELECTOR = "deployer/canary=true"
STABLE_SELECTOR = "app=web,!deployer/canary"


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    """web: two pods with a readiness probe, and the Service that sends them traffic (selector app=web)."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": WEB_PORT}]},
    }
    return write_manifests(deployer.workdir / "k8s", service, deployment("web", http_port=WEB_PORT))


class CheckServer:
    """An HTTP server on 127.0.0.1 answering every GET with ``status``; counts the GETs."""

    def __init__(self, status: int) -> None:
        self.gets = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                server.gets += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/healthz"

    def __enter__(self) -> CheckServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)


def stable_state(judge: Kubectl, namespace: str) -> tuple[str, str, str]:
    """What must not change while a canary is tried: generation, image, `kubectl rollout history`."""
    generation = judge.jsonpath(namespace, "deployment/web", "{.metadata.generation}")
    history = judge.run("-n", namespace, "rollout", "history", "deployment/web").stdout
    return generation, judge.image(namespace), history


def in_hold(running: Running) -> None:
    running.wait_for_line(lambda line: line.startswith("canary ready in"), 120, "the canary's hold")


def canary_run(deployer: Deployer, tag: str, manifests: Path, namespace: str, *extra: str) -> Running:
    return deployer.start(tag, manifests, namespace, "--strategy", "canary", *extra)


def assert_no_canary_and_stable_unchanged(judge: Kubectl, namespace: str, before: tuple[str, str, str]) -> None:
    assert not judge.exists(namespace, "deployment/web-canary")
    assert stable_state(judge, namespace) == before
    assert judge.serving_images(namespace, "web") <= {before[1]}


def ready_endpoints(judge: Kubectl, namespace: str) -> set[str]:
    """The pods the Service's EndpointSlices list as ready: where the Service sends traffic."""
    slices = judge.get_json(namespace, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
    return {
        endpoint["targetRef"]["name"]
        for piece in slices
        for endpoint in piece.get("endpoints") or ()
        if endpoint.get("conditions", {}).get("ready") and endpoint.get("targetRef")
    }


def pod_names(judge: Kubectl, namespace: str, selector: str) -> set[str]:
    pods = judge.get_json(namespace, "pods", "-l", selector)["items"]
    return {pod["metadata"]["name"] for pod in pods if not pod["metadata"].get("deletionTimestamp")}


# --- a good image ---------------------------------------------------------------------------------------------


def test_a_good_image_is_proven_by_a_canary_that_gets_service_traffic_then_rolled_out(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, tmp_path: Path
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    stable_before = stable_state(judge, namespace)
    summary = tmp_path / "summary.md"
    with CheckServer(200) as check, FakeGitHubAPI() as github:
        env = {"GITHUB_REPOSITORY": github.repository, "GITHUB_STEP_SUMMARY": str(summary)}
        github_flags = ["--environment", "production", "--github-token", github.token, "--github-api-url", github.url]
        running = deployer.start(
            "v2", manifests, namespace, "--strategy", "canary", "--canary-hold", "20s", "--canary-check", check.url,
            "--format", "json", *github_flags, env=env,
        )  # fmt: skip
        try:
            in_hold(running)
            # During the hold: the canary's pod and the stable pods are all behind the Service...
            canary_pods = pod_names(judge, namespace, CANARY_SELECTOR)
            stable_pods = pod_names(judge, namespace, STABLE_SELECTOR)
            assert len(canary_pods) == 1 and len(stable_pods) == 2, (canary_pods, stable_pods)
            wait_until(
                lambda: ready_endpoints(judge, namespace) >= canary_pods | stable_pods,
                15,
                "the Service's endpoints to list the canary's pod beside the stable ones",
            )
            # ...and the stable Deployment neither changed nor counts the canary's pod as its own.
            assert stable_state(judge, namespace) == stable_before
            assert judge.jsonpath(namespace, "deployment/web", "{.status.replicas}") == "2"
            canary_pod = judge.get_json(namespace, "pods", "-l", CANARY_SELECTOR)["items"][0]
            (owner,) = canary_pod["metadata"]["ownerReferences"]
            assert owner["name"].startswith("web-canary-"), owner
            assert judge.serving_images(namespace, "web") == {f"{repo}:v1", f"{repo}:v2"}
            done = running.finish(timeout=180)
        finally:
            running.kill()
        (recorded,) = github.deployments()
        statuses = github.statuses(recorded["id"])
        assert github.validation_problems == []

    assert done.code == EXIT_OK, done.explain()
    assert not judge.exists(namespace, "deployment/web-canary")
    assert judge.image(namespace) == f"{repo}:v2"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v2"}
    assert check.gets >= 1, "the check URL was asked during the hold"
    assert any(s["state"] == "in_progress" and "canary" in s["description"] for s in statuses), statuses
    assert statuses[-1]["state"] == "success"
    canary = json.loads(done.stdout)["canary"]
    assert canary["result"] == "passed"
    assert canary["canaries"] == [{"name": "web-canary", "deployment": "web"}]
    assert canary["ready_seconds"] > 0 and canary["held_seconds"] >= 20
    assert "### Canary" in summary.read_text()


# --- a canary that fails leaves the stable Deployment as it was -----------------------------------------------


def test_the_dry_run_names_the_canary_and_a_crashing_image_fails_it_fast_leaving_the_stable_deployment(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    deployed(deployer, "v1", manifests, namespace)
    before = stable_state(judge, namespace)
    planned = deployer.run("crash", manifests, namespace, "--dry-run", "--strategy", "canary", "--canary-hold", "3s")
    assert planned.code == EXIT_OK, planned.explain()
    assert "deployment/web-canary (1 pod(s), held 3s) before deployment/web changes" in planned.stdout, planned.stdout

    done = canary_run(deployer, "crash", manifests, namespace, "--canary-hold", "3s").finish(timeout=180)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    last = done.stderr.splitlines()[-1]
    assert "canary failed: deployment/web-canary: pod web-canary-" in last, done.explain()
    assert CRASH_LOG in done.stderr, "the diagnosis shows the canary's log"
    # Caught from the pod's status, not from the progress deadline (600 s).
    assert "ProgressDeadlineExceeded" not in done.stderr and "timed out" not in done.stderr
    assert "holding it" not in done.stderr, "never held"
    assert_no_canary_and_stable_unchanged(judge, namespace, before)


def test_a_canary_that_turns_unready_half_way_through_the_hold_fails(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, docker_client: Any
) -> None:
    deployed(deployer, "v1", manifests, namespace)
    before = stable_state(judge, namespace)
    running = canary_run(deployer, "v2", manifests, namespace, "--canary-hold", "60s")
    try:
        in_hold(running)
        (canary_pod,) = judge.get_json(namespace, "pods", "-l", CANARY_SELECTOR)["items"]
        containers = docker_client.containers.list(
            filters={"label": f"kubesim.pod-uid={canary_pod['metadata']['uid']}"}
        )
        for container in containers:  # its readiness probe asks for this page
            code, output = container.exec_run(["/bin/sh", "-c", "rm /www/index.html"])
            assert code == 0, output
        done = running.finish(timeout=120)
    finally:
        running.kill()

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "NotReady: lost its readiness during the hold" in done.stderr.splitlines()[-1], done.explain()
    assert_no_canary_and_stable_unchanged(judge, namespace, before)


def test_a_canary_check_url_answering_500_fails_the_canary(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    deployed(deployer, "v1", manifests, namespace)
    before = stable_state(judge, namespace)

    with CheckServer(500) as check:
        extra = ("--canary-hold", "60s", "--canary-check", check.url)
        done = canary_run(deployer, "v2", manifests, namespace, *extra).finish(timeout=180)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # The bounds are named in the log, and what failed in the error.
    assert "a GET every 1s, each with a timeout of 5s; 3 failures in a row fail the canary" in done.stderr
    expected = f"--canary-check {check.url} failed 3 times in a row: answered 500 Internal Server Error"
    assert expected in done.stderr.splitlines()[-1], done.explain()
    assert check.gets >= 3
    assert_no_canary_and_stable_unchanged(judge, namespace, before)


def test_sigterm_during_the_hold_deletes_the_canary_and_leaves_the_stable_deployment(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    deployed(deployer, "v1", manifests, namespace)
    before = stable_state(judge, namespace)
    running = canary_run(deployer, "v2", manifests, namespace, "--canary-hold", "60s")
    try:
        in_hold(running)
        running.send(signal.SIGTERM)
        done = running.finish(timeout=120)
    finally:
        running.kill()

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "received SIGTERM" in done.stderr
    assert "canary cancelled: cancelled while holding the canary" in done.stderr.splitlines()[-1], done.explain()
    assert_no_canary_and_stable_unchanged(judge, namespace, before)


def test_a_canary_left_by_a_killed_run_is_deleted_by_the_next_deploy(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    # A short lease: the next run takes the dead run's lock over soon.
    running = canary_run(deployer, "v2", manifests, namespace, "--canary-hold", "60s", "--lock-lease", "3s")
    try:
        in_hold(running)
    finally:
        running.kill()  # SIGKILL: nothing deletes the canary
    assert judge.exists(namespace, "deployment/web-canary")

    done = canary_run(deployer, "v2", manifests, namespace, "--canary-hold", "2s").finish(timeout=180)

    assert done.code == EXIT_OK, done.explain()
    assert "deleting deployment/web-canary, left by an earlier run" in done.stderr
    assert not judge.exists(namespace, "deployment/web-canary")
    assert judge.image(namespace) == f"{repo}:v2"
