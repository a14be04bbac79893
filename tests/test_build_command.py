"""`deployer build` and the image options of `deployer run`, through the CLI, on the real engine and registry."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestRegistry
from tests.controlplane import ControlPlane
from tests.deploy_scenarios import Kubectl, wait_until

REPO = Path(__file__).resolve().parent.parent
HELLO_APP = REPO / "workflows-examples" / "hello-app"


@pytest.fixture
def app(
    tmp_path: Path, registry: TestRegistry, busybox_base_image: str, docker_client: Any
) -> Iterator[dict[str, Any]]:
    """A copy of hello-app, a unique repository in the test registry, and the variables a run needs."""
    context = tmp_path / "hello-app"
    shutil.copytree(HELLO_APP, context)
    path = f"deployer-test-build/hello-{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "DEPLOYER_", "DOCKER_BUILDKIT"))}
    env.update(
        {
            "DEPLOYER_REGISTRY_USERNAME": registry.username,
            "DEPLOYER_REGISTRY_PASSWORD": registry.password,
            "DEPLOYER_BUILD_ARG": f"BASE_IMAGE={busybox_base_image}",
            "DEPLOYER_IMAGE": f"{registry.host}/{path}",
        }
    )
    yield {"context": context, "path": path, "env": env, "repository": f"{registry.host}/{path}"}
    for tag in ("b1", "b2"):
        digest = registry.manifest_digest(path, tag)
        if digest:
            registry.request("DELETE", f"/v2/{path}/manifests/{digest}")
    for image in docker_client.images.list(name=f"{registry.host}/{path}"):
        docker_client.images.remove(image.id, force=True)


def _deployer(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_build_pushes_and_prints_the_registrys_digest(app: dict[str, Any], registry: TestRegistry) -> None:
    outputs = app["context"] / "outputs"
    env = {**app["env"], "GITHUB_OUTPUT": str(outputs)}
    result = _deployer("build", "--tag", "b1", "--extra-tag", "b2", env=env, cwd=app["context"])
    assert result.returncode == 0, result.stderr
    digest = registry.manifest_digest(app["path"], "b1")
    assert digest is not None
    assert result.stdout.strip() == f"{app['repository']}:b1@{digest}"
    assert registry.manifest_digest(app["path"], "b2") == digest
    assert "digest<<" in outputs.read_text() and digest in outputs.read_text()
    assert registry.password not in result.stdout + result.stderr


def test_reuse_existing_skips_the_build_of_a_tag_already_pushed(app: dict[str, Any], registry: TestRegistry) -> None:
    first = _deployer("build", "--tag", "b1", env=app["env"], cwd=app["context"])
    assert first.returncode == 0, first.stderr
    # Break the build: a rebuild would now fail, so success proves nothing was built.
    (app["context"] / "Dockerfile").write_text("FROM scratch\nRUN false\n")
    again = _deployer("build", "--tag", "b1", "--reuse-existing", env=app["env"], cwd=app["context"])
    assert again.returncode == 0, again.stderr
    assert "already in the registry" in again.stderr
    assert again.stdout.strip() == first.stdout.strip()


def test_build_without_registry_credentials_for_a_protected_registry_fails_without_retrying(
    app: dict[str, Any],
) -> None:
    env = {**app["env"], "DEPLOYER_REGISTRY_PASSWORD": "wrong-password-for-test"}
    result = _deployer("build", "--tag", "b1", env=env, cwd=app["context"])
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "Traceback" not in result.stderr
    assert "wrong-password-for-test" not in result.stdout + result.stderr


@pytest.fixture
def namespace(judge: Kubectl, docker_client: Any) -> Iterator[str]:
    """A namespace of the test's own on the real control plane, deleted afterwards. Its pods are deleted at once
    and their containers awaited: the app fixture then removes the image they run, which Docker refuses while a
    container of it runs."""
    name = f"build-{secrets.token_hex(4)}"
    yield name
    # The namespace first: once it is terminating, its ReplicaSet can make no new pod for one deleted here.
    judge.run("delete", "namespace", name, "--wait=false", check=False)
    judge.run("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force", "--wait=false", check=False)
    running = {"label": f"kubesim.namespace={name}", "status": "running"}
    # sparse: one listing call; a full listing inspects each container, and one removed in between is a 404.
    wait_until(
        lambda: not docker_client.containers.list(sparse=True, filters=running), 60, f"the containers of {name} to stop"
    )


@pytest.mark.kubectl
def test_pin_digest_deploys_the_pushed_digest(
    app: dict[str, Any], registry: TestRegistry, control_plane: ControlPlane, judge: Kubectl, namespace: str
) -> None:
    result = _deployer(
        "run",
        "-f",
        "k8s",
        "-n",
        namespace,
        "--tag",
        "b1",
        "--pin-digest",
        "--kubeconfig",
        str(control_plane.kubeconfig_path),
        "--timeout",
        "60s",
        "-o",
        "rendered",
        env=app["env"],
        cwd=app["context"],
    )
    assert result.returncode == 0, result.stderr
    digest = registry.manifest_digest(app["path"], "b1")
    live = judge.image(namespace, "deployment/hello-app")
    assert live == f"{app['repository']}@{digest}"
    # The files written hold what was applied: the digest, not the tag.
    written = "".join(path.read_text() for path in (app["context"] / "rendered").iterdir())
    images = [line.split("image:", 1)[1].strip() for line in written.splitlines() if "image:" in line]
    assert images == [f"{app['repository']}@{digest}"]
