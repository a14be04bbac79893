"""The diff of a dry run against the real control plane: what it shows, what it never shows, and the pull request
comment it keeps on GitHub (the fake of tests/fakes/github_api.py, its traffic checked against GitHub's OpenAPI
description).

One deploy per module (a Deployment of no replicas, so that its rollout is done at once, a Secret, a ConfigMap)
in a namespace of its own; every test after it only dry-runs, which changes nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane import ControlPlane
from tests.deploy_scenarios import EXIT_OK, Deployer, Finished, Kubectl, deployment, write_manifests
from tests.fakes.github_api import FakeGitHubAPI

PASSWORD = "first-password-3fa9c1"
NEW_PASSWORD = "second-password-77b2e4"
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"


def app_manifests(directory: Path, password: str) -> Path:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": password}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}}
    return write_manifests(directory, secret, config, deployment("web", replicas=0))


@dataclass
class Deployed:
    """The module's deploy: ``deployer_command`` runs `deployer run ...` or `deployer diff ...` against it."""

    deployer: Deployer
    namespace: str
    manifests: Path

    def deployer_command(self, command: str, tag: str, *extra: str, env: dict[str, str] | None = None) -> Finished:
        args = self.deployer.args(tag, self.manifests, self.namespace, *extra)
        args[0] = command
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "deployer", *args],
            cwd=self.deployer.workdir,
            env={**self.deployer.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
        )
        return Finished(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def deployed(control_plane: ControlPlane, kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    home = tmp_path_factory.mktemp("diff")
    deployer = Deployer.under(home, control_plane.kubeconfig_path)
    namespace = f"diff-{uuid.uuid4().hex[:8]}"
    manifests = app_manifests(deployer.workdir / "k8s", PASSWORD)
    first = deployer.run("v1", manifests, namespace, "--timeout", "60s")
    assert first.code == EXIT_OK, first.explain()
    yield Deployed(deployer, namespace, manifests)
    Kubectl.under(home, kubectl, control_plane.kubeconfig_path).run(
        "delete", "namespace", namespace, "--wait=false", check=False
    )


def changed_lines(diff_lines: list[str]) -> list[str]:
    """The lines a diff removes or adds, without its two file headers."""
    return [line for line in diff_lines if line[:1] in "+-" and not line.startswith(("---", "+++"))]


def secret_texts(*passwords: str) -> list[str]:
    return [text for p in passwords for text in (p, base64.b64encode(p.encode()).decode())]


def test_the_dry_run_of_a_changed_image_shows_only_the_image_and_the_change_cause(
    deployed: Deployed, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    done = deployed.deployer_command("run", "v2", "--dry-run", "--format", "json")
    assert done.code == EXIT_OK, done.explain()
    plan = {f"{o['kind']}/{o['name']}": o for o in json.loads(done.stdout)["objects"]}
    assert {key: o["change"] for key, o in plan.items()} == {
        "Secret/db": "unchanged",
        "ConfigMap/settings": "unchanged",
        "Deployment/web": "update",
    }
    repository = deployed.deployer.repository
    assert changed_lines(plan["Deployment/web"]["diff"]) == [
        f"-    kubernetes.io/change-cause: 'deployer: {repository}:v1 by e2e-tester'",
        f"+    kubernetes.io/change-cause: 'deployer: {repository}:v2 by e2e-tester'",
        f"-      - image: {repository}:v1",
        f"+      - image: {repository}:v2",
    ]

    text = deployed.deployer_command("run", "v2", "--dry-run", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert text.code == EXIT_OK, text.explain()
    assert f"+      - image: {repository}:v2" in text.stdout.splitlines()
    assert "\x1b[" not in text.stdout  # not a terminal: plain
    markdown = summary.read_text()
    assert "<details><summary>update <code>deployment/web</code>" in markdown
    assert f"+      - image: {repository}:v2" in markdown


def test_a_changed_secret_shows_which_key_changes_and_no_value_anywhere(deployed: Deployed, tmp_path: Path) -> None:
    app_manifests(deployed.manifests, NEW_PASSWORD)
    summary = tmp_path / "summary.md"
    try:
        outputs = [
            deployed.deployer_command("diff", "v1", "--format", "json"),
            deployed.deployer_command("diff", "v1", env={"GITHUB_STEP_SUMMARY": str(summary)}),
            deployed.deployer_command("run", "v1", "--dry-run"),
        ]
    finally:
        app_manifests(deployed.manifests, PASSWORD)

    assert [done.code for done in outputs] == [1, 1, 0], "\n".join(done.explain() for done in outputs)
    objects = {o["name"]: o for o in json.loads(outputs[0].stdout)["objects"]}
    assert changed_lines(objects["db"]["diff"]) == ["-  password: '*** (before)'", "+  password: '*** (after)'"]
    everything = "".join(done.stdout + done.stderr for done in outputs) + summary.read_text()
    for text in secret_texts(PASSWORD, NEW_PASSWORD):
        assert text not in everything


def test_deployer_diff_exits_0_when_nothing_would_change(deployed: Deployed) -> None:
    done = deployed.deployer_command("diff", "v1")

    assert done.code == EXIT_OK, done.explain()
    assert done.stdout.splitlines() == [
        f"secret/db (namespace {deployed.namespace}): unchanged",
        f"configmap/settings (namespace {deployed.namespace}): unchanged",
        f"deployment/web (namespace {deployed.namespace}): unchanged",
    ]


def _pull_request_env(tmp_path: Path, fake: FakeGitHubAPI, number: int) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": number, "pull_request": {"number": number, "head": {"sha": HEAD_SHA}}}))
    return {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": fake.repository,
        "DEPLOYER_GITHUB_TOKEN": fake.token,
        "DEPLOYER_GITHUB_API_URL": fake.url,
    }


def test_a_pull_requests_dry_run_keeps_one_comment_with_the_diff_up_to_date(deployed: Deployed, tmp_path: Path) -> None:
    with FakeGitHubAPI() as fake:
        env = _pull_request_env(tmp_path, fake, 12)
        fake.add_comment(12, "Please also bump the chart.")
        first = deployed.deployer_command("run", "v2", "--dry-run", "--comment-on-pr", env=env)
        second = deployed.deployer_command("run", "v3", "--dry-run", "--comment-on-pr", env=env)

        assert first.code == second.code == EXIT_OK, first.explain() + second.explain()
        comments: list[dict[str, Any]] = fake.comments(12)
        assert fake.validation_problems == []

    assert len(comments) == 2 and comments[0]["body"] == "Please also bump the chart."
    body = comments[1]["body"]
    assert body.startswith(f"<!-- deployer diff namespace={deployed.namespace} -->\n")
    assert f"+      - image: {deployed.deployer.repository}:v3" in body
    assert "<details><summary>update <code>deployment/web</code>" in body
    assert f"the diff is on pull request #12: {comments[1]['html_url']}" in second.stderr
    assert [op.split(" ")[0] for op in fake.operations()] == ["GET", "POST", "GET", "PATCH"]
    for text in secret_texts(PASSWORD):
        assert text not in body


def test_deployer_diff_without_a_cluster_is_bad_input(tmp_path: Path) -> None:
    deployer = Deployer.under(tmp_path, tmp_path / "unused")
    manifests = app_manifests(deployer.workdir / "k8s", PASSWORD)
    args = ["diff", "-f", str(manifests), "--image", "registry.example/acme/web", "--tag", "v1"]
    done = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=deployer.workdir,
        env=deployer.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: --kubeconfig: deployer diff needs a cluster: --cluster, --kubeconfig or --kubeconfig-data"
    )
