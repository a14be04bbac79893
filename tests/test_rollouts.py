"""rollouts.py: kubectl rollout status's verdicts and the fail-fast scan, as tables over API-shaped JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployer import rollout_wait
from deployer.clocks import Instant
from deployer.revision_pods import (
    RevisionPods,
    new_replica_set,
    newest_revision_pods,
    pods_of,
    templates_equal_ignoring_hash,
)
from deployer.rollbacks import ObjectRef
from deployer.rollout_wait import (
    RolloutSnapshot,
    RolloutWaitState,
    RolloutWaitVerdict,
    WaitOutcome,
    WaitPolicy,
    WatchedWorkload,
)
from deployer.rollouts import (
    RolloutState,
    find_pod_failures,
    find_workload_failures,
    judge_departed,
    judge_workload,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def deployment(
    *,
    replicas: int | None = 3,
    generation: int = 2,
    observed: int = 2,
    updated: int | None = None,
    total: int | None = None,
    available: int | None = None,
    progressing_reason: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    for key, value in (("updatedReplicas", updated), ("replicas", total), ("availableReplicas", available)):
        if value is not None:
            status[key] = value
    if progressing_reason:
        status["conditions"] = [
            {"type": "Progressing", "status": "False", "reason": progressing_reason, "message": "too slow"}
        ]
    spec: dict[str, Any] = {"template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "generation": generation, "uid": "d-uid"},
        "spec": spec,
        "status": status,
    }


@pytest.mark.parametrize(
    ("obj", "state", "message"),
    [
        (
            deployment(generation=3, observed=2),
            RolloutState.WAITING,
            "Waiting for deployment spec update to be observed...",
        ),
        (
            deployment(updated=1, total=3, available=2),
            RolloutState.WAITING,
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
        ),
        (
            deployment(updated=3, total=4, available=3),
            RolloutState.WAITING,
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
        ),
        (
            deployment(updated=3, total=3, available=1),
            RolloutState.WAITING,
            'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...',
        ),
        (
            deployment(updated=3, total=3, available=3),
            RolloutState.DONE,
            'deployment "web" successfully rolled out',
        ),
        (
            deployment(updated=1, total=3, available=2, progressing_reason="ProgressDeadlineExceeded"),
            RolloutState.FAILED,
            'deployment "web" exceeded its progress deadline',
        ),
        # Missing status integers count as 0: a fresh status with nothing in it yet.
        (
            deployment(),
            RolloutState.WAITING,
            'Waiting for deployment "web" rollout to finish: 0 out of 3 new replicas have been updated...',
        ),
        # Scaled to zero: nothing to wait for.
        (deployment(replicas=0), RolloutState.DONE, 'deployment "web" successfully rolled out'),
        # Without spec.replicas kubectl skips the updated check.
        (
            deployment(replicas=None, updated=1, total=1, available=0),
            RolloutState.WAITING,
            'Waiting for deployment "web" rollout to finish: 0 of 1 updated replicas are available...',
        ),
        # A deadline reason on an unobserved generation is stale: kubectl waits for the controller first.
        (
            deployment(generation=4, observed=3, progressing_reason="ProgressDeadlineExceeded"),
            RolloutState.WAITING,
            "Waiting for deployment spec update to be observed...",
        ),
        (
            deployment(updated=2, total=3, available=3, progressing_reason="ReplicaSetUpdated"),
            RolloutState.WAITING,
            'Waiting for deployment "web" rollout to finish: 2 out of 3 new replicas have been updated...',
        ),
    ],
)
def test_deployment_verdict_matches_kubectl_rollout_status(
    obj: dict[str, Any], state: RolloutState, message: str
) -> None:
    verdict = judge_workload(obj)
    assert (verdict.state, verdict.message) == (state, message)


@pytest.mark.parametrize(
    ("obj", "progress"),
    [
        (deployment(updated=2, total=2, available=1), "web: 2/3 updated, 1/3 available"),
        (deployment(updated=3, total=4, available=3), "web: 3/3 updated, 3/3 available, 1 old pending termination"),
        (deployment(generation=5, observed=4), "web: waiting for the controller to observe the new spec"),
    ],
)
def test_deployment_progress_line_is_short_enough_for_a_ci_log(obj: dict[str, Any], progress: str) -> None:
    assert judge_workload(obj).progress == progress


def stateful_set(
    *,
    replicas: int | None = 3,
    generation: int = 1,
    observed: int = 1,
    ready: int = 0,
    updated: int = 0,
    current: int = 0,
    update_revision: str = "db-2",
    current_revision: str = "db-1",
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"updateStrategy": strategy if strategy is not None else {"type": "RollingUpdate"}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": generation, "uid": "s-uid"},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentReplicas": current,
            "updateRevision": update_revision,
            "currentRevision": current_revision,
        },
    }


@pytest.mark.parametrize(
    ("obj", "state", "message"),
    [
        (
            stateful_set(observed=0, generation=1),
            RolloutState.WAITING,
            "Waiting for statefulset spec update to be observed...",
        ),
        (
            stateful_set(generation=2, observed=1),
            RolloutState.WAITING,
            "Waiting for statefulset spec update to be observed...",
        ),
        (stateful_set(ready=1), RolloutState.WAITING, "Waiting for 2 pods to be ready..."),
        (
            stateful_set(ready=3, updated=1),
            RolloutState.WAITING,
            "waiting for statefulset rolling update to complete 1 pods at revision db-2...",
        ),
        (
            stateful_set(ready=3, updated=3, current=3, current_revision="db-2"),
            RolloutState.DONE,
            "statefulset rolling update complete 3 pods at revision db-2...",
        ),
        (
            stateful_set(ready=3, updated=1, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
            RolloutState.WAITING,
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
        ),
        (
            stateful_set(ready=3, updated=2, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
            RolloutState.DONE,
            "partitioned roll out complete: 2 new pods have been updated...",
        ),
        # rollingUpdate present (as the API server defaults it) ends the wait on the partition check alone.
        (
            stateful_set(ready=3, updated=3, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            RolloutState.DONE,
            "partitioned roll out complete: 3 new pods have been updated...",
        ),
        (
            stateful_set(strategy={"type": "OnDelete"}),
            RolloutState.DONE,
            "rollout status is only available for RollingUpdate strategy type",
        ),
    ],
)
def test_stateful_set_verdict_matches_kubectl_rollout_status(
    obj: dict[str, Any], state: RolloutState, message: str
) -> None:
    verdict = judge_workload(obj)
    assert (verdict.state, verdict.message) == (state, message)


def daemon_set(
    *,
    generation: int = 1,
    observed: int = 1,
    desired: int = 2,
    updated: int = 0,
    available: int = 0,
    kind: str = "RollingUpdate",
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "generation": generation, "uid": "ds-uid"},
        "spec": {"updateStrategy": {"type": kind}},
        "status": {
            "observedGeneration": observed,
            "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
        },
    }


@pytest.mark.parametrize(
    ("obj", "state", "message", "progress"),
    [
        (
            daemon_set(generation=2),
            RolloutState.WAITING,
            "Waiting for daemon set spec update to be observed...",
            "agent: waiting for the controller to observe the new spec",
        ),
        (
            daemon_set(updated=1, available=2),
            RolloutState.WAITING,
            'Waiting for daemon set "agent" rollout to finish: 1 out of 2 new pods have been updated...',
            "agent: 1/2 updated, 2/2 available",
        ),
        (
            daemon_set(updated=2, available=1),
            RolloutState.WAITING,
            'Waiting for daemon set "agent" rollout to finish: 1 of 2 updated pods are available...',
            "agent: 2/2 updated, 1/2 available",
        ),
        (
            daemon_set(updated=2, available=2),
            RolloutState.DONE,
            'daemon set "agent" successfully rolled out',
            "agent: 2/2 updated, 2/2 available",
        ),
        (
            daemon_set(kind="OnDelete"),
            RolloutState.DONE,
            "rollout status is only available for RollingUpdate strategy type",
            "agent: not waited on: updateStrategy OnDelete replaces pods only when they are deleted "
            "(kubectl: rollout status is only available for RollingUpdate strategy type)",
        ),
    ],
)
def test_daemon_set_verdict_matches_kubectl_rollout_status(
    obj: dict[str, Any], state: RolloutState, message: str, progress: str
) -> None:
    verdict = judge_workload(obj)
    assert (verdict.state, verdict.message, verdict.progress) == (state, message, progress)


def job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "uid": "j-uid"},
        "spec": {"completions": 1},
        "status": {**status, "conditions": conditions or []},
    }


@pytest.mark.parametrize(
    ("obj", "state", "message"),
    [
        (job(active=1), RolloutState.WAITING, 'Waiting for job "migrate" to complete: 0 of 1 completions succeeded...'),
        (
            job([{"type": "Complete", "status": "True"}], succeeded=1),
            RolloutState.DONE,
            'job "migrate" completed',
        ),
        (
            job(
                [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
                failed=7,
            ),
            RolloutState.FAILED,
            'job "migrate" failed: BackoffLimitExceeded: Job has reached the specified backoff limit',
        ),
    ],
)
def test_job_is_waited_on_to_completion(obj: dict[str, Any], state: RolloutState, message: str) -> None:
    verdict = judge_workload(obj)
    assert (verdict.state, verdict.message) == (state, message)


def with_ttl(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "spec": {**obj["spec"], "ttlSecondsAfterFinished": 0}}


COMPLETE = {"type": "Complete", "status": "True", "reason": "CompletionsReached"}
SUCCESS_CRITERIA_MET = {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}
BACKOFF_LIMIT = {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}


@pytest.mark.parametrize(
    ("kind", "last_seen", "applied", "state", "failure"),
    [
        # Deleted once finished (the TTL-after-finished controller): judged by the DELETED event's last state.
        ("Job", job([COMPLETE], succeeded=1), None, RolloutState.DONE, None),
        ("Job", job([SUCCESS_CRITERIA_MET], succeeded=1), None, RolloutState.DONE, None),
        ("Job", job([SUCCESS_CRITERIA_MET, BACKOFF_LIMIT]), None, RolloutState.FAILED, "BackoffLimitExceeded: limit"),
        ("Job", job([BACKOFF_LIMIT], failed=1), None, RolloutState.FAILED, "BackoffLimitExceeded: limit"),
        # Gone unfinished, or unseen: a failure, which guesses at ttlSecondsAfterFinished only when it is set.
        ("Job", job(active=1), None, RolloutState.FAILED, "NotFound: job/migrate was deleted"),
        ("Job", None, None, RolloutState.FAILED, "NotFound: job/migrate was deleted"),
        (
            "Job",
            None,
            with_ttl(job()),
            RolloutState.FAILED,
            "NotFound: job/migrate was deleted (ttlSecondsAfterFinished?)",
        ),
        (
            "Job",
            with_ttl(job(active=1)),
            None,
            RolloutState.FAILED,
            "NotFound: job/migrate was deleted (ttlSecondsAfterFinished?)",
        ),
        (
            "Deployment",
            deployment(updated=3, total=3, available=3),
            None,
            RolloutState.FAILED,
            "NotFound: deployment/migrate was deleted",
        ),
    ],
)
def test_departed_workload_is_judged_by_its_last_state(
    kind: str,
    last_seen: dict[str, Any] | None,
    applied: dict[str, Any] | None,
    state: RolloutState,
    failure: str | None,
) -> None:
    verdict, failures = judge_departed(kind, "migrate", last_seen, applied)
    assert verdict.state is state
    assert [f.describe() for f in failures] == ([failure] if failure else [])


def test_job_deleted_once_complete_keeps_its_last_progress_line() -> None:
    verdict, _ = judge_departed("Job", "migrate", job([COMPLETE], succeeded=1), None)
    assert (verdict.message, verdict.progress) == (
        'job "migrate" completed, then was deleted',
        "migrate: 1/1 succeeded",
    )


def test_unknown_kind_has_no_rollout_status() -> None:
    with pytest.raises(ValueError, match="ConfigMap"):
        judge_workload({"kind": "ConfigMap", "metadata": {"name": "x"}})


# --- new revision ---------------------------------------------------------------------------------------


def replica_set(name: str, hash_: str, image: str, *, owner: str = "d-uid", revision: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "uid": f"{name}-uid",
            "labels": {"app": "web", "pod-template-hash": hash_},
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner, "controller": True}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": hash_}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            }
        },
    }


def web_deployment(image: str) -> dict[str, Any]:
    d = deployment()
    d["spec"]["template"] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }
    return d


def pod(
    name: str,
    *,
    owner_uid: str = "web-new-uid",
    labels: dict[str, str] | None = None,
    phase: str = "Pending",
    containers: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    **status: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"{name}-uid",
        "labels": labels if labels is not None else {"app": "web", "pod-template-hash": "new"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "x", "uid": owner_uid, "controller": True}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    body: dict[str, Any] = {"phase": phase, **status}
    if containers is not None:
        body["containerStatuses"] = containers
    if init_containers is not None:
        body["initContainerStatuses"] = init_containers
    if conditions is not None:
        body["conditions"] = conditions
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": body}


def waiting(reason: str, message: str = "", name: str = "web") -> dict[str, Any]:
    return {
        "name": name,
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}},
    }


def test_new_replica_set_is_the_owned_one_with_the_deployments_template_ignoring_the_hash() -> None:
    old, new = replica_set("web-old", "old", "web:1"), replica_set("web-new", "new", "web:2", revision=2)
    foreign = replica_set("web-foreign", "new", "web:2", owner="other-uid")
    assert new_replica_set(web_deployment("web:2"), [foreign, old, new]) is new
    assert new_replica_set(web_deployment("web:1"), [foreign, old, new]) is old
    assert new_replica_set(web_deployment("web:3"), [foreign, old, new]) is None


def test_template_comparison_ignores_only_the_pod_template_hash_label() -> None:
    a = {"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}, "spec": {"containers": []}}
    assert templates_equal_ignoring_hash(a, {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}})
    assert not templates_equal_ignoring_hash(a, {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": []}})


def test_newest_revision_pods_for_each_kind() -> None:
    rs = replica_set("web-new", "new", "web:2")
    assert newest_revision_pods(web_deployment("web:2"), replica_sets=[rs]) == RevisionPods(
        "Deployment", "web", "web-new-uid", ("pod-template-hash", "new")
    )
    assert newest_revision_pods(web_deployment("web:2"), replica_sets=[]) is None
    assert newest_revision_pods(stateful_set()) == RevisionPods(
        "StatefulSet", "db", "s-uid", ("controller-revision-hash", "db-2")
    )
    revisions = [
        {
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"agent-{h}",
                "labels": {"controller-revision-hash": h},
                "ownerReferences": [{"uid": "ds-uid", "controller": True}],
            },
            "revision": n,
        }
        for h, n in (("aaa", 1), ("bbb", 2))
    ]
    assert newest_revision_pods(daemon_set(), controller_revisions=revisions) == RevisionPods(
        "DaemonSet", "agent", "ds-uid", ("controller-revision-hash", "bbb")
    )
    assert newest_revision_pods(job()) == RevisionPods("Job", "migrate", "j-uid")


NEW = RevisionPods("Deployment", "web", "web-new-uid", ("pod-template-hash", "new"))


def test_the_pods_of_a_revision_are_its_own_and_not_being_deleted() -> None:
    running, leaving = pod("web-new-a", phase="Running"), pod("web-new-b", phase="Running", deleting=True)
    old = pod("web-old-a", owner_uid="web-old-uid", labels={"pod-template-hash": "old"})
    assert pods_of(NEW, [running, leaving, old]) == [running]
    assert pods_of(None, [running]) == []


@pytest.mark.parametrize(
    ("the_pod", "expected"),
    [
        (pod("p", containers=[waiting("ErrImagePull", "not found")]), [("web", "ErrImagePull", "not found")]),
        (
            pod("p", containers=[waiting("ImagePullBackOff", 'Back-off pulling image "x"')]),
            [("web", "ImagePullBackOff", 'Back-off pulling image "x"')],
        ),
        (pod("p", containers=[waiting("InvalidImageName")]), [("web", "InvalidImageName", "")]),
        (pod("p", containers=[waiting("ErrImageNeverPull")]), [("web", "ErrImageNeverPull", "")]),
        (
            pod("p", containers=[waiting("CreateContainerConfigError", 'configmap "cfg" not found')]),
            [("web", "CreateContainerConfigError", 'configmap "cfg" not found')],
        ),
        (
            pod("p", containers=[waiting("CrashLoopBackOff", "back-off 10s")]),
            [("web", "CrashLoopBackOff", "back-off 10s")],
        ),
        (pod("p", containers=[waiting("RunContainerError")]), [("web", "RunContainerError", "")]),
        # Transient states heal by waiting.
        (pod("p", containers=[waiting("ContainerCreating")]), []),
        (pod("p", containers=[waiting("PodInitializing")]), []),
        (pod("p", phase="Running", containers=[{"name": "web", "ready": False, "state": {"running": {}}}]), []),
        (
            pod(
                "p",
                init_containers=[
                    {"name": "migrate", "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "no db"}}}
                ],
            ),
            [("migrate", "Error", "exited with code 3: no db")],
        ),
        (
            pod(
                "p",
                init_containers=[{"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            ),
            [],
        ),
        (
            pod("p", init_containers=[waiting("CrashLoopBackOff", name="migrate")]),
            [("migrate", "CrashLoopBackOff", "")],
        ),
        (pod("p", phase="Failed", reason="Evicted", message="low on memory"), [(None, "Evicted", "low on memory")]),
        # Only the new revision's pods count: the old ReplicaSet's pods are what a rollback returns to.
        (
            pod(
                "p",
                owner_uid="web-old-uid",
                labels={"pod-template-hash": "old"},
                containers=[waiting("CrashLoopBackOff")],
            ),
            [],
        ),
        (pod("p", labels={"pod-template-hash": "old"}, containers=[waiting("CrashLoopBackOff")]), []),
        # A pod on its way out is no longer the rollout's concern.
        (pod("p", deleting=True, containers=[waiting("CrashLoopBackOff")]), []),
    ],
)
def test_fail_fast_reasons_of_new_revision_pods(
    the_pod: dict[str, Any], expected: list[tuple[str | None, str, str]]
) -> None:
    scan = find_pod_failures([the_pod], NEW, now=T0)
    assert [(f.container, f.reason, f.message) for f in scan.failures] == expected
    assert scan.tolerated == []


def test_no_revision_yet_means_no_failures() -> None:
    scan = find_pod_failures([pod("p", containers=[waiting("ErrImagePull")])], None, now=T0)
    assert scan.failures == [] and scan.first_seen == {}


UNSCHEDULABLE = pod(
    "p",
    conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}
    ],
)


@pytest.mark.parametrize(
    ("elapsed", "grace", "counts"),
    [
        (timedelta(0), timedelta(seconds=30), False),
        (timedelta(seconds=29), timedelta(seconds=30), False),
        (timedelta(seconds=30), timedelta(seconds=30), True),
    ],
)
def test_unschedulable_pod_fails_only_after_its_grace_period(
    elapsed: timedelta, grace: timedelta, counts: bool
) -> None:
    first = find_pod_failures([UNSCHEDULABLE], NEW, now=T0, unschedulable_grace=grace)
    later = find_pod_failures(
        [UNSCHEDULABLE], NEW, now=T0 + elapsed, first_seen=first.first_seen, unschedulable_grace=grace
    )
    assert bool(later.failures) is counts
    assert bool(later.tolerated) is not counts
    if counts:
        assert later.failures[0].reason == "Unschedulable"
        assert later.failures[0].message == "0/1 nodes are available"


CRASHING = pod("p", containers=[waiting("CrashLoopBackOff", "back-off 20s")])
RUNNING_BETWEEN_CRASHES = pod(
    "p", phase="Running", containers=[{"name": "web", "ready": True, "state": {"running": {}}}]
)


@pytest.mark.parametrize(
    ("timeline", "tolerate", "counted_at"),
    [
        # Default: the first sighting counts.
        ([(0, CRASHING)], 0, 0),
        # Tolerated while younger than the window, counted once it persisted that long.
        ([(0, CRASHING), (10, CRASHING), (29, CRASHING)], 30, None),
        ([(0, CRASHING), (10, CRASHING), (30, CRASHING)], 30, 30),
        # A crash loop's running spells do not restart the count.
        ([(0, CRASHING), (15, RUNNING_BETWEEN_CRASHES), (31, CRASHING)], 30, 31),
        # Healed within the window: never counted.
        ([(0, CRASHING), (20, RUNNING_BETWEEN_CRASHES), (60, RUNNING_BETWEEN_CRASHES)], 30, None),
        # The pod was replaced: the new pod's count starts afresh.
        ([(0, CRASHING), (20, None), (40, CRASHING)], 30, None),
    ],
)
def test_tolerate_failures_for_needs_the_failure_to_persist_since_first_seen(
    timeline: list[tuple[int, dict[str, Any] | None]], tolerate: int, counted_at: int | None
) -> None:
    memory: dict[str, datetime] = {}
    counted: int | None = None
    for second, the_pod in timeline:
        pods = [the_pod] if the_pod is not None else []
        scan = find_pod_failures(
            pods,
            NEW,
            now=T0 + timedelta(seconds=second),
            first_seen=memory,
            tolerate_failures_for=timedelta(seconds=tolerate),
        )
        memory = scan.first_seen
        if scan.failures and counted is None:
            counted = second
            assert scan.failures[0].first_seen == T0
    assert counted == counted_at


def test_job_pods_that_failed_are_left_to_the_jobs_backoff_limit() -> None:
    revision = RevisionPods("Job", "migrate", "j-uid")
    failed = pod("migrate-1", owner_uid="j-uid", labels={}, phase="Failed")
    pulling = pod("migrate-2", owner_uid="j-uid", labels={}, containers=[waiting("ImagePullBackOff", name="migrate")])
    scan = find_pod_failures([failed, pulling], revision, now=T0)
    assert [(f.pod, f.reason) for f in scan.failures] == [("migrate-2", "ImagePullBackOff")]


def test_job_pods_that_crash_are_left_to_the_jobs_backoff_limit_but_unpullable_images_are_not() -> None:
    # restartPolicy OnFailure: the kubelet restarts the container (CrashLoopBackOff) and the Job controller
    # counts the restarts against backoffLimit; a crashed init container is retried the same way.
    revision = RevisionPods("Job", "migrate", "j-uid")
    crashing = pod("migrate-1", owner_uid="j-uid", labels={}, containers=[waiting("CrashLoopBackOff", name="migrate")])
    init_failed = pod(
        "migrate-2",
        owner_uid="j-uid",
        labels={},
        init_containers=[{"name": "wait-db", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}],
    )
    no_config = pod(
        "migrate-3", owner_uid="j-uid", labels={}, containers=[waiting("CreateContainerConfigError", name="migrate")]
    )
    scan = find_pod_failures([crashing, init_failed, no_config], revision, now=T0)
    assert [(f.pod, f.reason) for f in scan.failures] == [("migrate-3", "CreateContainerConfigError")]


def test_failure_describes_pod_container_reason_and_message() -> None:
    scan = find_pod_failures([pod("web-1", containers=[waiting("ErrImagePull", "manifest unknown")])], NEW, now=T0)
    assert scan.failures[0].describe() == "pod web-1 container web: ErrImagePull: manifest unknown"


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], []),
        (
            [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "web-1" has timed out progressing.',
                }
            ],
            [("ProgressDeadlineExceeded", 'ReplicaSet "web-1" has timed out progressing.')],
        ),
        (
            [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "web-1" is forbidden: exceeded quota',
                }
            ],
            [("FailedCreate", 'pods "web-1" is forbidden: exceeded quota')],
        ),
        ([{"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate"}], []),
        ([{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}], []),
    ],
)
def test_workload_conditions_that_fail_fast(conditions: list[dict[str, Any]], expected: list[tuple[str, str]]) -> None:
    obj = deployment()
    obj["status"]["conditions"] = conditions
    assert [(f.reason, f.message) for f in find_workload_failures(obj)] == expected


def test_failed_job_is_a_workload_failure() -> None:
    failed = job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}])
    assert [(f.kind, f.reason) for f in find_workload_failures(failed)] == [("Job", "BackoffLimitExceeded")]


def test_workload_failure_describes_reason_and_message_without_repeating_the_workload() -> None:
    # Callers write "job/migrate: " or "job/migrate failed: " in front; the name must not come twice.
    failed = job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}])
    assert [f.describe() for f in find_workload_failures(failed)] == ["BackoffLimitExceeded: limit"]


# --- the rollout wait's decision at each tick (rollout_wait.step), driven by a fake clock ---------------------

WEB = ObjectRef("apps/v1", "Deployment", "prod", "web")
API = ObjectRef("apps/v1", "Deployment", "prod", "api")
DONE_WEB = deployment(updated=3, total=3, available=3)
ROLLING_WEB = deployment(updated=1, total=3, available=2)
PULL_FAILURE = pod("p", containers=[waiting("ImagePullBackOff", "back-off pulling web:bad")])


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "name": name}}


def watched(
    ref: ObjectRef,
    live: dict[str, Any] | None,
    pods: list[dict[str, Any]] | None = None,
    *,
    departed: dict[str, Any] | None = None,
    applied: dict[str, Any] | None = None,
) -> WatchedWorkload:
    return WatchedWorkload(ref, live, departed, applied, pods or [], NEW if live is not None else None)


def synced(*workloads: WatchedWorkload) -> RolloutSnapshot:
    return RolloutSnapshot(synced=True, workloads=workloads)


def wait_through(
    timeline: list[tuple[float, RolloutSnapshot]], policy: WaitPolicy
) -> tuple[float | None, RolloutWaitVerdict, list[str]]:
    """Run the step over a timeline of (second, snapshot) as the loop would; when it ended, how, and the
    progress lines shown on the way."""
    state, shown = RolloutWaitState(), []
    verdict = RolloutWaitVerdict(None)
    for second, snapshot in timeline:
        now = Instant(monotonic=1000.0 + second, utc=T0 + timedelta(seconds=second))
        state, verdict = rollout_wait.step(policy, state, snapshot, now)
        shown += verdict.progress
        if verdict.outcome is not None:
            return second, verdict, shown
    return None, verdict, shown


def policy(timeout: float = 30, tolerate: float = 0, grace: float = 60) -> WaitPolicy:
    return WaitPolicy(1000.0, timeout, timedelta(seconds=tolerate), timedelta(seconds=grace))


@pytest.mark.parametrize(
    ("timeline", "wait_policy", "ended_at", "outcome", "reason"),
    [
        # Every workload done: the wait ends at once.
        ([(0, synced(watched(WEB, DONE_WEB)))], policy(), 0, WaitOutcome.DONE, "every workload rolled out"),
        # Nothing is judged before every watch listed once, but the deadline still ends the wait.
        (
            [(0, RolloutSnapshot(synced=False)), (29.9, RolloutSnapshot(synced=False)), (30, RolloutSnapshot(False))],
            policy(),
            30,
            WaitOutcome.TIMED_OUT,
            "timed out after 30s",
        ),
        # The timeout message says what the first unfinished workload waits for, as kubectl would.
        (
            [(0, synced(watched(WEB, ROLLING_WEB))), (2, synced(watched(WEB, ROLLING_WEB)))],
            policy(timeout=2),
            2,
            WaitOutcome.TIMED_OUT,
            'timed out after 2s: Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
            "updated...",
        ),
        # timeout 0: no deadline at all.
        (
            [(0, synced(watched(WEB, ROLLING_WEB))), (86400, synced(watched(WEB, ROLLING_WEB)))],
            policy(0),
            None,
            None,
            "",
        ),
        # A cancel ends the wait first, whatever the workloads show (a failure, or all done).
        (
            [(0, RolloutSnapshot(synced=True, cancelled=True, workloads=[watched(WEB, ROLLING_WEB, [PULL_FAILURE])]))],
            policy(),
            0,
            WaitOutcome.CANCELLED,
            "cancelled while waiting for the rollout",
        ),
        (
            [(0, RolloutSnapshot(synced=False, cancelled=True))],
            policy(),
            0,
            WaitOutcome.CANCELLED,
            "cancelled while waiting for the rollout",
        ),
        # A failure that cannot heal ends the wait at its first sighting...
        (
            [(0, synced(watched(WEB, ROLLING_WEB, [PULL_FAILURE])))],
            policy(),
            0,
            WaitOutcome.FAILED,
            "deployment/web: pod p container web: ImagePullBackOff: back-off pulling web:bad",
        ),
        # ... or, with --tolerate-failures-for, once it persisted that long (the memory is the state's).
        (
            [(s, synced(watched(WEB, ROLLING_WEB, [PULL_FAILURE]))) for s in (0, 1, 1.4, 1.5)],
            policy(tolerate=1.5),
            1.5,
            WaitOutcome.FAILED,
            "deployment/web: pod p container web: ImagePullBackOff: back-off pulling web:bad",
        ),
        # A failure wins over another workload being done; the first failing workload in the given order wins.
        (
            [(0, synced(watched(WEB, DONE_WEB), watched(API, named(ROLLING_WEB, "api"), [PULL_FAILURE])))],
            policy(),
            0,
            WaitOutcome.FAILED,
            "deployment/api: pod p container web: ImagePullBackOff: back-off pulling web:bad",
        ),
        # A pod unschedulable fails only after the grace period.
        (
            [(s, synced(watched(WEB, ROLLING_WEB, [UNSCHEDULABLE]))) for s in (0, 0.9, 1)],
            policy(grace=1),
            1,
            WaitOutcome.FAILED,
            "deployment/web: pod p: Unschedulable: 0/1 nodes are available",
        ),
        # Another writer replaced the template this run applied: the wait fails rather than pass on it.
        (
            [(0, synced(watched(WEB, DONE_WEB, applied=web_deployment("web:mine"))))],
            policy(),
            0,
            WaitOutcome.FAILED,
            "deployment/web: TemplateReplaced: its pod template is no longer the one this run applied (generation 2 "
            "now, this run applied 2): another deploy or writer changed it",
        ),
        # A Job deleted once complete is done; a Deployment deleted meanwhile fails.
        (
            [(0, synced(watched(ObjectRef("batch/v1", "Job", "prod", "migrate"), None, departed=job([COMPLETE]))))],
            policy(),
            0,
            WaitOutcome.DONE,
            "every workload rolled out",
        ),
        (
            [(0, synced(watched(WEB, None)))],
            policy(),
            0,
            WaitOutcome.FAILED,
            "deployment/web: NotFound: deployment/web was deleted",
        ),
    ],
)
def test_rollout_wait_step_decides_how_and_when_the_wait_ends(
    timeline: list[tuple[float, RolloutSnapshot]],
    wait_policy: WaitPolicy,
    ended_at: float | None,
    outcome: WaitOutcome | None,
    reason: str,
) -> None:
    second, verdict, _ = wait_through(timeline, wait_policy)
    assert (second, verdict.outcome, verdict.reason) == (ended_at, outcome, reason)


def test_rollout_wait_step_shows_a_progress_line_only_when_it_changes() -> None:
    almost = deployment(updated=3, total=3, available=2)
    timeline = [
        (0, synced(watched(WEB, ROLLING_WEB))),
        (1, synced(watched(WEB, ROLLING_WEB))),
        (2, synced(watched(WEB, almost))),
        (3, synced(watched(WEB, DONE_WEB))),
    ]
    second, verdict, shown = wait_through(timeline, policy())
    assert (second, verdict.outcome) == (3, WaitOutcome.DONE)
    assert shown == [judge_workload(obj).progress for obj in (ROLLING_WEB, almost, DONE_WEB)]
    assert len(set(shown)) == 3
