"""Choosing how to put back what a failed run changed: pure computation.

Owns: the record of what was live before apply (``LiveRecord``) and the rollback plan computed from that
record and the objects live after the failure (``plan_rollback``); whether a restored workload is back is
rollback_wait.py's. Deployments follow ``kubectl rollout undo`` to the recorded revision, StatefulSets and
DaemonSets their ControllerRevision, everything else its recorded content. Must not do any
I/O or import the kubernetes client: kube/restoring.py fetches the objects and carries the steps out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from deployer.kinds import CONTROLLER_REVISION_KINDS, REVISIONED_KINDS, SERVER_METADATA, KubeDict, KubeObject
from deployer.revision_pods import new_replica_set, owned_by, revision_number, templates_equal_ignoring_hash

# The annotations `kubectl rollout undo` keeps from the live Deployment instead of taking the target
# ReplicaSet's: they describe the Deployment's own history, not the template being restored.
DEPLOYMENT_ANNOTATIONS_KEPT = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Which object: enough to address it in the API."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: KubeObject, default_namespace: str | None = None) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            str(obj.get("apiVersion", "")),
            str(obj.get("kind", "")),
            meta.get("namespace") or default_namespace,
            str(meta.get("name", "")),
        )

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class RecordedRevision:
    """A workload's revision as it was live before apply.

    ``number`` is the ReplicaSet's ``deployment.kubernetes.io/revision`` or the ControllerRevision's
    ``revision`` (0 when the controller had not made one yet); ``template`` its pod template;
    ``annotations`` the ReplicaSet's annotations (Deployments); ``data`` the ControllerRevision's data
    (StatefulSets, DaemonSets).
    """

    number: int
    name: str
    template: KubeDict
    annotations: dict[str, str] = field(default_factory=dict)
    data: KubeDict | None = None


@dataclass(frozen=True)
class ObjectRecord:
    """What was live for one object before apply: whether it existed, its content, its revision."""

    ref: ObjectRef
    existed: bool
    content: KubeDict | None = None
    revision: RecordedRevision | None = None


@dataclass(frozen=True)
class LiveRecord:
    """The record taken before apply, in apply (dependency) order."""

    objects: list[ObjectRecord]

    def find(self, ref: ObjectRef) -> ObjectRecord | None:
        return next((record for record in self.objects if record.ref == ref), None)


def record_revision(
    workload: KubeObject,
    *,
    replica_sets: Iterable[KubeObject] = (),
    controller_revisions: Iterable[KubeObject] = (),
) -> RecordedRevision | None:
    """The live revision of a workload, from its ReplicaSets or ControllerRevisions.

    Falls back to the workload's own template when its controller has not made the revision object yet;
    that is enough to restore it.
    """
    kind = workload.get("kind")
    template = copy.deepcopy(dict((workload.get("spec") or {}).get("template") or {}))
    if kind == "Deployment":
        rs = new_replica_set(workload, replica_sets)
        if rs is None:
            return RecordedRevision(revision_number(workload), "", template)
        return RecordedRevision(
            revision_number(rs),
            str(rs["metadata"]["name"]),
            copy.deepcopy(dict(rs["spec"]["template"])),
            dict((rs.get("metadata") or {}).get("annotations") or {}),
        )
    if kind in CONTROLLER_REVISION_KINDS:
        owned = owned_by(controller_revisions, workload)
        matching = [cr for cr in owned if templates_equal_ignoring_hash(_revision_template(cr), template)]
        if matching:
            cr = max(matching, key=revision_number)
            return RecordedRevision(
                revision_number(cr),
                str(cr["metadata"]["name"]),
                _revision_template(cr),
                data=copy.deepcopy(dict(cr["data"])),
            )
        return RecordedRevision(0, "", template, data=revision_data(template))
    return None


def revision_data(template: KubeObject) -> KubeDict:
    """A ControllerRevision's data for a pod template, as the StatefulSet and DaemonSet controllers write it:
    applied as a strategic merge patch, it replaces the whole template."""
    return {"spec": {"template": {**copy.deepcopy(dict(template)), "$patch": "replace"}}}


def _revision_template(controller_revision: KubeObject) -> KubeDict:
    data = controller_revision.get("data")
    template = (data.get("spec") or {}).get("template") if isinstance(data, Mapping) else None
    if not isinstance(template, Mapping):
        return {}
    return {k: copy.deepcopy(v) for k, v in template.items() if k != "$patch"}


# --- the plan -----------------------------------------------------------------------------------------


# The outcome of an object this run created and a failed rollout leaves where it is.
LEFT_IN_PLACE = "left in place"


class RollbackAction(StrEnum):
    PATCH = "patch"  # json-patch (Deployment undo) or strategic-merge (ControllerRevision data)
    REPLACE = "replace"  # PUT the recorded content
    CREATE = "create"  # the object existed before and is gone now
    DELETE = "delete"  # created by this run, and --delete-created-on-failure
    NOTHING = "nothing"  # already as recorded, left in place, or impossible (then ``problem`` says why)


@dataclass(frozen=True)
class RollbackTarget:
    """What a restored workload must look like: the recorded revision's pod template (without the hash)."""

    kind: str
    name: str
    revision: int
    template: KubeDict

    @property
    def images(self) -> list[str]:
        return template_images(self.template)


