"""ApplySets (KEP-3659): the set of objects a deploy owns, tracked as ``kubectl apply --prune --applyset`` does,
and what pruning it deletes or keeps.

A parent object (a Secret in the target namespace) carries the set's id in its ``applyset.kubernetes.io/id``
label and, in annotations, the tool that manages it and the group-kinds (and other namespaces) its members are
found in; every member carries the id in its ``applyset.kubernetes.io/part-of`` label. The id is the spec's:
``applyset-<base64url(sha256(<name>.<namespace>.<kind>.<group>))>-v1``, so ``kubectl get -l`` lists the set.

Pure: ids, labels, the parent's apply body, which listed objects a prune deletes and in which order, which it
keeps (kinds that hold data unless --prune-allow names them). Listing, deleting and applying the parent are
kube/pruning.py's; the prune step's order is deployer/pruning.py's. Must not do I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from deployer import __version__
from deployer.errors import ManifestFieldError, OptionError
from deployer.kinds import KubeDict, KubeObject
from deployer.manifests import ManifestObject
from deployer.plans import apply_rank
from deployer.rollbacks import ObjectRef
from deployer.settings import PruneSettings

ID_LABEL = "applyset.kubernetes.io/id"
PART_OF_LABEL = "applyset.kubernetes.io/part-of"
TOOLING_ANNOTATION = "applyset.kubernetes.io/tooling"
GROUP_KINDS_ANNOTATION = "applyset.kubernetes.io/contains-group-kinds"
ADDITIONAL_NAMESPACES_ANNOTATION = "applyset.kubernetes.io/additional-namespaces"
TOOL_NAME = "deployer"
# The spec's <toolname>/<semver>; a tool refuses to change a set another tool manages (kubectl does).
TOOLING = f"{TOOL_NAME}/v{__version__}"
# kubectl writes its parent as "<tool>-applyset": the parent's fields stay apart from the members' manager.
PARENT_FIELD_MANAGER = f"{TOOL_NAME}-applyset"
PARENT_API_VERSION, PARENT_KIND = "v1", "Secret"
# Kinds whose deletion loses data: pruned only when --prune-allow names them, else listed as kept.
DATA_KINDS = ("Namespace", "PersistentVolumeClaim")


@dataclass(frozen=True, order=True)
class GroupKind:
    """A kind and its API group, written as the spec writes them: ``Deployment.apps``, ``Service``."""

    group: str
    kind: str

    @classmethod
    def of(cls, api_version: str, kind: str) -> GroupKind:
        group = api_version.split("/")[0] if "/" in api_version else ""
        return cls(group, kind)

    @classmethod
    def parse(cls, text: str) -> GroupKind:
        """``Kind.group`` (the group may hold dots) or ``Kind`` for the core group."""
        kind, _, group = text.strip().partition(".")
        return cls(group, kind)

    def __str__(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


def group_kind(ref: ObjectRef) -> GroupKind:
    return GroupKind.of(ref.api_version, ref.kind)


def member_key(ref: ObjectRef) -> tuple[GroupKind, str | None, str]:
    """Which object, whatever API version it was read or written in."""
    return group_kind(ref), ref.namespace, ref.name


def applyset_id(name: str, namespace: str, kind: str = PARENT_KIND, group: str = "") -> str:
    """The spec's id of the set whose parent is ``kind.group`` ``namespace/name``."""
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).decode().rstrip('=')}-v1"


@dataclass(frozen=True)
class ApplySet:
    """One set: its parent Secret ``namespace/name``."""

    name: str
    namespace: str

    @property
    def id(self) -> str:
        return applyset_id(self.name, self.namespace)

    @property
    def parent(self) -> ObjectRef:
        return ObjectRef(PARENT_API_VERSION, PARENT_KIND, self.namespace, self.name)

    @property
    def member_selector(self) -> str:
        """The label selector that lists the members (``kubectl get -l``)."""
        return f"{PART_OF_LABEL}={self.id}"

    def __str__(self) -> str:
        return f"secret/{self.name}"


# --- the set's name -----------------------------------------------------------------------------------------

_NOT_IN_A_NAME = re.compile(r"[^a-z0-9.-]+")
MAX_NAME_LENGTH = 253


