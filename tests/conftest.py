"""Shared fixtures: the real Docker engine, the real registry, and a base image built from scratch.

A real part that is missing skips the tests that need it on a laptop, with the reason, but fails them in
CI (CI=true), where .ci/run is expected to have started it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.kubesim.fixtures", "tests.controlplane.fixtures"]

IN_CI = os.environ.get("CI", "").lower() == "true"
BUSYBOX_BINARY = Path("/bin/busybox")
BASE_IMAGE_TAG = "deployer-test/busybox-base:1"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A SIGTERM (a CI timeout, `timeout`, a cancelled job) ends the session as Ctrl-C does, so that the
    session's fixtures are torn down: the control plane, simulators and containers they started are stopped
    rather than left running. Python's default for SIGTERM is to die at once, with no teardown."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)


def require_real_part(available: bool, reason: str) -> None:
    """Skip on a laptop, fail in CI: a missing real part must never pass silently there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but a real part is missing: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class TestRegistry:
    """The htpasswd-protected registry that .ci/run starts on loopback."""

    __test__ = False  # a fixture's type, not a test class, despite its name

    host: str  # host:port, e.g. 127.0.0.1:5000
    username: str
    password: str

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One authenticated HTTP request to the registry API; returns status, headers, body."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        all_headers = {"Authorization": f"Basic {token}", **(headers or {})}
        req = urllib.request.Request(self.url(path), method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The registry's own digest for repository:tag (Docker-Content-Digest), or None when absent."""
        accept = ", ".join(
            [
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.index.v1+json",
            ]
        )
        status, headers, _ = self.request("HEAD", f"/v2/{repository}/manifests/{tag}", {"Accept": accept})
        if status != 200:
            return None
        return {k.lower(): v for k, v in headers.items()}.get("docker-content-digest")


def _docker_client() -> Any | None:
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = _docker_client()
    require_real_part(client is not None, "no Docker engine answers at DOCKER_HOST or /var/run/docker.sock")
    assert client is not None
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry() -> TestRegistry:
    host = os.environ.get("DEPLOYER_TEST_REGISTRY", "")
    username = os.environ.get("DEPLOYER_TEST_REGISTRY_USERNAME", "deployer")
    password = os.environ.get("DEPLOYER_TEST_REGISTRY_PASSWORD", "")
    require_real_part(bool(host and password), "DEPLOYER_TEST_REGISTRY and DEPLOYER_TEST_REGISTRY_PASSWORD are not set")
    reg = TestRegistry(host, username, password)
    try:
        status, _, _ = reg.request("GET", "/v2/")
    except OSError as e:
        status = 0
        require_real_part(False, f"the test registry at {host} does not answer: {e}")
    require_real_part(status == 200, f"the test registry at {host} refused the test credentials (HTTP {status})")
    return reg


@pytest.fixture(scope="session")
def busybox_base_image(docker_client: Any) -> str:
    """A local image FROM scratch holding busybox and its applets: the base for every test image."""
    require_real_part(BUSYBOX_BINARY.exists(), f"{BUSYBOX_BINARY} is missing (Debian package busybox-static)")
    try:
        docker_client.images.get(BASE_IMAGE_TAG)
        return BASE_IMAGE_TAG
    except Exception:
        pass
    with tempfile.TemporaryDirectory(prefix="deployer-test-base-") as context:
        shutil.copy(BUSYBOX_BINARY, Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'CMD ["/bin/sh"]\n'
        )
        docker_client.images.build(path=context, tag=BASE_IMAGE_TAG, rm=True, forcerm=True)
    return BASE_IMAGE_TAG


@pytest.fixture(scope="session")
def action_runner_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUNNER_TEMP for every test that runs the composite action's steps: the install step's venv is made once
    per session and then only updated (a fresh one took minutes on a loaded machine, once per module)."""
    return tmp_path_factory.mktemp("runner-temp")


def kubectl_path() -> str | None:
    return shutil.which("kubectl")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = kubectl_path()
    require_real_part(path is not None, "kubectl is not installed")
    assert path is not None
    version = subprocess.run([path, "version", "--client"], capture_output=True, text=True, timeout=60)
    require_real_part(version.returncode == 0, f"kubectl does not run: {version.stderr.strip()}")
    return path
