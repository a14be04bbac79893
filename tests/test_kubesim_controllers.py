"""The simulator's controllers, driven step by step as the real control loop would drive them.

A small in-test store applies the actions the pure reconcile functions return (assigning uid,
resourceVersion, creationTimestamp and generation as the API server does) and calls the controllers again
until nothing changes. The tests play the kubelet: they mark pods Ready or failed and move the clock.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from tests.kubesim.controllers import (
    Action,
    Create,
    Delete,
    RecordEvent,
    Update,
    UpdateStatus,
    format_time,
    max_surge,
    max_unavailable,
    reconcile_daemonset,
    reconcile_deployment,
    reconcile_job,
    reconcile_replicaset,
    reconcile_statefulset,
    revision_data,
    schedule_pod,
    template_hash,
)

Obj = dict[str, Any]
START = 1_700_000_000.0


class Cluster:
    """Just enough of an API server and control loop to run the controllers against each other."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], Obj] = {}
        self.events: list[RecordEvent] = []
        self.now = START
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    # ---- the API server's part

    def create(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        key = _key(obj)
        assert key not in self.objects, f"AlreadyExists: {key}"
        meta = obj.setdefault("metadata", {})
        meta["uid"] = f"uid-{next(self._uids)}"
        meta["resourceVersion"] = str(next(self._versions))
        meta["creationTimestamp"] = format_time(self.now)
        meta["generation"] = 1
        if obj["kind"] == "Pod":
            obj["status"] = {"phase": "Pending"}
        self.objects[key] = obj
        return obj

    def update(self, obj: Obj) -> None:
        key = _key(obj)
        stored = self.objects[key]
        assert obj["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"], f"Conflict: {key}"
        new = copy.deepcopy(obj)
        new["status"] = stored.get("status", {})
        new["metadata"]["generation"] = stored["metadata"]["generation"] + (new.get("spec") != stored.get("spec"))
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self.objects[key]  # the last finalizer of an object being deleted is gone: so is the object
            return
        self.objects[key] = new

    def delete(self, key: tuple[str, str | None, str]) -> None:
        """As the API server deletes: at once, or, while finalizers remain, by marking it as being deleted."""
        stored = self.objects[key]
        if not stored["metadata"].get("finalizers"):
            del self.objects[key]
        elif not stored["metadata"].get("deletionTimestamp"):
            marked = copy.deepcopy(stored)
            marked["metadata"]["deletionTimestamp"] = format_time(self.now)
            marked["metadata"]["resourceVersion"] = str(next(self._versions))
            self.objects[key] = marked

    def update_status(self, obj: Obj) -> None:
        key = _key(obj)
        stored = self.objects[key]
        assert obj["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"], f"Conflict: {key}"
        new = copy.deepcopy(stored)
        new["status"] = copy.deepcopy(obj.get("status", {}))
        if obj["kind"] == "Deployment":
            new["metadata"]["annotations"] = copy.deepcopy(obj["metadata"].get("annotations", {}))
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = new

    def apply(self, actions: list[Action]) -> int:
        writes = 0
        for action in actions:
            if isinstance(action, Create):
                self.create(action.obj)
            elif isinstance(action, Update):
                self.update(action.obj)
            elif isinstance(action, UpdateStatus):
                self.update_status(action.obj)
            elif isinstance(action, Delete):
                self.delete((action.kind, action.namespace, action.name))
            else:
                self.events.append(action)
                continue
            writes += 1
        return writes

    # ---- the control loop's part

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for (k, _, _), obj in sorted(self.objects.items()) if k == kind]

    def owned_by(self, owner: Obj, kind: str) -> list[Obj]:
        return [
            obj
            for obj in self.of_kind(kind)
            if any(ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences", []))
        ]

    def sync_once(self) -> list[Action]:
        actions: list[Action] = []
        for obj in list(self.objects.values()):
            actions += self.reconcile(obj)
        return actions

    def reconcile(self, obj: Obj) -> list[Action]:
        kind = obj["kind"]
        if kind == "Deployment":
            return reconcile_deployment(obj, self.owned_by(obj, "ReplicaSet"), self.now)
        if kind == "ReplicaSet":
            return reconcile_replicaset(obj, self.owned_by(obj, "Pod"), self.now)
        if kind == "StatefulSet":
            revisions = self.owned_by(obj, "ControllerRevision")
            return reconcile_statefulset(obj, self.owned_by(obj, "Pod"), revisions, self.now)
        if kind == "DaemonSet":
            revisions = self.owned_by(obj, "ControllerRevision")
            return reconcile_daemonset(obj, self.owned_by(obj, "Pod"), revisions, self.of_kind("Node"), self.now)
        if kind == "Job":
            return reconcile_job(obj, self.owned_by(obj, "Pod"), self.now)
        if kind == "Pod" and self.of_kind("Node"):
            return schedule_pod(obj, self.of_kind("Node"), self.now)
        return []

    def settle(self) -> None:
        """Run controllers one object at a time until a full round writes nothing."""
        for _ in range(100):
            writes = 0
            for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Pod"):
                for obj in self.of_kind(kind):
                    if _key(obj) in self.objects:
                        writes += self.apply(self.reconcile(self.objects[_key(obj)]))
            if writes == 0:
                return
        raise AssertionError("controllers did not settle")

    # ---- the kubelet's and the user's part

    def get(self, kind: str, name: str, namespace: str | None = "default") -> Obj:
        return self.objects[(kind, namespace, name)]

    def edit(self, kind: str, name: str, change: Callable[[Obj], None]) -> None:
        obj = copy.deepcopy(self.get(kind, name))
        change(obj)
        self.update(obj)

    def set_pod_ready(self, pod: Obj, ready: bool = True) -> None:
        stored = copy.deepcopy(self.objects[_key(pod)])
        stored["spec"].setdefault("nodeName", "node-1")
        stored["status"] = {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": format_time(self.now)}
            ],
        }
        self.update_status(stored)

    def make_all_pods_ready(self) -> None:
        for pod in self.of_kind("Pod"):
            if not _ready(pod):
                self.set_pod_ready(pod)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _key(obj: Obj) -> tuple[str, str | None, str]:
    return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


