"""Promotion by digest, end to end on the real control plane: what a staging deploy verified is what
production gets, by `deployer run --no-build --digest`, with no build and no Docker engine in that run.

Staging deploys web_images' v1 with --pin-digest (its result's `digest` is what the action's `digest` output
carries); production then deploys that digest with DOCKER_HOST pointing at a socket nothing listens on, so any
use of an engine would fail the run. The real kubectl judges the pod template and the pods serving.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TestRegistry
from tests.controlplane import ControlPlane
from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import EXIT_FAILURE, EXIT_OK, Deployer, Kubectl, deployment, wait_until, write_manifests

pytestmark = pytest.mark.kubectl

WEB_PORT = 8080
ABSENT = "sha256:" + "0" * 64


@pytest.fixture
def deployer(control_plane: ControlPlane, web_images: WebImages, registry: TestRegistry, tmp_path: Path) -> Deployer:
    deployer = Deployer.under(tmp_path, control_plane.kubeconfig_path)
    deployer.repository = web_images.repository
    deployer.env.update(
        {
            "DEPLOYER_REGISTRY_USERNAME": registry.username,
            "DEPLOYER_REGISTRY_PASSWORD": registry.password,
            # No Docker engine: a run that tried to use one would fail to connect.
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker-engine.sock",
        }
    )
    return deployer


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1, http_port=WEB_PORT))


@pytest.fixture
def namespaces(judge: Kubectl) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    staging, production = f"staging-{suffix}", f"production-{suffix}"
    yield staging, production
    for name in (staging, production):
        judge.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def test_production_deploys_the_staging_digest_with_no_build_and_no_engine(
    deployer: Deployer,
    manifests: Path,
    namespaces: tuple[str, str],
    judge: Kubectl,
    registry: TestRegistry,
    web_images: WebImages,
) -> None:
    staging_namespace, production_namespace = namespaces
    # Staging resolves the tag to its digest through the engine, as a build-and-deploy job has one.
    staging = deployer.run(
        "v1", manifests, staging_namespace, "--pin-digest", "--format", "json", "--timeout", "60s",
        env={"DOCKER_HOST": ""},
    )  # fmt: skip
    assert staging.code == EXIT_OK, staging.explain()
    digest = json.loads(staging.stdout)["digest"]
    assert digest == registry.manifest_digest(web_images.repository.split("/", 1)[1], "v1")

    production = deployer.run(None, manifests, production_namespace, "--digest", digest, "--timeout", "60s")

    assert production.code == EXIT_OK, production.explain()
    pinned = f"{web_images.repository}@{digest}"
    assert judge.image(production_namespace, "deployment/web") == pinned
    assert judge.image(staging_namespace, "deployment/web") == pinned
    assert "Build" not in production.stderr and "Push" not in production.stderr
    assert f"holds {digest}" in production.stderr
    serving = wait_until(
        lambda: judge.serving_images(production_namespace, "web"), 60, "a production pod to serve the staging digest"
    )
    assert serving == {pinned}


def test_a_digest_the_repository_lacks_is_one_line_naming_both_and_nothing_is_applied(
    deployer: Deployer, manifests: Path, namespaces: tuple[str, str], judge: Kubectl, web_images: WebImages
) -> None:
    _, namespace = namespaces

    done = deployer.run(None, manifests, namespace, "--digest", ABSENT, "--timeout", "30s")

    assert done.code == EXIT_FAILURE, done.explain()
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert f"{web_images.repository}@{ABSENT}" in error and "no such manifest" in error
    assert "Traceback" not in done.stderr
    lookup = judge.run("get", "namespace", namespace, check=False)
    assert "NotFound" in lookup.stderr, "nothing may be applied for an image that is not there"


@pytest.mark.parametrize(
    ("digest", "extra", "problem"),
    [
        ("sha256:abc", (), "is not a digest"),
        ("ab" * 32, (), "is not a digest"),
        ("sha256:" + "ab" * 32, ("--pin-digest",), "drop --pin-digest"),
    ],
)
def test_a_bad_digest_flag_exits_2_naming_it(
    deployer: Deployer, manifests: Path, digest: str, extra: tuple[str, ...], problem: str
) -> None:
    done = deployer.run(None, manifests, "never-created", "--digest", digest, *extra)

    assert done.code == 2, done.explain()
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: --digest:") and problem in errors[0], errors


def test_a_digest_with_a_build_asks_for_no_build(tmp_path: Path, control_plane: ControlPlane) -> None:
    deployer = Deployer.under(tmp_path, control_plane.kubeconfig_path)
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web"))
    args = ["run", "-f", str(manifests), "--image", "ghcr.io/acme/web", "--digest", "sha256:" + "ab" * 32]

    done = subprocess.run(
        [sys.executable, "-m", "deployer", *args], cwd=deployer.workdir, env=deployer.env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --digest: deploys an image already in the registry, so nothing is built: add --no-build"
    ]
