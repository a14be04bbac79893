"""The deployer image (Dockerfile) builds on a Python base and runs `--help` and a dry run of the example app.

Docker Hub is out of reach, so the Python base is made here: debootstrap a minimal Debian bookworm with
python3 and python3-venv from Debian's mirror and `docker import` it as deployer-test-pybase:bookworm. That
takes a minute or two, so the base is kept between runs and reused when present; the deployer image built
on it is removed at the end. The host's CA bundle goes into the base because pip inside the build must trust
whatever this machine trusts for PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer import __version__
from tests.conftest import require_real_part

ROOT = Path(__file__).resolve().parents[1]
HELLO_APP = ROOT / "workflows-examples" / "hello-app"
PYTHON_BASE = "deployer-test-pybase:bookworm"
DEBIAN_MIRROR = os.environ.get("DEPLOYER_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PREFIX = "deployer-test-github"
SHA = "0123456789abcdef0123456789abcdef01234567"

# A bound for a hang only: the module fixture builds the image, whose dependency layer pip-installs from PyPI
# when the builder has no cached layer (a fresh machine), beside the other workers' tests.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def docker_cli(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def bootstrap_python_base(docker_client: Any) -> str:
    """The Debian bookworm Python base, made with debootstrap unless an earlier run left it."""
    try:
        docker_client.images.get(PYTHON_BASE)
        return PYTHON_BASE
    except Exception:
        pass
    # /usr/sbin is not on every user's PATH.
    debootstrap = shutil.which("debootstrap", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    require_real_part(debootstrap is not None, "debootstrap is not installed (Debian package debootstrap)")
    assert debootstrap is not None
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-rootfs-") as workdir:
        rootfs = Path(workdir) / "rootfs"
        subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        # Keep the base small: downloaded packages and apt lists are not part of a Python base.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        if HOST_CA_BUNDLE.exists():
            shutil.copy(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imported = subprocess.run(
            [
                "docker",
                "import",
                "--change",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--change",
                'CMD ["python3"]',
                "-",
                PYTHON_BASE,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tar.stdout.close()
        assert tar.wait(timeout=600) == 0, "tar of the bootstrapped root failed"
        assert imported.returncode == 0, f"docker import failed: {imported.stderr}"
    return PYTHON_BASE


@pytest.fixture(scope="module")
def deployer_image(docker_client: Any) -> Iterator[str]:
    base = bootstrap_python_base(docker_client)
    tag = f"{PREFIX}-image:{uuid.uuid4().hex[:8]}"
    # network_mode=host: pip in the build reaches PyPI the way this machine does.
    docker_client.images.build(
        path=str(ROOT),
        dockerfile="Dockerfile",
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        network_mode="host",
        rm=True,
        forcerm=True,
        timeout=1200,
    )
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


def run_image(
    image: str, *args: str, options: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    name = f"{PREFIX}-run-{uuid.uuid4().hex[:8]}"
    try:
        return docker_cli("run", "--rm", "--name", name, *options, image, *args, timeout=timeout, check=False)
    finally:
        docker_cli("rm", "-f", name, check=False)


def test_image_runs_help(deployer_image: str) -> None:
    result = run_image(deployer_image, "--help")

    assert result.returncode == 0, result.stderr
    assert "deployer run" in result.stdout and "Exit codes" in result.stdout


def test_image_reports_the_package_version(deployer_image: str) -> None:
    result = run_image(deployer_image, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deployer, version {__version__}"


def test_image_runs_as_an_unprivileged_user_without_build_tools(deployer_image: str, docker_client: Any) -> None:
    config = docker_client.images.get(deployer_image).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["deployer"]

    probe = run_image(
        deployer_image,
        "-c",
        "import importlib.util as u, os;"
        " print(os.getuid(), [m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)])",
        options=("--entrypoint", "/opt/deployer/bin/python"),
    )

    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split(maxsplit=1) == ["10001", "[]\n"]


def test_dry_run_of_the_example_app_plans_and_writes_step_outputs(deployer_image: str, tmp_path: Path) -> None:
    outputs = tmp_path / "github"
    outputs.mkdir()
    os.chmod(outputs, 0o777)  # the image's user (uid 10001) writes GITHUB_OUTPUT here
    result = run_image(
        deployer_image,
        "run",
        "--dry-run",
        "--no-build",
        "-f",
        "hello-app/k8s",
        "-n",
        "hello",
        options=(
            "-v",
            f"{HELLO_APP}:/work/hello-app:ro",
            "-v",
            f"{outputs}:/github",
            "-e",
            "GITHUB_ACTIONS=true",
            "-e",
            "GITHUB_REPOSITORY=Acme/Hello-App",
            "-e",
            f"GITHUB_SHA={SHA}",
            "-e",
            "GITHUB_OUTPUT=/github/output",
            "-e",
            "GITHUB_STEP_SUMMARY=/github/summary.md",
        ),
    )

    assert result.returncode == 0, result.stderr
    assert "ghcr.io/acme/hello-app:0123456" in result.stdout
    assert "Deployment" in result.stdout and "Service" in result.stdout
    written = (outputs / "output").read_text()
    assert "ghcr.io/acme/hello-app:0123456" in written


def test_non_root_user_reaches_the_mounted_docker_socket_with_its_group(deployer_image: str) -> None:
    socket_path = Path("/var/run/docker.sock")
    require_real_part(socket_path.is_socket(), "no Docker socket at /var/run/docker.sock")
    group = str(socket_path.stat().st_gid)
    script = "import docker; client = docker.from_env(); print(client.ping()); client.close()"

    result = run_image(
        deployer_image,
        "-c",
        script,
        options=(
            "--entrypoint",
            "/opt/deployer/bin/python",
            "-v",
            f"{socket_path}:{socket_path}",
            "--group-add",
            group,
        ),
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_image_layers_hold_no_wheels_or_sources(deployer_image: str, docker_client: Any) -> None:
    history = json.dumps(docker_client.images.get(deployer_image).history())

    assert "/wheels" not in history and "COPY deployer" not in history
