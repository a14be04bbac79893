"""deployer.kube.Cluster against the Kubernetes API simulator, with the real kubectl as the judge where it matters.

Each test works in a namespace of its own on one simulator per module. The simulator's clock runs
SPEED times faster than real time, so controllers' deadlines and back-offs pass quickly; deployer's own
timeouts (wait, rollback, lock) are real seconds.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployer import deploying
from deployer.console import Console
from deployer.credentials import KubeCredentials
from deployer.diagnoses import Diagnosis
from deployer.errors import (
    ApplyError,
    CredentialsExpiredError,
    DigitalOceanError,
    KubernetesError,
    LockLostError,
    LockTimeoutError,
    RunCancelledError,
)
from deployer.kube import Cluster, RollbackResult, WaitOutcome, WaitResult, without_value_dumps
from deployer.rollbacks import LiveRecord, ObjectRef, RollbackAction, RollbackStep
from deployer.settings import RolloutSettings
from tests.conftest import require_real_part
from tests.deploy_scenarios import wait_until
from tests.kubesim import Behaviour, KubeSim

SPEED = 20.0
KUBECTL = shutil.which("kubectl")
_namespaces = itertools.count(1)


@pytest.fixture(scope="module")
def sim() -> Iterator[KubeSim]:
    simulator = KubeSim.start(kubelet="scripted", clock_speed=SPEED)
    simulator.kubelet.set_behaviour("*:bad*", Behaviour(pull_error=True))
    simulator.kubelet.set_behaviour(
        # Crashes before its readiness would be reached, as a crash at start-up does behind a readiness probe.
        "*:crash*",
        Behaviour(crash=True, crash_after=0.5, ready_after=30, logs="starting\npanic: DATABASE_URL is not set\n"),
    )
    simulator.kubelet.set_behaviour("*:never-ready*", Behaviour(never_ready=True, logs="waiting for the database\n"))
    try:
        yield simulator
    finally:
        simulator.stop()


def credentials(sim: KubeSim, token: str | None = None, expires_at: datetime | None = None) -> KubeCredentials:
    return KubeCredentials(sim.kubeconfig_dict(token), "kubesim", "the simulator's kubeconfig", expires_at)


@pytest.fixture
def cluster(sim: KubeSim) -> Iterator[Cluster]:
    with Cluster.connect(credentials(sim)) as connected:
        yield connected


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    name = f"rollout-{next(_namespaces)}"
    cluster.ensure_namespace(name)
    return name


def kubectl(sim: KubeSim, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    require_real_part(KUBECTL is not None, "kubectl is not installed")
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(sim.kubeconfig_path), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


def live_image(sim: KubeSim, namespace: str, kind: str, name: str) -> str:
    jsonpath = "{.spec.template.spec.containers[0].image}"
    return kubectl(sim, "-n", namespace, "get", kind, name, "-o", f"jsonpath={jsonpath}").stdout


def deployment(
    namespace: str, image: str, *, name: str = "web", replicas: int = 2, env_from: str | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image}
    if env_from:
        container["envFrom"] = [{"configMapRef": {"name": env_from}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"kubernetes.io/change-cause": image}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def workload(namespace: str, kind: str, image: str, name: str = "db") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": image}]},
        },
    }
    if kind == "StatefulSet":
        spec.update({"replicas": 2, "serviceName": name})
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@dataclass
class Deploy:
    """What one run did: the record, the wait, and (after a failure) the rollback."""

    record: LiveRecord
    wait: WaitResult
    steps: list[RollbackStep] = field(default_factory=list)
    rollback: RollbackResult | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)


class Unrivalled:
    """The deploy lock of a namespace no other run deploys to: never lost."""

    def verify(self) -> None:
        pass


def deploy(
    cluster: Cluster,
    objects: list[dict[str, Any]],
    *,
    timeout: float = 20,
    tolerate_failures_for: float = 0,
    delete_created_on_failure: bool = False,
    cancel: threading.Event | None = None,
) -> Deploy:
    """deployer run's own sequence (deploying.apply_and_wait, then settle_failed_rollout on failure), after the
    record; ``progress`` is every line it printed."""
    out = io.StringIO()
    console = Console(out=out, env={}, interactive=False)
    rollout = RolloutSettings(
        timeout=timeout,
        tolerate_failures_for=tolerate_failures_for,
        delete_created_on_failure=delete_created_on_failure,
        rollback_timeout=20,
    )
    record = cluster.record(objects)
    attempt = deploying.apply_and_wait(cluster, objects, record, rollout, console, cancel)
    assert attempt.waited is not None, attempt.failure_reason
    run = Deploy(record, attempt.waited, diagnoses=attempt.diagnoses)
    if not attempt.succeeded:
        settled = deploying.settle_failed_rollout(cluster, attempt, rollout, console, Unrivalled())
        run.steps, run.rollback = settled.steps, settled.restored
    run.progress = out.getvalue().splitlines()
    return run


# --- success -------------------------------------------------------------------------------------------------


@pytest.mark.kubectl
def test_apply_and_wait_succeeds_and_kubectl_agrees(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    run = deploy(cluster, [deployment(namespace, "web:1")])
    assert run.wait.outcome is WaitOutcome.DONE, run.wait.reason
    assert run.progress[-1] == "web: 2/2 updated, 2/2 available"
    status = kubectl(sim, "-n", namespace, "rollout", "status", "deployment/web", "--timeout=5s")
    assert status.stdout.strip() == 'deployment "web" successfully rolled out'
    assert run.wait.verdicts[ObjectRef("apps/v1", "Deployment", namespace, "web")].message == status.stdout.strip()
    second = deploy(cluster, [deployment(namespace, "web:2")])
    assert second.wait.ok
    assert live_image(sim, namespace, "deployment", "web") == "web:2"
    history = kubectl(sim, "-n", namespace, "rollout", "history", "deployment/web").stdout
    assert "web:2" in history


def test_apply_reports_created_configured_and_unchanged(cluster: Cluster, namespace: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": namespace},
        "data": {"a": "1"},
    }
    first = cluster.apply([config], record=cluster.record([config]))
    assert [r.action for r in first] == ["created"]
    again = cluster.apply([config], record=cluster.record([config]))
    assert [r.action for r in again] == ["unchanged"]
    changed = {**config, "data": {"a": "2"}}
    assert [r.action for r in cluster.apply([changed], record=cluster.record([changed]))] == ["configured"]


def test_objects_are_applied_in_dependency_order(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-env", "namespace": namespace},
        "data": {},
    }
    results = cluster.apply([deployment(namespace, "web:1", env_from="web-env"), config])
    assert [r.ref.kind for r in results] == ["ConfigMap", "Deployment"]


def test_unknown_kind_names_the_missing_crd(cluster: Cluster, namespace: str) -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": namespace}}
    with pytest.raises(ApplyError, match='no matches for kind "Widget" in version "example.com/v1"'):
        cluster.apply([widget])


# --- failing fast and rolling back ---------------------------------------------------------------------------


@pytest.mark.kubectl
def test_bad_image_fails_fast_and_rollback_restores_the_previous_template(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    run = deploy(cluster, [deployment(namespace, "web:bad-1")])
    assert run.wait.outcome is WaitOutcome.FAILED
    # Caught from the pod's status, not at the progress deadline (600 simulated seconds = 30 s here): said by the
    # reason, not by wall time, which a loaded machine stretches.
    assert "ImagePullBackOff" in run.wait.reason or "ErrImagePull" in run.wait.reason
    assert "ProgressDeadlineExceeded" not in run.wait.reason
    assert run.wait.reason.startswith("deployment/web: pod web-")
    (step,) = run.steps
    assert (
        step.action is RollbackAction.PATCH and step.summary == "roll back deployment/web to revision 1 (image web:1)"
    )
    assert run.rollback is not None and run.rollback.ok, run.rollback
    assert [o.state for o in run.rollback.outcomes] == ["rolled back"]
    assert live_image(sim, namespace, "deployment", "web") == "web:1"
    # The change-cause came back with the template's annotations, as kubectl rollout undo does it.
    annotations = json.loads(kubectl(sim, "-n", namespace, "get", "deployment", "web", "-o", "json").stdout)[
        "metadata"
    ]["annotations"]
    assert annotations["kubernetes.io/change-cause"] == "web:1"


def test_diagnosis_of_a_bad_image_names_the_pull_error(cluster: Cluster, namespace: str) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    record = cluster.record([deployment(namespace, "web:bad-2")])
    cluster.apply([deployment(namespace, "web:bad-2")], record=record)
    result = cluster.wait([ObjectRef("apps/v1", "Deployment", namespace, "web")], timeout=20)
    (diagnosis,) = cluster.diagnose(result)
    text = diagnosis.text()
    assert text.startswith("deployment/web failed: pod web-")
    assert "web:bad-2" in text
    assert "  events:" in text and "Failed" in text


def test_diagnosis_of_a_workload_stopped_unfinished_by_another_ones_failure_says_so(
    cluster: Cluster, namespace: str
) -> None:
    two = [deployment(namespace, "web:1"), deployment(namespace, "worker:1", name="worker")]
    assert deploy(cluster, two).wait.ok
    # The worker's new pods are healthy, only slow: still rolling out when web's bad image fails the wait.
    run = deploy(
        cluster, [deployment(namespace, "web:bad-4"), deployment(namespace, "worker:ready-after-1000s", name="worker")]
    )
    assert run.wait.outcome is WaitOutcome.FAILED
    texts = {d.name: d.text() for d in run.diagnoses}
    assert texts["web"].startswith("deployment/web failed: pod web-"), texts["web"]
    # Not "failed: failed: ...": what stopped it was the other workload, and kubectl's last word on it follows.
    headline = texts["worker"].splitlines()[0]
    assert headline.startswith(
        'deployment/worker failed: not finished when another workload failed: Waiting for deployment "worker"'
    ), headline


def test_crash_loop_is_detected_and_diagnosed_with_the_crashed_containers_logs(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    run = deploy(cluster, [deployment(namespace, "web:crash-1")])
    assert run.wait.outcome is WaitOutcome.FAILED
    assert "CrashLoopBackOff" in run.wait.reason
    (diagnosis,) = run.diagnoses
    text = diagnosis.text()
    assert "(previous container):" in text
    assert "| panic: DATABASE_URL is not set" in text
    assert run.rollback is not None and run.rollback.ok
    assert live_image(sim, namespace, "deployment", "web") == "web:1"


def test_missing_config_map_fails_fast_with_create_container_config_error(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    run = deploy(cluster, [deployment(namespace, "web:2", env_from="no-such-config")])
    assert run.wait.outcome is WaitOutcome.FAILED
    assert "CreateContainerConfigError" in run.wait.reason
    assert "no-such-config" in run.wait.reason
    assert run.rollback is not None and run.rollback.ok
    assert live_image(sim, namespace, "deployment", "web") == "web:1"


def test_never_ready_times_out_then_rolls_back(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    run = deploy(cluster, [deployment(namespace, "web:never-ready-1")], timeout=2)
    assert run.wait.outcome is WaitOutcome.TIMED_OUT
    assert run.wait.reason.startswith('timed out after 2s: Waiting for deployment "web" rollout to finish')
    assert run.wait.elapsed >= 2  # no upper wall-clock bound: the reason above says it ended at the timeout
    (diagnosis,) = run.diagnoses
    assert diagnosis.reason.startswith("timed out: Waiting for deployment")
    assert "| waiting for the database" in diagnosis.text()
    assert run.rollback is not None and run.rollback.ok
    assert live_image(sim, namespace, "deployment", "web") == "web:1"


def test_tolerate_failures_for_rides_out_a_failure_for_that_long(cluster: Cluster, namespace: str) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    run = deploy(cluster, [deployment(namespace, "web:bad-3")], tolerate_failures_for=1.5)
    assert run.wait.outcome is WaitOutcome.FAILED
    assert run.wait.elapsed >= 1.5


@pytest.mark.kubectl
def test_two_workloads_one_failing_both_are_restored(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    first = [deployment(namespace, "web:1", name="web"), deployment(namespace, "api:1", name="api")]
    assert deploy(cluster, first).wait.ok
    run = deploy(cluster, [deployment(namespace, "web:2", name="web"), deployment(namespace, "api:bad-1", name="api")])
    assert run.wait.outcome is WaitOutcome.FAILED
    assert run.wait.reason.startswith("deployment/api:")
    assert {s.ref.name: s.action for s in run.steps} == {"web": RollbackAction.PATCH, "api": RollbackAction.PATCH}
    assert run.rollback is not None and run.rollback.ok, run.rollback.problems
    assert live_image(sim, namespace, "deployment", "web") == "web:1"
    assert live_image(sim, namespace, "deployment", "api") == "api:1"


@pytest.mark.parametrize("delete", [False, True])
def test_first_deploy_has_no_previous_revision(sim: KubeSim, cluster: Cluster, namespace: str, delete: bool) -> None:
    run = deploy(cluster, [deployment(namespace, "web:bad-4")], delete_created_on_failure=delete)
    assert run.wait.outcome is WaitOutcome.FAILED
    (step,) = run.steps
    assert "first deploy: there is no previous revision" in step.summary
    assert run.rollback is not None
    ref = ObjectRef("apps/v1", "Deployment", namespace, "web")
    if delete:
        assert [o.state for o in run.rollback.outcomes] == ["deleted"]
        assert cluster.get(ref) is None
    else:
        assert [o.state for o in run.rollback.outcomes] == ["left in place"]
        assert cluster.get(ref) is not None


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_stateful_and_daemon_sets_roll_back_through_their_controller_revisions(
    sim: KubeSim, cluster: Cluster, namespace: str, kind: str
) -> None:
    assert deploy(cluster, [workload(namespace, kind, "db:1")]).wait.ok
    run = deploy(cluster, [workload(namespace, kind, "db:bad-1")])
    assert run.wait.outcome is WaitOutcome.FAILED, run.wait.reason
    (step,) = run.steps
    assert (step.action, step.patch_type) == (RollbackAction.PATCH, "strategic-merge")
    assert run.rollback is not None and run.rollback.ok, run.rollback.problems
    assert live_image(sim, namespace, kind.lower(), "db") == "db:1"


def test_objects_other_than_workloads_get_their_recorded_content_back(cluster: Cluster, namespace: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": namespace},
        "data": {"mode": "old"},
    }
    assert deploy(cluster, [config, deployment(namespace, "web:1")]).wait.ok
    new_config = {**config, "data": {"mode": "new"}}
    run = deploy(cluster, [new_config, deployment(namespace, "web:bad-5")])
    assert [s.action for s in run.steps] == [RollbackAction.REPLACE, RollbackAction.PATCH]
    restored = cluster.get(ObjectRef("v1", "ConfigMap", namespace, "cfg"))
    assert restored is not None and restored["data"] == {"mode": "old"}


def test_cancel_ends_the_wait_at_once(cluster: Cluster, namespace: str) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    cluster.apply([deployment(namespace, "web:never-ready-2")])
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        result = cluster.wait([ObjectRef("apps/v1", "Deployment", namespace, "web")], timeout=30, cancel=cancel)
    finally:
        timer.cancel()
    # Ended by the cancel, not by the 30 s timeout (when a cancel wins: the table tests of rollout_wait.step).
    assert (result.outcome, result.reason) == (WaitOutcome.CANCELLED, "cancelled while waiting for the rollout")


# --- taking over from kubectl ----------------------------------------------------------------------------------


@pytest.mark.kubectl
def test_client_side_applied_objects_are_taken_over_and_the_fields_named(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    manifest = deployment(namespace, "web:1")
    kubectl(sim, "apply", "--validate=false", "-f", "-", input=json.dumps(manifest))
    changed = deployment(namespace, "web:2", replicas=3)
    record = cluster.record([changed])
    (result,) = cluster.apply([changed], record=record)
    assert result.action == "configured"
    taken = result.taken_over.get("kubectl-client-side-apply", [])
    assert ".spec.replicas" in taken
    assert '.spec.template.spec.containers[name="web"].image' in taken
    assert live_image(sim, namespace, "deployment", "web") == "web:2"


@pytest.mark.kubectl
def test_no_force_conflicts_refuses_and_names_fields_and_manager(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    kubectl(sim, "apply", "--validate=false", "-f", "-", input=json.dumps(deployment(namespace, "web:1")))
    with pytest.raises(ApplyError) as refused:
        cluster.apply([deployment(namespace, "web:2", replicas=3)], force=False)
    message = str(refused.value)
    assert "deployment/web conflicts with other field managers" in message
    assert ".spec.replicas" in message and "kubectl-client-side-apply" in message
    assert refused.value.status == 409
    assert live_image(sim, namespace, "deployment", "web") == "web:1"


def managers_of(sim: KubeSim, namespace: str, resource: str) -> dict[tuple[str, str], Any]:
    shown = kubectl(sim, "-n", namespace, "get", resource, "-o", "json", "--show-managed-fields").stdout
    return {(m["manager"], m["operation"]): m for m in json.loads(shown)["metadata"].get("managedFields") or []}


@pytest.mark.kubectl
def test_client_side_apply_ownership_is_upgraded_with_one_request_for_such_objects_only(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    kubectl(sim, "apply", "--validate=false", "-f", "-", input=json.dumps(deployment(namespace, "web:1")))
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}}
    cluster.apply([config])
    changed = deployment(namespace, "web:2")
    del changed["metadata"]["annotations"]
    record = cluster.record([changed, config])
    sim.reset_request_counts()

    results = cluster.apply([config, changed], record=record)

    assert [(r.ref.kind, r.upgraded) for r in results] == [
        ("ConfigMap", []),
        ("Deployment", ["kubectl-client-side-apply"]),
    ]
    counts = sim.request_counts
    # One upgrade patch after the apply; the Deployment controller, reacting to the apply, may change the
    # object in between, and then the guarded patch is refused and costs one read and one patch more.
    assert counts[("patch", "deployments")] == 2 + counts[("get", "deployments")]
    assert counts[("get", "deployments")] <= 1 and counts[("patch", "configmaps")] == 1
    assert set(managers_of(sim, namespace, "deployment/web")) == {("deployer", "Apply")}
    live = json.loads(kubectl(sim, "-n", namespace, "get", "deployment/web", "-o", "json").stdout)
    # The last-applied annotation and the change-cause kubectl wrote were kubectl's alone: now dropped.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (live["metadata"].get("annotations") or {})
    assert "kubernetes.io/change-cause" not in (live["metadata"].get("annotations") or {})
    assert live_image(sim, namespace, "deployment", "web") == "web:2"


@pytest.mark.kubectl
def test_client_side_apply_upgrade_reads_again_when_the_object_changed_since_the_record(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    kubectl(sim, "apply", "--validate=false", "-f", "-", input=json.dumps(deployment(namespace, "web:1")))
    changed = deployment(namespace, "web:2")
    record = cluster.record([changed])
    kubectl(sim, "-n", namespace, "label", "deployment/web", "tier=front")
    sim.reset_request_counts()

    (result,) = cluster.apply([changed], record=record)

    assert result.upgraded == ["kubectl-client-side-apply"]
    counts = sim.request_counts
    # The upgrade from the record is refused (409), read again, sent again; then the apply.
    assert (counts[("patch", "deployments")], counts[("get", "deployments")]) == (3, 1)
    assert set(managers_of(sim, namespace, "deployment/web")) == {("deployer", "Apply"), ("kubectl-label", "Update")}
    assert ".spec.replicas" in result.taken_over["kubectl-client-side-apply"]


@pytest.mark.kubectl
def test_client_side_apply_ownership_is_upgraded_without_a_record_as_kubectl_does(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    kubectl(sim, "apply", "--validate=false", "-f", "-", input=json.dumps(deployment(namespace, "web:1")))
    changed = deployment(namespace, "web:2")
    del changed["metadata"]["annotations"]
    sim.reset_request_counts()

    (result,) = cluster.apply([changed])

    assert result.upgraded == ["kubectl-client-side-apply"]
    # kubectl's order: apply, upgrade from its answer, apply again so that the dropped fields go. The
    # controller's reaction to the new image may come between the apply and the upgrade: then one more read
    # and upgrade each time.
    counts = sim.request_counts
    assert counts[("patch", "deployments")] == 3 + counts[("get", "deployments")]
    assert set(managers_of(sim, namespace, "deployment/web")) == {("deployer", "Apply")}
    live = json.loads(kubectl(sim, "-n", namespace, "get", "deployment/web", "-o", "json").stdout)
    assert "kubernetes.io/change-cause" not in (live["metadata"].get("annotations") or {})


@pytest.mark.kubectl
def test_without_force_the_upgrade_follows_an_apply_that_went_through_as_kubectl_does(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    kubectl(sim, "apply", "--validate=false", "-f", "-", input=json.dumps(deployment(namespace, "web:1")))
    same = deployment(namespace, "web:1")
    del same["metadata"]["annotations"]
    record = cluster.record([same])
    sim.reset_request_counts()

    (result,) = cluster.apply([same], record=record, force=False)

    assert result.upgraded == ["kubectl-client-side-apply"]
    assert sim.request_counts[("patch", "deployments")] == 3 + sim.request_counts[("get", "deployments")]
    assert set(managers_of(sim, namespace, "deployment/web")) == {("deployer", "Apply")}


# --- the deploy lock -------------------------------------------------------------------------------------------


def test_second_run_waits_for_the_lock_then_gets_it(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    first = cluster.acquire_lock(namespace, "https://ci/run/1", timeout=5)
    with Cluster.connect(credentials(sim)) as other:
        with pytest.raises(LockTimeoutError, match=r"held by https://ci/run/1 \(\w+\)"):
            other.acquire_lock(namespace, "https://ci/run/2", timeout=0.5)
        threading.Timer(0.5, first.release).start()
        said: list[str] = []
        second = other.acquire_lock(namespace, "https://ci/run/2", timeout=60, on_progress=said.append)
        second.release()
    # It waited for the first run, then got the lock once that run released it (not when its lease expired,
    # 60 s later, which the timeout would have ended first).
    assert len(said) == 1 and said[0].startswith(
        f"waiting for the deploy lock in {namespace}, held by https://ci/run/1"
    )
    assert second.holder.startswith("https://ci/run/2")


def test_cancel_while_waiting_for_the_lock_is_a_cancellation_not_a_lock_timeout(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    cancel = threading.Event()
    cancel.set()

    def by_sigint(when: str) -> RunCancelledError:
        return RunCancelledError("SIGINT", 2, f"cancelled by SIGINT {when}; nothing was applied to the cluster")

    with cluster.acquire_lock(namespace, "https://ci/run/1", timeout=5), Cluster.connect(credentials(sim)) as other:
        with pytest.raises(RunCancelledError) as told:
            other.acquire_lock(namespace, "https://ci/run/2", timeout=60, cancel=cancel, cancelled=by_sigint)
        assert (
            str(told.value)
            == "cancelled by SIGINT while waiting for the deploy lock; nothing was applied to the cluster"
        )
        assert told.value.exit_code == 130
        # Without a way to name the signal: still a cancellation, with a cancelled workflow's exit code.
        with pytest.raises(RunCancelledError) as plain:
            other.acquire_lock(namespace, "https://ci/run/2", timeout=60, cancel=cancel)
        assert plain.value.exit_code == 143


def test_missing_namespace_without_create_names_the_flag_and_claims_no_api_answer(cluster: Cluster) -> None:
    with pytest.raises(KubernetesError) as missing:
        cluster.ensure_namespace("no-such-namespace", create=False)
    assert str(missing.value) == 'namespace "no-such-namespace" does not exist (--no-create-namespace)'
    assert missing.value.status is None


@pytest.mark.kubectl
def test_lock_of_a_run_that_died_expires_on_its_own(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    long_ago = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "deployer-lock", "namespace": namespace},
        "spec": {"holderIdentity": "https://ci/run/dead", "leaseDurationSeconds": 60, "renewTime": long_ago},
    }
    kubectl(sim, "create", "--validate=false", "-f", "-", input=json.dumps(lease))
    said: list[str] = []
    with cluster.acquire_lock(namespace, "https://ci/run/3", timeout=5, on_progress=said.append) as lock:
        assert lock.holder.startswith("https://ci/run/3")
        holder = kubectl(sim, "-n", namespace, "get", "lease", "deployer-lock", "-o", "jsonpath={.spec.holderIdentity}")
        assert holder.stdout == lock.holder
    # Taken over at once: its renewTime says it expired long ago, so there was nothing to wait for.
    assert said == []
    gone = kubectl(sim, "-n", namespace, "get", "lease", "deployer-lock", check=False)
    assert gone.returncode != 0


LOST_ANSWER = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "upstream reset", "code": 503}


@pytest.mark.kubectl
@pytest.mark.parametrize("method", ["POST", "PUT"], ids=["lease created", "lease taken over"])
def test_a_lock_whose_taking_went_through_but_whose_answer_was_lost_is_ours(
    sim: KubeSim, cluster: Cluster, namespace: str, method: str
) -> None:
    if method == "PUT":  # a dead run's lease, long unrenewed: taken over with a PUT
        long_ago = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": "https://ci/run/dead", "leaseDurationSeconds": 60, "renewTime": long_ago}
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "deployer-lock", "namespace": namespace},
            "spec": spec,
        }
        kubectl(sim, "create", "--validate=false", "-f", "-", input=json.dumps(lease))
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/deployer-lock"
    else:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    sim.answer_once(method, path, 503, LOST_ANSWER, served=True)

    # Without knowing its own lease again, the run would wait on itself until its lock timeout.
    with cluster.acquire_lock(namespace, "https://ci/run/8", timeout=5) as lock:
        holder = kubectl(sim, "-n", namespace, "get", "lease", "deployer-lock", "-o", "jsonpath={.spec.holderIdentity}")
        assert holder.stdout == lock.holder


def test_lock_timeout_zero_waits_for_the_lock_as_long_as_it_takes(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    first = cluster.acquire_lock(namespace, "https://ci/run/6", timeout=5)
    with Cluster.connect(credentials(sim)) as other:
        threading.Timer(1.0, first.release).start()
        second = other.acquire_lock(namespace, "https://ci/run/7", timeout=0)
        second.release()
    assert second.holder.startswith("https://ci/run/7")


@pytest.mark.kubectl
@pytest.mark.parametrize("taken", [True, False], ids=["taken by another run", "lease gone"])
def test_a_lock_another_run_took_is_found_lost_and_left_to_that_run(
    sim: KubeSim, cluster: Cluster, namespace: str, taken: bool
) -> None:
    lost = threading.Event()
    lock = cluster.acquire_lock(namespace, "https://ci/run/4", timeout=5, lease_seconds=3, on_lost=lost.set)
    try:
        # What another run does once this run's lease ran out unrenewed: write itself over it, or (finished
        # already) delete it.
        if taken:
            patch = json.dumps({"spec": {"holderIdentity": "https://ci/run/5"}})
            kubectl(sim, "-n", namespace, "patch", "lease", "deployer-lock", "--type=merge", "-p", patch)
        else:
            kubectl(sim, "-n", namespace, "delete", "lease", "deployer-lock")
        with pytest.raises(LockLostError) as caught:
            lock.verify()
        # The renewer, a third of the lease later, finds it too and tells the run to stop.
        assert lost.wait(10)
    finally:
        lock.release()

    expected = "https://ci/run/5 holds it now" if taken else "its lease is gone"
    assert f"lost the deploy lock in namespace {namespace}: {expected}" in str(caught.value)
    assert lock.lost_to == ("https://ci/run/5" if taken else "")
    if taken:  # released without deleting the other run's lease
        holder = kubectl(sim, "-n", namespace, "get", "lease", "deployer-lock", "-o", "jsonpath={.spec.holderIdentity}")
        assert holder.stdout == "https://ci/run/5"


@pytest.mark.kubectl
def test_a_pod_template_another_writer_changed_after_the_apply_fails_the_wait(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    deploy(cluster, [deployment(namespace, "web:1")])
    objects = [deployment(namespace, "web:never-ready")]
    applied = cluster.apply(objects, record=cluster.record(objects))
    kubectl(sim, "-n", namespace, "set", "image", "deployment/web", "web=web:2")

    result = cluster.wait([applied[0].ref], timeout=20, applied=applied)

    # web:2 rolls out fine, but it is not what this run applied: the wait must not pass on it.
    assert result.outcome is WaitOutcome.FAILED, result.reason
    assert "TemplateReplaced: its pod template is no longer the one this run applied" in result.reason


# --- credentials ---------------------------------------------------------------------------------------------


def test_401_after_expiry_is_credentials_expired(sim: KubeSim) -> None:
    token = sim.issue_token(expiry_seconds=1.0)
    deadline = time.monotonic() + 5
    past = datetime.now(UTC) - timedelta(seconds=1)
    with Cluster.connect(credentials(sim, token, expires_at=past)) as expired:
        while True:
            try:
                expired.get(ObjectRef("v1", "Namespace", None, "default"))
            except CredentialsExpiredError as e:
                assert e.status == 401
                assert "expired" in str(e)
                break
            assert time.monotonic() < deadline, "the simulator never refused the token"
            time.sleep(0.05)


def test_401_without_known_expiry_is_a_plain_kubernetes_error(sim: KubeSim) -> None:
    with Cluster.connect(credentials(sim, "not-a-token")) as refused:
        with pytest.raises(KubernetesError) as error:
            refused.get(ObjectRef("v1", "Namespace", None, "default"))
    assert not isinstance(error.value, CredentialsExpiredError)
    assert error.value.status == 401
    assert "not-a-token" not in str(error.value)


def renewable(sim: KubeSim, token: str, renew: Callable[[], KubeCredentials]) -> KubeCredentials:
    return KubeCredentials(sim.kubeconfig_dict(token), "kubesim", "the short-lived credentials", None, renew=renew)


def test_a_refused_rollback_request_renews_the_credentials_once_and_goes_on(sim: KubeSim, namespace: str) -> None:
    renewed: list[str] = []

    def renew() -> KubeCredentials:
        renewed.append("asked")
        return credentials(sim)

    record = cluster_record(sim, namespace)
    with Cluster.connect(renewable(sim, "revoked-token", renew)) as cluster:
        with pytest.raises(KubernetesError):
            cluster.fetch([record.objects[0].ref])  # outside the rollback: a 401 is an error, nothing renewed
        assert renewed == []

        steps = cluster.plan_rollback(record)

    assert renewed == ["asked"]
    assert [step.ref.name for step in steps] == ["web"]


def test_credentials_that_cannot_be_renewed_leave_the_rollback_a_refusal_saying_why(
    sim: KubeSim, namespace: str
) -> None:
    def renew() -> KubeCredentials:
        raise DigitalOceanError("DigitalOcean refused to issue a kubeconfig", status=403)

    with Cluster.connect(renewable(sim, "revoked-token", renew)) as cluster:
        with pytest.raises(KubernetesError) as refused:
            cluster.plan_rollback(cluster_record(sim, namespace))

    assert refused.value.status == 401
    assert "new ones could not be fetched: DigitalOcean refused to issue a kubeconfig (HTTP 403)" in str(refused.value)


def cluster_record(sim: KubeSim, namespace: str) -> LiveRecord:
    with Cluster.connect(credentials(sim)) as cluster:
        return cluster.record([deployment(namespace, "web:1")])


# --- requests ------------------------------------------------------------------------------------------------


def wait_requests(sim: KubeSim) -> dict[tuple[str, str], int]:
    return {key: n for key, n in sim.request_counts.items() if key[0] in ("list", "watch", "get")}


@pytest.mark.parametrize("workloads", [1, 5])
def test_waiting_does_not_poll(sim: KubeSim, cluster: Cluster, namespace: str, workloads: int) -> None:
    objects = [deployment(namespace, "web:never-ready-3", name=f"web-{i}", replicas=1) for i in range(workloads)]
    cluster.apply(objects)
    refs = [ObjectRef("apps/v1", "Deployment", namespace, f"web-{i}") for i in range(workloads)]
    sim.reset_request_counts()
    result = cluster.wait(refs, timeout=2)
    assert result.outcome is WaitOutcome.TIMED_OUT
    # One list and one watch per kind, however long the wait and however many workloads.
    assert wait_requests(sim) == {
        ("list", "deployments"): 1,
        ("watch", "deployments"): 1,
        ("list", "pods"): 1,
        ("watch", "pods"): 1,
        ("list", "replicasets"): 1,
        ("watch", "replicasets"): 1,
    }


def test_pod_unschedulable_past_its_grace_period_fails_the_rollout(cluster: Cluster, namespace: str) -> None:
    assert deploy(cluster, [deployment(namespace, "web:1")]).wait.ok
    pinned = deployment(namespace, "web:2")
    pinned["spec"]["template"]["spec"]["nodeSelector"] = {"disktype": "none-has-this"}
    cluster.apply([pinned])
    ref = ObjectRef("apps/v1", "Deployment", namespace, "web")
    result = cluster.wait([ref], timeout=20, unschedulable_grace=1.0)
    # FAILED, not TIMED_OUT: the grace period ended the wait, not the 20 s timeout. The grace is honoured: not
    # before 1 s. No upper wall-clock bound: a loaded machine is slow, not wrong.
    assert result.outcome is WaitOutcome.FAILED
    assert "Unschedulable" in result.reason
    assert result.elapsed >= 1.0


def job(namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": namespace},
        "spec": {
            "backoffLimit": 1,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "migrate", "image": image}]}},
        },
    }


def test_job_is_waited_on_to_completion(cluster: Cluster, namespace: str) -> None:
    run = deploy(cluster, [job(namespace, "migrate:complete-1")])
    assert run.wait.outcome is WaitOutcome.DONE, run.wait.reason
    assert run.progress[-1] == "migrate: 1/1 succeeded"


def test_job_with_a_bad_image_fails_fast(cluster: Cluster, namespace: str) -> None:
    run = deploy(cluster, [job(namespace, "migrate:bad-1")])
    assert run.wait.outcome is WaitOutcome.FAILED
    assert "migrate" in run.wait.reason and "Image" in run.wait.reason


# --- Jobs removed once finished (ttlSecondsAfterFinished) ------------------------------------------------------


def removed_when_finished(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The Job with ttlSecondsAfterFinished: 0, which the TTL-after-finished controller deletes once finished."""
    obj["spec"].update({"ttlSecondsAfterFinished": 0, **spec})
    return obj


