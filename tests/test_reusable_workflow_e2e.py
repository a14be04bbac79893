"""workflows-examples/reusable-deploy.yml run as GitHub's job engine runs it (tests/workflow_runner.py), its
deployer steps through the composite action's runner (tests/test_action_composite.py), against two clusters at
once: the session's real control plane and a Kubernetes simulator (tests/kubesim/, scripted kubelet) standing
in for a second cluster, each behind its own environment's KUBECONFIG secret.

In the two-cluster run the first wave builds the checkout's image (FROM web_images' v1) on the Docker engine,
pushes it to the test registry and deploys it pinned to its digest; the second wave deploys the first wave's
`digest` output with no build, so both clusters get the same `repository@digest`. The GitHub fake records one
Deployment per environment. A first wave that fails (its cluster refuses the credentials; the `digest` input
names web_images' v1, so nothing is built) stops the second: nothing reaches the other cluster, and the summary
says which target failed and which was never deployed.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TestRegistry
from tests.controlplane import ControlPlane
from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import Kubectl, deployment, wait_until, write_manifests
from tests.fakes.github_api import FakeGitHubAPI
from tests.kubesim import KubeSim
from tests.test_action_composite import ROOT, SHA, TOKEN, CompositeRunner
from tests.workflow_runner import StepResult, WorkflowRun, WorkflowRunner

# A bound for a hang only: the first deployer step pip-installs deployer into a fresh venv.
pytestmark = [pytest.mark.kubectl, pytest.mark.timeout(600)]

WORKFLOW = ROOT / "workflows-examples" / "reusable-deploy.yml"


@dataclass
class Clusters:
    workspace: Path
    composite: CompositeRunner
    github: FakeGitHubAPI
    registry: TestRegistry
    repository: str
    digest: str
    real: Kubectl  # the real control plane
    simulated: Kubectl  # the second cluster
    secrets: dict[str, dict[str, str]]

    def run(self, tmp_path: Path, targets: list[dict[str, str]], **inputs: Any) -> WorkflowRun:
        def deployer_action(given: dict[str, str], contexts: Any) -> StepResult:
            done = self.composite.run(given)
            return StepResult("success" if done.exit_code == 0 else "failure", done.outputs, done.log)

        runner = WorkflowRunner(
            workflow=WORKFLOW,
            workspace=self.workspace,
            temp=tmp_path / "workflow-run",
            actions={"your-org/deployer@": deployer_action},
            secrets={"": {"REGISTRY_PASSWORD": self.registry.password}, **self.secrets},
            github={"repository": "Acme/Hello-App", "actor": "octocat", "token": TOKEN, "sha": SHA},
        )
        return runner.run(
            {
                "targets": json.dumps(targets),
                "digest": self.digest,
                "image": self.repository,
                "registry-username": self.registry.username,
                "timeout-minutes": 2,
                **inputs,
            }
        )


def _kubeconfig_text(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _refused_kubeconfig(plane: ControlPlane) -> str:
    """The real control plane's address and CA with a token it never issued: every request is a 401."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "refusing",
                "cluster": {
                    "server": plane.server_url,
                    "certificate-authority-data": base64.b64encode(plane.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "nobody", "user": {"token": "not-a-token-this-cluster-issued"}}],
        "contexts": [{"name": "refusing", "context": {"cluster": "refusing", "user": "nobody"}}],
        "current-context": "refusing",
    }
    return yaml.safe_dump(config)


@pytest.fixture
def clusters(
    action_runner_temp: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    control_plane: ControlPlane,
    kubesim: KubeSim,
    web_images: WebImages,
    registry: TestRegistry,
    kubectl: str,
) -> Iterator[Clusters]:
    workspace = tmp_path / "checkout"
    write_manifests(workspace / "k8s", deployment("web", replicas=1, http_port=8080))
    digest = registry.manifest_digest(web_images.repository.split("/", 1)[1], "v1")
    assert digest is not None
    with FakeGitHubAPI(token=TOKEN, owner="Acme", repo="Hello-App") as github:
        composite = CompositeRunner(
            workspace=workspace,
            runner_temp=action_runner_temp,
            event={"after": SHA, "repository": {"full_name": "Acme/Hello-App"}},
            github_env={"GITHUB_API_URL": github.url},
        )
        yield Clusters(
            workspace=workspace,
            composite=composite,
            github=github,
            registry=registry,
            repository=web_images.repository,
            digest=digest,
            real=Kubectl.under(tmp_path_factory.mktemp("judge-real"), kubectl, control_plane.kubeconfig_path),
            simulated=Kubectl.under(tmp_path_factory.mktemp("judge-sim"), kubectl, kubesim.kubeconfig_path),
            secrets={
                "eu": {"KUBECONFIG": _kubeconfig_text(control_plane.kubeconfig_path)},
                "us": {"KUBECONFIG": _kubeconfig_text(kubesim.kubeconfig_path)},
                "refusing": {"KUBECONFIG": _refused_kubeconfig(control_plane)},
            },
        )
        assert github.validation_problems == []