def _ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def deployment_manifest(
    name: str = "web",
    image: str = "web:1",
    replicas: int = 3,
    max_surge: int | str = "25%",
    max_unavailable: int | str = "25%",
    **spec: Any,
) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


def set_image(image: str) -> Callable[[Obj], None]:
    def change(deployment: Obj) -> None:
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return change


def condition(obj: Obj, condition_type: str) -> Obj:
    for found in obj.get("status", {}).get("conditions", []):
        if found["type"] == condition_type:
            return dict(found)
    raise AssertionError(f"no {condition_type} condition in {obj.get('status')}")


def replicasets_by_image(cluster: Cluster) -> dict[str, Obj]:
    return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in cluster.of_kind("ReplicaSet")}


def revision(obj: Obj) -> str:
    return str(obj["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision"))


def rolled_out_cluster(**manifest: Any) -> Cluster:
    cluster = Cluster()
    cluster.create(deployment_manifest(**manifest))
    cluster.settle()
    cluster.make_all_pods_ready()
    cluster.settle()
    return cluster


# --------------------------------------------------------------------------------------------- Deployment


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),
        (1, "25%", "25%", (1, 0)),
        (4, "25%", "25%", (1, 1)),
        (3, 0, 0, (0, 1)),
        (4, "10%", "10%", (1, 0)),
        (5, "50%", "0%", (3, 0)),
        (3, 1, 5, (1, 3)),
    ],
)
def test_surge_rounds_up_and_unavailable_rounds_down(
    replicas: int, surge: int | str, unavailable: int | str, expected: tuple[int, int]
) -> None:
    deployment = deployment_manifest(replicas=replicas, max_surge=surge, max_unavailable=unavailable)
    assert (max_surge(deployment), max_unavailable(deployment)) == expected


