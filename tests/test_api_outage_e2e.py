"""`deployer run` through a Kubernetes API outage, end to end: what a non-HA control plane's maintenance does.

deployer talks to the simulator through tests/fakes/api_fault_proxy.py, which cuts every connection and then
drops, refuses or answers 503/429 to new ones for five seconds while the cluster itself (the simulator's
controllers and kubelet) carries on. The real kubectl, talking to the simulator directly, judges what is live
afterwards; the deploy lock must be gone whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy_scenarios import (
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Kubectl,
    deployed,
    deployment,
    write_manifests,
)
from tests.fakes.api_fault_proxy import ApiFaultProxy, Fault, running_fault_proxy
from tests.kubesim import Behaviour, KubeSim

pytestmark = pytest.mark.kubectl

REPO = "registry.example/acme/web"
OUTAGE_SECONDS = 5.0
UNAVAILABLE = "the Kubernetes API at"
STILL_DOWN = "is unavailable"
BACK = "is available again"


@pytest.fixture
def sim(kubesim: KubeSim) -> KubeSim:
    # Crashes some three seconds into its life (150 simulated seconds at 50x): inside the outage.
    kubesim.kubelet.set_behaviour("*:crash-late*", Behaviour(crash=True, crash_after=150, ready_after=1000))
    kubesim.kubelet.set_behaviour("*:crash-now*", Behaviour(crash=True, crash_after=0.5, ready_after=1000))
    return kubesim


@pytest.fixture
def proxy(sim: KubeSim) -> Iterator[ApiFaultProxy]:
    with running_fault_proxy("127.0.0.1", sim.port, sim.ca_pem) as running:
        yield running


@pytest.fixture
def deployer(proxy: ApiFaultProxy, sim: KubeSim, tmp_path: Path) -> Deployer:
    kubeconfig = proxy.write_kubeconfig(tmp_path / "kubeconfig-through-proxy", sim.admin_token)
    return Deployer.under(tmp_path, kubeconfig)


@pytest.fixture
def judge(kubectl: str, sim: KubeSim, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, sim.kubeconfig_path)


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    # One replica and a progress deadline far away: the rollout's own pace, not a deadline, decides.
    return write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1, progress_deadline_seconds=36000))


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
    deployer: Deployer, judge: Kubectl, manifests: Path, proxy: ApiFaultProxy, outage: Outage
) -> None:
    deployed(deployer, "v1", manifests, "shop")

    # Ready 8 s after it starts (400 simulated seconds): the whole outage falls inside the wait.
    running = deployer.start("ready-after-400s", manifests, "shop", "--timeout", "2m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 30, "the wait phase")
        proxy.outage(outage.fault, OUTAGE_SECONDS, status=outage.status, retry_after=outage.retry_after)
        done = running.finish(timeout=120)
    finally:
        running.kill()

    assert done.code == EXIT_OK, done.explain()
    assert proxy.windows_ended == 1
    assert_said_once_down_and_once_back(done.stderr)
    assert judge.image("shop") == f"{REPO}:ready-after-400s"
    assert judge.serving_images("shop", "web") == {f"{REPO}:ready-after-400s"}
    assert not judge.exists("shop", "lease/deployer-lock"), "the deploy lock was left behind"


@pytest.mark.parametrize(
    ("tag", "phase", "fault"),
    [
        ("crash-late", "==> Wait", Fault.DROP),
        ("crash-now", "==> Roll back", Fault.REFUSE),
    ],
    ids=["failure arrives during the outage", "outage during the rollback"],
)
def test_outage_during_a_failing_rollout_still_rolls_back(
    deployer: Deployer, judge: Kubectl, manifests: Path, proxy: ApiFaultProxy, tag: str, phase: str, fault: Fault
) -> None:
    deployed(deployer, "v1", manifests, "shop")

    running = deployer.start(tag, manifests, "shop", "--timeout", "2m", "--rollback-timeout", "1m")
    try:
        running.wait_for_line(lambda line: line.startswith(phase), 60, f"the phase {phase}")
        proxy.outage(fault, OUTAGE_SECONDS)
        done = running.finish(timeout=180)
    finally:
        running.kill()

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "CrashLoopBackOff" in done.stderr, done.explain()
    assert f"rolled back deployment/web to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert judge.image("shop") == f"{REPO}:v1"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v1"}
    assert not judge.exists("shop", "lease/deployer-lock"), "the deploy lock was left behind"