@pytest.fixture
def namespace(clusters: Clusters) -> Iterator[str]:
    name = f"waves-{uuid.uuid4().hex[:8]}"
    yield name
    clusters.real.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def built_repository(clusters: Clusters, web_images: WebImages, docker_client: Any) -> Iterator[str]:
    """A repository of the test's own for the image the first wave builds: the checkout's app, FROM v1."""
    app = clusters.workspace / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {web_images.tag('v1')}\n")
    repository = f"{clusters.registry.host}/deployer-test-waves-{uuid.uuid4().hex[:8]}/web"
    yield repository
    path, tag = repository.split("/", 1)[1], SHA[:7]
    digest = clusters.registry.manifest_digest(path, tag)
    if digest is not None:
        clusters.registry.request("DELETE", f"/v2/{path}/manifests/{digest}")
    try:
        docker_client.images.remove(f"{repository}:{tag}", force=True)
    except Exception:  # noqa: BLE001 - never built: nothing to remove
        pass


def test_two_clusters_get_the_same_digest_in_two_waves_with_one_summary(
    clusters: Clusters, built_repository: str, namespace: str, tmp_path: Path
) -> None:
    targets = [
        {"environment": "eu", "namespace": namespace, "environment-url": "https://eu.hello.example"},
        {"environment": "us", "namespace": namespace},
    ]

    run = clusters.run(tmp_path, targets, digest="", image=built_repository, context="app")

    assert run.results == {
        "plan": "success",
        "first-wave": "success",
        "rest-wave": "success",
        "summary": "success",
    }, run.log()
    pushed = clusters.registry.manifest_digest(built_repository.split("/", 1)[1], SHA[:7])
    assert pushed is not None and pushed != clusters.digest, "the first wave built and pushed an image of its own"
    [first] = run.jobs["first-wave"]
    assert first.steps["deploy"].outputs["digest"] == pushed
    pinned = f"{built_repository}@{pushed}"
    assert clusters.real.image(namespace, "deployment/web") == pinned
    assert clusters.simulated.image(namespace, "deployment/web") == pinned
    assert [job.matrix["target"]["environment"] for job in run.jobs["first-wave"]] == ["eu"]
    assert [job.matrix["target"]["environment"] for job in run.jobs["rest-wave"]] == ["us"]
    assert run.outputs["digest"] == pushed and run.outputs["status"] == "success"
    assert set(json.loads(run.outputs["results"])) == {"eu", "us"}
    assert json.loads(run.outputs["revisions"])["us"] == {
        "deployment/web": {"namespace": namespace, "revision": "1", "previous_revision": None, "result": "ready"}
    }
    [summary] = [job.summary for job in run.jobs["summary"]]
    assert f"| 1 | eu | {namespace} | kubeconfig secret | success | {pinned} |  |" in summary
    assert f"| 2 | us | {namespace} | kubeconfig secret | success | {pinned} |  |" in summary
    deployments = {d["environment"]: d for d in clusters.github.deployments()}
    assert set(deployments) == {"eu", "us"}
    assert {d["payload"]["digest"] for d in deployments.values()} == {pushed}
    serving = wait_until(lambda: clusters.real.serving_images(namespace, "web"), 60, "a pod serving the digest")
    assert serving == {pinned}


def test_a_failed_first_wave_stops_the_second(clusters: Clusters, namespace: str, tmp_path: Path) -> None:
    targets = [
        {"environment": "refusing", "namespace": namespace},
        {"environment": "us", "namespace": namespace},
    ]

    run = clusters.run(tmp_path, targets)

    assert run.results["first-wave"] == "failure", run.log()
    assert run.results["rest-wave"] == "skipped"
    assert run.results["summary"] == "success"
    lookup = clusters.simulated.run("get", "namespace", namespace, check=False)
    assert "NotFound" in lookup.stderr, "the second wave reached its cluster"
    [summary] = [job.summary for job in run.jobs["summary"]]
    assert f"| 1 | refusing | {namespace} | kubeconfig secret | failed |" in summary
    assert f"| 2 | us | {namespace} | kubeconfig secret | not deployed: an earlier wave failed |" in summary
    assert run.outputs["status"] == "failed"
    assert json.loads(run.outputs["results"])["us"] is None


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        ("[]", "targets must be a non-empty JSON list"),
        ('[{"environment": "eu"}]', "targets[0].namespace is required"),
        (
            '[{"environment": "eu", "namespace": "a"}, {"environment": "eu", "namespace": "b"}]',
            "targets[1].environment 'eu' is given twice",
        ),
        (
            '[{"environment": "eu", "namespace": "a", "kubeconfig": "x"}]',
            "targets[0]: unknown field(s) kubeconfig; known: cluster, environment, environment-url, namespace",
        ),
        ("not json", "targets is not JSON"),
    ],
)
def test_targets_the_plan_refuses_deploy_nowhere(targets: str, problem: str, tmp_path: Path) -> None:
    runner = WorkflowRunner(
        workflow=WORKFLOW,
        workspace=tmp_path,
        temp=tmp_path / "workflow-run",
        actions={},  # no deploy may start
        secrets={},
    )

    run = runner.run({"targets": targets})

    assert run.results == {"plan": "failure", "first-wave": "skipped", "rest-wave": "skipped", "summary": "success"}
    [plan] = run.jobs["plan"]
    assert f"::error title=targets::{problem}" in plan.steps["plan"].log
    assert run.outputs["status"] == "failed"
