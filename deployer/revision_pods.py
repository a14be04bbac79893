"""Which pods belong to a workload's newest revision: its new ReplicaSet (Deployment), its update revision
(StatefulSet), its newest ControllerRevision (DaemonSet), or the Job itself. Pure computation over the API's
JSON; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from deployer.kinds import CONTROLLER_REVISION_KINDS, KubeDict, KubeObject
from deployer.objects import controller_uid, generation_observed, int_field, labels_of, metadata_of, name_of, section_of


@dataclass(frozen=True)
class RevisionPods:
    """Which pods belong to a workload's newest revision.

    A pod belongs when its controlling owner has ``owner_uid`` (the new ReplicaSet for a Deployment, the
    workload itself otherwise) and, when ``label`` is set, it carries that label with that value
    (``pod-template-hash`` or ``controller-revision-hash``).
    """

    kind: str
    name: str
    owner_uid: str
    label: tuple[str, str] | None = None

    def matches(self, pod: KubeObject) -> bool:
        if controller_uid(pod) != self.owner_uid:
            return False
        if self.label is not None:
            key, value = self.label
            return labels_of(pod).get(key) == value
        return True


def templates_equal_ignoring_hash(a: KubeObject | None, b: KubeObject | None) -> bool:
    """Pod templates equal once the ``pod-template-hash`` label is dropped, as the Deployment controller compares.

    Also blind to what only serialisation adds: null and empty values (Go writes ``creationTimestamp: null``
    and ``resources: {}``) and a ControllerRevision's ``$patch: replace`` directive.
    """
    return bool(_pruned(_without_hash(a)) == _pruned(_without_hash(b)))


def _pruned(value: object) -> object:
    if isinstance(value, Mapping):
        pruned = {k: _pruned(v) for k, v in value.items() if k != "$patch"}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def _without_hash(template: KubeObject | None) -> KubeDict:
    if not isinstance(template, Mapping):
        return {}
    copy = dict(template)
    meta = dict(copy.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    if meta:
        copy["metadata"] = meta
    else:
        copy.pop("metadata", None)
    return copy


def owned_by(objects: Iterable[KubeObject], owner: KubeObject) -> list[KubeObject]:
    """The objects whose controlling owner is ``owner`` (matched by uid)."""
    uid = metadata_of(owner).get("uid")
    return [obj for obj in objects if uid and controller_uid(obj) == uid]


def new_replica_set(deployment: KubeObject, replica_sets: Iterable[KubeObject]) -> KubeObject | None:
    """The ReplicaSet the Deployment controller considers new: owned by it, same template ignoring the hash."""
    template = section_of(deployment, "spec").get("template")
    for rs in owned_by(replica_sets, deployment):
        if templates_equal_ignoring_hash(section_of(rs, "spec").get("template"), template):
            return rs
    return None


def revision_number(obj: KubeObject) -> int:
    """A ReplicaSet's or Deployment's ``deployment.kubernetes.io/revision``, or a ControllerRevision's revision."""
    if "revision" in obj:  # ControllerRevisions keep it at the top level
        return int_field(obj.get("revision"))
    annotations = metadata_of(obj).get("annotations") or {}
    try:
        return int(annotations.get("deployment.kubernetes.io/revision", 0))
    except (TypeError, ValueError):
        return 0


def newest_revision_pods(
    workload: KubeObject,
    *,
    replica_sets: Iterable[KubeObject] = (),
    controller_revisions: Iterable[KubeObject] = (),
) -> RevisionPods | None:
    """How to recognise the pods of the workload's newest revision; None until its controller made it."""
    kind, name = str(workload.get("kind")), name_of(workload)
    uid = str(metadata_of(workload).get("uid") or "")
    if kind == "Deployment":
        rs = new_replica_set(workload, replica_sets)
        if rs is None or not metadata_of(rs).get("uid"):
            return None
        hash_label = labels_of(rs).get("pod-template-hash")
        return RevisionPods(
            kind, name, str(metadata_of(rs)["uid"]), ("pod-template-hash", str(hash_label)) if hash_label else None
        )
    if not uid:
        return None
    if kind in CONTROLLER_REVISION_KINDS and not generation_observed(workload):
        # Until the controller saw the new spec, its newest revision is still the previous one.
        return None
    if kind == "StatefulSet":
        update_revision = section_of(workload, "status").get("updateRevision")
        if not update_revision:
            return None
        # StatefulSet pods carry the whole ControllerRevision name as their revision label.
        return RevisionPods(kind, name, uid, ("controller-revision-hash", str(update_revision)))
    if kind == "DaemonSet":
        revisions = owned_by(controller_revisions, workload)
        if not revisions:
            return None
        newest = max(revisions, key=revision_number)
        # DaemonSet pods carry only the hash, which the ControllerRevision has as a label (and name suffix).
        revision_hash = labels_of(newest).get("controller-revision-hash") or name_of(newest).rsplit("-", 1)[-1]
        return RevisionPods(kind, name, uid, ("controller-revision-hash", str(revision_hash)))
    if kind == "Job":
        return RevisionPods(kind, name, uid)
    return None


def pods_of(revision: RevisionPods | None, pods: Sequence[KubeObject]) -> list[KubeObject]:
    """The pods that belong to that revision (none when the revision does not exist yet), without those on
    their way out: a real kubelet keeps a deleted pod Running through its grace period (30 s by default), and
    one its ReplicaSet deleted in an earlier run would otherwise be diagnosed, logs and all, as this run's."""
    return [
        pod
        for pod in pods
        if revision is not None and revision.matches(pod) and not metadata_of(pod).get("deletionTimestamp")
    ]
