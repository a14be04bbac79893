"""`deployer run` end to end for StatefulSets, DaemonSets and Jobs, with the real kubectl as the judge.

Like tests/test_deploy_e2e.py (Deployments), each test starts deployer as a child process and then asks kubectl
what is live: ``rollout status``, ``rollout history``, the template's image and what the Ready pods run. Every
test runs on the real control plane (tests/controlplane/, the session's ``control_plane``, whose node agent
registers several nodes so that a DaemonSet runs a pod on each), in a namespace of its own, with the real
images of ``web_images``: v1 and v2 serve on 8080 (``/healthz`` answers "ok"), ``crash`` exits 1 after a log
line, and a tag the registry lacks cannot be pulled. A pod that never gets ready has a readiness probe on a
path that answers 404; a Job that completes runs the web image with a command that exits 0. StatefulSets and
DaemonSets roll back through their ControllerRevisions (``kubectl rollout undo``); a Job cannot be rolled back,
only left or deleted.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.fixtures import SESSION_NODES
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

pytestmark = [pytest.mark.kubectl, pytest.mark.docker]

WEB_PORT = 8080  # where web_images' v1 and v2 serve
NODES = SESSION_NODES  # a DaemonSet's pod count
# A tag the test registry does not have: ErrImagePull, then ImagePullBackOff.
MISSING_TAG = "pull-error"
# Whatever readiness answers 404 on: running, never ready.
NOT_FOUND_PATH = "/no-such-page"


def assert_failed_on_pod_status(done: Finished) -> None:
    """A bad rollout is caught from its pods' status, not by waiting out --timeout (10 minutes) or a
    deadline: said by what deployer reports, not by its wall time (a loaded CI machine is slow, not wrong)."""
    # Either wording of a progress deadline: the condition's reason, or kubectl's sentence.
    deadline_words = ("ProgressDeadlineExceeded", "exceeded its progress deadline")
    assert "timed out" not in done.stderr, done.explain()
    assert not any(words in done.stderr for words in deadline_words), done.explain()


# --- manifests as a user writes them ------------------------------------------------------------------------


def _template(
    name: str, image: str, *, readiness_path: str | None = "/healthz", ready_delay: int = 0, **pod_spec: Any
) -> dict[str, Any]:
    """A pod template serving on 8080; with ``readiness_path``, ready once that path answers (probed each second,
    from ``ready_delay`` seconds after the start). The probe also keeps a crashing container from ever counting
    as ready: without one, it would be available for the moment it runs."""
    container: dict[str, Any] = {"name": name, "image": image}
    if readiness_path is not None:
        container["ports"] = [{"containerPort": WEB_PORT, "name": "http"}]
        container["readinessProbe"] = {
            "httpGet": {"path": readiness_path, "port": "http"},
            "initialDelaySeconds": ready_delay,
            "periodSeconds": 1,
            "failureThreshold": 3,
        }
    spec = {
        "containers": [container],
        # busybox httpd runs as PID 1 and ignores SIGTERM: each pod replaced would wait out the default 30 s.
        "terminationGracePeriodSeconds": 1,
        **pod_spec,
    }
    return {"metadata": {"labels": {"app": name}}, "spec": spec}


def stateful_set(
    name: str = "db",
    *,
    image: str = "<IMAGE>",
    replicas: int = 3,
    update_strategy: dict[str, Any] | None = None,
    readiness_path: str = "/healthz",
    ready_delay: int = 0,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name, image, readiness_path=readiness_path, ready_delay=ready_delay),
    }
    if update_strategy is not None:
        spec["updateStrategy"] = update_strategy
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec}


def headless_service(name: str = "db") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": WEB_PORT, "name": "http"}]},
    }


def daemon_set(
    name: str = "agent", *, image: str = "<IMAGE>", update_strategy: dict[str, Any] | None = None, ready_delay: int = 0
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name, image, ready_delay=ready_delay),
    }
    if update_strategy is not None:
        spec["updateStrategy"] = update_strategy
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": spec}


def job(
    name: str = "migrate",
    *,
    image: str = "<IMAGE>",
    backoff_limit: int = 1,
    restart_policy: str = "Never",
    script: str | None = None,
) -> dict[str, Any]:
    """A Job; ``script`` replaces the image's command (``/bin/sh -c script``): the web image then runs to an end."""
    template = _template(name, image, readiness_path=None, restartPolicy=restart_policy)
    if script is not None:
        template["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", script]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": template},
    }


