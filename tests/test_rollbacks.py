"""rollbacks.py: the plan that puts a failed run's changes back, and the verdict on the restored revision."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deployer import rollback_wait
from deployer.rollback_wait import (
    RestoredWorkload,
    RestoreSnapshot,
    RestoreWaitPolicy,
    RestoreWaitState,
    RestoreWaitVerdict,
    rollback_verdict,
    stuck_stateful_set_pods,
)
from deployer.rollbacks import (
    LiveRecord,
    ObjectRecord,
    ObjectRef,
    RecordedRevision,
    RollbackAction,
    RollbackTarget,
    plan_rollback,
    record_revision,
)
from deployer.rollouts import RolloutState

WEB = ObjectRef("apps/v1", "Deployment", "prod", "web")
CONFIG = ObjectRef("v1", "ConfigMap", "prod", "web-config")
DB = ObjectRef("apps/v1", "StatefulSet", "prod", "db")
AGENT = ObjectRef("apps/v1", "DaemonSet", "prod", "agent")


def template(image: str, hash_: str | None = None) -> dict[str, Any]:
    labels = {"app": "web"}
    if hash_:
        labels["pod-template-hash"] = hash_
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}}


def deployment(image: str, *, annotations: dict[str, str] | None = None, paused: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template(image)}
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "d-uid",
            "generation": 5,
            "resourceVersion": "100",
            "annotations": annotations
            if annotations is not None
            else {
                "deployment.kubernetes.io/revision": "5",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "kubernetes.io/change-cause": "deploy web:2",
                "team": "web",
            },
        },
        "spec": spec,
        "status": {"observedGeneration": 5},
    }


def replica_set(
    name: str, image: str, hash_: str, revision: int, *, replicas: int = 0, available: int = 0
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "prod",
            "uid": f"{name}-uid",
            "labels": {"app": "web", "pod-template-hash": hash_},
            "annotations": {
                "deployment.kubernetes.io/revision": str(revision),
                "deployment.kubernetes.io/desired-replicas": "3",
                "deployment.kubernetes.io/max-replicas": "4",
                "kubernetes.io/change-cause": f"deploy {image}",
                "team": "web",
            },
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-uid", "controller": True}
            ],
        },
        "spec": {"replicas": replicas, "template": template(image, hash_)},
        "status": {"replicas": replicas, "availableReplicas": available},
    }


OLD_RS = replica_set("web-aaa", "web:1", "aaa", 4, replicas=3, available=3)
NEW_RS = replica_set("web-bbb", "web:2", "bbb", 5, replicas=1)


def recorded_web() -> ObjectRecord:
    before = deployment(
        "web:1", annotations={"deployment.kubernetes.io/revision": "4", "kubernetes.io/change-cause": "deploy web:1"}
    )
    revision = record_revision(before, replica_sets=[OLD_RS])
    return ObjectRecord(WEB, True, before, revision)


def test_record_revision_of_a_deployment_is_its_current_replica_set() -> None:
    revision = record_revision(deployment("web:1"), replica_sets=[OLD_RS, NEW_RS])
    assert revision is not None
    assert (revision.number, revision.name) == (4, "web-aaa")
    assert revision.template == template("web:1", "aaa")
    assert revision.annotations["kubernetes.io/change-cause"] == "deploy web:1"


def test_record_revision_without_a_replica_set_yet_falls_back_to_the_template() -> None:
    revision = record_revision(deployment("web:1"), replica_sets=[])
    assert revision == RecordedRevision(5, "", template("web:1"))


def test_deployment_is_rolled_back_with_kubectl_undo_patch_to_the_recorded_revision() -> None:
    live = deployment(
        "web:2",
        annotations={
            "deployment.kubernetes.io/revision": "5",
            "kubectl.kubernetes.io/last-applied-configuration": "{applied}",
            "deployment.kubernetes.io/revision-history": "2,3",
            "kubernetes.io/change-cause": "deploy web:2",
            "team": "web-new",
        },
    )
    (step,) = plan_rollback(LiveRecord([recorded_web()]), {WEB: live})
    assert step.action is RollbackAction.PATCH
    assert step.patch_type == "json"
    assert step.body == [
        {"op": "replace", "path": "/spec/template", "value": template("web:1")},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            # Kept from the live Deployment: its own history. Taken from the target ReplicaSet: everything else.
            "value": {
                "deployment.kubernetes.io/revision": "5",
                "kubectl.kubernetes.io/last-applied-configuration": "{applied}",
                "deployment.kubernetes.io/revision-history": "2,3",
                "kubernetes.io/change-cause": "deploy web:1",
                "team": "web",
            },
        },
    ]
    assert step.summary == "roll back deployment/web to revision 4 (image web:1)"
    assert step.outcome == "rolled back"
    assert step.target == RollbackTarget("Deployment", "web", 4, template("web:1"))
    assert step.waits


def test_deployment_rollback_is_skipped_when_the_template_already_matches() -> None:
    (step,) = plan_rollback([recorded_web()], {WEB: deployment("web:1")})
    assert step.action is RollbackAction.NOTHING
    assert (
        step.summary == "skipped rollback of deployment/web (current template already matches revision 4 (image web:1))"
    )
    assert not step.waits


def test_paused_deployment_cannot_be_rolled_back() -> None:
    (step,) = plan_rollback([recorded_web()], {WEB: deployment("web:2", paused=True)})
    assert step.action is RollbackAction.NOTHING
    assert step.problem == "you cannot rollback a paused deployment"


def serialized(tmpl: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(tmpl)
    copied["metadata"]["creationTimestamp"] = None
    for container in copied["spec"]["containers"]:
        container["resources"] = {}
    return copied


def controller_revision(name: str, owner: str, number: int, tmpl: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": name, "ownerReferences": [{"uid": owner, "controller": True}]},
        # As the controllers write it: Go's empty values included, the replace directive inside the template.
        "data": {"spec": {"template": {**serialized(tmpl), "$patch": "replace"}}},
        "revision": number,
    }


def stateful_set(image: str, kind: str = "StatefulSet", uid: str = "s-uid") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": "db" if kind == "StatefulSet" else "agent",
            "namespace": "prod",
            "uid": uid,
            "generation": 2,
        },
        "spec": {"replicas": 2, "template": template(image), "updateStrategy": {"type": "RollingUpdate"}},
        "status": {"observedGeneration": 2},
    }


@pytest.mark.parametrize(("ref", "kind", "uid"), [(DB, "StatefulSet", "s-uid"), (AGENT, "DaemonSet", "ds-uid")])
def test_stateful_and_daemon_sets_are_patched_with_the_recorded_controller_revision(
    ref: ObjectRef, kind: str, uid: str
) -> None:
    before = stateful_set("db:1", kind, uid)
    revisions = [
        controller_revision("r-1", uid, 1, template("db:0")),
        controller_revision("r-2", uid, 2, template("db:1")),
        controller_revision("r-x", "someone-else", 9, template("db:1")),
    ]
    revision = record_revision(before, controller_revisions=revisions)
    assert revision is not None and (revision.number, revision.name) == (2, "r-2")
    (step,) = plan_rollback([ObjectRecord(ref, True, before, revision)], {ref: stateful_set("db:2", kind, uid)})
    assert (step.action, step.patch_type) == (RollbackAction.PATCH, "strategic-merge")
    assert step.body == {"spec": {"template": {**serialized(template("db:1")), "$patch": "replace"}}}
    assert step.summary == f"roll back {kind.lower()}/{ref.name} to revision 2 (image db:1)"
    # Unchanged template (compared as parsed JSON): nothing to do.
    (skipped,) = plan_rollback([ObjectRecord(ref, True, before, revision)], {ref: copy.deepcopy(before)})
    assert skipped.action is RollbackAction.NOTHING and skipped.outcome == "unchanged"


def test_stateful_set_without_controller_revisions_is_restored_from_its_recorded_template() -> None:
    before = stateful_set("db:1")
    revision = record_revision(before, controller_revisions=[])
    (step,) = plan_rollback([ObjectRecord(DB, True, before, revision)], {DB: stateful_set("db:2")})
    assert step.body == {"spec": {"template": {**template("db:1"), "$patch": "replace"}}}


def config_map(data: dict[str, str], resource_version: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "web-config",
            "namespace": "prod",
            "uid": "cm-uid",
            "resourceVersion": resource_version,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl-client-side-apply"}],
            "labels": {"app": "web"},
        },
        "data": data,
    }


def test_other_objects_are_replaced_with_their_recorded_content_without_server_fields() -> None:
    before = config_map({"mode": "old"})
    (step,) = plan_rollback([ObjectRecord(CONFIG, True, before)], {CONFIG: config_map({"mode": "new"}, "8")})
    assert step.action is RollbackAction.REPLACE
    assert step.body == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": "prod", "labels": {"app": "web"}},
        "data": {"mode": "old"},
    }
    assert step.target is None and not step.waits


def test_unchanged_other_object_needs_nothing_even_with_a_new_resource_version() -> None:
    (step,) = plan_rollback([ObjectRecord(CONFIG, True, config_map({"a": "1"}))], {CONFIG: config_map({"a": "1"}, "9")})
    assert (step.action, step.outcome) == (RollbackAction.NOTHING, "unchanged")


@pytest.mark.parametrize(
    ("delete", "action", "outcome", "summary"),
    [
        (
            False,
            RollbackAction.NOTHING,
            "left in place",
            "deployment/web was created by this run and is left in place (first deploy: there is no previous "
            "revision); --delete-created-on-failure removes it",
        ),
        (
            True,
            RollbackAction.DELETE,
            "deleted",
            "delete deployment/web, created by this run (first deploy: there is no previous revision)",
        ),
    ],
)
def test_first_deploy_has_no_previous_revision(
    delete: bool, action: RollbackAction, outcome: str, summary: str
) -> None:
    (step,) = plan_rollback([ObjectRecord(WEB, False)], {WEB: deployment("web:2")}, delete_created_on_failure=delete)
    assert (step.action, step.outcome, step.summary) == (action, outcome, summary)


def test_object_deleted_during_the_run_is_recreated() -> None:
    before = config_map({"a": "1"})
    (step,) = plan_rollback([ObjectRecord(CONFIG, True, before)], {CONFIG: None})
    assert step.action is RollbackAction.CREATE
    assert "resourceVersion" not in step.body["metadata"]


def test_plan_order_restores_configuration_then_workloads_then_deletes_in_reverse() -> None:
    created_cm = ObjectRef("v1", "ConfigMap", "prod", "new-config")
    created_web = ObjectRef("apps/v1", "Deployment", "prod", "new-web")
    records = [
        ObjectRecord(created_cm, False),
        ObjectRecord(CONFIG, True, config_map({"mode": "old"})),
        recorded_web(),
        ObjectRecord(created_web, False),
    ]
    current = {created_cm: {}, CONFIG: config_map({"mode": "new"}), WEB: deployment("web:2"), created_web: {}}
    steps = plan_rollback(records, current, delete_created_on_failure=True)
    assert [(s.ref.name, s.action) for s in steps] == [
        ("web-config", RollbackAction.REPLACE),
        ("web", RollbackAction.PATCH),
        ("new-web", RollbackAction.DELETE),
        ("new-config", RollbackAction.DELETE),
    ]


# --- rollback verdict -------------------------------------------------------------------------------------

TARGET = RollbackTarget("Deployment", "web", 4, template("web:1"))


def after_undo(*, generation: int = 6, observed: int = 6, image: str = "web:1") -> dict[str, Any]:
    d = deployment(image)
    d["metadata"]["generation"] = generation
    # The stale condition kubectl rollout status would keep failing on.
    d["status"] = {
        "observedGeneration": observed,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    }
    return d


@pytest.mark.parametrize(
    ("obj", "sets", "state", "progress"),
    [
        (
            after_undo(image="web:2"),
            [OLD_RS, NEW_RS],
            RolloutState.WAITING,
            "web: rolling back to revision 4: template not restored yet",
        ),
        (
            after_undo(generation=7),
            [OLD_RS, NEW_RS],
            RolloutState.WAITING,
            "web: rolling back to revision 4: waiting for the controller",
        ),
        (
            after_undo(),
            [replica_set("web-aaa", "web:1", "aaa", 6, replicas=3, available=2), NEW_RS],
            RolloutState.WAITING,
            "web: rolling back to revision 4: 2/3 available",
        ),
        (
            after_undo(),
            [OLD_RS, NEW_RS],
            RolloutState.WAITING,
            "web: rolling back to revision 4: 3/3 available, 1 other",
        ),
        (
            after_undo(),
            [OLD_RS, replica_set("web-bbb", "web:2", "bbb", 5, replicas=0)],
            RolloutState.DONE,
            "web: rolling back to revision 4: 3/3 available",
        ),
    ],
)
def test_deployment_rollback_verdict_is_readiness_of_the_restored_replica_set_not_rollout_status(
    obj: dict[str, Any], sets: list[dict[str, Any]], state: RolloutState, progress: str
) -> None:
    verdict = rollback_verdict(obj, TARGET, replica_sets=sets)
    assert (verdict.state, verdict.progress) == (state, progress)
    if state is RolloutState.DONE:
        assert verdict.message == 'deployment "web" rolled back to revision 4'


def test_stateful_set_rollback_verdict_uses_kubectl_conditions_once_the_template_is_back() -> None:
    target = RollbackTarget("StatefulSet", "db", 2, template("db:1"))
    sts = stateful_set("db:1")
    sts["status"].update(
        {
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "currentReplicas": 2,
            "updateRevision": "db-1",
            "currentRevision": "db-1",
        }
    )
    assert rollback_verdict(sts, target).state is RolloutState.DONE
    sts["status"]["readyReplicas"] = 1
    assert rollback_verdict(sts, target).state is RolloutState.WAITING
    assert rollback_verdict(stateful_set("db:2"), target).state is RolloutState.WAITING


def sts_pod(name: str, revision: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"app": "web", "controller-revision-hash": revision},
        "ownerReferences": [{"uid": "s-uid", "controller": True}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(
    ("live_image", "observed", "expected"),
    [
        # The controller has the restored template: the broken pod of the failed revision must go.
        ("db:1", 2, ["db-1"]),
        # Not yet observed, or the template not restored yet: nothing to force.
        ("db:1", 1, []),
        ("db:2", 2, []),
    ],
)
def test_forced_rollback_deletes_only_unready_pods_of_the_failed_stateful_set_revision(
    live_image: str, observed: int, expected: list[str]
) -> None:
    sts = stateful_set(live_image)
    sts["status"] = {"observedGeneration": observed, "updateRevision": "db-old"}
    pods = [
        sts_pod("db-0", "db-old", ready=True),
        sts_pod("db-1", "db-bad", ready=False),
        sts_pod("db-2", "db-bad", ready=False, deleting=True),
        sts_pod("db-3", "db-bad", ready=True),
    ]
    target = RollbackTarget("StatefulSet", "db", 1, template("db:1"))
    assert stuck_stateful_set_pods(sts, target, pods) == expected


def test_step_detail_completes_the_outcome_line_of_the_error_message() -> None:
    from deployer.errors import RolloutFailedError, RolloutFailure, WorkloadOutcome

    (patch,) = plan_rollback([recorded_web()], {WEB: deployment("web:2")})
    (created,) = plan_rollback([ObjectRecord(DB, False)], {DB: stateful_set("db:1")})
    outcomes = [WorkloadOutcome(s.ref.kind, s.ref.name, s.outcome, s.detail) for s in (patch, created)]
    message = str(RolloutFailedError(RolloutFailure("deployment/web: ImagePullBackOff", outcomes)))
    assert message == (
        "deployment/web: ImagePullBackOff; rolled back deployment/web to revision 4 (image web:1); "
        "left in place statefulset/db (created by this run; first deploy, no previous revision)"
    )


# --- the rollback wait's decision at each tick (rollback_wait.step), driven by a fake clock --------------------

BACK_SETS = [OLD_RS, replica_set("web-bbb", "web:2", "bbb", 5, replicas=0)]
STILL_SCALED_SETS = [OLD_RS, NEW_RS]


def restore_policy(*targets: tuple[ObjectRef, RollbackTarget], timeout: float = 5) -> RestoreWaitPolicy:
    return RestoreWaitPolicy(dict(targets), started=100.0, timeout=timeout)


def seen(
    workloads: dict[ObjectRef, RestoredWorkload], *, synced: bool = True, cancelled: bool = False
) -> RestoreSnapshot:
    return RestoreSnapshot(synced, cancelled, workloads)


def web_seen(sets: list[dict[str, Any]]) -> dict[ObjectRef, RestoredWorkload]:
    return {WEB: RestoredWorkload(after_undo(), (), sets)}


def wait_restored_through(
    timeline: list[tuple[float, RestoreSnapshot]], wait_policy: RestoreWaitPolicy
) -> tuple[float | None, RestoreWaitVerdict, list[str], list[str]]:
    """Run the step over (second, snapshot) as the loop would: when it ended, its verdict, the progress lines
    shown and the pods deleted on the way."""
    state, shown, deleted = RestoreWaitState(), [], []
    verdict = RestoreWaitVerdict(None)
    for second, snapshot in timeline:
        state, verdict = rollback_wait.step(wait_policy, state, snapshot, 100.0 + second)
        shown += verdict.progress
        deleted += [pod for _, pod in verdict.delete]
        if verdict.problems is not None:
            return second, verdict, shown, deleted
    return None, verdict, shown, deleted


@pytest.mark.parametrize(
    ("timeline", "timeout", "ended_at", "problems"),
    [
        # Back and ready: no problem.
        ([(0, seen(web_seen(BACK_SETS)))], 5, 0, {}),
        # Not yet: the wait goes on until it is...
        ([(0, seen(web_seen(STILL_SCALED_SETS))), (4.9, seen(web_seen(BACK_SETS)))], 5, 4.9, {}),
        # ... or until --rollback-timeout, which says what it still waited for.
        (
            [(0, seen(web_seen(STILL_SCALED_SETS))), (5, seen(web_seen(STILL_SCALED_SETS)))],
            5,
            5,
            {
                WEB: 'not ready after 5s (--rollback-timeout): Waiting for deployment "web" rollback to finish: 1 '
                "replicas of other revisions are still scheduled..."
            },
        ),
        # Never synced: nothing seen to report but that.
        (
            [(0, seen({}, synced=False)), (5, seen({}, synced=False))],
            5,
            5,
            {WEB: "not ready after 5s (--rollback-timeout): no status seen"},
        ),
        # timeout 0: no deadline.
        ([(0, seen(web_seen(STILL_SCALED_SETS))), (86400, seen(web_seen(STILL_SCALED_SETS)))], 0, None, None),
        # Deleted while the rollback waited: a problem at once.
        (
            [(0, seen({WEB: RestoredWorkload(None)}))],
            5,
            0,
            {WEB: "deleted during the rollback"},
        ),
        # A cancel ends it with every unfinished workload named.
        (
            [(0, seen(web_seen(STILL_SCALED_SETS), cancelled=True))],
            5,
            0,
            {WEB: "rollback wait cancelled"},
        ),
        # ... but what is back when the cancel comes is not a problem.
        ([(0, seen(web_seen(BACK_SETS), cancelled=True))], 5, 0, {}),
    ],
)
def test_rollback_wait_step_decides_when_the_rollback_wait_ends_and_what_is_wrong(
    timeline: list[tuple[float, RestoreSnapshot]],
    timeout: float,
    ended_at: float | None,
    problems: dict[ObjectRef, str] | None,
) -> None:
    second, verdict, _, _ = wait_restored_through(timeline, restore_policy((WEB, TARGET), timeout=timeout))
    assert (second, verdict.problems) == (ended_at, problems)


def test_rollback_wait_step_deletes_a_stuck_stateful_set_pod_once_and_says_so() -> None:
    target = RollbackTarget("StatefulSet", "db", 1, template("db:1"))
    sts = stateful_set("db:1")
    sts["status"] = {"observedGeneration": 2, "updateRevision": "db-old"}
    stuck = RestoredWorkload(sts, [sts_pod("db-0", "db-old", ready=True), sts_pod("db-1", "db-bad", ready=False)])
    timeline = [(0, seen({DB: stuck})), (1, seen({DB: stuck})), (2, seen({DB: stuck}))]
    second, verdict, shown, deleted = wait_restored_through(timeline, restore_policy((DB, target), timeout=2))
    assert deleted == ["db-1"]
    assert shown[0] == "db: deleting pod db-1 of the failed revision (forced rollback)"
    assert second == 2 and verdict.problems is not None and set(verdict.problems) == {DB}
