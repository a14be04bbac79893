"""`deployer run` end to end for StatefulSets, DaemonSets and Jobs, with the real kubectl as the judge.

Like tests/test_deploy_e2e.py (Deployments), each test starts deployer as a child process on the simulator
(scripted kubelet, image behaviour chosen by tag words: ``pull-error``, ``crash``, ``complete``; a clock 50
times faster than real time) and then asks kubectl what is live: ``rollout status``, ``rollout history``,
the template's image and what the Ready pods run. StatefulSets and DaemonSets roll back through their
ControllerRevisions (``kubectl rollout undo``); a Job cannot be rolled back, only left or deleted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_scenarios import (
    CRASH_LOG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Finished,
    Kubectl,
    deployed,
    deployment,
    wait_until,
    write_manifests,
)
from tests.kubesim import Behaviour, KubeSim
from tests.kubesim.fixtures import FAST_CLOCK

pytestmark = pytest.mark.kubectl

REPO = "registry.example/acme/web"
DB_REPO = "registry.example/acme/db"


def assert_failed_on_pod_status(done: Finished) -> None:
    """A bad rollout is caught from its pods' status, not by waiting out --timeout (10 minutes) or a
    deadline: said by what deployer reports, not by its wall time (a loaded CI machine is slow, not wrong)."""
    assert "timed out" not in done.stderr and "exceeded its progress deadline" not in done.stderr, done.explain()


# --- manifests as a user writes them ------------------------------------------------------------------------


def _template(name: str, image: str, **pod_spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": image}], **pod_spec}}


def stateful_set(
    name: str = "db", *, image: str = "<IMAGE>", replicas: int = 3, update_strategy: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name, image),
    }
    if update_strategy is not None:
        spec["updateStrategy"] = update_strategy
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec}


def headless_service(name: str = "db") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 5432, "name": "db"}]},
    }


def daemon_set(
    name: str = "agent", *, image: str = "<IMAGE>", update_strategy: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": _template(name, image)}
    if update_strategy is not None:
        spec["updateStrategy"] = update_strategy
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": spec}


def job(
    name: str = "migrate", *, image: str = "<IMAGE>", backoff_limit: int = 1, restart_policy: str = "Never"
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": _template(name, image, restartPolicy=restart_policy)},
    }


# --- fixtures (the pattern of test_deploy_e2e.py) -----------------------------------------------------------


NODES = 3


@pytest.fixture
def sim() -> Iterator[KubeSim]:
    """The ``kubesim`` fixture's cluster with three nodes, so that a DaemonSet runs three pods."""
    cluster = KubeSim.start(kubelet="scripted", clock_speed=FAST_CLOCK, nodes=NODES)
    # Crashes at start-up, before its readiness would come: what a missing setting does behind a probe.
    cluster.kubelet.set_behaviour(
        "*:crash*", Behaviour(crash=True, crash_after=0.5, ready_after=30, logs=f"starting\n{CRASH_LOG}\n")
    )
    try:
        yield cluster
    finally:
        errors = list(cluster.loop.errors)
        cluster.stop()
        if errors:
            pytest.fail("the simulator's control loop failed:\n" + "\n".join(errors[:3]))


@pytest.fixture
def deployer(sim: KubeSim, tmp_path: Path) -> Deployer:
    return Deployer.under(tmp_path, sim.kubeconfig_path)


@pytest.fixture
def judge(kubectl: str, sim: KubeSim, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, sim.kubeconfig_path)


# --- StatefulSet --------------------------------------------------------------------------------------------


def rollout_status(judge: Kubectl, namespace: str, resource: str) -> subprocess.CompletedProcess[str]:
    return judge.run("-n", namespace, "rollout", "status", resource, "--timeout=10s", check=False)


def revisions(judge: Kubectl, namespace: str, resource: str) -> dict[str, str]:
    """updateRevision and currentRevision as kubectl reads them."""
    path = "{.status.updateRevision} {.status.currentRevision}"
    update, current = judge.jsonpath(namespace, resource, path).split(" ")
    return {"update": update, "current": current}


@pytest.fixture
def db_manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", headless_service(), stateful_set())