@dataclass(frozen=True)
class RollbackStep:
    """One thing to do to one object; ``outcome`` is the word reported when it is done."""

    ref: ObjectRef
    action: RollbackAction
    summary: str
    outcome: str
    patch_type: str | None = None  # "json" or "strategic-merge" for PATCH
    body: KubeDict | list[KubeDict] | None = None
    target: RollbackTarget | None = None  # for workloads: what rollback_verdict checks afterwards
    problem: str | None = None  # set when this run's change cannot be put back
    detail: str = ""  # what follows "<outcome> <kind>/<name>" in a report: "to revision 4 (image web:1)"

    @property
    def waits(self) -> bool:
        """Whether the rollback must then wait for this workload to be ready again."""
        return self.target is not None and self.action in (RollbackAction.PATCH, RollbackAction.CREATE)

    @property
    def undoes_a_change(self) -> bool:
        """Whether this step puts back something the run changed, or tells of an object it created."""
        return self.action is not RollbackAction.NOTHING or self.outcome == LEFT_IN_PLACE or self.problem is not None


def template_images(template: KubeObject) -> list[str]:
    spec = template.get("spec") or {}
    return [str(c.get("image")) for c in spec.get("containers") or () if isinstance(c, Mapping) and c.get("image")]


def _without_hash_label(template: KubeObject) -> KubeDict:
    restored = copy.deepcopy(dict(template))
    labels = (restored.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    return restored


def restorable_content(obj: KubeObject) -> KubeDict:
    """The object without what the server owns (status, uid, resourceVersion, managedFields...)."""
    content = copy.deepcopy(dict(obj))
    content.pop("status", None)
    meta = content.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_METADATA:
            meta.pop(key, None)
    return content


def plan_rollback(
    record: LiveRecord | Sequence[ObjectRecord],
    current: Mapping[ObjectRef, KubeObject | None],
    *,
    delete_created_on_failure: bool = False,
) -> list[RollbackStep]:
    """What to do to put back every object of the record, given what is live now.

    Order: other objects first (a restored workload's new pods then read restored configuration), then
    workloads, then deletions in reverse apply order (workloads before what they use).
    """
    records = record.objects if isinstance(record, LiveRecord) else list(record)
    restores: list[RollbackStep] = []
    workloads: list[RollbackStep] = []
    deletions: list[RollbackStep] = []
    for rec in records:
        live = current.get(rec.ref)
        is_workload = rec.ref.kind in REVISIONED_KINDS
        if not rec.existed:
            step = _plan_created(rec, live, delete_created_on_failure)
            (deletions if step.action is RollbackAction.DELETE else workloads if is_workload else restores).append(step)
        elif live is None:
            (workloads if is_workload else restores).append(_plan_recreate(rec))
        elif rec.ref.kind == "Deployment":
            workloads.append(_plan_deployment(rec, live))
        elif rec.ref.kind in CONTROLLER_REVISION_KINDS:
            workloads.append(_plan_controller_revision(rec, live))
        else:
            restores.append(_plan_restore(rec, live))
    return restores + workloads + list(reversed(deletions))


def _plan_created(rec: ObjectRecord, live: KubeObject | None, delete: bool) -> RollbackStep:
    first_deploy = rec.ref.kind in REVISIONED_KINDS
    first = " (first deploy: there is no previous revision)" if first_deploy else ""
    detail = "(created by this run" + ("; first deploy, no previous revision)" if first_deploy else ")")
    if live is None:
        return RollbackStep(
            rec.ref, RollbackAction.NOTHING, f"{rec.ref} is already gone{first}", "absent", detail=detail
        )
    if delete:
        return RollbackStep(
            rec.ref, RollbackAction.DELETE, f"delete {rec.ref}, created by this run{first}", "deleted", detail=detail
        )
    return RollbackStep(
        rec.ref,
        RollbackAction.NOTHING,
        f"{rec.ref} was created by this run and is left in place{first}; --delete-created-on-failure removes it",
        LEFT_IN_PLACE,
        detail=detail,
    )


def _plan_recreate(rec: ObjectRecord) -> RollbackStep:
    assert rec.content is not None, "an object that existed has recorded content"
    target = _target(rec)
    return RollbackStep(
        rec.ref,
        RollbackAction.CREATE,
        f"re-create {rec.ref} from its recorded content (it was deleted during the run)",
        "re-created",
        body=restorable_content(rec.content),
        target=target,
    )


def _target(rec: ObjectRecord) -> RollbackTarget | None:
    if rec.ref.kind not in REVISIONED_KINDS:
        return None
    if rec.revision is not None:
        return RollbackTarget(
            rec.ref.kind, rec.ref.name, rec.revision.number, _without_hash_label(rec.revision.template)
        )
    template = ((rec.content or {}).get("spec") or {}).get("template") or {}
    return RollbackTarget(rec.ref.kind, rec.ref.name, 0, _without_hash_label(template))


def _revision_words(target: RollbackTarget) -> str:
    images = ", ".join(target.images)
    revision = f"revision {target.revision}" if target.revision else "its recorded template"
    return revision + (f" (image {images})" if images else "")


def _already_restored(rec: ObjectRecord, target: RollbackTarget, words: str) -> RollbackStep:
    """Nothing to do: the live template is the recorded one (kubectl's "skipped rollback")."""
    return RollbackStep(
        rec.ref,
        RollbackAction.NOTHING,
        f"skipped rollback of {rec.ref} (current template already matches {words})",
        "unchanged",
        target=target,
        detail=f"(already at {words})",
    )


def _plan_deployment(rec: ObjectRecord, live: KubeObject) -> RollbackStep:
    target = _target(rec)
    assert target is not None
    spec = live.get("spec") or {}
    words = _revision_words(target)
    if templates_equal_ignoring_hash(spec.get("template"), target.template):
        return _already_restored(rec, target, words)
    if spec.get("paused"):
        return RollbackStep(
            rec.ref,
            RollbackAction.NOTHING,
            f"cannot roll back {rec.ref}: it is paused (kubectl rollout resume it first)",
            "paused",
            target=target,
            problem="you cannot rollback a paused deployment",
        )
    live_annotations = (live.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in live_annotations.items() if k in DEPLOYMENT_ANNOTATIONS_KEPT}
    recorded_annotations = rec.revision.annotations if rec.revision is not None else {}
    annotations.update({k: v for k, v in recorded_annotations.items() if k not in DEPLOYMENT_ANNOTATIONS_KEPT})
    patch = [
        {"op": "replace", "path": "/spec/template", "value": target.template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    return RollbackStep(
        rec.ref,
        RollbackAction.PATCH,
        f"roll back {rec.ref} to {words}",
        "rolled back",
        "json",
        patch,
        target,
        detail=f"to {words}",
    )


def _plan_controller_revision(rec: ObjectRecord, live: KubeObject) -> RollbackStep:
    target = _target(rec)
    assert target is not None
    data = rec.revision.data if rec.revision is not None and rec.revision.data is not None else None
    if data is None:
        data = revision_data(target.template)
    # kubectl compares the revision's data with the live object's patch as parsed JSON; here the templates.
    words = _revision_words(target)
    if templates_equal_ignoring_hash((live.get("spec") or {}).get("template"), target.template):
        return _already_restored(rec, target, words)
    return RollbackStep(
        rec.ref,
        RollbackAction.PATCH,
        f"roll back {rec.ref} to {words}",
        "rolled back",
        "strategic-merge",
        copy.deepcopy(data),
        target,
        detail=f"to {words}",
    )


def _comparable(obj: KubeObject) -> KubeDict:
    return restorable_content(obj)


def _plan_restore(rec: ObjectRecord, live: KubeObject) -> RollbackStep:
    assert rec.content is not None, "an object that existed has recorded content"
    if _comparable(rec.content) == _comparable(live):
        return RollbackStep(rec.ref, RollbackAction.NOTHING, f"{rec.ref} is unchanged", "unchanged")
    return RollbackStep(
        rec.ref,
        RollbackAction.REPLACE,
        f"restore {rec.ref} to its recorded content",
        "restored",
        body=restorable_content(rec.content),
    )