def default_name(owner: str, repository: str) -> str:
    """``deployer.<owner>.<repository>``, lowercased, as a Secret name: one set per repository, so that two
    repositories deploying to one namespace never prune each other's objects."""
    raw = f"{TOOL_NAME}.{owner}.{repository}".lower()
    return _NOT_IN_A_NAME.sub("-", raw).strip(".-")[:MAX_NAME_LENGTH].rstrip(".-")


def check_name(name: str) -> None:
    """Refuse an --applyset the API server would refuse as a Secret's name (a DNS subdomain)."""
    if len(name) > MAX_NAME_LENGTH or not re.fullmatch(
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name
    ):
        raise OptionError(
            "--applyset",
            f"{name!r} is not a valid Secret name: lowercase letters, digits, '-' and '.', at most "
            f"{MAX_NAME_LENGTH} characters, starting and ending with a letter or digit",
        )


def check_settings(prune: PruneSettings) -> None:
    """Refuse --prune-allow or --applyset without --prune (they would do nothing), a kind --prune-allow names
    that prune never keeps, and an --applyset that is no Secret name."""
    if not prune.enabled:
        for flag, given in (("--prune-allow", prune.allow), ("--applyset", prune.applyset)):
            if given:
                raise OptionError(flag, "has no effect without --prune")
    for word in sorted(prune.allow):
        if word.lower() not in {kind.lower() for kind in DATA_KINDS}:
            raise OptionError(
                "--prune-allow", f"{word!r}: only the kinds prune keeps can be allowed: {', '.join(DATA_KINDS)}"
            )
    if prune.applyset:
        check_name(prune.applyset)


# --- members and parent -------------------------------------------------------------------------------------


def check_unlabelled(objects: Sequence[ManifestObject]) -> None:
    """Refuse a manifest that sets the set's labels itself, as kubectl does: membership is the tool's to say."""
    for obj in objects:
        labels = (obj.body.get("metadata") or {}).get("labels") or {}
        for label in (PART_OF_LABEL, ID_LABEL):
            if label in labels:
                raise ManifestFieldError(
                    f"the ApplySet label is set by deployer with --prune, not by a manifest: remove {label}",
                    path=obj.path,
                    document=obj.document,
                    field_path=f"metadata.labels.{label}",
                )


def as_member(body: KubeObject, applyset: ApplySet) -> KubeDict:
    """``body`` labelled as a member of the set (a copy)."""
    metadata = dict(body.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), PART_OF_LABEL: applyset.id}
    return {**body, "metadata": metadata}


@dataclass(frozen=True)
class Tracked:
    """Where the members of a set are found: their group-kinds and namespaces (the parent's included)."""

    group_kinds: frozenset[GroupKind] = frozenset()
    namespaces: frozenset[str] = frozenset()

    @classmethod
    def of(cls, refs: Iterable[ObjectRef]) -> Tracked:
        refs = list(refs)
        return cls(frozenset(group_kind(r) for r in refs), frozenset(r.namespace for r in refs if r.namespace))

    def __or__(self, other: Tracked) -> Tracked:
        return Tracked(self.group_kinds | other.group_kinds, self.namespaces | other.namespaces)


def read_parent(live: KubeObject | None, applyset: ApplySet) -> Tracked:
    """What the live parent says the set holds (nothing when there is none yet). Raises OptionError for a
    parent another tool manages, or whose id is not this set's: changing it would break that tool's set."""
    if live is None:
        return Tracked()
    metadata = live.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    where = f"{applyset} in namespace {applyset.namespace}"
    tooling = annotations.get(TOOLING_ANNOTATION)
    if tooling is None:
        raise OptionError("--applyset", f"{where} exists and is not an ApplySet parent (no {TOOLING_ANNOTATION})")
    managed_by = tooling.rsplit("/", 1)[0] if "/" in tooling else tooling
    if managed_by != TOOL_NAME:
        raise OptionError(
            "--applyset", f"{where} is the ApplySet parent of {managed_by!r}, not of {TOOL_NAME}: choose another name"
        )
    if labels.get(ID_LABEL) != applyset.id:
        raise OptionError("--applyset", f"{where} has label {ID_LABEL}={labels.get(ID_LABEL)!r}, not {applyset.id}")
    kinds = annotations.get(GROUP_KINDS_ANNOTATION) or ""
    others = annotations.get(ADDITIONAL_NAMESPACES_ANNOTATION) or ""
    return Tracked(
        frozenset(GroupKind.parse(text) for text in kinds.split(",") if text.strip()),
        frozenset({applyset.namespace, *(ns.strip() for ns in others.split(",") if ns.strip())}),
    )