def job_ref(namespace: str, name: str = "migrate") -> ObjectRef:
    return ObjectRef("batch/v1", "Job", namespace, name)


def wait_until_gone(cluster: Cluster, ref: ObjectRef) -> None:
    wait_until(lambda: cluster.get(ref) is None, 20, f"{ref} to be deleted once finished")


def test_job_deleted_once_complete_while_waited_on_is_done(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    # Applied without handing the results to the wait, which lists the Job (suspended: not started yet). Its first
    # progress line holds the waiting loop while the Job runs, completes and is deleted: the loop then takes
    # Complete and DELETED together, and only the DELETED event's last state says how the Job ended.
    ref = job_ref(namespace)
    with Cluster.connect(credentials(sim)) as other:
        other.apply([removed_when_finished(job(namespace, "migrate:complete-1"), suspend=True)])
        progress: list[str] = []

        def on_progress(line: str) -> None:
            progress.append(line)
            if len(progress) == 1:
                other.apply([removed_when_finished(job(namespace, "migrate:complete-1"), suspend=False)])
                wait_until_gone(other, ref)

        result = cluster.wait([ref], timeout=20, on_progress=on_progress)

    assert result.outcome is WaitOutcome.DONE, result.reason
    # In between, the states the loop took in batches as they came (e.g. "1 running").
    assert progress[0] == "migrate: 0/1 succeeded" and progress[-1] == "migrate: 1/1 succeeded", progress


def test_job_completed_and_deleted_before_the_wait_is_judged_by_its_history_since_the_apply(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    ref = job_ref(namespace)
    applied = cluster.apply([removed_when_finished(job(namespace, "migrate:complete-1"))])
    wait_until_gone(cluster, ref)
    sim.reset_request_counts()
    progress: list[str] = []

    result = cluster.wait([ref], timeout=20, on_progress=progress.append, applied=applied)

    assert result.outcome is WaitOutcome.DONE, result.reason
    # From the state the apply answered (0/1) to the last one the replayed history holds.
    assert progress[-1] == "migrate: 1/1 succeeded", progress
    # The Jobs are watched from the apply's resourceVersion instead of listed: one request fewer, not more.
    assert wait_requests(sim) == {("watch", "jobs"): 1, ("list", "pods"): 1, ("watch", "pods"): 1}


def test_job_failed_and_deleted_before_the_wait_fails_with_the_controllers_reason(
    cluster: Cluster, namespace: str
) -> None:
    ref = job_ref(namespace)
    failing = removed_when_finished(job(namespace, "migrate:crash-1"), backoffLimit=0)
    applied = cluster.apply([failing])
    wait_until_gone(cluster, ref)

    result = cluster.wait([ref], timeout=20, applied=applied)

    assert result.outcome is WaitOutcome.FAILED
    assert result.reason.startswith("job/migrate: BackoffLimitExceeded"), result.reason


def test_job_gone_before_the_wait_whose_history_was_compacted_is_a_failure_naming_its_ttl(
    sim: KubeSim, cluster: Cluster, namespace: str
) -> None:
    ref = job_ref(namespace)
    applied = cluster.apply([removed_when_finished(job(namespace, "migrate:complete-1"))])
    wait_until_gone(cluster, ref)
    # As etcd compaction does: the watch from the apply's resourceVersion gets 410 Gone, the wait lists instead.
    sim.store.compact()
    sim.reset_request_counts()

    result = cluster.wait([ref], timeout=20, applied=applied)

    assert result.outcome is WaitOutcome.FAILED
    assert result.reason == "job/migrate: NotFound: job/migrate was deleted (ttlSecondsAfterFinished?)"
    assert sim.request_counts[("list", "jobs")] == 1


def test_job_gone_without_a_ttl_is_a_failure_without_the_hint(sim: KubeSim, cluster: Cluster, namespace: str) -> None:
    # Deleted by someone while it runs; nothing in the Job says why it went: no guess.
    ref = job_ref(namespace)
    applied = cluster.apply([job(namespace, "migrate:never-ready-1")])
    sim.store.delete("batch/v1", "Job", namespace, "migrate")

    result = cluster.wait([ref], timeout=20, applied=applied)

    assert result.outcome is WaitOutcome.FAILED
    assert result.reason == "job/migrate: NotFound: job/migrate was deleted"


def test_an_earlier_job_of_the_same_name_deleted_once_complete_does_not_pass_for_the_new_one(
    cluster: Cluster, namespace: str
) -> None:
    # The watch starts at the first Job applied, unchanged since before the previous "migrate" completed and
    # was deleted: the replay holds that deletion, of another object (uid) than the new "migrate", which
    # never finishes.
    first = job(namespace, "migrate:complete-1")
    first["metadata"]["name"] = "first"
    assert deploy(cluster, [first]).wait.ok
    cluster.apply([removed_when_finished(job(namespace, "migrate:complete-1"))])
    wait_until_gone(cluster, job_ref(namespace))
    objects = [first, removed_when_finished(job(namespace, "migrate:never-ready-1"))]
    applied = cluster.apply(objects, record=cluster.record(objects))
    assert [r.action for r in applied] == ["unchanged", "created"]

    result = cluster.wait([job_ref(namespace), job_ref(namespace, "first")], timeout=2, applied=applied)

    assert result.outcome is WaitOutcome.TIMED_OUT, result.reason
    assert result.verdicts[job_ref(namespace, "first")].done
    assert not result.verdicts[job_ref(namespace)].done


# --- messages of refusals ------------------------------------------------------------------------------------

TEMPLATE_DUMP = (
    'core.PodTemplateSpec{ObjectMeta:v1.ObjectMeta{Name:"", Labels:map[string]string{"app":"migrate"}, '
    'Annotations:map[string]string{"note":"a: b, \\"quoted\\" {brace"}}, Spec:core.PodSpec{Containers:'
    '[]core.Container{core.Container{Name:"migrate", Image:"registry.example/acme/migrate:v2"}}, '
    'RestartPolicy:"Never"}}'
)


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            f'Job.batch "migrate" is invalid: spec.template: Invalid value: {TEMPLATE_DUMP}: field is immutable',
            'Job.batch "migrate" is invalid: spec.template: Invalid value: core.PodTemplateSpec{...}: '
            "field is immutable",
        ),
        (
            f'Job.batch "migrate" is invalid: [spec.template: Invalid value: {TEMPLATE_DUMP}: field is immutable, '
            'spec.selector: Invalid value: "x": field is immutable]',
            'Job.batch "migrate" is invalid: [spec.template: Invalid value: core.PodTemplateSpec{...}: field is '
            'immutable, spec.selector: Invalid value: "x": field is immutable]',
        ),
        (
            'Service "web" is invalid: spec.ports[0].port: Invalid value: 99999: must be between 1 and 65535',
            'Service "web" is invalid: spec.ports[0].port: Invalid value: 99999: must be between 1 and 65535',
        ),
        (
            'ConfigMap "c" is invalid: data: Invalid value: "' + "x" * 200 + '": too long',
            'ConfigMap "c" is invalid: data: Invalid value: (202 characters): too long',
        ),
        ('Deployment "web" is invalid: spec.replicas: Required value', None),
    ],
    ids=["a pod template dump", "two errors", "a short value", "a long string", "no value"],
)
def test_a_refusals_long_invalid_value_is_cut_to_its_type(message: str, shown: str | None) -> None:
    assert without_value_dumps(message) == (shown or message)
