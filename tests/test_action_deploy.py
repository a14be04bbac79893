"""The composite action end to end: action.yml's steps, run as the Actions runner runs them, really deploy.

The runner is tests/test_action_composite.py's (INPUT values and defaults, `${{ }}` in env:, GITHUB_OUTPUT
and GITHUB_STEP_SUMMARY files, an event payload; the install step really pip-installs deployer from the
action's path into a fresh venv). Behind it everything is real or a real server on 127.0.0.1:
- the Docker engine builds workflows-examples/hello-app on the local busybox base and pushes it to the
  htpasswd registry;
- the DigitalOcean fake resolves the cluster name and issues a kubeconfig for the real control plane
  (tests/controlplane/) with a bearer token from its TokenRequest API;
- the control plane's controllers and its node agent run the pushed image on the Docker engine (real
  containers, real probes on 127.0.0.1), in a namespace of this module's own; the real kubectl reads what is live;
- the GitHub fake records the Deployment and its statuses.

A good deploy (exit 0) comes first; then a run whose manifests give the container a command that crashes:
it fails fast on CrashLoopBackOff, rolls back to revision 1 and exits 3.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestRegistry
from tests.controlplane import ControlPlane
from tests.deploy_scenarios import Kubectl
from tests.fakes.digitalocean_api import FakeCluster, FakeDigitalOceanAPI, openapi_problems
from tests.fakes.github_api import FakeGitHubAPI
from tests.test_action_composite import ROOT, SHA, TOKEN, ActionRun, CompositeRunner

# A bound for a hang only: the first test's setup pip-installs deployer into a fresh venv, builds and pushes the
# image and deploys; with the machine loaded (load average 21) that took 270 s, near pytest's default of 300.
pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.timeout(600)]

HELLO_APP = ROOT / "workflows-examples" / "hello-app"
PREFIX = "deployer-test-action-e2e"
DO_TOKEN = "dop_v1_action-e2e-0123456789abcdef0123456789abcdef"
NAMESPACE = f"hello-{uuid.uuid4().hex[:8]}"  # the session's control plane is shared: a namespace of its own
ENVIRONMENT = "staging"
ENVIRONMENT_URL = "https://staging.hello.example"
CRASH_LOG = "hello-app: /etc/hello/config.json is missing, giving up"

# The container's own command fails at once: the image is fine, the deploy is not.
CRASHING_COMMAND = f"""\
          command: ["sh", "-c", "echo '{CRASH_LOG}' >&2; exit 3"]
"""


@dataclass
class Stack:
    """Everything one module's deploys run against."""

    runner: CompositeRunner
    judge: Kubectl
    digitalocean: FakeDigitalOceanAPI
    github: FakeGitHubAPI
    registry: TestRegistry
    repository: str  # host:port/path, without tag
    workspace: Path

    @property
    def repository_path(self) -> str:
        return self.repository.split("/", 1)[1]

    def inputs(self, manifests: str, base_image: str, **more: str) -> dict[str, str]:
        return {
            "manifests": manifests,
            "namespace": NAMESPACE,
            "registry": self.registry.host,
            "image": self.repository,
            "context": "hello-app",
            "build-args": f"BASE_IMAGE={base_image}",
            "registry-username": self.registry.username,
            "registry-password": self.registry.password,
            "cluster": "hello-staging",
            "digitalocean-token": DO_TOKEN,
            "timeout": "60s",
            "rollback-timeout": "60s",
            "environment": ENVIRONMENT,
            "environment-url": ENVIRONMENT_URL,
            "cache": "false",
            **more,
        }