def parent_body(applyset: ApplySet, tracked: Tracked) -> KubeDict:
    """The parent as deployer applies it (server-side, by PARENT_FIELD_MANAGER): id label, tooling, and where
    the members are, sorted, the parent's own namespace left out of the additional ones."""
    return {
        "apiVersion": PARENT_API_VERSION,
        "kind": PARENT_KIND,
        "metadata": {
            "name": applyset.name,
            "namespace": applyset.namespace,
            "labels": {ID_LABEL: applyset.id},
            "annotations": {
                TOOLING_ANNOTATION: TOOLING,
                GROUP_KINDS_ANNOTATION: ",".join(sorted(str(gk) for gk in tracked.group_kinds)),
                ADDITIONAL_NAMESPACES_ANNOTATION: ",".join(sorted(tracked.namespaces - {applyset.namespace})),
            },
        },
    }


# --- what a prune does --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    ref: ObjectRef
    reason: str


@dataclass
class PrunePlan:
    """Members the manifests no longer hold: ``delete`` in reverse dependency order (what depends on others
    first, the namespace last), ``kept`` those a prune must not delete and why."""

    delete: list[ObjectRef] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)


def plan_prune(
    applyset: ApplySet,
    listed: Iterable[KubeObject],
    wanted: Iterable[ObjectRef],
    allowed: Collection[str] = (),
) -> PrunePlan:
    """What pruning deletes among ``listed`` (members found by the label selector) given the objects the
    manifests hold (``wanted``) and the kinds --prune-allow names. Only an object whose part-of label is this
    set's id is ever a candidate: an unlabelled one was never the set's to delete."""
    held = {member_key(ref) for ref in wanted}
    plan = PrunePlan()
    candidates = []
    for obj in listed:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        ref = ObjectRef.of(obj)
        if labels.get(PART_OF_LABEL) != applyset.id or member_key(ref) in held:
            continue
        candidates.append(ref)
    for ref in sorted(candidates, key=lambda r: (-apply_rank(r.kind), r.kind, r.namespace or "", r.name)):
        if ref.kind == "Namespace" and ref.name == applyset.namespace:
            plan.kept.append(Kept(ref, "it holds the set's parent"))
        elif ref.kind in DATA_KINDS and ref.kind.lower() not in {kind.lower() for kind in allowed}:
            plan.kept.append(Kept(ref, f"{ref.kind} holds data; --prune-allow {ref.kind} prunes it"))
        else:
            plan.delete.append(ref)
    return plan


def where(ref: ObjectRef) -> str:
    """An object as the log names a prune's: ``configmap/settings in namespace web``."""
    return f"{ref} in namespace {ref.namespace}" if ref.namespace else f"{ref} (cluster-wide)"


def plan_as_text(plan: PrunePlan) -> str:
    """The dry run's lines: what a deploy would prune, and what it would keep."""
    lines = [f"would prune ({len(plan.delete)}):"]
    lines += [f"  {where(ref)}" for ref in plan.delete]
    if plan.kept:
        lines.append(f"would prune, kept ({len(plan.kept)}):")
        lines += [f"  {where(k.ref)}: {k.reason}" for k in plan.kept]
    return "\n".join(lines)


def ref_as_json(ref: ObjectRef) -> KubeDict:
    return {"kind": ref.kind, "name": ref.name, "namespace": ref.namespace}


def plan_as_json(plan: PrunePlan) -> KubeDict:
    return {
        "would_prune": [ref_as_json(ref) for ref in plan.delete],
        "kept": [{**ref_as_json(k.ref), "reason": k.reason} for k in plan.kept],
    }