def test_new_deployment_gets_a_replicaset_named_by_template_hash_with_revision_1() -> None:
    cluster = Cluster()
    deployment = cluster.create(deployment_manifest(replicas=3))
    first_sync = reconcile_deployment(deployment, [], cluster.now)
    (first_status,) = [a.obj for a in first_sync if isinstance(a, UpdateStatus)]
    assert condition(first_status, "Progressing")["reason"] == "NewReplicaSetCreated"
    cluster.settle()

    (replicaset,) = cluster.of_kind("ReplicaSet")
    pod_hash = template_hash(deployment["spec"]["template"])
    assert replicaset["metadata"]["name"] == f"web-{pod_hash}"
    assert replicaset["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert replicaset["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert replicaset["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert replicaset["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
    assert replicaset["metadata"]["annotations"] == {
        "deployment.kubernetes.io/revision": "1",
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
    }
    assert replicaset["spec"]["replicas"] == 3
    pods = cluster.of_kind("Pod")
    assert len(pods) == 3
    assert all(pod["metadata"]["name"].startswith(f"web-{pod_hash}-") for pod in pods)
    assert all(len(pod["metadata"]["name"]) == len(f"web-{pod_hash}-") + 5 for pod in pods)

    stored = cluster.get("Deployment", "web")
    assert revision(stored) == "1"
    assert stored["status"]["observedGeneration"] == 1
    assert stored["status"]["replicas"] == 3
    assert "availableReplicas" not in stored["status"]
    assert condition(stored, "Available")["reason"] == "MinimumReplicasUnavailable"
    # Pods appearing count as progress.
    assert condition(stored, "Progressing")["reason"] == "ReplicaSetUpdated"


def test_ready_pods_complete_the_rollout() -> None:
    cluster = rolled_out_cluster(replicas=3)
    deployment = cluster.get("Deployment", "web")
    status = deployment["status"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"], status["availableReplicas"]) == (
        3,
        3,
        3,
        3,
    )
    assert "unavailableReplicas" not in status
    assert condition(deployment, "Available")["status"] == "True"
    assert condition(deployment, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = condition(deployment, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")
    assert progressing["message"].endswith("has successfully progressed.")
    (replicaset,) = cluster.of_kind("ReplicaSet")
    assert replicaset["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }


def test_a_settled_cluster_gets_no_more_actions() -> None:
    cluster = rolled_out_cluster(replicas=3)
    assert cluster.sync_once() == []


def test_repeating_a_sync_repeats_the_same_names_instead_of_adding_objects() -> None:
    cluster = Cluster()
    cluster.create(deployment_manifest(replicas=2))
    cluster.settle()
    replicaset = cluster.of_kind("ReplicaSet")[0]
    for pod in cluster.of_kind("Pod"):
        del cluster.objects[_key(pod)]
    first = reconcile_replicaset(replicaset, [], cluster.now)
    second = reconcile_replicaset(replicaset, [], cluster.now)
    assert first == second
    assert len([a for a in first if isinstance(a, Create)]) == 2


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [
        (4, "25%", "25%"),
        (10, "25%", "25%"),
        (3, 0, 1),
        (3, 1, 0),
        (5, "50%", "0%"),
        (1, "25%", "25%"),
    ],
)
def test_rolling_update_stays_within_surge_and_unavailable_at_every_step(
    replicas: int, surge: int | str, unavailable: int | str
) -> None:
    cluster = rolled_out_cluster(replicas=replicas, max_surge=surge, max_unavailable=unavailable)
    deployment = cluster.get("Deployment", "web")
    allowed_surge, allowed_unavailable = max_surge(deployment), max_unavailable(deployment)

    cluster.edit("Deployment", "web", set_image("web:2"))
    for _ in range(4 * replicas + 4):
        cluster.settle()
        by_image = replicasets_by_image(cluster)
        pods = cluster.of_kind("Pod")
        assert sum(rs["spec"]["replicas"] for rs in by_image.values()) <= replicas + allowed_surge
        assert len(pods) <= replicas + allowed_surge
        assert sum(1 for pod in pods if _ready(pod)) >= replicas - allowed_unavailable
        not_ready = [pod for pod in pods if not _ready(pod)]
        if not not_ready:
            break
        # One new pod becomes ready per step, as a slow kubelet would do it.
        cluster.advance(5)
        cluster.set_pod_ready(not_ready[0])
    cluster.settle()

    by_image = replicasets_by_image(cluster)
    assert by_image["web:1"]["spec"]["replicas"] == 0
    assert by_image["web:2"]["spec"]["replicas"] == replicas
    assert revision(by_image["web:2"]) == "2"
    deployment = cluster.get("Deployment", "web")
    assert revision(deployment) == "2"
    assert deployment["status"]["updatedReplicas"] == replicas
    assert deployment["status"]["availableReplicas"] == replicas
    assert deployment["status"]["replicas"] == replicas
    assert deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"] == 2
    assert condition(deployment, "Progressing")["reason"] == "NewReplicaSetAvailable"
    scaling = [e.message for e in cluster.events if e.reason == "ScalingReplicaSet"]
    assert scaling[0].startswith("Scaled up replica set web-")
    assert any(m.startswith("Scaled down replica set web-") and m.endswith(" to 0") for m in scaling)


def test_first_step_of_a_rolling_update_surges_then_waits_for_the_new_pods() -> None:
    cluster = rolled_out_cluster(replicas=4, max_surge=1, max_unavailable=0)
    cluster.edit("Deployment", "web", set_image("web:2"))
    cluster.settle()
    by_image = replicasets_by_image(cluster)
    assert (by_image["web:1"]["spec"]["replicas"], by_image["web:2"]["spec"]["replicas"]) == (4, 1)
    deployment = cluster.get("Deployment", "web")
    assert condition(deployment, "Progressing")["reason"] == "ReplicaSetUpdated"
    assert deployment["status"]["updatedReplicas"] == 1
    assert deployment["status"]["replicas"] == 5
    # Nothing becomes ready: nothing more happens, however often the controllers run.
    cluster.advance(30)
    cluster.settle()
    assert replicasets_by_image(cluster)["web:2"]["spec"]["replicas"] == 1


def test_stuck_rollout_exceeds_its_progress_deadline() -> None:
    cluster = rolled_out_cluster(replicas=2, progressDeadlineSeconds=60)
    cluster.edit("Deployment", "web", set_image("web:broken"))
    cluster.settle()
    progressing = condition(cluster.get("Deployment", "web"), "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "ReplicaSetUpdated")

    cluster.advance(60)
    cluster.settle()
    # Exactly at the deadline is not past it.
    assert condition(cluster.get("Deployment", "web"), "Progressing")["status"] == "True"

    cluster.advance(1)
    cluster.settle()
    deployment = cluster.get("Deployment", "web")
    progressing = condition(deployment, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["message"].endswith("has timed out progressing.")
    assert progressing["lastTransitionTime"] == format_time(cluster.now)
    # The old pods still serve.
    assert condition(deployment, "Available")["status"] == "True"
    before = cluster.get("Deployment", "web")["metadata"]["resourceVersion"]
    cluster.advance(600)
    cluster.settle()
    assert cluster.get("Deployment", "web")["metadata"]["resourceVersion"] == before


def test_progress_renews_the_deadline_clock() -> None:
    cluster = rolled_out_cluster(replicas=4, max_surge=1, max_unavailable=0, progressDeadlineSeconds=60)
    cluster.edit("Deployment", "web", set_image("web:2"))
    cluster.settle()
    first = condition(cluster.get("Deployment", "web"), "Progressing")
    cluster.advance(50)
    new_pod = next(pod for pod in cluster.of_kind("Pod") if not _ready(pod))
    cluster.set_pod_ready(new_pod)
    cluster.settle()
    renewed = condition(cluster.get("Deployment", "web"), "Progressing")
    assert renewed["reason"] == "ReplicaSetUpdated"
    assert renewed["lastUpdateTime"] == format_time(cluster.now)
    assert renewed["lastTransitionTime"] == first["lastTransitionTime"]
    cluster.advance(50)
    cluster.settle()
    assert condition(cluster.get("Deployment", "web"), "Progressing")["status"] == "True"


def test_reverting_the_template_reuses_the_old_replicaset_with_a_new_revision() -> None:
    cluster = rolled_out_cluster(replicas=2)
    cluster.edit("Deployment", "web", set_image("web:2"))
    cluster.settle()
    cluster.make_all_pods_ready()
    cluster.settle()
    cluster.make_all_pods_ready()
    cluster.settle()
    assert len(cluster.of_kind("ReplicaSet")) == 2

    cluster.edit("Deployment", "web", set_image("web:1"))
    for _ in range(6):
        cluster.settle()
        cluster.make_all_pods_ready()
    cluster.settle()

    by_image = replicasets_by_image(cluster)
    assert len(by_image) == 2
    assert revision(by_image["web:1"]) == "3"
    assert by_image["web:1"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert revision(by_image["web:2"]) == "2"
    assert by_image["web:1"]["spec"]["replicas"] == 2
    assert by_image["web:2"]["spec"]["replicas"] == 0
    deployment = cluster.get("Deployment", "web")
    assert revision(deployment) == "3"
    assert condition(deployment, "Progressing")["reason"] == "NewReplicaSetAvailable"


def test_revision_history_limit_deletes_the_oldest_scaled_down_replicasets() -> None:
    cluster = rolled_out_cluster(replicas=1, revisionHistoryLimit=1)
    for image in ("web:2", "web:3", "web:4"):
        cluster.edit("Deployment", "web", set_image(image))
        for _ in range(4):
            cluster.settle()
            cluster.make_all_pods_ready()
        cluster.settle()
    by_image = replicasets_by_image(cluster)
    assert sorted(by_image) == ["web:3", "web:4"]
    assert revision(by_image["web:4"]) == "4"


def test_change_cause_is_copied_to_the_replicaset_but_last_applied_is_not() -> None:
    manifest = deployment_manifest()
    manifest["metadata"]["annotations"] = {
        "kubernetes.io/change-cause": "deploy abc1234",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    cluster = Cluster()
    cluster.create(manifest)
    cluster.settle()
    annotations = cluster.of_kind("ReplicaSet")[0]["metadata"]["annotations"]
    assert annotations["kubernetes.io/change-cause"] == "deploy abc1234"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations
    assert cluster.get("Deployment", "web")["metadata"]["annotations"]["kubernetes.io/change-cause"] == (
        "deploy abc1234"
    )


def test_paused_deployment_does_not_roll_out_until_resumed() -> None:
    cluster = rolled_out_cluster(replicas=2)

    def pause_and_change(deployment: Obj) -> None:
        deployment["spec"]["paused"] = True
        set_image("web:2")(deployment)

    cluster.edit("Deployment", "web", pause_and_change)
    cluster.settle()
    assert len(cluster.of_kind("ReplicaSet")) == 1
    progressing = condition(cluster.get("Deployment", "web"), "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    assert cluster.get("Deployment", "web")["status"]["observedGeneration"] == 2

    cluster.edit("Deployment", "web", lambda d: d["spec"].update(paused=False))
    cluster.settle()
    assert len(cluster.of_kind("ReplicaSet")) == 2
    assert condition(cluster.get("Deployment", "web"), "Progressing")["reason"] in (
        "DeploymentResumed",
        "ReplicaSetUpdated",
    )
    for _ in range(6):
        cluster.make_all_pods_ready()
        cluster.settle()
    assert condition(cluster.get("Deployment", "web"), "Progressing")["reason"] == "NewReplicaSetAvailable"


def test_recreate_scales_the_old_replicaset_to_zero_before_creating_the_new_one() -> None:
    cluster = rolled_out_cluster(replicas=3, strategy={"type": "Recreate"})
    cluster.edit("Deployment", "web", set_image("web:2"))
    actions = reconcile_deployment(
        cluster.get("Deployment", "web"),
        cluster.owned_by(cluster.get("Deployment", "web"), "ReplicaSet"),
        cluster.now,
    )
    assert not any(isinstance(a, Create) for a in actions)
    cluster.apply(actions)
    assert replicasets_by_image(cluster)["web:1"]["spec"]["replicas"] == 0
    # The old pods are gone once the ReplicaSet controller has run; only then does the new ReplicaSet appear.
    cluster.settle()
    by_image = replicasets_by_image(cluster)
    assert by_image["web:2"]["spec"]["replicas"] == 3
    cluster.make_all_pods_ready()
    cluster.settle()
    assert condition(cluster.get("Deployment", "web"), "Progressing")["reason"] == "NewReplicaSetAvailable"


def test_scaling_a_complete_deployment_scales_its_replicaset() -> None:
    cluster = rolled_out_cluster(replicas=2)
    cluster.edit("Deployment", "web", lambda d: d["spec"].update(replicas=5))
    cluster.settle()
    (replicaset,) = cluster.of_kind("ReplicaSet")
    assert replicaset["spec"]["replicas"] == 5
    assert replicaset["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
    assert len(cluster.of_kind("Pod")) == 5


def test_scaling_mid_rollout_spreads_replicas_in_proportion() -> None:
    cluster = rolled_out_cluster(replicas=10, max_surge=3, max_unavailable=2)
    cluster.edit("Deployment", "web", set_image("web:2"))
    cluster.settle()
    by_image = replicasets_by_image(cluster)
    before = (by_image["web:1"]["spec"]["replicas"], by_image["web:2"]["spec"]["replicas"])
    assert before == (8, 5)
    cluster.edit("Deployment", "web", lambda d: d["spec"].update(replicas=20))
    deployment = cluster.get("Deployment", "web")
    cluster.apply(reconcile_deployment(deployment, cluster.owned_by(deployment, "ReplicaSet"), cluster.now))
    by_image = replicasets_by_image(cluster)
    after = (by_image["web:1"]["spec"]["replicas"], by_image["web:2"]["spec"]["replicas"])
    # 23 allowed (20 + surge 3), 13 present: 10 more, split about 8:5.
    assert sum(after) == 23
    assert after == (14, 9)


def test_replica_failure_of_the_new_replicaset_is_copied_to_the_deployment() -> None:
    cluster = rolled_out_cluster(replicas=1)
    cluster.edit("Deployment", "web", set_image("web:2"))
    cluster.settle()
    new_rs = replicasets_by_image(cluster)["web:2"]
    failed = copy.deepcopy(new_rs)
    failed["status"]["conditions"] = [
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": 'pods "x" is forbidden: exceeded quota',
            "lastTransitionTime": format_time(cluster.now),
        }
    ]
    deployment = cluster.get("Deployment", "web")
    others = [
        rs for rs in cluster.owned_by(deployment, "ReplicaSet") if rs["metadata"]["name"] != new_rs["metadata"]["name"]
    ]
    actions = reconcile_deployment(deployment, [*others, failed], cluster.now)
    (write,) = [a for a in actions if isinstance(a, UpdateStatus)]
    failure = condition(write.obj, "ReplicaFailure")
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreate")


def test_orphan_replicaset_matching_the_selector_is_adopted() -> None:
    cluster = Cluster()
    deployment = cluster.create(deployment_manifest(replicas=1))
    orphan = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-orphan", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}},
        },
    }
    stored = cluster.create(orphan)
    actions = reconcile_deployment(deployment, [stored], cluster.now)
    adopted = [a.obj for a in actions if isinstance(a, Update) and a.obj["metadata"]["name"] == "web-orphan"]
    assert adopted and adopted[0]["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]


# --------------------------------------------------------------------------------------------- ReplicaSet


def replicaset_manifest(replicas: int, min_ready_seconds: int = 0) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}},
        },
    }


def test_replicaset_scale_down_deletes_not_ready_and_unscheduled_pods_first() -> None:
    cluster = Cluster()
    cluster.create(replicaset_manifest(4))
    cluster.settle()
    pods = cluster.of_kind("Pod")
    cluster.set_pod_ready(pods[0])
    cluster.set_pod_ready(pods[1])
    cluster.set_pod_ready(pods[2], ready=False)
    # pods[3] stays unscheduled and Pending.
    cluster.edit("ReplicaSet", "rs", lambda rs: rs["spec"].update(replicas=2))
    rs = cluster.get("ReplicaSet", "rs")
    actions = reconcile_replicaset(rs, cluster.owned_by(rs, "Pod"), cluster.now)
    deleted = {a.name for a in actions if isinstance(a, Delete)}
    assert deleted == {pods[2]["metadata"]["name"], pods[3]["metadata"]["name"]}


@pytest.mark.parametrize(
    ("seconds_ready", "expected_available"),
    [(0, 0), (10, 0), (11, 2)],
)
def test_replicaset_counts_pods_available_after_min_ready_seconds(seconds_ready: int, expected_available: int) -> None:
    cluster = Cluster()
    cluster.create(replicaset_manifest(2, min_ready_seconds=10))
    cluster.settle()
    for pod in cluster.of_kind("Pod"):
        cluster.set_pod_ready(pod)
    cluster.advance(seconds_ready)
    cluster.settle()
    status = cluster.get("ReplicaSet", "rs")["status"]
    assert status["readyReplicas"] == 2
    assert status.get("availableReplicas", 0) == expected_available


def test_replicaset_adopts_a_matching_orphan_pod_instead_of_creating_one() -> None:
    cluster = Cluster()
    replicaset = cluster.create(replicaset_manifest(1))
    orphan = cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "rs"}},
            "spec": {"containers": [{"name": "a", "image": "x"}]},
        }
    )
    actions = reconcile_replicaset(replicaset, [orphan], cluster.now)
    assert not any(isinstance(a, Create) for a in actions)
    (adoption,) = [a for a in actions if isinstance(a, Update)]
    assert adoption.obj["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"


def test_finished_and_terminating_pods_are_replaced() -> None:
    cluster = Cluster()
    cluster.create(replicaset_manifest(2))
    cluster.settle()
    first, second = cluster.of_kind("Pod")
    failed = copy.deepcopy(first)
    failed["status"] = {"phase": "Failed"}
    terminating = copy.deepcopy(second)
    terminating["metadata"]["deletionTimestamp"] = format_time(cluster.now)
    rs = cluster.get("ReplicaSet", "rs")
    actions = reconcile_replicaset(rs, [failed, terminating], cluster.now)
    created = [a.obj["metadata"]["name"] for a in actions if isinstance(a, Create)]
    assert len(created) == 2
    assert not {first["metadata"]["name"], second["metadata"]["name"]} & set(created)


# --------------------------------------------------------------------------------------------- StatefulSet


def statefulset_manifest(replicas: int = 3, image: str = "db:1", **strategy: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "podManagementPolicy": "OrderedReady",
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image}]},
            },
        },
    }


