"""Dry runs against a cluster: the server says what would change, and nothing does.

The cluster is the session's real control plane (tests/controlplane/); each test has a namespace of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import Kubectl

REPO = Path(__file__).resolve().parent.parent
HELLO_MANIFESTS = REPO / "workflows-examples" / "hello-app" / "k8s"


# The bundled example app's dry run without a cluster; each test adds its tag and what it checks.
HELLO_DRY_RUN = ["run", "--dry-run", "--no-build", "-f", str(HELLO_MANIFESTS), "--image", "ghcr.io/acme/hello-app"]


def _deployer(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "DEPLOYER_"))}
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def _hello(judge: Kubectl, namespace: str, image: str, *extra: str) -> list[str]:
    repository, tag = image.rsplit(":", 1)
    return [
        "run",
        "-f",
        str(HELLO_MANIFESTS),
        "-n",
        namespace,
        "--image",
        repository,
        "--tag",
        tag,
        "--no-build",
        "--kubeconfig",
        str(judge.kubeconfig),
        *extra,
    ]


def _plan_changes(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    return {f"{o['kind']}/{o['name']}": o["change"] for o in plan["objects"]}


@pytest.mark.docker
@pytest.mark.kubectl
def test_dry_run_against_a_cluster_plans_creates_then_unchanged_then_update(
    judge: Kubectl, namespace: str, web_images: WebImages
) -> None:
    first = _deployer(*_hello(judge, namespace, web_images.tag("v1"), "--dry-run", "--format", "json"))
    assert _plan_changes(first) == {"Service/hello-app": "create", "Deployment/hello-app": "create"}
    assert "server-side dry run" in json.loads(first.stdout)["cluster"]
    # The dry run stored nothing: not even the namespace a real run would create.
    assert not judge.exists("default", f"namespace/{namespace}")

    deployed = _deployer(*_hello(judge, namespace, web_images.tag("v1"), "--timeout", "90s"))
    assert deployed.returncode == 0, deployed.stderr

    same = _deployer(*_hello(judge, namespace, web_images.tag("v1"), "--dry-run", "--format", "json"))
    assert _plan_changes(same) == {"Service/hello-app": "unchanged", "Deployment/hello-app": "unchanged"}

    newer = _deployer(*_hello(judge, namespace, web_images.tag("v2"), "--dry-run", "--format", "json"))
    assert _plan_changes(newer) == {"Service/hello-app": "unchanged", "Deployment/hello-app": "update"}
    assert judge.image(namespace, "deployment/hello-app") == web_images.tag("v1")


def test_dry_run_writes_the_plan_to_the_step_summary_and_outputs(tmp_path: Path) -> None:
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    result = _deployer(
        *HELLO_DRY_RUN,
        "--tag",
        "abc1234",
        env={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)},
    )
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert "ghcr.io/acme/hello-app:abc1234" in text
    assert "Deployment/hello-app" in text
    assert "status<<" in outputs.read_text() and "planned" in outputs.read_text()


def test_a_canary_dry_run_without_a_cluster_names_the_canary_each_changed_deployment_would_get() -> None:
    # --tag: the tests also run in a copy of the repository that is no git work tree (.ci/run), with no GITHUB_SHA.
    args = [*HELLO_DRY_RUN, "--tag", "t1"]

    result = _deployer(*args, "--strategy", "canary", "--canary-replicas", "2", "--canary-hold", "90s")

    assert result.returncode == 0, result.stderr
    assert "canaries (--strategy canary), before the rollout:" in result.stdout
    expected = "deployment/hello-app-canary (2 pod(s), held 1m30s) if the pod template of deployment/hello-app changes"
    assert expected in result.stdout


def test_a_field_error_in_actions_is_annotated_on_its_document_line(tmp_path: Path) -> None:
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "app.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# the second one\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {namespace: x}\n"
    )
    result = _deployer(
        "run",
        "--render-only",
        "-f",
        "k8s",
        "--image",
        "ghcr.io/acme/app",
        "--tag",
        "t1",
        env={"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("::error")]
    assert len(lines) == 1
    assert lines[0].startswith("::error file=k8s/app.yaml,line=6::")
    assert "document 2" in lines[0] and "metadata.name" in lines[0]


def _bad_manifests(tmp_path: Path, second: str) -> Path:
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    first = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {image: <IMAGE>}\n"
    (manifests / "app.yaml").write_text(f"{first}---\n{second}")
    return manifests


def test_a_dry_run_without_a_cluster_refuses_a_name_the_api_server_would_refuse(tmp_path: Path) -> None:
    manifests = _bad_manifests(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Settings}\n")
    result = _deployer(
        "run", "--dry-run", "--no-build", "-f", str(manifests), "--image", "ghcr.io/acme/app", "--tag", "t1"
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"error: {manifests / 'app.yaml'} (document 2): metadata.name: 'Settings' has uppercase letters"
    )


def test_a_dry_run_against_a_cluster_names_the_document_of_a_kind_it_does_not_serve(
    judge: Kubectl, namespace: str, tmp_path: Path
) -> None:
    manifests = _bad_manifests(tmp_path, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    args = ["run", "--dry-run", "--no-build", "-f", str(manifests), "-n", namespace, "--image", "ghcr.io/acme/app"]
    result = _deployer(*args, "--tag", "t1", "--kubeconfig", str(judge.kubeconfig))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: {manifests / 'app.yaml'} (document 2): kind: resource mapping not found: no matches for kind "
        '"Widget" in version "example.com/v1"; ensure CRDs are installed first'
    )