# A migration that takes a moment, then succeeds.
MIGRATES = "echo migrating; sleep 1; echo migrated"


# --- fixtures: the session's real control plane, a namespace per test ------------------------------------------


@pytest.fixture
def repo(deployer: Deployer) -> str:
    return deployer.repository


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
    deployer: Deployer, judge: Kubectl, namespace: str, repo: str
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", headless_service(), stateful_set())
    deployed(deployer, "v1", manifests, namespace)
    # Each new pod is probed first 2 s after it starts: a rollout that takes a while, pod after pod.
    write_manifests(manifests, headless_service(), stateful_set(ready_delay=2))

    done = deployer.run("v2", manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    assert "statefulset/db configured" in done.stderr
    # It waited through the rollout, pod by pod (3 x 2 s at least, however loaded the machine), up to the state
    # kubectl calls done, not only for the apply.
    assert done.seconds >= 6, done.explain()
    progress = [line for line in done.stderr.splitlines() if line.startswith("db: ")]
    assert progress[-1] == "db: 3/3 updated, 3/3 ready", progress
    status = rollout_status(judge, namespace, "statefulset/db")
    assert status.returncode == 0, status.stderr
    assert "partitioned roll out complete: 3 new pods have been updated" in status.stdout
    assert judge.image(namespace, "statefulset/db") == f"{repo}:v2"
    assert judge.serving_images(namespace, "db") == {f"{repo}:v2"}
    history = judge.run("-n", namespace, "rollout", "history", "statefulset/db").stdout
    assert f"1         deployer: {repo}:v1 by e2e-tester" in history, history
    assert f"2         deployer: {repo}:v2 by e2e-tester" in history, history
    live = revisions(judge, namespace, "statefulset/db")
    assert live["update"] == live["current"], live


STATEFUL_FAILURES = {
    "bad image": (MISSING_TAG, ("ErrImagePull", "{repo}:" + MISSING_TAG)),
    "crash loop": ("crash", ("CrashLoopBackOff", f"| {CRASH_LOG}", "(previous container)")),
}


@pytest.mark.parametrize("tag, names", STATEFUL_FAILURES.values(), ids=STATEFUL_FAILURES.keys())
def test_failed_stateful_set_rollout_goes_back_through_its_controller_revision(
    deployer: Deployer, judge: Kubectl, db_manifests: Path, namespace: str, repo: str, tag: str, names: tuple[str, ...]
) -> None:
    deployed(deployer, "v1", db_manifests, namespace)
    before = revisions(judge, namespace, "statefulset/db")

    done = deployer.run(tag, db_manifests, namespace)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # The ordered rollout replaces the highest ordinal first: db-2 is the pod that fails, and is named.
    assert "statefulset/db failed: pod db-2 container db: " in done.stderr, done.stderr
    for text in (name.format(repo=repo) for name in names):
        assert text in done.stderr, f"{text!r} not in the output:\n{done.stderr}"
    assert f"rolled back statefulset/db to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert_failed_on_pod_status(done)
    # Back before exit, as kubectl sees it: the v1 template, every pod ready on it, one revision again.
    assert judge.image(namespace, "statefulset/db") == f"{repo}:v1"
    assert judge.serving_images(namespace, "db") == {f"{repo}:v1"}
    assert judge.jsonpath(namespace, "statefulset/db", "{.status.readyReplicas}") == "3"
    after = revisions(judge, namespace, "statefulset/db")
    assert after["update"] == after["current"] == before["current"]
    status = rollout_status(judge, namespace, "statefulset/db")
    assert status.returncode == 0, status.stderr
    history = judge.run("-n", namespace, "rollout", "history", "statefulset/db").stdout
    # kubectl's undo semantics: the v1 revision is reused under a new, higher number.
    assert f"3         deployer: {repo}:v1 by e2e-tester" in history, history


def test_stateful_set_pod_that_never_gets_ready_times_out_and_is_replaced_by_the_previous_revision(
    deployer: Deployer, judge: Kubectl, db_manifests: Path, namespace: str, repo: str
) -> None:
    deployed(deployer, "v1", db_manifests, namespace)
    write_manifests(db_manifests, headless_service(), stateful_set(readiness_path=NOT_FOUND_PATH))

    # Running, never Ready: OrderedReady waits on it for ever, so the rollback must delete it (forced rollback).
    done = deployer.run("v2", db_manifests, namespace, "--timeout", "20s")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "rollout timed out: timed out after 20s: Waiting for 1 pods to be ready..." in done.stderr
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in done.stderr, done.stderr
    assert "db: deleting pod db-2 of the failed revision (forced rollback)" in done.stderr
    assert f"rolled back statefulset/db to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert judge.serving_images(namespace, "db") == {f"{repo}:v1"}
    status = rollout_status(judge, namespace, "statefulset/db")
    assert status.returncode == 0, status.stderr


@pytest.mark.parametrize("delete_created", [False, True], ids=["left in place", "deleted"])
def test_failing_first_stateful_set_deploy_says_there_is_no_previous_revision(
    deployer: Deployer, judge: Kubectl, db_manifests: Path, namespace: str, repo: str, delete_created: bool
) -> None:
    extra = ("--delete-created-on-failure",) if delete_created else ()

    done = deployer.run(MISSING_TAG, db_manifests, namespace, *extra)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # OrderedReady: the first pod fails and the others are never created.
    assert "statefulset/db failed: pod db-0 container db: " in done.stderr and "ErrImagePull" in done.stderr
    last = done.stderr.splitlines()[-1]
    if delete_created:
        assert "deleted statefulset/db (created by this run; first deploy, no previous revision)" in last, last
        assert not judge.exists(namespace, "statefulset/db")
    else:
        assert "left in place statefulset/db (created by this run; first deploy, no previous revision)" in last, last
        assert judge.image(namespace, "statefulset/db") == f"{repo}:{MISSING_TAG}"


ON_DELETE = {
    "StatefulSet": (
        "statefulset/db",
        "db",
        3,
        [headless_service(), stateful_set(update_strategy={"type": "OnDelete"})],
    ),
    "DaemonSet": ("daemonset/agent", "agent", NODES, [daemon_set(update_strategy={"type": "OnDelete"})]),
}


@pytest.mark.parametrize("resource, app, pods, documents", ON_DELETE.values(), ids=ON_DELETE.keys())
def test_on_delete_workload_is_applied_but_not_waited_on_as_kubectl_refuses_its_status(
    deployer: Deployer,
    judge: Kubectl,
    namespace: str,
    repo: str,
    resource: str,
    app: str,
    pods: int,
    documents: list[dict[str, Any]],
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", *documents)
    deployed(deployer, "v1", manifests, namespace)
    # Not waited on, even on the first deploy: let its pods come up before the next template arrives (a bound
    # for a hang: the StatefulSet's come one after the other).
    wait_until(lambda: len(ready_pods(judge, namespace, app)) == pods, 120, f"{pods} ready {app} pods", 0.5)

    # Even a bad image: under OnDelete no pod takes the new template until someone deletes it.
    done = deployer.run(MISSING_TAG, manifests, namespace)

    kubectl_says = rollout_status(judge, namespace, resource)
    assert kubectl_says.returncode == 1
    assert "error: rollout status is only available for RollingUpdate strategy type" in kubectl_says.stderr
    # deployer does not fail every deploy of such a workload as kubectl's refusal would: it says what it did.
    assert done.code == EXIT_OK, done.explain()
    assert (
        f"{app}: not waited on: updateStrategy OnDelete replaces pods only when they are deleted "
        "(kubectl: rollout status is only available for RollingUpdate strategy type)"
    ) in done.stderr
    assert judge.image(namespace, resource) == f"{repo}:{MISSING_TAG}"
    assert judge.serving_images(namespace, app) == {f"{repo}:v1"}


PARTITIONS = {
    # kubectl: with rollingUpdate.partition, done once replicas - partition pods are updated and all are ready.
    "partition 2 of 3": (2, "1/3 updated, 3/3 ready", {"v1", "v2"}),
    "partition 3 of 3": (3, "0/3 updated, 3/3 ready", {"v1"}),
}


@pytest.mark.parametrize("partition, progress, serving", PARTITIONS.values(), ids=PARTITIONS.keys())
def test_partitioned_stateful_set_is_done_when_the_ordinals_from_the_partition_are_updated(
    deployer: Deployer, judge: Kubectl, namespace: str, repo: str, partition: int, progress: str, serving: set[str]
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
    manifests = write_manifests(deployer.workdir / "k8s", headless_service(), stateful_set(update_strategy=strategy))
    deployed(deployer, "v1", manifests, namespace)

    done = deployer.run("v2", manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    assert f"db: {progress}" in done.stderr
    status = rollout_status(judge, namespace, "statefulset/db")
    assert status.returncode == 0, status.stderr
    assert f"partitioned roll out complete: {3 - partition} new pods have been updated" in status.stdout
    assert judge.serving_images(namespace, "db") == {f"{repo}:{tag}" for tag in serving}
    images = {
        pod["metadata"]["name"]: pod["spec"]["containers"][0]["image"]
        for pod in judge.get_json(namespace, "pods", "-l", "app=db")["items"]
    }
    assert images == {f"db-{i}": f"{repo}:{'v2' if i >= partition else 'v1'}" for i in range(3)}


def test_failed_partitioned_rollout_goes_back_without_touching_the_pods_below_the_partition(
    deployer: Deployer, judge: Kubectl, namespace: str, repo: str
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    manifests = write_manifests(deployer.workdir / "k8s", headless_service(), stateful_set(update_strategy=strategy))
    deployed(deployer, "v1", manifests, namespace)
    uids = pod_uids(judge, namespace, "db")

    done = deployer.run(MISSING_TAG, manifests, namespace)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "statefulset/db failed: pod db-2 container db: " in done.stderr and "ErrImagePull" in done.stderr
    assert f"rolled back statefulset/db to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert judge.serving_images(namespace, "db") == {f"{repo}:v1"}
    after = pod_uids(judge, namespace, "db")
    assert {name: after[name] for name in ("db-0", "db-1")} == {name: uids[name] for name in ("db-0", "db-1")}
    assert after["db-2"] != uids["db-2"]
    status = rollout_status(judge, namespace, "statefulset/db")
    assert status.returncode == 0, status.stderr


def ready_pods(judge: Kubectl, namespace: str, app: str) -> list[str]:
    pods = judge.get_json(namespace, "pods", "-l", f"app={app}")["items"]
    return [
        pod["metadata"]["name"]
        for pod in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    ]


def pod_uids(judge: Kubectl, namespace: str, app: str) -> dict[str, str]:
    """The pods of ``app`` not being deleted, by name."""
    pods = judge.get_json(namespace, "pods", "-l", f"app={app}")["items"]
    return {
        pod["metadata"]["name"]: pod["metadata"]["uid"] for pod in pods if not pod["metadata"].get("deletionTimestamp")
    }


# --- DaemonSet ------------------------------------------------------------------------------------------------


@pytest.fixture
def agent_manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", daemon_set())


def test_daemon_set_deploy_rolls_out_and_kubectl_agrees(
    deployer: Deployer, judge: Kubectl, agent_manifests: Path, namespace: str, repo: str
) -> None:
    deployed(deployer, "v1", agent_manifests, namespace)
    # Each new pod is probed first 2 s after it starts: a rollout that takes a while, node after node.
    write_manifests(agent_manifests, daemon_set(ready_delay=2))

    done = deployer.run("v2", agent_manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    # One node at a time (maxUnavailable 1: 3 x 2 s at least), up to the state kubectl calls done.
    assert done.seconds >= 2 * NODES, done.explain()
    progress = [line for line in done.stderr.splitlines() if line.startswith("agent: ")]
    assert progress[-1] == f"agent: {NODES}/{NODES} updated, {NODES}/{NODES} available", progress
    status = rollout_status(judge, namespace, "daemonset/agent")
    assert status.returncode == 0, status.stderr
    assert 'daemon set "agent" successfully rolled out' in status.stdout
    assert judge.image(namespace, "daemonset/agent") == f"{repo}:v2"
    assert judge.serving_images(namespace, "agent") == {f"{repo}:v2"}
    nodes = {pod["spec"]["nodeName"] for pod in judge.get_json(namespace, "pods", "-l", "app=agent")["items"]}
    assert len(nodes) == NODES, nodes
    history = judge.run("-n", namespace, "rollout", "history", "daemonset/agent").stdout
    assert f"1         deployer: {repo}:v1 by e2e-tester" in history, history
    assert f"2         deployer: {repo}:v2 by e2e-tester" in history, history


@pytest.mark.parametrize("tag, names", STATEFUL_FAILURES.values(), ids=STATEFUL_FAILURES.keys())
def test_failed_daemon_set_rollout_goes_back_through_its_controller_revision(
    deployer: Deployer,
    judge: Kubectl,
    agent_manifests: Path,
    namespace: str,
    repo: str,
    tag: str,
    names: tuple[str, ...],
) -> None:
    deployed(deployer, "v1", agent_manifests, namespace)
    before = pod_uids(judge, namespace, "agent")

    done = deployer.run(tag, agent_manifests, namespace)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "daemonset/agent failed: pod agent-" in done.stderr, done.stderr
    for text in (name.format(repo=repo) for name in names):
        assert text in done.stderr, f"{text!r} not in the output:\n{done.stderr}"
    assert f"rolled back daemonset/agent to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert_failed_on_pod_status(done)
    assert judge.image(namespace, "daemonset/agent") == f"{repo}:v1"
    assert judge.serving_images(namespace, "agent") == {f"{repo}:v1"}
    # Only the node whose pod was replaced by the failing one got a new pod; the others never stopped.
    after = pod_uids(judge, namespace, "agent")
    assert len(after) == NODES and len(set(after.values()) & set(before.values())) == NODES - 1, (before, after)
    status = rollout_status(judge, namespace, "daemonset/agent")
    assert status.returncode == 0, status.stderr
    history = judge.run("-n", namespace, "rollout", "history", "daemonset/agent").stdout
    # kubectl's undo semantics: the v1 revision is reused under a new, higher number.
    assert f"3         deployer: {repo}:v1 by e2e-tester" in history, history


# --- Job ------------------------------------------------------------------------------------------------------


def job_condition(judge: Kubectl, namespace: str, name: str, condition: str) -> str:
    """``True/Reason`` for a condition of the Job as kubectl reads it; ``/`` when it has no such condition."""
    selected = f'.status.conditions[?(@.type=="{condition}")]'
    path = f"{{{selected}.status}}/{{{selected}.reason}}"
    return judge.jsonpath(namespace, f"job/{name}", path)


def test_job_deploy_waits_for_completion_and_exits_0(deployer: Deployer, judge: Kubectl, namespace: str) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job(script=MIGRATES))

    done = deployer.run("v1", manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    assert done.seconds >= 1, done.explain()  # the migration's own second
    lines = done.stderr.splitlines()
    finished = next(i for i, line in enumerate(lines) if line.startswith("rolled out 1 workload(s)"))
    assert lines.index("migrate: 1/1 succeeded") < finished, lines
    assert job_condition(judge, namespace, "migrate", "Complete") == "True/CompletionsReached"
    wait = judge.run("-n", namespace, "wait", "--for=condition=complete", "job/migrate", "--timeout=5s")
    assert "job.batch/migrate condition met" in wait.stdout
    assert "migrated" in judge.run("-n", namespace, "logs", "job/migrate").stdout


# Never: each attempt is a new pod, which fails and stays (its log with it). OnFailure: the container restarts in
# place (CrashLoopBackOff, left to the Job) until the controller gives up and deletes the pod, so only the Job's
# verdict is certain to be seen. backoffLimit 1: a second failure decides (the Job controller waits 10 s before
# it makes a new pod, the kubelet as long before it restarts a container).
JOB_FAILURES = {"restartPolicy Never": ("Never", f"| {CRASH_LOG}"), "restartPolicy OnFailure": ("OnFailure", None)}


@pytest.mark.parametrize("restart_policy, evidence", JOB_FAILURES.values(), ids=JOB_FAILURES.keys())
def test_failing_job_exits_3_when_its_backoff_limit_is_reached_and_is_left_in_place(
    deployer: Deployer, judge: Kubectl, namespace: str, restart_policy: str, evidence: str | None
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job(backoff_limit=1, restart_policy=restart_policy))

    done = deployer.run("crash", manifests, namespace)

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
    assert job_condition(judge, namespace, "migrate", "FailureTarget") == "True/BackoffLimitExceeded"
    failed = judge.run("-n", namespace, "wait", "--for=condition=failed", "job/migrate", "--timeout=30s")
    assert "job.batch/migrate condition met" in failed.stdout


def test_job_removed_by_ttl_after_it_completed_is_a_success(deployer: Deployer, judge: Kubectl, namespace: str) -> None:
    # ttlSecondsAfterFinished: 0 has the TTL-after-finished controller delete the Job as soon as it completes,
    # before or while deployer waits: its history is what says it succeeded.
    migrate = job(script="echo migrated")
    migrate["spec"]["ttlSecondsAfterFinished"] = 0
    manifests = write_manifests(deployer.workdir / "k8s", migrate)

    done = deployer.run("v1", manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    assert "migrate: 1/1 succeeded" in done.stderr
    wait_until(lambda: not judge.exists(namespace, "job/migrate"), 30, "the TTL controller to delete the Job", 0.5)


def test_failing_job_is_deleted_with_delete_created_on_failure(
    deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job(backoff_limit=0))

    done = deployer.run("crash", manifests, namespace, "--delete-created-on-failure")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert f"| {CRASH_LOG}" in done.stderr, done.stderr
    # The namespace, which this first run created too, goes last.
    assert done.stderr.splitlines()[-1].endswith(
        f"; deleted job/migrate (created by this run); deleted namespace/{namespace} (created by this run)"
    )
    assert not judge.exists(namespace, "job/migrate")


def test_job_whose_image_cannot_be_pulled_fails_fast_instead_of_hanging(deployer: Deployer, namespace: str) -> None:
    # The Job controller counts no failure for a pod stuck pulling: without failing fast this waits forever.
    manifests = write_manifests(deployer.workdir / "k8s", job())

    done = deployer.run(MISSING_TAG, manifests, namespace)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "job/migrate failed: pod migrate-" in done.stderr and "ErrImagePull" in done.stderr, done.stderr
    assert_failed_on_pod_status(done)


def test_redeploying_a_job_with_a_new_image_is_refused_naming_the_immutable_template(
    deployer: Deployer, judge: Kubectl, namespace: str, repo: str
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", job(script=MIGRATES))
    deployed(deployer, "v1", manifests, namespace)

    done = deployer.run("v2", manifests, namespace)

    # As `kubectl apply` would: the API server refuses the new template; nothing changed, so exit 1, not 3.
    assert done.code == EXIT_FAILURE, done.explain()
    assert "app.yaml (document 1): job/migrate was refused: " in done.stderr
    # The refused template, which the API server quotes whole (kilobytes), is cut to its length.
    assert re.search(r"spec\.template: Invalid value: \(\d+ characters\): field is immutable; ", done.stderr), (
        done.stderr
    )
    # And what to do about it, on the same line, before the request id the API server gave (its Audit-Id).
    hint = (
        "a Job's pod template cannot change: delete the finished Job before deploying, name the Job per deploy, "
        "or set ttlSecondsAfterFinished so that it is removed once finished (HTTP 422, request id "
    )
    assert hint in done.stderr, done.stderr
    assert "==> Roll back" not in done.stderr
    assert judge.image(namespace, "job/migrate") == f"{repo}:v1"


# --- mixed -------------------------------------------------------------------------------------------------------


MIXED = {
    # (web's tag, db's tag, the pod that fails): either one failing takes both back.
    "the StatefulSet fails": ("v2", MISSING_TAG, "statefulset/db failed: pod db-2 container db: "),
    "the Deployment fails": (MISSING_TAG, "v2", "deployment/web failed: pod web-"),
}


@pytest.mark.parametrize("web_tag, db_tag, failing", MIXED.values(), ids=MIXED.keys())
def test_deployment_and_stateful_set_one_failing_both_go_back(
    deployer: Deployer,
    judge: Kubectl,
    namespace: str,
    repo: str,
    tmp_path: Path,
    web_tag: str,
    db_tag: str,
    failing: str,
) -> None:
    # db runs the same image as web, under an image reference of its own.
    manifests = write_manifests(
        deployer.workdir / "k8s",
        deployment("web", http_port=WEB_PORT),
        headless_service(),
        stateful_set(image="<IMAGE:db>"),
    )
    deployed(deployer, "v1", manifests, namespace, "--image-ref", f"db={repo}:v1")
    before = revisions(judge, namespace, "statefulset/db")
    summary = tmp_path / "step-summary.md"
    summary.touch()

    done = deployer.run(
        web_tag,
        manifests,
        namespace,
        "--image-ref",
        f"db={repo}:{db_tag}",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert failing in done.stderr and "ErrImagePull" in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in last
    assert f"rolled back statefulset/db to revision 1 (image {repo}:v1)" in last
    markdown = summary.read_text()
    assert f"| deployment/web | rolled back | to revision 1 (image {repo}:v1) |" in markdown, markdown
    assert f"| statefulset/db | rolled back | to revision 1 (image {repo}:v1) |" in markdown, markdown
    assert judge.image(namespace, "deployment/web") == f"{repo}:v1"
    assert judge.image(namespace, "statefulset/db") == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}
    assert judge.serving_images(namespace, "db") == {f"{repo}:v1"}
    assert judge.jsonpath(namespace, "statefulset/db", "{.status.readyReplicas}") == "3"
    after = revisions(judge, namespace, "statefulset/db")
    assert after["update"] == after["current"] == before["current"]
    for resource in ("deployment/web", "statefulset/db"):
        status = rollout_status(judge, namespace, resource)
        assert status.returncode == 0, status.stderr