def pod_names(cluster: Cluster) -> list[str]:
    return sorted(pod["metadata"]["name"] for pod in cluster.of_kind("Pod"))


def pod_image(pod: Obj) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def settle_with_ready_pods(cluster: Cluster, rounds: int = 20) -> None:
    for _ in range(rounds):
        cluster.settle()
        if all(_ready(pod) for pod in cluster.of_kind("Pod")):
            cluster.settle()
            if all(_ready(pod) for pod in cluster.of_kind("Pod")):
                return
        cluster.make_all_pods_ready()
    cluster.settle()


def test_statefulset_creates_pods_in_order_waiting_for_each_to_be_ready() -> None:
    cluster = Cluster()
    cluster.create(statefulset_manifest(replicas=3))
    cluster.settle()
    assert pod_names(cluster) == ["db-0"]
    cluster.make_all_pods_ready()
    cluster.settle()
    assert pod_names(cluster) == ["db-0", "db-1"]
    settle_with_ready_pods(cluster)
    assert pod_names(cluster) == ["db-0", "db-1", "db-2"]

    statefulset = cluster.get("StatefulSet", "db")
    (revision_obj,) = cluster.of_kind("ControllerRevision")
    assert revision_obj["revision"] == 1
    assert revision_obj["data"] == revision_data(statefulset)
    assert revision_obj["data"]["spec"]["template"]["$patch"] == "replace"
    assert revision_obj["metadata"]["name"].startswith("db-")
    status = statefulset["status"]
    assert status["currentRevision"] == status["updateRevision"] == revision_obj["metadata"]["name"]
    assert (status["replicas"], status["readyReplicas"], status["currentReplicas"], status["updatedReplicas"]) == (
        3,
        3,
        3,
        3,
    )
    assert status["availableReplicas"] == 3
    assert status["observedGeneration"] == 1
    pod = cluster.get("Pod", "db-1")
    assert pod["metadata"]["labels"]["controller-revision-hash"] == revision_obj["metadata"]["name"]
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db"