def test_stateful_set_deploy_waits_for_every_pod_and_kubectl_agrees(
    deployer: Deployer, judge: Kubectl, db_manifests: Path
) -> None:
    deployed(deployer, "v1", db_manifests, "shop")

    # Each new pod is ready 50 simulated seconds (1 s here) after it starts: a rollout that takes a while.
    done = deployer.run("ready-after-50s", db_manifests, "shop")

    assert done.code == EXIT_OK, done.explain()
    assert "statefulset/db configured" in done.stderr
    # It waited through the rollout, pod by pod (3 x 1 s at least, however loaded the machine), up to the state
    # kubectl calls done, not only for the apply.
    assert done.seconds >= 3, done.explain()
    progress = [line for line in done.stderr.splitlines() if line.startswith("db: ")]
    assert progress[-1] == "db: 3/3 updated, 3/3 ready", progress
    status = rollout_status(judge, "shop", "statefulset/db")
    assert status.returncode == 0, status.stderr
    assert "partitioned roll out complete: 3 new pods have been updated" in status.stdout
    assert judge.image("shop", "statefulset/db") == f"{REPO}:ready-after-50s"
    assert judge.serving_images("shop", "db") == {f"{REPO}:ready-after-50s"}
    history = judge.run("-n", "shop", "rollout", "history", "statefulset/db").stdout
    assert f"1         deployer: {REPO}:v1 by e2e-tester" in history, history
    assert f"2         deployer: {REPO}:ready-after-50s by e2e-tester" in history, history
    live = revisions(judge, "shop", "statefulset/db")
    assert live["update"] == live["current"], live


STATEFUL_FAILURES = {
    "bad image": ("pull-error", ("ErrImagePull", "ImagePullBackOff", f"{REPO}:pull-error")),
    "crash loop": ("crash", ("CrashLoopBackOff", f"| {CRASH_LOG}", "(previous container)")),
}