def _workspace(root: Path) -> Path:
    """A checkout of the user's repository: the app, its manifests, and a broken copy of them."""
    shutil.copytree(HELLO_APP, root / "hello-app")
    broken = root / "k8s-broken"
    broken.mkdir()
    shutil.copy(HELLO_APP / "k8s" / "service.yaml", broken / "service.yaml")
    deployment = (HELLO_APP / "k8s" / "deployment.yaml").read_text()
    anchor = "          image: <IMAGE>\n"
    assert anchor in deployment
    (broken / "deployment.yaml").write_text(deployment.replace(anchor, anchor + CRASHING_COMMAND))
    return root


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    action_runner_temp: Path,
    docker_client: Any,
    registry: TestRegistry,
    control_plane: ControlPlane,
    kubectl: str,
) -> Iterator[Stack]:
    workspace = _workspace(tmp_path_factory.mktemp("workspace"))
    judge = Kubectl.under(tmp_path_factory.mktemp("judge"), kubectl, control_plane.kubeconfig_path)
    repository = f"{registry.host}/{PREFIX}-{uuid.uuid4().hex[:8]}/hello-app"
    digitalocean = FakeDigitalOceanAPI(
        token=DO_TOKEN,
        server_url=control_plane.server_url,
        ca_pem=control_plane.ca_pem,
        mint_token=control_plane.issue_token,
        clusters=[FakeCluster("hello-production"), FakeCluster("hello-staging", region="fra1")],
    )
    try:
        with digitalocean, FakeGitHubAPI(token=TOKEN, owner="Acme", repo="Hello-App") as github:
            runner = CompositeRunner(
                workspace=workspace,
                runner_temp=action_runner_temp,
                event={"after": SHA, "repository": {"full_name": "Acme/Hello-App"}},
                # What a workflow's job-level `env:` would set: the API addresses of the fakes.
                github_env={"GITHUB_API_URL": github.url, "DEPLOYER_DIGITALOCEAN_API_URL": digitalocean.url},
            )
            yield Stack(runner, judge, digitalocean, github, registry, repository, workspace)
        assert github.validation_problems == []
        problems = {f"{e.status} {e.path}": openapi_problems(e) for e in digitalocean.exchanges}
        assert not any(problems.values()), problems
    finally:
        judge.run("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
        _remove_image(docker_client, registry, repository)


def _remove_image(docker_client: Any, registry: TestRegistry, repository: str) -> None:
    reference = f"{repository}:{SHA[:7]}"
    try:
        docker_client.images.remove(reference, force=True)
    except Exception:  # never built: nothing to remove
        pass
    path = repository.split("/", 1)[1]
    digest = registry.manifest_digest(path, SHA[:7])
    if digest is not None:
        registry.request("DELETE", f"/v2/{path}/manifests/{digest}")


@pytest.fixture(scope="module")
def good_deploy(stack: Stack, busybox_base_image: str) -> ActionRun:
    return stack.runner.run(stack.inputs("hello-app/k8s", busybox_base_image))


def _deployment(stack: Stack) -> dict[str, Any]:
    assert stack.judge.exists(NAMESPACE, "deployment/hello-app"), "the Deployment is not in the cluster"
    found: dict[str, Any] = stack.judge.get_json(NAMESPACE, "deployment/hello-app")
    return found


def _ready_pods(stack: Stack) -> list[dict[str, Any]]:
    """The Ready pods of hello-app that are not being deleted (a pod the rollback replaced may still stop)."""
    pods = [
        pod
        for pod in stack.judge.get_json(NAMESPACE, "pods", "-l", "app=hello-app")["items"]
        if not pod["metadata"].get("deletionTimestamp")
    ]

    def ready(pod: dict[str, Any]) -> bool:
        conditions = pod.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    return [pod for pod in pods if ready(pod)]


def test_good_deploy_exits_0_and_sets_every_output(stack: Stack, good_deploy: ActionRun) -> None:
    run = good_deploy

    assert run.exit_code == 0, run.log
    assert run.outcome == "success"
    tag = SHA[:7]
    assert run.outputs["image"] == f"{stack.repository}:{tag}"
    assert run.outputs["tag"] == tag
    registry_digest = stack.registry.manifest_digest(stack.repository_path, tag)
    assert registry_digest is not None and registry_digest.startswith("sha256:")
    assert run.outputs["digest"] == registry_digest
    assert run.outputs["status"] == "success"
    assert run.outputs["rolled-back"] == "false"
    assert json.loads(run.outputs["revisions"]) == {
        "deployment/hello-app": {"namespace": NAMESPACE, "revision": "1", "previous_revision": None, "result": "ready"}
    }


def test_good_deploy_runs_the_pushed_image_in_the_cluster(stack: Stack, good_deploy: ActionRun) -> None:
    assert good_deploy.exit_code == 0, good_deploy.log
    container = _deployment(stack)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == good_deploy.outputs["image"]
    ready = _ready_pods(stack)
    assert len(ready) == 2, "both replicas passed their readiness probe against busybox httpd"
    assert {p["spec"]["containers"][0]["image"] for p in ready} == {good_deploy.outputs["image"]}


def test_good_deploy_summary_names_image_digest_cluster_and_workload(stack: Stack, good_deploy: ActionRun) -> None:
    summary = good_deploy.summary

    assert summary.startswith(f"## ✅ Deployed `{good_deploy.outputs['image']}`"), summary
    assert f"`{good_deploy.outputs['digest']}`" in summary
    assert "hello-staging" in summary and f"[{ENVIRONMENT}]({ENVIRONMENT_URL})" in summary
    assert f"| deployment/hello-app | {NAMESPACE} | ready |" in summary
    assert "What went wrong" not in summary and "Rollback" not in summary


def test_good_deploy_is_a_successful_github_deployment(stack: Stack, good_deploy: ActionRun) -> None:
    assert good_deploy.exit_code == 0, good_deploy.log
    first = min(stack.github.deployments(), key=lambda d: int(d["id"]))
    assert first["environment"] == ENVIRONMENT
    assert first["ref"] == SHA
    assert first["payload"]["image"] == good_deploy.outputs["image"]
    assert first["payload"]["digest"] == good_deploy.outputs["digest"]
    statuses = stack.github.statuses(int(first["id"]))
    assert [s["state"] for s in statuses] == ["in_progress", "success"]
    assert statuses[-1]["environment_url"] == ENVIRONMENT_URL
    assert statuses[-1]["log_url"] == "https://github.com/Acme/Hello-App/actions/runs/4242"
    auth = {r.headers.get("Authorization") for r in stack.github.requests}
    assert auth == {f"token {TOKEN}"} or auth == {f"Bearer {TOKEN}"}


def test_good_deploy_fetched_one_short_lived_kubeconfig(stack: Stack, good_deploy: ActionRun) -> None:
    assert good_deploy.exit_code == 0, good_deploy.log
    issued = [e for e in stack.digitalocean.requests_for("kubeconfig") if e.status == 200]
    assert len(issued) >= 1
    # The default lifetime covers timeout + rollback-timeout + margin, and never less than 300 s.
    assert int(issued[0].query["expiry_seconds"]) >= 300
    for secret in (DO_TOKEN, stack.registry.password, *stack.digitalocean.minted):
        assert f"::add-mask::{secret}" in good_deploy.log
        # On stdout and on stderr (the console's stream, ordered with its fences), never anywhere else.
        outside = [line for line in good_deploy.log.splitlines() if secret in line and line != f"::add-mask::{secret}"]
        assert outside == [], f"{secret[:8]}... printed outside its ::add-mask::"


@pytest.fixture(scope="module")
def failing_deploy(stack: Stack, good_deploy: ActionRun, busybox_base_image: str) -> ActionRun:
    assert good_deploy.exit_code == 0, good_deploy.log
    # The same commit again (the image is reused from the registry), with manifests whose command crashes.
    return stack.runner.run(stack.inputs("k8s-broken", busybox_base_image, **{"reuse-existing": "true"}))


def test_crashing_deploy_exits_3_rolled_back(stack: Stack, good_deploy: ActionRun, failing_deploy: ActionRun) -> None:
    run = failing_deploy

    assert run.exit_code == 3, run.log
    assert run.outcome == "failure"
    assert run.outputs["status"] == "rolled-back"
    assert run.outputs["rolled-back"] == "true"
    assert run.outputs["image"] == good_deploy.outputs["image"]
    assert run.outputs["digest"] == good_deploy.outputs["digest"]
    assert run.outputs["tag"] == SHA[:7]
    revisions = json.loads(run.outputs["revisions"])
    assert set(revisions) == {"deployment/hello-app"}
    assert revisions["deployment/hello-app"]["previous_revision"] == "1"
    assert revisions["deployment/hello-app"]["namespace"] == NAMESPACE
    assert "CrashLoopBackOff" in run.log
    # One annotation for one failure: the final line, naming the cause and what was rolled back.
    errors = [line for line in run.log.splitlines() if line.startswith("::error")]
    assert len(errors) == 1, errors
    assert "CrashLoopBackOff" in errors[0] and "rolled back" in errors[0]


def test_crashing_deploy_restores_the_running_version(stack: Stack, failing_deploy: ActionRun) -> None:
    assert failing_deploy.exit_code == 3, failing_deploy.log
    container = _deployment(stack)["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container, "the rollback put the crashing template back in place"
    assert container["image"] == failing_deploy.outputs["image"]
    ready = _ready_pods(stack)
    assert len(ready) == 2
    assert all("command" not in p["spec"]["containers"][0] for p in ready)


def test_crashing_deploy_summary_explains_the_diagnosis_and_the_rollback(failing_deploy: ActionRun) -> None:
    summary = failing_deploy.summary

    assert summary.startswith(f"## ↩️ Rolled back: `{failing_deploy.outputs['image']}`"), summary
    assert "### What went wrong" in summary
    assert "CrashLoopBackOff" in summary
    assert CRASH_LOG in summary, "the diagnosis quotes the crashed container's log"
    assert "### Rollback" in summary
    assert "| deployment/hello-app |" in summary.split("### Rollback", 1)[1]


def test_crashing_deploy_is_a_failed_github_deployment(stack: Stack, failing_deploy: ActionRun) -> None:
    assert failing_deploy.exit_code == 3, failing_deploy.log
    first, second = sorted(stack.github.deployments(), key=lambda d: int(d["id"]))
    assert [s["state"] for s in stack.github.statuses(int(second["id"]))] == ["in_progress", "failure"]
    # The failed deploy replaced nothing: the first one stays the active deployment.
    assert [s["state"] for s in stack.github.statuses(int(first["id"]))] == ["in_progress", "success"]