def test_statefulset_rolls_out_from_the_highest_ordinal_down() -> None:
    cluster = Cluster()
    cluster.create(statefulset_manifest(replicas=3))
    settle_with_ready_pods(cluster)
    cluster.edit("StatefulSet", "db", set_image("db:2"))
    cluster.settle()
    assert pod_names(cluster) == ["db-0", "db-1", "db-2"]
    assert pod_image(cluster.get("Pod", "db-2")) == "db:2"
    assert pod_image(cluster.get("Pod", "db-1")) == "db:1"
    status = cluster.get("StatefulSet", "db")["status"]
    assert status["currentRevision"] != status["updateRevision"]
    assert status["updatedReplicas"] == 1

    cluster.make_all_pods_ready()
    cluster.settle()
    assert pod_image(cluster.get("Pod", "db-1")) == "db:2"
    assert pod_image(cluster.get("Pod", "db-0")) == "db:1"
    settle_with_ready_pods(cluster)
    status = cluster.get("StatefulSet", "db")["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert status["currentReplicas"] == status["updatedReplicas"] == 3
    numbers = sorted(r["revision"] for r in cluster.of_kind("ControllerRevision"))
    assert numbers == [1, 2]


@pytest.mark.parametrize(("partition", "updated"), [(0, 3), (1, 2), (2, 1), (3, 0)])
def test_statefulset_partition_keeps_lower_ordinals_on_the_old_revision(partition: int, updated: int) -> None:
    cluster = Cluster()
    cluster.create(statefulset_manifest(replicas=3))
    settle_with_ready_pods(cluster)

    def change(statefulset: Obj) -> None:
        set_image("db:2")(statefulset)
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
        statefulset["spec"]["updateStrategy"] = strategy

    cluster.edit("StatefulSet", "db", change)
    settle_with_ready_pods(cluster)
    images = [pod_image(cluster.get("Pod", f"db-{i}")) for i in range(3)]
    assert images == ["db:1"] * partition + ["db:2"] * (3 - partition)
    status = cluster.get("StatefulSet", "db")["status"]
    assert status.get("updatedReplicas", 0) == updated
    assert (status["currentRevision"] == status["updateRevision"]) == (partition == 0)


def test_statefulset_on_delete_replaces_only_deleted_pods() -> None:
    cluster = Cluster()
    cluster.create(statefulset_manifest(replicas=2, type="OnDelete"))
    settle_with_ready_pods(cluster)
    cluster.edit("StatefulSet", "db", set_image("db:2"))
    settle_with_ready_pods(cluster)
    assert [pod_image(cluster.get("Pod", f"db-{i}")) for i in range(2)] == ["db:1", "db:1"]
    del cluster.objects[("Pod", "default", "db-1")]
    settle_with_ready_pods(cluster)
    assert [pod_image(cluster.get("Pod", f"db-{i}")) for i in range(2)] == ["db:1", "db:2"]


def test_statefulset_scales_down_from_the_highest_ordinal() -> None:
    cluster = Cluster()
    cluster.create(statefulset_manifest(replicas=3))
    settle_with_ready_pods(cluster)
    cluster.edit("StatefulSet", "db", lambda s: s["spec"].update(replicas=1))
    # One pod at a time: each sync deletes the highest remaining ordinal.
    cluster.apply(cluster.reconcile(cluster.get("StatefulSet", "db")))
    assert pod_names(cluster) == ["db-0", "db-1"]
    cluster.apply(cluster.reconcile(cluster.get("StatefulSet", "db")))
    assert pod_names(cluster) == ["db-0"]
    cluster.settle()
    assert cluster.get("StatefulSet", "db")["status"]["replicas"] == 1


def test_statefulset_revert_reuses_the_old_revision_with_a_new_number() -> None:
    cluster = Cluster()
    cluster.create(statefulset_manifest(replicas=1))
    settle_with_ready_pods(cluster)
    cluster.edit("StatefulSet", "db", set_image("db:2"))
    settle_with_ready_pods(cluster)
    cluster.edit("StatefulSet", "db", set_image("db:1"))
    settle_with_ready_pods(cluster)
    revisions = {
        pod_image({"spec": r["data"]["spec"]["template"]["spec"]}): r for r in cluster.of_kind("ControllerRevision")
    }
    assert (revisions["db:1"]["revision"], revisions["db:2"]["revision"]) == (3, 2)


# --------------------------------------------------------------------------------------------- DaemonSet


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None, cpu: str = "2") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}},
    }


