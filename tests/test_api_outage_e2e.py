"""`deployer run` through a Kubernetes API outage, end to end: what a non-HA control plane's maintenance does.

deployer talks to the real control plane (tests/controlplane/) through tests/fakes/api_fault_proxy.py, with a
bearer token the proxy relays: the proxy cuts every connection and then drops, refuses or answers 503/429 to new
ones for five seconds while the cluster itself (the real controllers and the node agent) carries on. The real
kubectl, talking to the API server directly, judges what is live afterwards; the deploy lock must be gone
whatever happened. Each test has a namespace of its own; the images are web_images'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane import ControlPlane
from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import (
    CRASH_LOG,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Kubectl,
    deployed,
    deployment,
    write_manifests,
)
from tests.fakes.api_fault_proxy import ApiFaultProxy, Fault, running_fault_proxy

pytestmark = [pytest.mark.kubectl, pytest.mark.docker]

OUTAGE_SECONDS = 5.0
UNAVAILABLE = "the Kubernetes API at"
STILL_DOWN = "is unavailable"
BACK = "is available again"
WEB_PORT = 8080  # where web_images' tags serve, and where deployment()'s readiness probe asks


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[ApiFaultProxy]:
    with running_fault_proxy("127.0.0.1", control_plane.apiserver_port, control_plane.ca_pem) as running:
        yield running


@pytest.fixture
def deployer(proxy: ApiFaultProxy, control_plane: ControlPlane, web_images: WebImages, tmp_path: Path) -> Deployer:
    token = control_plane.issue_token(3600)
    deployer = Deployer.under(tmp_path, proxy.write_kubeconfig(tmp_path / "kubeconfig-through-proxy", token))
    deployer.repository = web_images.repository
    return deployer


def web(**container: Any) -> dict[str, Any]:
    """One replica, probed for readiness, and a progress deadline far away: the rollout's own pace decides.
    ``container``: fields that replace the web container's (its command, its probe)."""
    document = deployment("web", replicas=1, http_port=WEB_PORT, progress_deadline_seconds=36000)
    document["spec"]["template"]["spec"]["containers"][0].update(container)
    return document


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", web())


@dataclass(frozen=True)
class Outage:
    fault: Fault
    status: int = 503
    retry_after: str | None = None


OUTAGES = {
    "connections dropped": Outage(Fault.DROP),
    "connections refused": Outage(Fault.REFUSE),
    "503 from a load balancer": Outage(Fault.STATUS, 503),
    "429 with Retry-After": Outage(Fault.STATUS, 429, retry_after="1"),
}


def assert_said_once_down_and_once_back(stderr: str) -> None:
    lines = stderr.splitlines()
    down = [line for line in lines if UNAVAILABLE in line and STILL_DOWN in line]
    back = [line for line in lines if UNAVAILABLE in line and BACK in line]
    assert len(down) == 1, stderr
    assert len(back) == 1, stderr


@pytest.mark.parametrize("outage", list(OUTAGES.values()), ids=list(OUTAGES))
def test_outage_during_a_rollout_that_succeeds_ends_in_success(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, proxy: ApiFaultProxy, outage: Outage
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    # v2 is first probed 8 s after it starts: the outage falls inside the wait.
    probe = {**web()["spec"]["template"]["spec"]["containers"][0]["readinessProbe"], "initialDelaySeconds": 8}
    write_manifests(manifests, web(readinessProbe=probe))

    running = deployer.start("v2", manifests, namespace, "--timeout", "2m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the wait phase")
        proxy.outage(outage.fault, OUTAGE_SECONDS, status=outage.status, retry_after=outage.retry_after)
        done = running.finish(timeout=180)
    finally:
        running.kill()

    assert done.code == EXIT_OK, done.explain()
    assert proxy.windows_ended == 1
    assert_said_once_down_and_once_back(done.stderr)
    assert judge.image(namespace) == f"{repo}:v2"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v2"}
    assert not judge.exists(namespace, "lease/deployer-lock"), "the deploy lock was left behind"


# Crashes some three seconds into its life, inside the outage (if the machine is slow, after it: the test still
# holds); web_images' crash exits at once.
CRASH_LATE = ["/bin/sh", "-c", f"echo starting; sleep 3; echo '{CRASH_LOG}'; exit 1"]


@pytest.mark.parametrize(
    ("tag", "command", "phase", "fault"),
    [
        ("v2", CRASH_LATE, "==> Wait", Fault.DROP),
        ("crash", None, "==> Roll back", Fault.REFUSE),
    ],
    ids=["failure arrives during the outage", "outage during the rollback"],
)
def test_outage_during_a_failing_rollout_still_rolls_back(
    deployer: Deployer,
    judge: Kubectl,
    manifests: Path,
    namespace: str,
    proxy: ApiFaultProxy,
    tag: str,
    command: list[str] | None,
    phase: str,
    fault: Fault,
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    if command:
        write_manifests(manifests, web(command=command))

    running = deployer.start(tag, manifests, namespace, "--timeout", "2m", "--rollback-timeout", "1m")
    try:
        running.wait_for_line(lambda line: line.startswith(phase), 120, f"the phase {phase}")
        proxy.outage(fault, OUTAGE_SECONDS)
        done = running.finish(timeout=180)
    finally:
        running.kill()

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "CrashLoopBackOff" in done.stderr, done.explain()
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert judge.image(namespace) == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}
    assert not judge.exists(namespace, "lease/deployer-lock"), "the deploy lock was left behind"
