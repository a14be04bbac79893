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
    reconcile_deployment,
    reconcile_replicaset,
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
        self.objects[key] = new

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
                del self.objects[(action.kind, action.namespace, action.name)]
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
        for deployment in self.of_kind("Deployment"):
            actions += reconcile_deployment(deployment, self.owned_by(deployment, "ReplicaSet"), self.now)
        for replicaset in self.of_kind("ReplicaSet"):
            actions += reconcile_replicaset(replicaset, self.owned_by(replicaset, "Pod"), self.now)
        return actions

    def settle(self) -> None:
        """Run controllers one at a time until a full round writes nothing."""
        for _ in range(100):
            writes = 0
            for deployment in self.of_kind("Deployment"):
                current = self.objects[_key(deployment)]
                writes += self.apply(reconcile_deployment(current, self.owned_by(current, "ReplicaSet"), self.now))
            for replicaset in self.of_kind("ReplicaSet"):
                if _key(replicaset) in self.objects:
                    current = self.objects[_key(replicaset)]
                    writes += self.apply(reconcile_replicaset(current, self.owned_by(current, "Pod"), self.now))
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