def daemonset_manifest(image: str = "agent:1", max_unavailable: int | str = 1, **pod_spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": image}], **pod_spec},
            },
        },
    }


def nodes_of_pods(cluster: Cluster) -> list[str]:
    return sorted(pod["spec"].get("nodeName", "") for pod in cluster.of_kind("Pod"))


def test_daemonset_runs_one_pod_on_each_eligible_node() -> None:
    cluster = Cluster()
    for obj in (
        node("a", {"role": "worker"}),
        node("b", {"role": "worker"}),
        node("c", {"role": "db"}),
        node("d", {"role": "worker"}, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    ):
        cluster.create(obj)
    cluster.create(daemonset_manifest(nodeSelector={"role": "worker"}))
    cluster.settle()
    assert nodes_of_pods(cluster) == ["a", "b"]
    status = cluster.get("DaemonSet", "agent")["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"], status["numberReady"]) == (2, 2, 0)
    assert status["numberUnavailable"] == 2
    assert status["updatedNumberScheduled"] == 2
    (revision_obj,) = cluster.of_kind("ControllerRevision")
    pod = cluster.of_kind("Pod")[0]
    assert (
        pod["metadata"]["labels"]["controller-revision-hash"]
        == revision_obj["metadata"]["labels"]["controller-revision-hash"]
    )
    assert revision_obj["metadata"]["name"] == "agent-" + revision_obj["metadata"]["labels"]["controller-revision-hash"]

    settle_with_ready_pods(cluster)
    status = cluster.get("DaemonSet", "agent")["status"]
    assert (status["numberReady"], status["numberAvailable"]) == (2, 2)
    assert "numberUnavailable" not in status
    assert cluster.sync_once() == []


