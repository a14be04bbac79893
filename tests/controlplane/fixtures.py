"""pytest fixtures for the real control plane: ``control_plane``, started once per session (it takes seconds to
start and a build the first time), its pods on the Docker engine pulling from the test registry.

``web_images``: a small web image FROM scratch, in a few tags, for the end-to-end tests that run on it.

``judge``, ``deployer`` and ``namespace``: what an end-to-end test of ``deployer run`` on it takes, the real
kubectl, deployer as a user runs it, and a namespace of the test's own. A module that needs other ones (a
kubeconfig through a proxy, the simulator) defines its own under the same name, which pytest prefers.

Loaded through ``pytest_plugins`` in tests/conftest.py. A missing Go toolchain or Docker engine skips the tests
that need it on a laptop and fails them in CI (CI=true); a failed build or start always fails them.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_real_part
from tests.deploy_scenarios import CRASH_LOG, Deployer, Kubectl

from . import ControlPlane, StartError
from .building import BuildError

# Several nodes on the one Docker engine, so that a DaemonSet runs more than one pod and a rollout of it goes node
# by node; other pods spread over them, which no test minds (ports are published per container on 127.0.0.1).
SESSION_NODES = 3


@pytest.fixture(scope="session")
def control_plane(docker_client: Any, registry: Any) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node agent (``SESSION_NODES``
    nodes), on 127.0.0.1."""
    require_real_part(shutil.which("go") is not None, "the Go toolchain is not installed (no `go` on PATH)")
    try:
        plane = ControlPlane.start(
            registry=(registry.host, registry.username, registry.password),
            nodes=SESSION_NODES,
            docker_client=docker_client,
        )
    except (BuildError, StartError) as e:
        pytest.fail(f"the control plane did not start: {e}")
    try:
        yield plane
    finally:
        plane.stop()


@dataclass(frozen=True)
class WebImages:
    """Tags of one busybox httpd image FROM scratch in the test registry, for pods on the real control plane."""

    # v1 and v2 serve their tag at /index.html and "ok" at /healthz on 8080; crash exits 1; never-ready serves
    # /healthz but answers 404 at /index.html (where deploy_scenarios' readiness probe asks) until a test
    # writes the file into its container
    repository: str

    def tag(self, tag: str) -> str:
        return f"{self.repository}:{tag}"


WEB_IMAGE_COMMANDS = {
    "v1": "echo web v1 starting; exec httpd -f -v -p 8080 -h /www",
    "v2": "echo web v2 starting; exec httpd -f -v -p 8080 -h /www",
    "crash": f"echo starting; echo '{CRASH_LOG}'; exit 1",
    "never-ready": "echo web never-ready starting; rm /www/index.html; exec httpd -f -v -p 8080 -h /www",
}


@pytest.fixture(scope="session")
def web_images(docker_client: Any, registry: Any, busybox_base_image: str) -> Iterator[WebImages]:
    """Built and pushed once per session under a repository of their own; removed afterwards."""
    repository = f"{registry.host}/deployer-test-e2e/web-{uuid.uuid4().hex[:8]}"
    name = repository.split("/", 1)[1]
    auth = {"username": registry.username, "password": registry.password}
    try:
        for tag, command in WEB_IMAGE_COMMANDS.items():
            with tempfile.TemporaryDirectory(prefix="deployer-test-e2e-") as context:
                (Path(context) / "Dockerfile").write_text(
                    f"FROM {busybox_base_image}\n"
                    f"RUN mkdir /www && echo {tag} > /www/index.html && echo ok > /www/healthz\n"
                    f'CMD ["/bin/sh", "-c", "{command}"]\n'
                )
                docker_client.images.build(path=context, tag=f"{repository}:{tag}", rm=True, forcerm=True)
            for line in docker_client.images.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
                assert "error" not in line, f"pushing {repository}:{tag} failed: {line}"
        yield WebImages(repository)
    finally:
        for tag in WEB_IMAGE_COMMANDS:
            digest = registry.manifest_digest(name, tag)
            if digest:
                registry.request("DELETE", f"/v2/{name}/manifests/{digest}")
            try:
                docker_client.images.remove(f"{repository}:{tag}", force=True)
            except Exception:  # noqa: BLE001 - never built: nothing to remove
                pass


@pytest.fixture
def judge(kubectl: str, control_plane: ControlPlane, tmp_path: Path) -> Kubectl:
    """The real kubectl, as cluster-admin on the session's control plane: what is live is what it says."""
    return Kubectl.under(tmp_path, kubectl, control_plane.kubeconfig_path)


@pytest.fixture
def deployer(control_plane: ControlPlane, web_images: WebImages, tmp_path: Path) -> Deployer:
    """``deployer run`` with the control plane's admin kubeconfig, deploying web_images' repository."""
    made = Deployer.under(tmp_path, control_plane.kubeconfig_path)
    made.repository = web_images.repository
    return made


@pytest.fixture
def namespace(judge: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace name of the test's own, named after its module (``test_deploy_e2e`` gives ``deploy-...``);
    deployer creates it, if anything does. Deleted afterwards without waiting for the namespace controller."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").removesuffix("_e2e")
    name = f"{module.replace('_', '-')[:40]}-{uuid.uuid4().hex[:8]}"
    yield name
    judge.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