@pytest.mark.parametrize("tag, names", STATEFUL_FAILURES.values(), ids=STATEFUL_FAILURES.keys())
def test_failed_stateful_set_rollout_goes_back_through_its_controller_revision(
    deployer: Deployer, judge: Kubectl, db_manifests: Path, tag: str, names: tuple[str, ...]
) -> None:
    deployed(deployer, "v1", db_manifests, "shop")
    before = revisions(judge, "shop", "statefulset/db")

    done = deployer.run(tag, db_manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # The ordered rollout replaces the highest ordinal first: db-2 is the pod that fails, and is named.
    assert "statefulset/db failed: pod db-2 container db: " in done.stderr, done.stderr
    for text in names:
        assert text in done.stderr, f"{text!r} not in the output:\n{done.stderr}"
    assert f"rolled back statefulset/db to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert_failed_on_pod_status(done)
    # Back before exit, as kubectl sees it: the v1 template, every pod ready on it, one revision again.
    assert judge.image("shop", "statefulset/db") == f"{REPO}:v1"
    assert judge.serving_images("shop", "db") == {f"{REPO}:v1"}
    assert judge.jsonpath("shop", "statefulset/db", "{.status.readyReplicas}") == "3"
    after = revisions(judge, "shop", "statefulset/db")
    assert after["update"] == after["current"] == before["current"]
    status = rollout_status(judge, "shop", "statefulset/db")
    assert status.returncode == 0, status.stderr
    history = judge.run("-n", "shop", "rollout", "history", "statefulset/db").stdout
    # kubectl's undo semantics: the v1 revision is reused under a new, higher number.
    assert f"3         deployer: {REPO}:v1 by e2e-tester" in history, history


def test_stateful_set_pod_that_never_gets_ready_times_out_and_is_replaced_by_the_previous_revision(
    deployer: Deployer, judge: Kubectl, db_manifests: Path
) -> None:
    deployed(deployer, "v1", db_manifests, "shop")

    # Running, never Ready: OrderedReady waits on it for ever, so the rollback must delete it (forced rollback).
    done = deployer.run("never-ready", db_manifests, "shop", "--timeout", "2s")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "rollout timed out: timed out after 2s: Waiting for 1 pods to be ready..." in done.stderr
    assert "db: deleting pod db-2 of the failed revision (forced rollback)" in done.stderr
    assert f"rolled back statefulset/db to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert judge.serving_images("shop", "db") == {f"{REPO}:v1"}
    status = rollout_status(judge, "shop", "statefulset/db")
    assert status.returncode == 0, status.stderr


@pytest.mark.parametrize("delete_created", [False, True], ids=["left in place", "deleted"])
def test_failing_first_stateful_set_deploy_says_there_is_no_previous_revision(
    deployer: Deployer, judge: Kubectl, db_manifests: Path, delete_created: bool
) -> None:
    extra = ("--delete-created-on-failure",) if delete_created else ()

    done = deployer.run("pull-error", db_manifests, "fresh", *extra)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # OrderedReady: the first pod fails and the others are never created.
    assert "statefulset/db failed: pod db-0 container db: " in done.stderr and "ErrImagePull" in done.stderr
    last = done.stderr.splitlines()[-1]
    if delete_created:
        assert "deleted statefulset/db (created by this run; first deploy, no previous revision)" in last, last
        assert not judge.exists("fresh", "statefulset/db")
    else:
        assert "left in place statefulset/db (created by this run; first deploy, no previous revision)" in last, last
        assert judge.image("fresh", "statefulset/db") == f"{REPO}:pull-error"


ON_DELETE = {
    "StatefulSet": ("statefulset/db", "db", [headless_service(), stateful_set(update_strategy={"type": "OnDelete"})]),
    "DaemonSet": ("daemonset/agent", "agent", [daemon_set(update_strategy={"type": "OnDelete"})]),
}


@pytest.mark.parametrize("resource, app, documents", ON_DELETE.values(), ids=ON_DELETE.keys())
def test_on_delete_workload_is_applied_but_not_waited_on_as_kubectl_refuses_its_status(
    deployer: Deployer, judge: Kubectl, resource: str, app: str, documents: list[dict[str, Any]]
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", *documents)
    deployed(deployer, "v1", manifests, "shop")
    # Not waited on, even on the first deploy: let its three pods come up before the next template arrives.
    wait_until(lambda: len(ready_pods(judge, "shop", app)) == 3, 20, f"three ready {app} pods")

    # Even a bad image: under OnDelete no pod takes the new template until someone deletes it.
    done = deployer.run("pull-error", manifests, "shop")

    kubectl_says = rollout_status(judge, "shop", resource)
    assert kubectl_says.returncode == 1
    assert "error: rollout status is only available for RollingUpdate strategy type" in kubectl_says.stderr
    # deployer does not fail every deploy of such a workload as kubectl's refusal would: it says what it did.
    assert done.code == EXIT_OK, done.explain()
    assert (
        f"{app}: not waited on: updateStrategy OnDelete replaces pods only when they are deleted "
        "(kubectl: rollout status is only available for RollingUpdate strategy type)"
    ) in done.stderr
    assert judge.image("shop", resource) == f"{REPO}:pull-error"
    assert judge.serving_images("shop", app) == {f"{REPO}:v1"}


PARTITIONS = {
    # kubectl: with rollingUpdate.partition, done once replicas - partition pods are updated and all are ready.
    "partition 2 of 3": (2, "1/3 updated, 3/3 ready", {f"{REPO}:v1", f"{REPO}:v2"}),
    "partition 3 of 3": (3, "0/3 updated, 3/3 ready", {f"{REPO}:v1"}),
}


@pytest.mark.parametrize("partition, progress, serving", PARTITIONS.values(), ids=PARTITIONS.keys())
def test_partitioned_stateful_set_is_done_when_the_ordinals_from_the_partition_are_updated(
    deployer: Deployer, judge: Kubectl, partition: int, progress: str, serving: set[str]
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
    manifests = write_manifests(deployer.workdir / "k8s", headless_service(), stateful_set(update_strategy=strategy))
    deployed(deployer, "v1", manifests, "shop")

    done = deployer.run("v2", manifests, "shop")

    assert done.code == EXIT_OK, done.explain()
    assert f"db: {progress}" in done.stderr
    status = rollout_status(judge, "shop", "statefulset/db")
    assert status.returncode == 0, status.stderr
    assert f"partitioned roll out complete: {3 - partition} new pods have been updated" in status.stdout
    assert judge.serving_images("shop", "db") == serving
    images = {
        pod["metadata"]["name"]: pod["spec"]["containers"][0]["image"]
        for pod in judge.get_json("shop", "pods", "-l", "app=db")["items"]
    }
    assert images == {f"db-{i}": f"{REPO}:{'v2' if i >= partition else 'v1'}" for i in range(3)}


def test_failed_partitioned_rollout_goes_back_without_touching_the_pods_below_the_partition(
    deployer: Deployer, judge: Kubectl
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    manifests = write_manifests(deployer.workdir / "k8s", headless_service(), stateful_set(update_strategy=strategy))
    deployed(deployer, "v1", manifests, "shop")
    uids = pod_uids(judge, "shop", "db")

    done = deployer.run("pull-error", manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "statefulset/db failed: pod db-2 container db: " in done.stderr and "ErrImagePull" in done.stderr
    assert f"rolled back statefulset/db to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert judge.serving_images("shop", "db") == {f"{REPO}:v1"}
    after = pod_uids(judge, "shop", "db")
    assert {name: after[name] for name in ("db-0", "db-1")} == {name: uids[name] for name in ("db-0", "db-1")}
    assert after["db-2"] != uids["db-2"]
    status = rollout_status(judge, "shop", "statefulset/db")
    assert status.returncode == 0, status.stderr


def ready_pods(judge: Kubectl, namespace: str, app: str) -> list[str]:
    pods = judge.get_json(namespace, "pods", "-l", f"app={app}")["items"]
    return [
        pod["metadata"]["name"]
        for pod in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    ]


def pod_uids(judge: Kubectl, namespace: str, app: str) -> dict[str, str]:
    pods = judge.get_json(namespace, "pods", "-l", f"app={app}")["items"]
    return {pod["metadata"]["name"]: pod["metadata"]["uid"] for pod in pods}


# --- DaemonSet ------------------------------------------------------------------------------------------------


@pytest.fixture
def agent_manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", daemon_set())


def test_daemon_set_deploy_rolls_out_and_kubectl_agrees(
    deployer: Deployer, judge: Kubectl, agent_manifests: Path
) -> None:
    deployed(deployer, "v1", agent_manifests, "shop")

    done = deployer.run("ready-after-50s", agent_manifests, "shop")

    assert done.code == EXIT_OK, done.explain()
    # One node at a time (maxUnavailable 1: 3 x 1 s at least), up to the state kubectl calls done.
    assert done.seconds >= 3, done.explain()
    progress = [line for line in done.stderr.splitlines() if line.startswith("agent: ")]
    assert progress[-1] == "agent: 3/3 updated, 3/3 available", progress
    status = rollout_status(judge, "shop", "daemonset/agent")
    assert status.returncode == 0, status.stderr
    assert 'daemon set "agent" successfully rolled out' in status.stdout
    assert judge.image("shop", "daemonset/agent") == f"{REPO}:ready-after-50s"
    assert judge.serving_images("shop", "agent") == {f"{REPO}:ready-after-50s"}
    history = judge.run("-n", "shop", "rollout", "history", "daemonset/agent").stdout
    assert f"1         deployer: {REPO}:v1 by e2e-tester" in history, history
    assert f"2         deployer: {REPO}:ready-after-50s by e2e-tester" in history, history


@pytest.mark.parametrize("tag, names", STATEFUL_FAILURES.values(), ids=STATEFUL_FAILURES.keys())
def test_failed_daemon_set_rollout_goes_back_through_its_controller_revision(
    deployer: Deployer, judge: Kubectl, agent_manifests: Path, tag: str, names: tuple[str, ...]
) -> None:
    deployed(deployer, "v1", agent_manifests, "shop")
    before = pod_uids(judge, "shop", "agent")

    done = deployer.run(tag, agent_manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "daemonset/agent failed: pod agent-" in done.stderr, done.stderr
    for text in names:
        assert text in done.stderr, f"{text!r} not in the output:\n{done.stderr}"
    assert f"rolled back daemonset/agent to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert_failed_on_pod_status(done)
    assert judge.image("shop", "daemonset/agent") == f"{REPO}:v1"
    assert judge.serving_images("shop", "agent") == {f"{REPO}:v1"}
    # Only the node whose pod was replaced by the failing one got a new pod; the other two never stopped.
    after = pod_uids(judge, "shop", "agent")
    assert len(after) == NODES and len(set(after.values()) & set(before.values())) == NODES - 1, (before, after)
    status = rollout_status(judge, "shop", "daemonset/agent")
    assert status.returncode == 0, status.stderr
    history = judge.run("-n", "shop", "rollout", "history", "daemonset/agent").stdout
    # kubectl's undo semantics: the v1 revision is reused under a new, higher number.
    assert f"3         deployer: {REPO}:v1 by e2e-tester" in history, history


# --- Job ------------------------------------------------------------------------------------------------------


def job_condition(judge: Kubectl, namespace: str, name: str, condition: str) -> str:
    """``True/Reason`` for a condition of the Job as kubectl reads it; ``/`` when it has no such condition."""
    selected = f'.status.conditions[?(@.type=="{condition}")]'
    path = f"{{{selected}.status}}/{{{selected}.reason}}"
    return judge.jsonpath(namespace, f"job/{name}", path)


def test_job_deploy_waits_for_completion_and_exits_0(deployer: Deployer, judge: Kubectl, sim: KubeSim) -> None:
    # Runs 50 simulated seconds (about 1 s here), then exits 0.
    sim.kubelet.set_behaviour("*:slow-migration", Behaviour(completes=True, crash_after=50, logs="migrated\n"))
    manifests = write_manifests(deployer.workdir / "k8s", job())

    done = deployer.run("slow-migration", manifests, "shop")

    assert done.code == EXIT_OK, done.explain()
    assert done.seconds >= 1, done.explain()
    lines = done.stderr.splitlines()
    finished = next(i for i, line in enumerate(lines) if line.startswith("rolled out 1 workload(s)"))
    assert lines.index("migrate: 1/1 succeeded") < finished, lines
    assert job_condition(judge, "shop", "migrate", "Complete") == "True/CompletionsReached"
    wait = judge.run("-n", "shop", "wait", "--for=condition=complete", "job/migrate", "--timeout=5s")
    assert "job.batch/migrate condition met" in wait.stdout


# Never: each attempt is a new pod, which fails and stays (its log with it). OnFailure: the container restarts in
# place (CrashLoopBackOff, left to the Job) until the controller gives up and deletes the pod (here at once; a real
# cluster keeps it for its grace period), so only the Job's verdict is certain to be seen.
JOB_FAILURES = {"restartPolicy Never": ("Never", f"| {CRASH_LOG}"), "restartPolicy OnFailure": ("OnFailure", None)}


@pytest.mark.parametrize("restart_policy, evidence", JOB_FAILURES.values(), ids=JOB_FAILURES.keys())
def test_failing_job_exits_3_when_its_backoff_limit_is_reached_and_is_left_in_place(
    deployer: Deployer, judge: Kubectl, restart_policy: str, evidence: str | None
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job(backoff_limit=2, restart_policy=restart_policy))

    done = deployer.run("crash", manifests, "shop")

    # A Job cannot be rolled back; everything else the run changed is put back, so the deploy failed safely:
    # exit 3, as for a failing first deploy of a Deployment, with the Job listed rather than "rolled back".
    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # The Job's backoffLimit decides, not the first crash.
    reason = "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert f"rollout failed: job/migrate: {reason}" in done.stderr
    assert f"job/migrate failed: {reason}" in done.stderr
    if evidence:
        assert evidence in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.endswith("; left in place job/migrate (created by this run)"), last
    assert "rolled back" not in last
    # deployer goes by FailureTarget, the controller's verdict; Failed follows once the Job's pods are gone.
    assert job_condition(judge, "shop", "migrate", "FailureTarget") == "True/BackoffLimitExceeded"
    failed = judge.run("-n", "shop", "wait", "--for=condition=failed", "job/migrate", "--timeout=10s")
    assert "job.batch/migrate condition met" in failed.stdout


def ingress(name: str) -> dict[str, Any]:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"defaultBackend": backend},
    }


def test_job_removed_by_ttl_after_it_completed_is_a_success(deployer: Deployer, judge: Kubectl) -> None:
    # ttlSecondsAfterFinished: 0 has the TTL-after-finished controller delete the Job as soon as it completes;
    # Ingresses are applied after workloads, so the Job is done and gone before deployer starts waiting.
    migrate = job()
    migrate["spec"]["ttlSecondsAfterFinished"] = 0
    manifests = write_manifests(deployer.workdir / "k8s", migrate, *(ingress(f"web-{i}") for i in range(3)))

    done = deployer.run("complete", manifests, "shop")

    assert not judge.exists("shop", "job/migrate")
    assert done.code == EXIT_OK, done.explain()
    assert "migrate: 1/1 succeeded" in done.stderr


def test_failing_job_is_deleted_with_delete_created_on_failure(deployer: Deployer, judge: Kubectl) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job(backoff_limit=0))

    done = deployer.run("crash", manifests, "shop", "--delete-created-on-failure")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert f"| {CRASH_LOG}" in done.stderr, done.stderr
    # The namespace, which this first run created too, goes last.
    assert done.stderr.splitlines()[-1].endswith(
        "; deleted job/migrate (created by this run); deleted namespace/shop (created by this run)"
    )
    assert not judge.exists("shop", "job/migrate")


def test_job_whose_image_cannot_be_pulled_fails_fast_instead_of_hanging(deployer: Deployer, judge: Kubectl) -> None:
    # The Job controller counts no failure for a pod stuck pulling: without failing fast this waits forever.
    manifests = write_manifests(deployer.workdir / "k8s", job())

    done = deployer.run("pull-error", manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "job/migrate failed: pod migrate-" in done.stderr and "ErrImagePull" in done.stderr, done.stderr
    assert_failed_on_pod_status(done)


def test_redeploying_a_job_with_a_new_image_is_refused_naming_the_immutable_template(
    deployer: Deployer, judge: Kubectl
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job())
    deployed(deployer, "complete", manifests, "shop")

    done = deployer.run("complete-2", manifests, "shop")

    # As `kubectl apply` would: the API server refuses the new template; nothing changed, so exit 1, not 3.
    assert done.code == EXIT_FAILURE, done.explain()
    assert "app.yaml (document 1): job/migrate was refused: " in done.stderr
    assert "spec.template: Invalid value: field is immutable; " in done.stderr
    # And what to do about it, on the same line.
    hint = (
        "a Job's pod template cannot change: delete the finished Job before deploying, name the Job per deploy, "
        "or set ttlSecondsAfterFinished so that it is removed once finished (HTTP 422)"
    )
    assert hint in done.stderr, done.stderr
    assert "==> Roll back" not in done.stderr
    assert judge.image("shop", "job/migrate") == f"{REPO}:complete"


# --- mixed -------------------------------------------------------------------------------------------------------


MIXED = {
    # (web's tag, db's tag, the pod that fails): either one failing takes both back.
    "the StatefulSet fails": ("v2", "pull-error", "statefulset/db failed: pod db-2 container db: "),
    "the Deployment fails": ("pull-error", "v2", "deployment/web failed: pod web-"),
}


@pytest.mark.parametrize("web_tag, db_tag, failing", MIXED.values(), ids=MIXED.keys())
def test_deployment_and_stateful_set_one_failing_both_go_back(
    deployer: Deployer, judge: Kubectl, tmp_path: Path, web_tag: str, db_tag: str, failing: str
) -> None:
    manifests = write_manifests(
        deployer.workdir / "k8s",
        deployment("web"),
        headless_service(),
        stateful_set(image="<IMAGE:db>"),
    )
    deployed(deployer, "v1", manifests, "shop", "--image-ref", f"db={DB_REPO}:v1")
    before = revisions(judge, "shop", "statefulset/db")
    summary = tmp_path / "step-summary.md"
    summary.touch()

    done = deployer.run(
        web_tag, manifests, "shop", "--image-ref", f"db={DB_REPO}:{db_tag}", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert failing in done.stderr and "ErrImagePull" in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert f"rolled back deployment/web to revision 1 (image {REPO}:v1)" in last
    assert f"rolled back statefulset/db to revision 1 (image {DB_REPO}:v1)" in last
    markdown = summary.read_text()
    assert f"| deployment/web | rolled back | to revision 1 (image {REPO}:v1) |" in markdown, markdown
    assert f"| statefulset/db | rolled back | to revision 1 (image {DB_REPO}:v1) |" in markdown, markdown
    assert judge.image("shop", "deployment/web") == f"{REPO}:v1"
    assert judge.image("shop", "statefulset/db") == f"{DB_REPO}:v1"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v1"}
    assert judge.serving_images("shop", "db") == {f"{DB_REPO}:v1"}
    assert judge.jsonpath("shop", "statefulset/db", "{.status.readyReplicas}") == "3"
    after = revisions(judge, "shop", "statefulset/db")
    assert after["update"] == after["current"] == before["current"]
    for resource in ("deployment/web", "statefulset/db"):
        status = rollout_status(judge, "shop", resource)
        assert status.returncode == 0, status.stderr