@pytest.mark.parametrize(("max_unavailable", "replaced_per_step"), [(1, 1), (2, 2), ("50%", 2), ("10%", 1)])
def test_daemonset_rolling_update_replaces_at_most_max_unavailable_pods_at_a_time(
    max_unavailable: int | str, replaced_per_step: int
) -> None:
    cluster = Cluster()
    for name in ("a", "b", "c", "d"):
        cluster.create(node(name))
    cluster.create(daemonset_manifest(max_unavailable=max_unavailable))
    settle_with_ready_pods(cluster)
    cluster.edit("DaemonSet", "agent", set_image("agent:2"))
    cluster.settle()
    images = [pod_image(pod) for pod in cluster.of_kind("Pod")]
    assert images.count("agent:2") == replaced_per_step
    assert len(images) == 4
    settle_with_ready_pods(cluster)
    assert [pod_image(pod) for pod in cluster.of_kind("Pod")] == ["agent:2"] * 4
    status = cluster.get("DaemonSet", "agent")["status"]
    assert status["updatedNumberScheduled"] == status["numberAvailable"] == 4
    assert sorted(r["revision"] for r in cluster.of_kind("ControllerRevision")) == [1, 2]


# --------------------------------------------------------------------------------------------- Job


def job_manifest(
    completions: int = 2, parallelism: int = 1, backoff_limit: int = 6, restart_policy: str = "Never"
) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "default"},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": backoff_limit,
            "selector": {"matchLabels": {"job-name": "migrate"}},
            "template": {
                "metadata": {"labels": {"job-name": "migrate"}},
                "spec": {"restartPolicy": restart_policy, "containers": [{"name": "m", "image": "m:1"}]},
            },
        },
    }


def finish_pod(cluster: Cluster, pod: Obj, phase: str) -> None:
    stored = copy.deepcopy(cluster.objects[_key(pod)])
    stored["status"] = {
        "phase": phase,
        "containerStatuses": [
            {
                "name": "m",
                "state": {
                    "terminated": {"exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": format_time(cluster.now)}
                },
            }
        ],
    }
    cluster.update_status(stored)


def active_pods(cluster: Cluster) -> list[Obj]:
    return [pod for pod in cluster.of_kind("Pod") if pod["status"]["phase"] not in ("Succeeded", "Failed")]


def test_job_runs_pods_until_completions_then_completes() -> None:
    cluster = Cluster()
    cluster.create(job_manifest(completions=2, parallelism=1))
    cluster.settle()
    (first,) = active_pods(cluster)
    finish_pod(cluster, first, "Succeeded")
    cluster.settle()
    (second,) = active_pods(cluster)
    finish_pod(cluster, second, "Succeeded")
    cluster.settle()
    job = cluster.get("Job", "migrate")
    assert job["status"]["succeeded"] == 2
    assert "active" not in job["status"]
    assert condition(job, "Complete")["status"] == "True"
    assert job["status"]["completionTime"] == format_time(cluster.now)
    assert cluster.sync_once() == []


def test_job_backs_off_between_failures_and_fails_past_the_backoff_limit() -> None:
    cluster = Cluster()
    cluster.create(job_manifest(completions=1, backoff_limit=1))
    cluster.settle()
    (first,) = active_pods(cluster)
    finish_pod(cluster, first, "Failed")
    cluster.settle()
    # The replacement waits out the first back-off (10 s).
    assert active_pods(cluster) == []
    cluster.advance(10)
    cluster.settle()
    (second,) = active_pods(cluster)
    finish_pod(cluster, second, "Failed")
    cluster.settle()
    job = cluster.get("Job", "migrate")
    assert job["status"]["failed"] == 2
    failed = condition(job, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert any(e.reason == "BackoffLimitExceeded" for e in cluster.events)
    cluster.advance(1000)
    cluster.settle()
    assert active_pods(cluster) == []


def crash_in_place(cluster: Cluster, pod: Obj, restarts: int) -> None:
    """restartPolicy OnFailure: the kubelet restarts the crashed container in the same pod."""
    stored = copy.deepcopy(cluster.objects[_key(pod)])
    stored["spec"].setdefault("nodeName", "node-1")
    stored["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "m",
                "ready": False,
                "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": format_time(cluster.now)}},
            }
        ],
    }
    cluster.update_status(stored)


def test_job_whose_restarts_reach_the_backoff_limit_fails_once_and_starts_no_new_pods() -> None:
    # restartPolicy OnFailure: restarts count against backoffLimit. The controller deletes the crashing pod;
    # being deleted, it counts as failed and loses its tracking finalizer (the real isPodFailed), and the
    # FailureTarget verdict stands once it is gone: no new pod, then the terminal Failed condition.
    cluster = Cluster()
    cluster.create(job_manifest(completions=1, backoff_limit=2, restart_policy="OnFailure"))
    cluster.settle()
    (pod,) = active_pods(cluster)
    assert pod["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    crash_in_place(cluster, pod, restarts=2)
    cluster.settle()
    job = cluster.get("Job", "migrate")
    target, failed = condition(job, "FailureTarget"), condition(job, "Failed")
    assert (target["status"], target["reason"]) == ("True", "BackoffLimitExceeded")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert cluster.of_kind("Pod") == []
    assert job["status"]["failed"] == 1
    assert job["status"]["terminating"] == 0
    assert "active" not in job["status"]
    cluster.advance(1000)
    cluster.settle()
    assert cluster.of_kind("Pod") == []


def test_job_pod_deleted_while_running_counts_as_failed_and_is_replaced() -> None:
    # An evicted pod never reaches a terminal phase: counted as failed, it is released (gone) and replaced.
    # (The real controller also waits out a back-off it remembers in memory; this stateless one cannot once
    # the pod is gone.)
    cluster = Cluster()
    cluster.create(job_manifest(completions=1, backoff_limit=3))
    cluster.settle()
    (pod,) = active_pods(cluster)
    cluster.set_pod_ready(pod)
    cluster.delete(_key(pod))
    cluster.settle()
    job = cluster.get("Job", "migrate")
    assert job["status"]["failed"] == 1
    (replacement,) = cluster.of_kind("Pod")
    assert replacement["metadata"]["uid"] != pod["metadata"]["uid"]
    assert "deletionTimestamp" not in replacement["metadata"]
    assert not any(c["type"] == "FailureTarget" for c in job["status"].get("conditions", []))


def test_finished_job_is_deleted_ttl_seconds_after_finished() -> None:
    # The TTL-after-finished controller: counted from the Complete condition, not from the Job's start.
    manifest = job_manifest(completions=1)
    manifest["spec"]["ttlSecondsAfterFinished"] = 100
    cluster = Cluster()
    cluster.create(manifest)
    cluster.settle()
    cluster.advance(30)
    (pod,) = active_pods(cluster)
    finish_pod(cluster, pod, "Succeeded")
    cluster.settle()
    assert condition(cluster.get("Job", "migrate"), "Complete")["status"] == "True"
    cluster.advance(99)
    assert cluster.sync_once() == []
    cluster.advance(1)
    assert cluster.sync_once() == [Delete("batch/v1", "Job", "default", "migrate")]
    cluster.settle()
    assert cluster.of_kind("Job") == []


def test_finished_job_without_a_ttl_stays() -> None:
    cluster = Cluster()
    cluster.create(job_manifest(completions=1))
    cluster.settle()
    (pod,) = active_pods(cluster)
    finish_pod(cluster, pod, "Failed")
    cluster.advance(10)
    cluster.settle()
    (pod,) = active_pods(cluster)
    finish_pod(cluster, pod, "Succeeded")
    cluster.settle()
    cluster.advance(10**6)
    assert cluster.sync_once() == []
    assert condition(cluster.get("Job", "migrate"), "Complete")["status"] == "True"


# --------------------------------------------------------------------------------------------- scheduler


def pending_pod(**spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
        "status": {"phase": "Pending"},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"nodeSelector": {"disk": "ssd"}},
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "3"}}}]},
            "0/2 nodes are available: 2 Insufficient cpu.",
        ),
        (
            {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "5Gi"}}}]},
            "0/2 nodes are available: 2 Insufficient memory.",
        ),
    ],
)
def test_unschedulable_pod_gets_a_condition_and_one_failed_scheduling_event(spec: Obj, message: str) -> None:
    nodes = [node("a"), node("b")]
    actions = schedule_pod(pending_pod(**spec), nodes, START)
    (status_write,) = [a for a in actions if isinstance(a, UpdateStatus)]
    (event,) = [a for a in actions if isinstance(a, RecordEvent)]
    scheduled = condition(status_write.obj, "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"].startswith(message)
    assert (event.type, event.reason) == ("Warning", "FailedScheduling")
    assert event.message == scheduled["message"]
    # The same verdict again writes nothing.
    assert schedule_pod(status_write.obj, nodes, START + 5) == []


def test_scheduler_names_untolerated_taints_and_honours_tolerations() -> None:
    tainted = [node("a", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])]
    actions = schedule_pod(pending_pod(), tainted, START)
    (event,) = [a for a in actions if isinstance(a, RecordEvent)]
    assert "1 node(s) had untolerated taint {dedicated: gpu}" in event.message
    tolerant = pending_pod(
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    )
    (bind, scheduled_event) = schedule_pod(tolerant, tainted, START)
    assert isinstance(bind, Update) and bind.obj["spec"]["nodeName"] == "a"
    assert isinstance(scheduled_event, RecordEvent) and scheduled_event.reason == "Scheduled"


def test_scheduler_binds_to_a_node_matching_the_selector() -> None:
    nodes = [node("a", {"disk": "hdd"}), node("b", {"disk": "ssd"}), node("c", {"disk": "hdd"})]
    actions = schedule_pod(pending_pod(nodeSelector={"disk": "ssd"}), nodes, START)
    bind = actions[0]
    assert isinstance(bind, Update)
    assert bind.obj["spec"]["nodeName"] == "b"
    assert condition(bind.obj, "PodScheduled")["status"] == "True"
    assert schedule_pod(bind.obj, nodes, START) == []


def test_no_nodes_at_all_is_reported_as_such() -> None:
    actions = schedule_pod(pending_pod(), [], START)
    assert [a.message for a in actions if isinstance(a, RecordEvent)] == ["no nodes available to schedule pods"]
