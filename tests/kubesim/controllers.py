"""The simulator's kube-controller-manager and scheduler: pure reconcile functions over API-shaped dicts.

Owns the decisions the real controllers make (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and the
scheduler's node choice) and states them as a list of actions for the caller to apply to the store.
Objects in and out are shaped exactly as the Kubernetes API returns them as JSON (camelCase keys, RFC 3339
timestamps, integer-or-percent strings, zero-valued status integers omitted where the API omits them).

It must not do I/O, read the wall clock, keep state between calls or use randomness: the store, the clock
(`now`, simulated epoch seconds) and the pod lifecycle (the kubelet writes pod status) belong to the caller.
Calling again with the same inputs yields the same actions, so a repeated sync never double-creates: names of
created objects are derived from their owner and what already exists.

Write semantics the caller must honour (they are the real API server's):
- `Update` is a spec/metadata write of an object read with `metadata.resourceVersion`.
- `UpdateStatus` goes through the status subresource. For a Deployment it also carries
  `metadata.annotations` (the real status strategy resets only spec and labels, and the deployment controller
  writes `deployment.kubernetes.io/revision` that way); for other kinds only `status` matters.
- Objects in `Create` have no uid/resourceVersion/creationTimestamp; pods are created with an explicit
  `metadata.name` (and the `generateName` the real controller would have used).
"""

from __future__ import annotations

import calendar
import copy
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEPRECATED_ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"
POD_DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

# Annotations of a Deployment that describe the Deployment itself and so are not copied onto its ReplicaSets.
_ANNOTATIONS_NOT_COPIED_TO_REPLICASETS = frozenset(
    {
        LAST_APPLIED_ANNOTATION,
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        DEPRECATED_ROLLBACK_TO_ANNOTATION,
    }
)

# progressDeadlineSeconds equal to MaxInt32 means "no deadline", as in the real controller.
_NO_PROGRESS_DEADLINE = 2**31 - 1
# The real replica set controller creates or deletes at most this many pods per sync.
_BURST_REPLICAS = 500
# Characters the API machinery uses for generated names: no vowels, no look-alikes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_NAME_BASE = 58


# --------------------------------------------------------------------------------------------- actions


@dataclass
class Create:
    obj: Obj


@dataclass
class Update:
    obj: Obj


@dataclass
class UpdateStatus:
    obj: Obj


@dataclass
class Delete:
    api_version: str
    kind: str
    namespace: str | None
    name: str


@dataclass
class RecordEvent:
    involved_object: Obj
    type: str
    reason: str
    message: str


Action = Create | Update | UpdateStatus | Delete | RecordEvent


# --------------------------------------------------------------------------------------------- plain-data access


def _metadata(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _labels(obj: Obj) -> dict[str, str]:
    labels = _metadata(obj).get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


def _annotations(obj: Obj) -> dict[str, str]:
    annotations = _metadata(obj).get("annotations")
    return dict(annotations) if isinstance(annotations, dict) else {}


def _name(obj: Obj) -> str:
    return str(_metadata(obj).get("name", ""))


def _namespace(obj: Obj) -> str | None:
    namespace = _metadata(obj).get("namespace")
    return str(namespace) if namespace else None


def _uid(obj: Obj) -> str:
    return str(_metadata(obj).get("uid", ""))


def _generation(obj: Obj) -> int:
    return _int(_metadata(obj).get("generation"), 0)


def _is_being_deleted(obj: Obj) -> bool:
    return bool(_metadata(obj).get("deletionTimestamp"))


def _int(value: Any, default: int) -> int:
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _status_int(obj: Obj, key: str) -> int:
    return _int(_status(obj).get(key), 0)


def _set_annotations(obj: Obj, annotations: Mapping[str, str]) -> None:
    obj.setdefault("metadata", {})["annotations"] = dict(annotations)


def format_time(epoch_seconds: float) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serialises."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch_seconds)))


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp; fractional seconds (MicroTime) are dropped. None if absent."""
    if not isinstance(value, str) or not value:
        return None
    text = value.rstrip("Z")
    text = text.split(".", 1)[0]
    if "+" in text[10:]:
        text = text[: 10 + text[10:].index("+")]
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def _safe_encode(text: str) -> str:
    """Map each character onto the name alphabet, as the API machinery does for hashes in names."""
    return "".join(_NAME_ALPHABET[ord(char) % len(_NAME_ALPHABET)] for char in text)


def _canonical(value: Any) -> Any:
    """Drop nulls and empty maps/lists, which Go's omitempty leaves out, so equal templates compare equal."""
    if isinstance(value, dict):
        pruned = {key: _canonical(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item is not None and item != {} and item != []}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _stable_hash(value: Any, collision_count: int | None) -> str:
    data = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        # A collision bumps the count, and the count salts the hash, so the next name differs.
        data += collision_count.to_bytes(4, "little", signed=False)
    return _safe_encode(str(_fnv32a(data)))


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The pod-template-hash of a pod template: stable across calls, salted by the collision count."""
    return _stable_hash(template, collision_count)


def _generated_pod_name(base: str, seed: str, index: int) -> str:
    stem = base[:_MAX_GENERATED_NAME_BASE]
    digest = _fnv32a(f"{seed}/{index}".encode())
    suffix = ""
    for _ in range(5):
        suffix += _NAME_ALPHABET[digest % len(_NAME_ALPHABET)]
        digest //= len(_NAME_ALPHABET)
    return stem + suffix


def _fresh_pod_names(base: str, seed: str, taken: Iterable[str], count: int) -> list[str]:
    used = set(taken)
    names: list[str] = []
    index = 0
    while len(names) < count:
        candidate = _generated_pod_name(base, seed, index)
        index += 1
        if candidate not in used:
            used.add(candidate)
            names.append(candidate)
    return names


# --------------------------------------------------------------------------------------------- selectors, owners


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels. None matches nothing; {} matches everything."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key = requirement.get("key", "")
        operator = requirement.get("operator", "")
        values = requirement.get("values") or []
        if operator == "In":
            if key not in labels or labels[key] not in values:
                return False
        elif operator == "NotIn":
            if key in labels and labels[key] in values:
                return False
        elif operator == "Exists":
            if key not in labels:
                return False
        elif operator == "DoesNotExist":
            if key in labels:
                return False
        else:
            return False
    return True


def _selector_is_empty(selector: Any) -> bool:
    return isinstance(selector, dict) and not selector.get("matchLabels") and not selector.get("matchExpressions")


def _controller_ref(obj: Obj) -> Obj | None:
    for ref in _metadata(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _owner_reference(owner: Obj, api_version: str, kind: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": _name(owner),
        "uid": _uid(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _object_ref(obj: Obj) -> Obj:
    """What an Event's involvedObject names."""
    ref: Obj = {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "name": _name(obj)}
    if _namespace(obj):
        ref["namespace"] = _namespace(obj)
    if _uid(obj):
        ref["uid"] = _uid(obj)
    rv = _metadata(obj).get("resourceVersion")
    if rv:
        ref["resourceVersion"] = rv
    return ref


def _claim(
    owner: Obj, owner_api_version: str, owner_kind: str, candidates: list[Obj], labels_of: Any = _labels
) -> tuple[list[Obj], list[Action]]:
    """Keep what the owner controls and still selects; adopt selected orphans; release what it no longer selects.

    Mirrors the ControllerRefManager: objects controlled by someone else are ignored, an owner being deleted
    adopts nothing, and an object being deleted is never adopted.
    """
    selector = _spec(owner).get("selector")
    claimed: list[Obj] = []
    actions: list[Action] = []
    for candidate in candidates:
        if _namespace(candidate) != _namespace(owner):
            continue
        matches = selector_matches(selector, labels_of(candidate))
        ref = _controller_ref(candidate)
        if ref is not None:
            if ref.get("uid") != _uid(owner):
                continue
            if matches:
                claimed.append(candidate)
            elif not _is_being_deleted(owner):
                released = copy.deepcopy(candidate)
                released["metadata"]["ownerReferences"] = [
                    r for r in _metadata(candidate).get("ownerReferences") or [] if r.get("uid") != _uid(owner)
                ]
                actions.append(Update(released))
            continue
        if not matches or _is_being_deleted(owner) or _is_being_deleted(candidate):
            continue
        adopted = copy.deepcopy(candidate)
        meta = adopted.setdefault("metadata", {})
        meta["ownerReferences"] = list(meta.get("ownerReferences") or []) + [
            _owner_reference(owner, owner_api_version, owner_kind)
        ]
        actions.append(Update(adopted))
        claimed.append(adopted)
    return claimed, actions


# --------------------------------------------------------------------------------------------- pods


def _pod_condition(pod: Obj, condition_type: str) -> Obj | None:
    for condition in _status(pod).get("conditions") or []:
        if condition.get("type") == condition_type:
            return dict(condition)
    return None


def pod_is_ready(pod: Obj) -> bool:
    condition = _pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def pod_is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready, and (with minReadySeconds) Ready for strictly longer than that."""
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    condition = _pod_condition(pod, "Ready") or {}
    since = parse_time(condition.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds < now


def _pod_phase(pod: Obj) -> str:
    return str(_status(pod).get("phase") or "Pending")


def _pod_is_active(pod: Obj) -> bool:
    """Counts toward replicas: not finished and not terminating."""
    return _pod_phase(pod) not in ("Succeeded", "Failed") and not _is_being_deleted(pod)


def _pod_from_template(template: Obj, owner: Obj, owner_api_version: str, owner_kind: str, name: str) -> Obj:
    template_meta = template.get("metadata") or {}
    metadata: Obj = {"name": name, "generateName": _name(owner) + "-"}
    if _namespace(owner):
        metadata["namespace"] = _namespace(owner)
    if template_meta.get("labels"):
        metadata["labels"] = dict(template_meta["labels"])
    if template_meta.get("annotations"):
        metadata["annotations"] = dict(template_meta["annotations"])
    if template_meta.get("finalizers"):
        metadata["finalizers"] = list(template_meta["finalizers"])
    metadata["ownerReferences"] = [_owner_reference(owner, owner_api_version, owner_kind)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def _restart_count(pod: Obj) -> int:
    return max((_int(s.get("restartCount"), 0) for s in _status(pod).get("containerStatuses") or []), default=0)


def _deletion_preference(pod: Obj, pods_on_same_node: int) -> tuple[Any, ...]:
    """Sort key: pods that hurt least when deleted come first (the real ActivePodsWithRanks order)."""
    node = _spec(pod).get("nodeName") or ""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(_pod_phase(pod), 0)
    ready = pod_is_ready(pod)
    cost = _int(_annotations(pod).get(POD_DELETION_COST_ANNOTATION), 0)
    ready_since = parse_time((_pod_condition(pod, "Ready") or {}).get("lastTransitionTime")) if ready else None
    created = parse_time(_metadata(pod).get("creationTimestamp"))
    return (
        node != "",
        phase_rank,
        ready,
        cost,
        -pods_on_same_node,
        # Ready more recently (larger time) goes first; unknown first of all.
        -(ready_since if ready_since is not None else float("inf")) if ready else 0.0,
        -_restart_count(pod),
        -(created if created is not None else float("inf")),
        _uid(pod),
    )


def _pods_to_delete(pods: list[Obj], count: int) -> list[Obj]:
    if count >= len(pods):
        return list(pods)
    per_node: dict[str, int] = {}
    for pod in pods:
        node = _spec(pod).get("nodeName") or ""
        per_node[node] = per_node.get(node, 0) + 1
    ranked = sorted(
        pods,
        key=lambda pod: _deletion_preference(
            pod, per_node.get(_spec(pod).get("nodeName") or "", 0) if _spec(pod).get("nodeName") else 0
        ),
    )
    return ranked[:count]


# --------------------------------------------------------------------------------------------- int-or-percent


def _scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString against a total: percentages round up (surge) or down (unavailable)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        percent = _int(text[:-1], 0)
        if round_up:
            return -(-percent * total // 100)
        return percent * total // 100
    return _int(text, 0)


# --------------------------------------------------------------------------------------------- ReplicaSet


def reconcile_replicaset(replicaset: Obj, pods: list[Obj], now: float) -> list[Action]:
    """One sync of the replica set controller: claim pods, create/delete toward spec.replicas, write status."""
    actions: list[Action] = []
    owned, claim_actions = _claim(replicaset, "apps/v1", "ReplicaSet", pods)
    actions.extend(claim_actions)
    active = [pod for pod in owned if _pod_is_active(pod)]
    if not _is_being_deleted(replicaset):
        actions.extend(_manage_replicas(replicaset, active, [_name(p) for p in pods], now))
    status = _replicaset_status(replicaset, active, now)
    if status != _status(replicaset) or _status(replicaset).get("observedGeneration") != _generation(replicaset):
        updated = copy.deepcopy(replicaset)
        updated["status"] = status
        actions.append(UpdateStatus(updated))
    return actions


def _manage_replicas(replicaset: Obj, active: list[Obj], taken_names: list[str], now: float) -> list[Action]:
    desired = _int(_spec(replicaset).get("replicas"), 1)
    diff = len(active) - desired
    actions: list[Action] = []
    involved = _object_ref(replicaset)
    template = _spec(replicaset).get("template") or {}
    if diff < 0:
        missing = min(-diff, _BURST_REPLICAS)
        seed = f"{_uid(replicaset) or _name(replicaset)}/{now}"
        for name in _fresh_pod_names(_name(replicaset) + "-", seed, taken_names, missing):
            actions.append(Create(_pod_from_template(template, replicaset, "apps/v1", "ReplicaSet", name)))
            actions.append(RecordEvent(involved, "Normal", "SuccessfulCreate", f"Created pod: {name}"))
    elif diff > 0:
        for pod in _pods_to_delete(active, min(diff, _BURST_REPLICAS)):
            actions.append(Delete("v1", "Pod", _namespace(pod), _name(pod)))
            actions.append(RecordEvent(involved, "Normal", "SuccessfulDelete", f"Deleted pod: {_name(pod)}"))
    return actions


def _replicaset_status(replicaset: Obj, active: list[Obj], now: float) -> Obj:
    spec = _spec(replicaset)
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    min_ready = _int(spec.get("minReadySeconds"), 0)
    fully_labeled = sum(1 for pod in active if all(_labels(pod).get(k) == v for k, v in template_labels.items()))
    ready = sum(1 for pod in active if pod_is_ready(pod))
    available = sum(1 for pod in active if pod_is_available(pod, min_ready, now))
    status: Obj = {"replicas": len(active)}
    if fully_labeled:
        status["fullyLabeledReplicas"] = fully_labeled
    if ready:
        status["readyReplicas"] = ready
    if available:
        status["availableReplicas"] = available
    if _generation(replicaset):
        status["observedGeneration"] = _generation(replicaset)
    # The simulator never fails a pod create or delete, so a ReplicaFailure set by someone else is cleared,
    # as the real controller clears it after a successful sync.
    conditions = [c for c in _status(replicaset).get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    if conditions:
        status["conditions"] = conditions
    return status


# --------------------------------------------------------------------------------------------- Deployment


def _deployment_replicas(deployment: Obj) -> int:
    return _int(_spec(deployment).get("replicas"), 1)


def _is_rolling_update(deployment: Obj) -> bool:
    strategy = _spec(deployment).get("strategy") or {}
    return (strategy.get("type") or "RollingUpdate") == "RollingUpdate"


def _fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts; both zero would deadlock, so unavailable becomes 1."""
    rolling = (_spec(deployment).get("strategy") or {}).get("rollingUpdate") or {}
    replicas = _deployment_replicas(deployment)
    surge = _scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: Obj) -> int:
    if not _is_rolling_update(deployment):
        return 0
    return _fenceposts(deployment)[0]


def max_unavailable(deployment: Obj) -> int:
    replicas = _deployment_replicas(deployment)
    if not _is_rolling_update(deployment) or replicas == 0:
        return 0
    return min(_fenceposts(deployment)[1], replicas)


def _progress_deadline(deployment: Obj) -> int | None:
    seconds = _spec(deployment).get("progressDeadlineSeconds", 600)
    if seconds is None or _int(seconds, _NO_PROGRESS_DEADLINE) == _NO_PROGRESS_DEADLINE:
        return None
    return _int(seconds, 600)


def _revision_of(obj: Obj) -> int:
    return _int(_annotations(obj).get(REVISION_ANNOTATION), 0)


def _rs_replicas(replicaset: Obj | None) -> int:
    return 0 if replicaset is None else _int(_spec(replicaset).get("replicas"), 1)


def _created_at(obj: Obj) -> float:
    stamp = parse_time(_metadata(obj).get("creationTimestamp"))
    # Objects not yet stored are the newest of all.
    return stamp if stamp is not None else float("inf")


def _by_creation(replicasets: Iterable[Obj]) -> list[Obj]:
    return sorted(replicasets, key=lambda rs: (_created_at(rs), _name(rs)))


def _template_without_hash(template: Any) -> Any:
    template = copy.deepcopy(template or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return _canonical(template)


def templates_equal_ignoring_hash(a: Any, b: Any) -> bool:
    return bool(_template_without_hash(a) == _template_without_hash(b))


def _condition(status: Obj, condition_type: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == condition_type:
            return dict(condition)
    return None


def _new_deployment_condition(condition_type: str, status: str, reason: str, message: str, now: float) -> Obj:
    stamp = format_time(now)
    return {
        "type": condition_type,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _set_condition(status: Obj, condition: Obj) -> None:
    """Same status and reason: keep the old one (and its times). Same status: keep lastTransitionTime."""
    current = _condition(status, condition["type"])
    if current is not None and current.get("status") == condition["status"]:
        if current.get("reason") == condition["reason"]:
            return
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    _remove_condition(status, condition["type"])
    status["conditions"] = list(status.get("conditions") or []) + [condition]


def _remove_condition(status: Obj, condition_type: str) -> None:
    remaining = [c for c in status.get("conditions") or [] if c.get("type") != condition_type]
    if remaining:
        status["conditions"] = remaining
    else:
        status.pop("conditions", None)


def deployment_complete(deployment: Obj, status: Obj) -> bool:
    replicas = _deployment_replicas(deployment)
    return (
        _int(status.get("updatedReplicas"), 0) == replicas
        and _int(status.get("replicas"), 0) == replicas
        and _int(status.get("availableReplicas"), 0) == replicas
        and _int(status.get("observedGeneration"), 0) >= _generation(deployment)
    )


class _DeploymentSync:
    """One sync of one Deployment: working copies of the Deployment and its ReplicaSets, and what changed.

    The real controller writes as it goes and re-reads nothing in between; here each object is written once
    at the end with all of the sync's changes, so no write in a sync conflicts with another.
    """

    def __init__(self, deployment: Obj, now: float) -> None:
        self.original = deployment
        self.d = copy.deepcopy(deployment)
        self.d.setdefault("metadata", {})
        self.d.setdefault("status", {})
        self.now = now
        self.touched: list[Obj] = []
        self.created_ids: set[int] = set()
        self.events: list[Action] = []
        self.deletions: list[Action] = []
        self.stop = False

    # ---- output

    def touch(self, replicaset: Obj) -> None:
        if all(replicaset is not seen for seen in self.touched):
            self.touched.append(replicaset)

    def event(self, event_type: str, reason: str, message: str) -> None:
        self.events.append(RecordEvent(_object_ref(self.original), event_type, reason, message))

    def actions(self, leading: list[Action]) -> list[Action]:
        result = list(leading)
        for replicaset in self.touched:
            result.append(Create(replicaset) if id(replicaset) in self.created_ids else Update(replicaset))
        result.extend(self.deletions)
        result.extend(self.events)
        d = self.d
        status_changed = (d.get("status") or {}) != (self.original.get("status") or {})
        if status_changed or _annotations(d) != _annotations(self.original):
            if not d.get("status"):
                d.pop("status", None)
            result.append(UpdateStatus(d))
        return result

    # ---- annotations

    def set_replicas_annotations(self, replicaset: Obj) -> bool:
        desired = str(_deployment_replicas(self.d))
        maximum = str(_deployment_replicas(self.d) + max_surge(self.d))
        annotations = _annotations(replicaset)
        if (
            annotations.get(DESIRED_REPLICAS_ANNOTATION) == desired
            and annotations.get(MAX_REPLICAS_ANNOTATION) == maximum
        ):
            return False
        annotations[DESIRED_REPLICAS_ANNOTATION] = desired
        annotations[MAX_REPLICAS_ANNOTATION] = maximum
        _set_annotations(replicaset, annotations)
        return True

    def set_new_replicaset_annotations(self, replicaset: Obj, new_revision: int, exists: bool) -> bool:
        annotations = _annotations(replicaset)
        changed = False
        for key, value in _annotations(self.d).items():
            if key in _ANNOTATIONS_NOT_COPIED_TO_REPLICASETS or annotations.get(key) == value:
                continue
            annotations[key] = value
            changed = True
        old_text = annotations.get(REVISION_ANNOTATION)
        old_revision = _int(old_text, 0)
        if old_text is not None and str(old_revision) != str(old_text).strip():
            return False
        if old_revision < new_revision:
            annotations[REVISION_ANNOTATION] = str(new_revision)
            changed = True
            # A ReplicaSet that already had a revision and gets a newer one is being rolled back to:
            # remember the revisions it stood for.
            if old_text is not None:
                history = annotations.get(REVISION_HISTORY_ANNOTATION, "")
                annotations[REVISION_HISTORY_ANNOTATION] = f"{history},{old_text}" if history else old_text
        _set_annotations(replicaset, annotations)
        if not exists and self.set_replicas_annotations(replicaset):
            changed = True
        return changed

    def set_deployment_revision(self, revision: str) -> None:
        annotations = _annotations(self.d)
        if annotations.get(REVISION_ANNOTATION) != revision:
            annotations[REVISION_ANNOTATION] = revision
            _set_annotations(self.d, annotations)

    # ---- finding and creating the new ReplicaSet

    def split(self, replicasets: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        template = _spec(self.d).get("template") or {}
        new_rs = next(
            (
                rs
                for rs in _by_creation(replicasets)
                if templates_equal_ignoring_hash(_spec(rs).get("template"), template)
            ),
            None,
        )
        old = [rs for rs in replicasets if rs is not new_rs]
        new_revision = max((_revision_of(rs) for rs in old), default=0) + 1
        status = self.d["status"]
        if new_rs is not None:
            changed = self.set_new_replicaset_annotations(new_rs, new_revision, exists=True)
            min_ready = _int(_spec(self.d).get("minReadySeconds"), 0)
            if _int(_spec(new_rs).get("minReadySeconds"), 0) != min_ready:
                new_rs["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                self.touch(new_rs)
            self.set_deployment_revision(_annotations(new_rs).get(REVISION_ANNOTATION, ""))
            if _condition(status, "Progressing") is None and _progress_deadline(self.d) is not None:
                _set_condition(
                    status,
                    _new_deployment_condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        f'Found new replica set "{_name(new_rs)}"',
                        self.now,
                    ),
                )
            return new_rs, old
        if not create:
            return None, old
        collision_count = status.get("collisionCount")
        pod_hash = template_hash(template, _int(collision_count, 0) if collision_count is not None else None)
        name = f"{_name(self.d)}-{pod_hash}"
        clash = next((rs for rs in replicasets if _name(rs) == name), None)
        if clash is not None:
            # Same name, different template: a hash collision. Count it and let the next sync pick a new name.
            status["collisionCount"] = _int(collision_count, 0) + 1
            self.stop = True
            return None, old
        new_template = copy.deepcopy(template)
        new_template.setdefault("metadata", {})
        new_template["metadata"]["labels"] = {
            **(new_template["metadata"].get("labels") or {}),
            POD_TEMPLATE_HASH_LABEL: pod_hash,
        }
        selector = copy.deepcopy(_spec(self.d).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
        metadata: Obj = {"name": name, "labels": dict(new_template["metadata"]["labels"])}
        if _namespace(self.d):
            metadata["namespace"] = _namespace(self.d)
        metadata["ownerReferences"] = [_owner_reference(self.d, "apps/v1", "Deployment")]
        created: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": metadata,
            "spec": {
                "replicas": 0,
                "minReadySeconds": _int(_spec(self.d).get("minReadySeconds"), 0),
                "selector": selector,
                "template": new_template,
            },
        }
        created["spec"]["replicas"] = self.new_rs_new_replicas(old + [created], created)
        self.set_new_replicaset_annotations(created, new_revision, exists=False)
        self.created_ids.add(id(created))
        self.touch(created)
        if created["spec"]["replicas"] > 0:
            self.event(
                "Normal", "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {created['spec']['replicas']}"
            )
        self.set_deployment_revision(str(new_revision))
        if _progress_deadline(self.d) is not None:
            _set_condition(
                status,
                _new_deployment_condition(
                    "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{name}"', self.now
                ),
            )
        return created, old

    def new_rs_new_replicas(self, all_rss: list[Obj], new_rs: Obj) -> int:
        replicas = _deployment_replicas(self.d)
        if not _is_rolling_update(self.d):
            return replicas
        current = sum(_rs_replicas(rs) for rs in all_rss)
        ceiling = replicas + max_surge(self.d)
        if current >= ceiling:
            return _rs_replicas(new_rs)
        return _rs_replicas(new_rs) + min(ceiling - current, replicas - _rs_replicas(new_rs))

    # ---- scaling

    def scale(self, replicaset: Obj, new_scale: int, operation: str | None = None) -> bool:
        old_scale = _rs_replicas(replicaset)
        size_changes = old_scale != new_scale
        annotations_change = self.set_replicas_annotations(replicaset)
        if not size_changes and not annotations_change:
            return False
        replicaset.setdefault("spec", {})["replicas"] = new_scale
        self.touch(replicaset)
        if size_changes:
            direction = operation or ("up" if old_scale < new_scale else "down")
            self.event(
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {_name(replicaset)} from {old_scale} to {new_scale}",
            )
        return size_changes

    def scale_and_record(self, replicaset: Obj, new_scale: int) -> bool:
        if _rs_replicas(replicaset) == new_scale:
            return False
        return self.scale(replicaset, new_scale)

    def is_scaling_event(self, replicasets: list[Obj]) -> bool:
        new_rs, old = self.split(replicasets, create=False)
        for rs in _active([*old, new_rs]):
            desired = _annotations(rs).get(DESIRED_REPLICAS_ANNOTATION)
            if desired is None or str(_int(desired, -1)) != desired:
                continue
            if int(desired) != _deployment_replicas(self.d):
                return True
        return False

    def proportional_scale(self, new_rs: Obj | None, old: list[Obj]) -> None:
        """Spread a replicas change over all active ReplicaSets in proportion to their size (scale())."""
        replicas = _deployment_replicas(self.d)
        active_or_latest = _find_active_or_latest(new_rs, old)
        if active_or_latest is not None:
            if _rs_replicas(active_or_latest) != replicas:
                self.scale_and_record(active_or_latest, replicas)
            return
        if _is_saturated(self.d, new_rs):
            for rs in _active(old):
                self.scale_and_record(rs, 0)
            return
        if not _is_rolling_update(self.d):
            return
        all_rss = _active([*old, new_rs])
        allowed = replicas + max_surge(self.d) if replicas > 0 else 0
        to_add = allowed - sum(_rs_replicas(rs) for rs in all_rss)
        operation: str | None = None
        if to_add > 0:
            # Bigger first; among equals the newer one grows first.
            all_rss.sort(key=lambda rs: (-_rs_replicas(rs), -_created_at(rs), _name(rs)))
            operation = "up"
        elif to_add < 0:
            # Bigger first; among equals the older one shrinks first.
            all_rss.sort(key=lambda rs: (-_rs_replicas(rs), _created_at(rs), _name(rs)))
            operation = "down"
        added = 0
        sizes: list[int] = []
        for rs in all_rss:
            if to_add != 0:
                proportion = self.proportion(rs, to_add, added)
                sizes.append(_rs_replicas(rs) + proportion)
                added += proportion
            else:
                sizes.append(_rs_replicas(rs))
        for index, rs in enumerate(all_rss):
            size = sizes[index]
            if index == 0 and to_add != 0:
                size = max(size + to_add - added, 0)
            self.scale(rs, size, operation)

    def proportion(self, replicaset: Obj, to_add: int, added: int) -> int:
        if _rs_replicas(replicaset) == 0 or to_add == 0 or to_add == added:
            return 0
        if _deployment_replicas(self.d) == 0:
            fraction = -_rs_replicas(replicaset)
        else:
            target = _deployment_replicas(self.d) + max_surge(self.d)
            annotated_text = _annotations(replicaset).get(MAX_REPLICAS_ANNOTATION)
            annotated = _int(annotated_text, -1)
            if annotated < 0:
                annotated = _status_int(self.d, "replicas")
            if annotated == 0:
                return 0
            share = _rs_replicas(replicaset) * target / annotated
            fraction = _round_half_away(share) - _rs_replicas(replicaset)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    # ---- rolling update

    def reconcile_new_replicaset(self, all_rss: list[Obj], new_rs: Obj) -> bool:
        replicas = _deployment_replicas(self.d)
        if _rs_replicas(new_rs) == replicas:
            return False
        if _rs_replicas(new_rs) > replicas:
            return self.scale_and_record(new_rs, replicas)
        return self.scale_and_record(new_rs, self.new_rs_new_replicas(all_rss, new_rs))

    def reconcile_old_replicasets(self, all_rss: list[Obj], old: list[Obj], new_rs: Obj) -> bool:
        if sum(_rs_replicas(rs) for rs in old) == 0:
            return False
        all_count = sum(_rs_replicas(rs) for rs in all_rss)
        min_available = _deployment_replicas(self.d) - max_unavailable(self.d)
        new_unavailable = _rs_replicas(new_rs) - _status_int(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self.cleanup_unhealthy_replicas(old, max_scaled_down)
        scaled_down = self.scale_down_old_for_rolling_update([*old, new_rs], old)
        return cleaned + scaled_down > 0

    def cleanup_unhealthy_replicas(self, old: list[Obj], max_cleanup: int) -> int:
        total = 0
        for rs in _by_creation(old):
            if total >= max_cleanup:
                break
            replicas = _rs_replicas(rs)
            available = _status_int(rs, "availableReplicas")
            if replicas == 0 or replicas == available:
                continue
            count = min(max_cleanup - total, replicas - available)
            self.scale_and_record(rs, replicas - count)
            total += count
        return total

    def scale_down_old_for_rolling_update(self, all_rss: list[Obj], old: list[Obj]) -> int:
        min_available = _deployment_replicas(self.d) - max_unavailable(self.d)
        available = sum(_status_int(rs, "availableReplicas") for rs in all_rss)
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in _by_creation(old):
            if total >= budget:
                break
            if _rs_replicas(rs) == 0:
                continue
            count = min(_rs_replicas(rs), budget - total)
            self.scale_and_record(rs, _rs_replicas(rs) - count)
            total += count
        return total

    # ---- history

    def cleanup(self, old: list[Obj]) -> None:
        limit = _spec(self.d).get("revisionHistoryLimit", 10)
        if limit is None:
            return
        alive = [rs for rs in old if not _is_being_deleted(rs)]
        excess = len(alive) - _int(limit, 10)
        if excess <= 0:
            return
        for rs in sorted(alive, key=lambda rs: (_revision_of(rs), _created_at(rs), _name(rs)))[:excess]:
            if (
                _status_int(rs, "replicas") != 0
                or _rs_replicas(rs) != 0
                or _generation(rs) > _status_int(rs, "observedGeneration")
                or any(rs is seen for seen in self.touched)
            ):
                continue
            self.deletions.append(Delete("apps/v1", "ReplicaSet", _namespace(rs), _name(rs)))

    # ---- status

    def calculate_status(self, all_rss: list[Obj], new_rs: Obj | None) -> Obj:
        available = sum(_status_int(rs, "availableReplicas") for rs in all_rss)
        total = sum(_rs_replicas(rs) for rs in all_rss)
        previous = self.d["status"]
        status: Obj = {}
        if _generation(self.d):
            status["observedGeneration"] = _generation(self.d)
        counts = {
            "replicas": sum(_status_int(rs, "replicas") for rs in all_rss),
            "updatedReplicas": _status_int(new_rs, "replicas") if new_rs is not None else 0,
            "readyReplicas": sum(_status_int(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
        }
        status.update({key: value for key, value in counts.items() if value})
        if previous.get("conditions"):
            status["conditions"] = copy.deepcopy(previous["conditions"])
        if previous.get("collisionCount") is not None:
            status["collisionCount"] = previous["collisionCount"]
        replicas = _deployment_replicas(self.d)
        if available >= replicas - max_unavailable(self.d):
            condition = _new_deployment_condition(
                "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", self.now
            )
        else:
            condition = _new_deployment_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                self.now,
            )
        _set_condition(status, condition)
        return status

    def sync_status(self, all_rss: list[Obj], new_rs: Obj | None) -> None:
        """Status without judging progress: used for scaling, pausing and deletion."""
        self.d["status"] = self.calculate_status(all_rss, new_rs)

    def sync_rollout_status(self, all_rss: list[Obj], new_rs: Obj | None) -> None:
        """Status including the Progressing verdict (complete, progressing, or past its deadline)."""
        new_status = self.calculate_status(all_rss, new_rs)
        old_status = self.d["status"]
        deadline = _progress_deadline(self.d)
        if deadline is None:
            _remove_condition(new_status, "Progressing")
        current = _condition(old_status, "Progressing")
        complete_already = (
            _int(new_status.get("replicas"), 0) == _int(new_status.get("updatedReplicas"), 0)
            and current is not None
            and current.get("reason") == "NewReplicaSetAvailable"
        )
        subject = f'ReplicaSet "{_name(new_rs)}"' if new_rs is not None else f'Deployment "{_name(self.d)}"'
        if deadline is not None and not complete_already:
            if deployment_complete(self.d, new_status):
                _set_condition(
                    new_status,
                    _new_deployment_condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f"{subject} has successfully progressed.",
                        self.now,
                    ),
                )
            elif _made_progress(old_status, new_status):
                condition = _new_deployment_condition(
                    "Progressing", "True", "ReplicaSetUpdated", f"{subject} is progressing.", self.now
                )
                # Progress renews lastUpdateTime even when the reason stays the same: that is what the deadline
                # is measured from.
                if current is not None:
                    if current.get("status") == "True":
                        condition["lastTransitionTime"] = current.get("lastTransitionTime")
                    _remove_condition(new_status, "Progressing")
                _set_condition(new_status, condition)
            elif self.timed_out(new_status, deadline):
                _set_condition(
                    new_status,
                    _new_deployment_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f"{subject} has timed out progressing.",
                        self.now,
                    ),
                )
        failure = _replica_failure(all_rss, new_rs)
        if failure is not None:
            _set_condition(new_status, failure)
        else:
            _remove_condition(new_status, "ReplicaFailure")
        self.d["status"] = new_status

    def timed_out(self, status: Obj, deadline: int) -> bool:
        condition = _condition(status, "Progressing")
        if condition is None:
            return False
        if condition.get("reason") == "NewReplicaSetAvailable":
            return False
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return True
        since = parse_time(condition.get("lastUpdateTime"))
        return since is not None and since + deadline < self.now

    def check_paused_conditions(self) -> None:
        if _progress_deadline(self.d) is None:
            return
        status = self.d["status"]
        current = _condition(status, "Progressing")
        if current is not None and current.get("reason") == "ProgressDeadlineExceeded":
            return
        paused = bool(_spec(self.d).get("paused"))
        paused_recorded = current is not None and current.get("reason") == "DeploymentPaused"
        if paused and not paused_recorded:
            _set_condition(
                status,
                _new_deployment_condition(
                    "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", self.now
                ),
            )
        elif not paused and paused_recorded:
            _set_condition(
                status,
                _new_deployment_condition(
                    "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", self.now
                ),
            )

    # ---- strategies

    def sync_scaling(self, replicasets: list[Obj]) -> None:
        new_rs, old = self.split(replicasets, create=False)
        if self.stop:
            return
        self.proportional_scale(new_rs, old)
        if _spec(self.d).get("paused"):
            self.cleanup(old)
        self.sync_status([*old, *([new_rs] if new_rs is not None else [])], new_rs)

    def rollout_rolling(self, replicasets: list[Obj]) -> None:
        new_rs, old = self.split(replicasets, create=True)
        if self.stop or new_rs is None:
            return
        all_rss = [*old, new_rs]
        if self.reconcile_new_replicaset(all_rss, new_rs):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if self.reconcile_old_replicasets(all_rss, _active(old), new_rs):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if deployment_complete(self.d, _status(self.original)):
            self.cleanup(old)
        self.sync_rollout_status(all_rss, new_rs)

    def rollout_recreate(self, replicasets: list[Obj]) -> None:
        new_rs, old = self.split(replicasets, create=False)
        if self.stop:
            return
        all_rss = [*old, *([new_rs] if new_rs is not None else [])]
        scaled_down = False
        for rs in _active(old):
            if self.scale_and_record(rs, 0):
                scaled_down = True
        if scaled_down:
            self.sync_rollout_status(all_rss, new_rs)
            return
        # Pods of old ReplicaSets still exist (their status still counts them): wait before starting new ones.
        if any(_status_int(rs, "replicas") > 0 for rs in old):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old = self.split(replicasets, create=True)
            if self.stop or new_rs is None:
                return
            all_rss = [*old, new_rs]
        self.scale_and_record(new_rs, _deployment_replicas(self.d))
        if deployment_complete(self.d, _status(self.original)):
            self.cleanup(old)
        self.sync_rollout_status(all_rss, new_rs)


def _active(replicasets: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in replicasets if rs is not None and _rs_replicas(rs) > 0]


def _find_active_or_latest(new_rs: Obj | None, old: list[Obj]) -> Obj | None:
    if new_rs is None and not old:
        return None
    newest_first = sorted(old, key=lambda rs: (_created_at(rs), _name(rs)), reverse=True)
    active = _active([*newest_first, new_rs])
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def _is_saturated(deployment: Obj, replicaset: Obj | None) -> bool:
    if replicaset is None:
        return False
    desired_text = _annotations(replicaset).get(DESIRED_REPLICAS_ANNOTATION)
    if desired_text is None or str(_int(desired_text, -1)) != desired_text:
        return False
    replicas = _deployment_replicas(deployment)
    return (
        _rs_replicas(replicaset) == replicas
        and int(desired_text) == replicas
        and _status_int(replicaset, "availableReplicas") == replicas
    )


def _round_half_away(value: float) -> int:
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def _made_progress(old: Obj, new: Obj) -> bool:
    def count(status: Obj, key: str) -> int:
        return _int(status.get(key), 0)

    old_olds = count(old, "replicas") - count(old, "updatedReplicas")
    new_olds = count(new, "replicas") - count(new, "updatedReplicas")
    return (
        count(new, "updatedReplicas") > count(old, "updatedReplicas")
        or new_olds < old_olds
        or count(new, "readyReplicas") > count(old, "readyReplicas")
        or count(new, "availableReplicas") > count(old, "availableReplicas")
    )


def _replica_failure(all_rss: list[Obj], new_rs: Obj | None) -> Obj | None:
    """The first ReplicaFailure of the new ReplicaSet, else of an old one, as a Deployment condition."""
    ordered = ([new_rs] if new_rs is not None else []) + [rs for rs in all_rss if rs is not new_rs]
    for rs in ordered:
        for condition in _status(rs).get("conditions") or []:
            if condition.get("type") == "ReplicaFailure":
                stamp = condition.get("lastTransitionTime")
                return {
                    "type": "ReplicaFailure",
                    "status": condition.get("status", "True"),
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp,
                    "reason": condition.get("reason", ""),
                    "message": condition.get("message", ""),
                }
    return None


def reconcile_deployment(deployment: Obj, replicasets: list[Obj], now: float) -> list[Action]:
    """One sync of the deployment controller over the Deployment and the ReplicaSets it owns or may adopt."""
    sync = _DeploymentSync(deployment, now)
    if _selector_is_empty(_spec(deployment).get("selector")):
        sync.event(
            "Warning", "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required."
        )
        if _status_int(deployment, "observedGeneration") < _generation(deployment):
            sync.d["status"]["observedGeneration"] = _generation(deployment)
        return sync.actions([])
    owned, claim_actions = _claim(deployment, "apps/v1", "Deployment", replicasets)
    # Work on copies: the same dicts are mutated by scaling and then written once.
    working = [copy.deepcopy(rs) for rs in owned]
    if _is_being_deleted(deployment):
        new_rs, old = sync.split(working, create=False)
        sync.sync_status([*old, *([new_rs] if new_rs is not None else [])], new_rs)
        return sync.actions(claim_actions)
    sync.check_paused_conditions()
    if _spec(deployment).get("paused"):
        sync.sync_scaling(working)
    elif sync.is_scaling_event(working):
        sync.sync_scaling(working)
    elif not _is_rolling_update(deployment):
        sync.rollout_recreate(working)
    else:
        sync.rollout_rolling(working)
    # An adopted ReplicaSet that this sync also changed is written once, with both changes.
    written = {_name(rs) for rs in sync.touched}
    leading = [a for a in claim_actions if not (isinstance(a, Update) and _name(a.obj) in written)]
    for rs in sync.touched:
        if id(rs) not in sync.created_ids and not _controller_ref(rs):
            rs["metadata"]["ownerReferences"] = list(rs["metadata"].get("ownerReferences") or []) + [
                _owner_reference(deployment, "apps/v1", "Deployment")
            ]
    return sync.actions(leading)


# --------------------------------------------------------------------------------------------- ControllerRevisions


def revision_data(workload: Obj) -> Obj:
    """The data of a StatefulSet's or DaemonSet's ControllerRevision: its pod template, replacing on apply.

    Keys are sorted and the fields Go always serialises (template creationTimestamp, container resources) are
    present, so a server that writes this compactly produces the bytes `kubectl rollout undo` compares.
    """
    template = copy.deepcopy(_spec(workload).get("template") or {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    for key in ("containers", "initContainers"):
        for container in (template.get("spec") or {}).get(key) or []:
            container.setdefault("resources", {})
    template["$patch"] = "replace"
    data: Obj = _sorted_keys({"spec": {"template": template}})
    return data


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _template_of_revision(revision: Obj) -> Obj:
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def _same_revision_data(a: Any, b: Any) -> bool:
    return bool(_canonical(a) == _canonical(b))


def _revision_number(revision: Obj) -> int:
    return _int(revision.get("revision"), 0)


def _sorted_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    return sorted(revisions, key=lambda r: (_revision_number(r), _created_at(r), _name(r)))


def _new_revision(
    workload: Obj, kind: str, data: Obj, number: int, name: str, hash_label: str, copy_annotations: bool
) -> Obj:
    labels = dict(((_spec(workload).get("template") or {}).get("metadata") or {}).get("labels") or {})
    labels[CONTROLLER_REVISION_HASH_LABEL] = hash_label
    metadata: Obj = {"name": name, "labels": labels}
    if _namespace(workload):
        metadata["namespace"] = _namespace(workload)
    if copy_annotations and _annotations(workload):
        metadata["annotations"] = _annotations(workload)
    metadata["ownerReferences"] = [_owner_reference(workload, "apps/v1", kind)]
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": metadata,
        "data": data,
        "revision": number,
    }


def _revision_history_limit(workload: Obj) -> int:
    return _int(_spec(workload).get("revisionHistoryLimit"), 10)


# --------------------------------------------------------------------------------------------- StatefulSet

STATEFULSET_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _ordinal(set_name: str, pod: Obj) -> int | None:
    prefix = set_name + "-"
    name = _name(pod)
    if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
        return None
    return int(name[len(prefix) :])


def _running_and_ready(pod: Obj) -> bool:
    return _pod_phase(pod) == "Running" and pod_is_ready(pod)


def _running_and_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    return _pod_phase(pod) == "Running" and pod_is_available(pod, min_ready_seconds, now)


def _healthy(pod: Obj) -> bool:
    return _running_and_ready(pod) and not _is_being_deleted(pod)


def reconcile_statefulset(statefulset: Obj, pods: list[Obj], revisions: list[Obj], now: float) -> list[Action]:
    """One sync of the StatefulSet controller: revisions, ordered pods, rolling update from the top, status."""
    actions: list[Action] = []
    if _selector_is_empty(_spec(statefulset).get("selector")):
        return [
            RecordEvent(
                _object_ref(statefulset),
                "Warning",
                "SelectingAll",
                "This statefulset is selecting all pods. A non-empty selector is required.",
            )
        ]
    name = _name(statefulset)
    member_pods = [p for p in pods if _ordinal(name, p) is not None or _controller_ref(p) is not None]
    owned_pods, claim_actions = _claim(statefulset, "apps/v1", "StatefulSet", member_pods)
    owned_pods = [p for p in owned_pods if _ordinal(name, p) is not None]
    owned_revisions, revision_claims = _claim(statefulset, "apps/v1", "StatefulSet", revisions)
    actions.extend(claim_actions + revision_claims)
    owned_revisions = _sorted_revisions(owned_revisions)

    # Revisions: the update revision is the template now; an equal older one is reused with a new number.
    status = _status(statefulset)
    collision_count = _int(status.get("collisionCount"), 0)
    data = revision_data(statefulset)
    next_number = (_revision_number(owned_revisions[-1]) + 1) if owned_revisions else 1
    equal = [r for r in owned_revisions if _same_revision_data(r.get("data"), data)]
    if equal and equal[-1] is owned_revisions[-1]:
        update_revision = owned_revisions[-1]
    elif equal:
        update_revision = copy.deepcopy(equal[-1])
        update_revision["revision"] = next_number
        actions.append(Update(update_revision))
    else:
        existing_names = {_name(r) for r in owned_revisions}
        while True:
            hash_value = _stable_hash(data, collision_count)
            revision_name = f"{name[:223]}-{hash_value}"
            if revision_name not in existing_names:
                break
            # The name is taken by a different template: salt the hash with a higher collision count.
            collision_count += 1
        update_revision = _new_revision(
            statefulset, "StatefulSet", data, next_number, revision_name, revision_name, copy_annotations=True
        )
        update_revision["metadata"]["labels"][CONTROLLER_REVISION_HASH_LABEL] = hash_value
        actions.append(Create(update_revision))
    current_revision = next((r for r in owned_revisions if _name(r) == status.get("currentRevision")), update_revision)
    current_name, update_name = _name(current_revision), _name(update_revision)

    spec = _spec(statefulset)
    replicas = _int(spec.get("replicas"), 1)
    min_ready = _int(spec.get("minReadySeconds"), 0)
    strategy = spec.get("updateStrategy") or {}
    strategy_type = strategy.get("type") or "RollingUpdate"
    partition = _int((strategy.get("rollingUpdate") or {}).get("partition"), 0)
    monotonic = (spec.get("podManagementPolicy") or "OrderedReady") != "Parallel"
    start = _int((spec.get("ordinals") or {}).get("start"), 0)

    by_ordinal: dict[int, Obj] = {}
    condemned: list[Obj] = []
    for owned in owned_pods:
        ordinal = _ordinal(name, owned)
        assert ordinal is not None
        if start <= ordinal < start + replicas:
            by_ordinal[ordinal] = owned
        else:
            condemned.append(owned)
    condemned.sort(key=lambda p: -(_ordinal(name, p) or 0))

    def counts(pod_list: Iterable[Obj]) -> Obj:
        result = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0, "updatedReplicas": 0}
        for pod in pod_list:
            result["replicas"] += 1
            if _running_and_ready(pod):
                result["readyReplicas"] += 1
                if _running_and_available(pod, min_ready, now):
                    result["availableReplicas"] += 1
            if not _is_being_deleted(pod):
                pod_revision = _labels(pod).get(CONTROLLER_REVISION_HASH_LABEL)
                result["currentReplicas"] += pod_revision == current_name
                result["updatedReplicas"] += pod_revision == update_name
        return result

    counters = counts([*by_ordinal.values(), *condemned])
    current_deleted = 0
    first_unhealthy: Obj | None = next(
        (by_ordinal[o] for o in sorted(by_ordinal) if not _healthy(by_ordinal[o])),
        next((p for p in reversed(condemned) if not _healthy(p)), None),
    )
    taken_names = [_name(p) for p in pods]
    if not _is_being_deleted(statefulset):
        blocked = False
        for ordinal in range(start, start + replicas):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                below_partition = ordinal < start + partition
                if strategy_type == "RollingUpdate" and below_partition:
                    template, revision_name = _template_of_revision(current_revision), current_name
                else:
                    template, revision_name = spec.get("template") or {}, update_name
                pod_name = f"{name}-{ordinal}"
                if pod_name in taken_names:
                    # A pod of that name that is not ours (or still going away): wait for it.
                    blocked = monotonic
                else:
                    actions.extend(_create_stateful_pod(statefulset, template, revision_name, ordinal))
                if monotonic:
                    blocked = True
                    break
                continue
            if _pod_phase(pod) in ("Failed", "Succeeded"):
                if not _is_being_deleted(pod):
                    actions.append(Delete("v1", "Pod", _namespace(pod), _name(pod)))
                    actions.append(
                        RecordEvent(
                            _object_ref(statefulset),
                            "Normal",
                            "SuccessfulDelete",
                            f"delete Pod {_name(pod)} in StatefulSet {name} successful",
                        )
                    )
                blocked = True
                break
            if monotonic and (
                _is_being_deleted(pod) or not _running_and_ready(pod) or not _running_and_available(pod, min_ready, now)
            ):
                blocked = True
                break
            fixed = _stateful_identity_fix(statefulset, pod, ordinal)
            if fixed is not None:
                actions.append(Update(fixed))
        if not blocked:
            for doomed in condemned:
                if _is_being_deleted(doomed):
                    if monotonic:
                        blocked = True
                        break
                    continue
                if monotonic and doomed is not first_unhealthy and not _running_and_available(doomed, min_ready, now):
                    blocked = True
                    break
                actions.append(Delete("v1", "Pod", _namespace(doomed), _name(doomed)))
                actions.append(
                    RecordEvent(
                        _object_ref(statefulset),
                        "Normal",
                        "SuccessfulDelete",
                        f"delete Pod {_name(doomed)} in StatefulSet {name} successful",
                    )
                )
                if monotonic:
                    blocked = True
                    break
        if not blocked and strategy_type == "RollingUpdate":
            for ordinal in range(start + replicas - 1, start + partition - 1, -1):
                pod = by_ordinal.get(ordinal)
                if pod is None:
                    break
                if _labels(pod).get(CONTROLLER_REVISION_HASH_LABEL) != update_name and not _is_being_deleted(pod):
                    actions.append(Delete("v1", "Pod", _namespace(pod), _name(pod)))
                    actions.append(
                        RecordEvent(
                            _object_ref(statefulset),
                            "Normal",
                            "SuccessfulDelete",
                            f"delete Pod {_name(pod)} in StatefulSet {name} successful",
                        )
                    )
                    current_deleted = 1
                    break
                if not _healthy(pod):
                    break

    new_status: Obj = {}
    if _generation(statefulset):
        new_status["observedGeneration"] = _generation(statefulset)
    new_status["replicas"] = counters["replicas"]
    for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
        value = counters[key] - (current_deleted if key == "currentReplicas" else 0)
        if value:
            new_status[key] = value
    new_status["availableReplicas"] = counters["availableReplicas"]
    new_status["currentRevision"] = current_name
    new_status["updateRevision"] = update_name
    new_status["collisionCount"] = collision_count
    if (
        strategy_type == "RollingUpdate"
        and counters["updatedReplicas"] == counters["replicas"]
        and counters["readyReplicas"] == counters["replicas"]
    ):
        # Every pod runs the update revision and is ready: that revision becomes the current one.
        new_status["currentRevision"] = update_name
        if counters["updatedReplicas"]:
            new_status["currentReplicas"] = counters["updatedReplicas"]
        else:
            new_status.pop("currentReplicas", None)
    if status.get("conditions"):
        new_status["conditions"] = copy.deepcopy(status["conditions"])
    if new_status != status:
        updated = copy.deepcopy(statefulset)
        updated["status"] = new_status
        actions.append(UpdateStatus(updated))

    # History: keep revisionHistoryLimit revisions that no pod and neither status revision uses.
    live = {
        new_status["currentRevision"],
        update_name,
        *(_labels(p).get(CONTROLLER_REVISION_HASH_LABEL) for p in owned_pods),
    }
    history = [r for r in owned_revisions if _name(r) not in live]
    excess = len(history) - _revision_history_limit(statefulset)
    for revision in history[: max(excess, 0)]:
        actions.append(Delete("apps/v1", "ControllerRevision", _namespace(revision), _name(revision)))
    return actions


def _create_stateful_pod(statefulset: Obj, template: Obj, revision_name: str, ordinal: int) -> list[Action]:
    name = f"{_name(statefulset)}-{ordinal}"
    pod = _pod_from_template(template, statefulset, "apps/v1", "StatefulSet", name)
    del pod["metadata"]["generateName"]
    labels = pod["metadata"].setdefault("labels", {})
    labels[STATEFULSET_POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[CONTROLLER_REVISION_HASH_LABEL] = revision_name
    pod["spec"]["hostname"] = name
    service_name = _spec(statefulset).get("serviceName")
    if service_name:
        pod["spec"]["subdomain"] = service_name
    message = f"create Pod {name} in StatefulSet {_name(statefulset)} successful"
    return [Create(pod), RecordEvent(_object_ref(statefulset), "Normal", "SuccessfulCreate", message)]


def _stateful_identity_fix(statefulset: Obj, pod: Obj, ordinal: int) -> Obj | None:
    """A pod that lost its identity labels or hostname gets them back (the real controller's invariant)."""
    name = f"{_name(statefulset)}-{ordinal}"
    labels = _labels(pod)
    wanted = {STATEFULSET_POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)}
    if all(labels.get(k) == v for k, v in wanted.items()) and _spec(pod).get("hostname", name) == name:
        return None
    fixed = copy.deepcopy(pod)
    fixed["metadata"]["labels"] = {**labels, **wanted}
    fixed.setdefault("spec", {})["hostname"] = name
    return fixed


# --------------------------------------------------------------------------------------------- nodes and taints

# Tolerations the DaemonSet controller adds to its pods, so daemons survive node trouble and cordons.
_DAEMON_TOLERATIONS: list[Obj] = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _node_taints(node: Obj) -> list[Obj]:
    taints = [dict(t) for t in _spec(node).get("taints") or []]
    if _spec(node).get("unschedulable") and not any(t.get("key") == "node.kubernetes.io/unschedulable" for t in taints):
        # A cordoned node carries this taint in a real cluster (the node lifecycle controller adds it).
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    return taints


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        if key and key != taint.get("key"):
            continue
        if not key and operator != "Exists":
            continue
        if operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _untolerated_taint(pod_spec: Obj, node: Obj, effects: tuple[str, ...]) -> Obj | None:
    tolerations = list(pod_spec.get("tolerations") or [])
    for taint in _node_taints(node):
        if taint.get("effect") in effects and not _tolerates(tolerations, taint):
            return taint
    return None


def _node_requirement_matches(requirement: Obj, values_of: Mapping[str, str]) -> bool:
    key = requirement.get("key", "")
    operator = requirement.get("operator", "")
    values = [str(v) for v in requirement.get("values") or []]
    present = key in values_of
    if operator == "In":
        return present and values_of[key] in values
    if operator == "NotIn":
        return not present or values_of[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            actual, bound = int(values_of[key]), int(values[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def _fits_node_selection(pod_spec: Obj, node: Obj) -> bool:
    """nodeName, nodeSelector and required node affinity (matchExpressions on labels, matchFields on name)."""
    if pod_spec.get("nodeName") and pod_spec.get("nodeName") != _name(node):
        return False
    node_labels = _labels(node)
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if node_labels.get(key) != value:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": _name(node)}
    for term in terms:
        expressions = term.get("matchExpressions") or []
        match_fields = term.get("matchFields") or []
        if not expressions and not match_fields:
            continue
        if all(_node_requirement_matches(r, node_labels) for r in expressions) and all(
            _node_requirement_matches(r, fields) for r in match_fields
        ):
            return True
    return False


# --------------------------------------------------------------------------------------------- DaemonSet


def _daemon_pod_spec(daemonset: Obj, node_name: str) -> Obj:
    """The template's pod spec as it would land on one node: pinned by node affinity, daemon tolerations added."""
    pod_spec = copy.deepcopy((_spec(daemonset).get("template") or {}).get("spec") or {})
    affinity = pod_spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
    }
    tolerations = list(pod_spec.get("tolerations") or [])
    for toleration in _DAEMON_TOLERATIONS:
        if not any(t.get("key") == toleration["key"] and t.get("effect") == toleration["effect"] for t in tolerations):
            tolerations.append(dict(toleration))
    if pod_spec.get("hostNetwork"):
        network = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}
        if not any(t.get("key") == network["key"] for t in tolerations):
            tolerations.append(network)
    pod_spec["tolerations"] = tolerations
    return pod_spec


def _node_should_run_daemon(daemonset: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run, should keep running) for the daemon pod on this node."""
    template_spec = (_spec(daemonset).get("template") or {}).get("spec") or {}
    if template_spec.get("nodeName") and template_spec.get("nodeName") != _name(node):
        return False, False
    pod_spec = _daemon_pod_spec(daemonset, _name(node))
    if not _fits_node_selection({**template_spec, "affinity": template_spec.get("affinity")}, node):
        return False, False
    if _untolerated_taint(pod_spec, node, ("NoSchedule", "NoExecute")) is not None:
        return False, _untolerated_taint(pod_spec, node, ("NoExecute",)) is None
    return True, True


def _target_node(pod: Obj) -> str:
    """The node a daemon pod is bound to, or pinned to by its node affinity while unscheduled."""
    node_name = _spec(pod).get("nodeName")
    if node_name:
        return str(node_name)
    required = ((_spec(pod).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field_requirement in term.get("matchFields") or []:
            values = field_requirement.get("values") or []
            if (
                field_requirement.get("key") == "metadata.name"
                and field_requirement.get("operator") == "In"
                and len(values) == 1
            ):
                return str(values[0])
    return ""


def reconcile_daemonset(
    daemonset: Obj, pods: list[Obj], revisions: list[Obj], nodes: list[Obj], now: float
) -> list[Action]:
    """One sync of the DaemonSet controller: history, one pod per eligible node, rolling update, status."""
    involved = _object_ref(daemonset)
    if _selector_is_empty(_spec(daemonset).get("selector")):
        return [
            RecordEvent(
                involved,
                "Warning",
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            )
        ]
    actions: list[Action] = []
    owned_pods, pod_claims = _claim(daemonset, "apps/v1", "DaemonSet", pods)
    owned_revisions, revision_claims = _claim(daemonset, "apps/v1", "DaemonSet", revisions)
    actions.extend(pod_claims + revision_claims)
    status = _status(daemonset)
    spec = _spec(daemonset)
    min_ready = _int(spec.get("minReadySeconds"), 0)

    # History: the revision equal to the template now is current; the others are old.
    data = revision_data(daemonset)
    current = [r for r in owned_revisions if _same_revision_data(r.get("data"), data)]
    old = [r for r in owned_revisions if not _same_revision_data(r.get("data"), data)]
    next_number = max((_revision_number(r) for r in old), default=0) + 1
    template = spec.get("template") or {}
    if current:
        current_revision = max(current, key=_revision_number)
        pod_hash = _labels(current_revision).get(CONTROLLER_REVISION_HASH_LABEL) or _name(current_revision)
        if _revision_number(current_revision) < next_number:
            renumbered = copy.deepcopy(current_revision)
            renumbered["revision"] = next_number
            actions.append(Update(renumbered))
    else:
        collision_count = status.get("collisionCount")
        pod_hash = template_hash(template, _int(collision_count, 0) if collision_count is not None else None)
        revision_name = f"{_name(daemonset)}-{pod_hash}"
        if any(_name(r) == revision_name for r in owned_revisions):
            # A different template already has this name: count the collision; the next sync uses a new name.
            bumped = copy.deepcopy(daemonset)
            bumped.setdefault("status", {})["collisionCount"] = _int(collision_count, 0) + 1
            return [*actions, UpdateStatus(bumped)]
        actions.append(
            Create(
                _new_revision(daemonset, "DaemonSet", data, next_number, revision_name, pod_hash, copy_annotations=True)
            )
        )

    by_node: dict[str, list[Obj]] = {}
    for pod in owned_pods:
        if _is_being_deleted(pod) and _pod_phase(pod) in ("Succeeded", "Failed"):
            continue
        by_node.setdefault(_target_node(pod), []).append(pod)
    node_names = {_name(n) for n in nodes}

    to_delete: list[Obj] = []
    needs_pod: list[str] = []
    if not _is_being_deleted(daemonset):
        for node in nodes:
            should_run, keep_running = _node_should_run_daemon(daemonset, node)
            on_node = by_node.get(_name(node), [])
            if should_run and not on_node:
                needs_pod.append(_name(node))
            elif keep_running:
                running: list[Obj] = []
                for pod in on_node:
                    if _is_being_deleted(pod):
                        continue
                    if _pod_phase(pod) == "Failed":
                        message = (
                            f"Found failed daemon pod {_namespace(pod)}/{_name(pod)} on node {_name(node)}, "
                            "will try to kill it"
                        )
                        actions.append(RecordEvent(involved, "Warning", "FailedDaemonPod", message))
                        to_delete.append(pod)
                    elif _pod_phase(pod) == "Succeeded":
                        to_delete.append(pod)
                    else:
                        running.append(pod)
                # One daemon per node: the oldest stays.
                running.sort(key=lambda p: (_created_at(p), _name(p)))
                to_delete.extend(running[1:])
            elif on_node:
                to_delete.extend(p for p in on_node if not _is_being_deleted(p))
        for node_name, on_node in by_node.items():
            if node_name not in node_names:
                # Pinned to a node that no longer exists: it would never be scheduled.
                to_delete.extend(p for p in on_node if not _spec(p).get("nodeName") and not _is_being_deleted(p))

    taken = [_name(p) for p in pods]
    seed = f"{_uid(daemonset) or _name(daemonset)}/{now}"
    new_names = _fresh_pod_names(_name(daemonset) + "-", seed, taken, len(needs_pod))
    for node_name, pod_name in zip(needs_pod, new_names, strict=True):
        pod = _pod_from_template(template, daemonset, "apps/v1", "DaemonSet", pod_name)
        pod["metadata"].setdefault("labels", {})[CONTROLLER_REVISION_HASH_LABEL] = pod_hash
        pod["spec"] = _daemon_pod_spec(daemonset, node_name)
        actions.append(Create(pod))
        actions.append(RecordEvent(involved, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}"))
    for pod in to_delete:
        actions.append(Delete("v1", "Pod", _namespace(pod), _name(pod)))
        actions.append(RecordEvent(involved, "Normal", "SuccessfulDelete", f"Deleted pod: {_name(pod)}"))

    desired = sum(1 for node in nodes if _node_should_run_daemon(daemonset, node)[0])
    strategy = spec.get("updateStrategy") or {}
    # A sync that created or deleted pods waits for them before it replaces any (the real expectations).
    if (
        not needs_pod
        and not to_delete
        and not _is_being_deleted(daemonset)
        and (strategy.get("type") or "RollingUpdate") == "RollingUpdate"
    ):
        rolling = strategy.get("rollingUpdate") or {}
        unavailable_budget = _scaled_value(rolling.get("maxUnavailable", 1), desired, round_up=True)
        surge = _scaled_value(rolling.get("maxSurge", 0), desired, round_up=True)
        if unavailable_budget == 0 and surge == 0:
            unavailable_budget = 1
        unavailable = 0
        must_replace: list[Obj] = []
        candidates: list[Obj] = []
        for node_name in sorted(by_node):
            live = [p for p in by_node[node_name] if not _is_being_deleted(p)]
            new = [p for p in live if _labels(p).get(CONTROLLER_REVISION_HASH_LABEL) == pod_hash]
            outdated = [p for p in live if _labels(p).get(CONTROLLER_REVISION_HASH_LABEL) != pod_hash]
            if len(new) > 1 or len(outdated) > 1 or (new and outdated) or not live:
                unavailable += 1
            elif new:
                if not pod_is_available(new[0], min_ready, now):
                    unavailable += 1
            elif not pod_is_available(outdated[0], min_ready, now):
                must_replace.append(outdated[0])
            elif unavailable < unavailable_budget:
                candidates.append(outdated[0])
        room = max(min(unavailable_budget - unavailable, len(candidates)), 0)
        for pod in [*must_replace, *candidates[:room]]:
            actions.append(Delete("v1", "Pod", _namespace(pod), _name(pod)))
            actions.append(RecordEvent(involved, "Normal", "SuccessfulDelete", f"Deleted pod: {_name(pod)}"))

    # Old history beyond revisionHistoryLimit goes, oldest first, unless a pod still runs it.
    live_hashes = {_labels(p).get(CONTROLLER_REVISION_HASH_LABEL) for p in owned_pods}
    excess = len(old) - _revision_history_limit(daemonset)
    for revision in _sorted_revisions(old):
        if excess <= 0:
            break
        if _labels(revision).get(CONTROLLER_REVISION_HASH_LABEL) in live_hashes:
            continue
        actions.append(Delete("apps/v1", "ControllerRevision", _namespace(revision), _name(revision)))
        excess -= 1

    counters = {"desired": 0, "current": 0, "misscheduled": 0, "ready": 0, "updated": 0, "available": 0}
    for node in nodes:
        should_run, _ = _node_should_run_daemon(daemonset, node)
        on_node = by_node.get(_name(node), [])
        if not should_run:
            counters["misscheduled"] += bool(on_node)
            continue
        counters["desired"] += 1
        if not on_node:
            continue
        counters["current"] += 1
        oldest = sorted(on_node, key=lambda p: (_created_at(p), _name(p)))[0]
        if pod_is_ready(oldest):
            counters["ready"] += 1
            counters["available"] += pod_is_available(oldest, min_ready, now)
        counters["updated"] += _labels(oldest).get(CONTROLLER_REVISION_HASH_LABEL) == pod_hash
    new_status: Obj = {
        "currentNumberScheduled": counters["current"],
        "numberMisscheduled": counters["misscheduled"],
        "desiredNumberScheduled": counters["desired"],
        "numberReady": counters["ready"],
    }
    optional = {
        "observedGeneration": _generation(daemonset),
        "updatedNumberScheduled": counters["updated"],
        "numberAvailable": counters["available"],
        "numberUnavailable": counters["desired"] - counters["available"],
    }
    new_status.update({k: v for k, v in optional.items() if v})
    if status.get("collisionCount") is not None:
        new_status["collisionCount"] = status["collisionCount"]
    if status.get("conditions"):
        new_status["conditions"] = copy.deepcopy(status["conditions"])
    if new_status != status:
        updated = copy.deepcopy(daemonset)
        updated["status"] = new_status
        actions.append(UpdateStatus(updated))
    return actions


# --------------------------------------------------------------------------------------------- Job

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
_JOB_BACKOFF_BASE_SECONDS = 10
_JOB_BACKOFF_MAX_SECONDS = 360


def _job_condition(condition_type: str, reason: str, message: str, now: float) -> Obj:
    stamp = format_time(now)
    return {
        "type": condition_type,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _has_true_condition(obj: Obj, condition_type: str) -> bool:
    return any(
        c.get("type") == condition_type and c.get("status") == "True" for c in _status(obj).get("conditions") or []
    )


def _finished_at(pod: Obj) -> float:
    latest = None
    for container in _status(pod).get("containerStatuses") or []:
        finished = parse_time(((container.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (latest is None or finished > latest):
            latest = finished
    if latest is None:
        latest = parse_time((_pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return latest if latest is not None else _created_at(pod)


def _expire_finished_job(job: Obj, now: float) -> list[Action]:
    """The TTL-after-finished controller's part: a finished Job with ``spec.ttlSecondsAfterFinished`` is deleted
    that long after its Complete or Failed condition came (its pods go with it, by garbage collection).

    The real controller deletes with Foreground propagation; the caller's default (Background) removes the Job
    at once instead of after its pods, which a client watching the Job sees the same way: it is gone.
    """
    ttl = _spec(job).get("ttlSecondsAfterFinished")
    if ttl is None or _is_being_deleted(job):
        return []
    finished = [
        parse_time(c.get("lastTransitionTime"))
        for c in _status(job).get("conditions") or []
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
    ]
    finished_at = max((f for f in finished if f is not None), default=None)
    if finished_at is None or now < finished_at + _int(ttl, 0):
        return []
    return [Delete("batch/v1", "Job", _namespace(job), _name(job))]


def reconcile_job(job: Obj, pods: list[Obj], now: float) -> list[Action]:
    """One sync of the Job controller (NonIndexed): pods until completions, back-off, Complete or Failed."""
    involved = _object_ref(job)
    status = _status(job)
    if _has_true_condition(job, "Complete") or _has_true_condition(job, "Failed"):
        return _expire_finished_job(job, now)
    owned, actions = _claim(job, "batch/v1", "Job", pods)
    spec = _spec(job)
    parallelism = _int(spec.get("parallelism"), 1)
    completions = spec.get("completions", 1)
    completions = None if completions is None else _int(completions, 1)
    backoff_limit = _int(spec.get("backoffLimit"), 6)
    restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") or "Never"

    active = [p for p in owned if _pod_is_active(p)]
    succeeded_pods = [p for p in owned if _pod_phase(p) == "Succeeded"]
    # The real isPodFailed: unless the Job replaces only Failed pods (podReplacementPolicy Failed, or a
    # podFailurePolicy), a pod being deleted that did not succeed counts as failed, because it may never reach
    # a terminal phase; counting it is what releases its tracking finalizer, so it does not hang in Terminating.
    only_failed = spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None
    failed_pods = [
        p
        for p in owned
        if _pod_phase(p) == "Failed" or (not only_failed and _is_being_deleted(p) and _pod_phase(p) != "Succeeded")
    ]
    terminating = [p for p in owned if _is_being_deleted(p) and _pod_phase(p) not in ("Succeeded", "Failed")]
    # Finished pods may be deleted by someone else; what was counted stays counted.
    succeeded = max(_int(status.get("succeeded"), 0), len(succeeded_pods))
    failed = max(_int(status.get("failed"), 0), len(failed_pods))
    ready = sum(1 for p in active if pod_is_ready(p))

    new_status = copy.deepcopy(status)
    if not spec.get("suspend"):
        new_status.setdefault("startTime", format_time(now))
    conditions: list[Obj] = list(new_status.get("conditions") or [])

    def add_condition(condition: Obj) -> None:
        if not any(c.get("type") == condition["type"] for c in conditions):
            conditions.append(condition)

    # A verdict already given stands (the real controller turns an existing SuccessCriteriaMet into Complete and
    # FailureTarget into Failed): once the Job's pods are gone, recounting them must not start it over.
    success_met = _has_true_condition(job, "SuccessCriteriaMet")
    target = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "FailureTarget" and c.get("status") == "True"),
        None,
    )
    failure: tuple[str, str] | None = None
    if success_met:
        pass
    elif target is not None:
        failure = (str(target.get("reason") or ""), str(target.get("message") or ""))
    elif failed > backoff_limit:
        failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    elif restart_policy == "OnFailure" and backoff_limit >= 0:
        restarts = sum(
            _int(c.get("restartCount"), 0)
            for p in active
            for c in (_status(p).get("containerStatuses") or []) + (_status(p).get("initContainerStatuses") or [])
        )
        if backoff_limit == 0 and restarts > 0 or backoff_limit > 0 and restarts >= backoff_limit:
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    started = parse_time(new_status.get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    if (
        failure is None
        and not success_met
        and deadline is not None
        and started is not None
        and now - started >= _int(deadline, 0)
    ):
        failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
    complete = (
        success_met
        or (completions is not None and succeeded >= completions)
        or (completions is None and succeeded > 0 and not active)
    )

    to_delete: list[Obj] = []
    to_create = 0
    if failure is not None:
        # First the verdict (FailureTarget), then the pods go, then the terminal condition.
        if not any(c.get("type") == "FailureTarget" for c in conditions):
            actions.append(RecordEvent(involved, "Warning", failure[0], failure[1]))
        add_condition(_job_condition("FailureTarget", failure[0], failure[1], now))
        to_delete = active
        # The terminal condition waits until no pod of the Job is still running or terminating.
        if not active and not terminating:
            add_condition(_job_condition("Failed", failure[0], failure[1], now))
    elif complete:
        reached = ("CompletionsReached", "Reached expected number of succeeded pods")
        add_condition(_job_condition("SuccessCriteriaMet", *reached, now))
        to_delete = active
        if not active and not terminating:
            add_condition(_job_condition("Complete", *reached, now))
            new_status["completionTime"] = format_time(now)
            actions.append(RecordEvent(involved, "Normal", "Completed", "Job completed"))
    elif spec.get("suspend"):
        to_delete = active
    else:
        if completions is None:
            wanted = len(active) if succeeded > 0 else parallelism
        else:
            wanted = max(min(parallelism, completions - succeeded), 0)
        if len(active) > wanted:
            to_delete = _pods_to_delete(active, len(active) - wanted)
        elif len(active) < wanted:
            # After failures the controller waits 10s, 20s, 40s... (capped at 6 minutes) before replacing pods.
            delay = 0.0
            if failed_pods:
                delay = min(_JOB_BACKOFF_BASE_SECONDS * 2 ** (len(failed_pods) - 1), _JOB_BACKOFF_MAX_SECONDS)
            last_failure = max((_finished_at(p) for p in failed_pods), default=0.0)
            if now >= last_failure + delay:
                to_create = wanted - len(active)

    template = spec.get("template") or {}
    seed = f"{_uid(job) or _name(job)}/{now}"
    for name in _fresh_pod_names(_name(job) + "-", seed, [_name(p) for p in pods], to_create):
        pod = _pod_from_template(template, job, "batch/v1", "Job", name)
        pod["metadata"]["finalizers"] = [*pod["metadata"].get("finalizers", []), JOB_TRACKING_FINALIZER]
        actions.append(Create(pod))
        actions.append(RecordEvent(involved, "Normal", "SuccessfulCreate", f"Created pod: {name}"))
    for pod in to_delete:
        actions.append(Delete("v1", "Pod", _namespace(pod), _name(pod)))
        actions.append(RecordEvent(involved, "Normal", "SuccessfulDelete", f"Deleted pod: {_name(pod)}"))
    # Counted pods no longer need the tracking finalizer.
    for pod in [*succeeded_pods, *failed_pods]:
        finalizers = _metadata(pod).get("finalizers") or []
        if JOB_TRACKING_FINALIZER in finalizers:
            released = copy.deepcopy(pod)
            released["metadata"]["finalizers"] = [f for f in finalizers if f != JOB_TRACKING_FINALIZER]
            actions.append(Update(released))

    active_after = len(active) - len(to_delete)
    for key, value in (("active", active_after), ("succeeded", succeeded), ("failed", failed)):
        if value:
            new_status[key] = value
        else:
            new_status.pop(key, None)
    new_status["ready"] = ready
    new_status["terminating"] = len(terminating) + len(to_delete)
    new_status.setdefault("uncountedTerminatedPods", {})
    if conditions:
        new_status["conditions"] = conditions
    if new_status != status:
        updated = copy.deepcopy(job)
        updated["status"] = new_status
        actions.append(UpdateStatus(updated))
    return actions


# --------------------------------------------------------------------------------------------- scheduler

_QUANTITY_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(value: Any) -> float:
    """A resource.Quantity ("500m", "128Mi", "1.5", "2e3") as a number of base units."""
    text = str(value).strip()
    for suffix in sorted(_QUANTITY_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)]:
            try:
                return float(text[: -len(suffix)]) * _QUANTITY_SUFFIXES[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        return 0.0


def _pod_requests(pod_spec: Obj) -> dict[str, float]:
    totals: dict[str, float] = {}
    for container in pod_spec.get("containers") or []:
        for resource, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            totals[resource] = totals.get(resource, 0.0) + parse_quantity(quantity)
    # An init container runs alone, so the pod needs the larger of it and the sum of the app containers.
    for container in pod_spec.get("initContainers") or []:
        for resource, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            totals[resource] = max(totals.get(resource, 0.0), parse_quantity(quantity))
    return totals


def schedule_pod(pod: Obj, nodes: list[Obj], now: float | None = None) -> list[Action]:
    """The scheduler's decision for one pending pod: bind it to a fitting node, or say why none fits.

    Binding is an `Update` of the pod with `spec.nodeName` set and a PodScheduled=True condition (what the
    real pods/binding subresource does in one write), plus a Scheduled event. A pod that fits nowhere gets
    PodScheduled=False/Unschedulable and one FailedScheduling event; an unchanged verdict writes nothing.
    Resource requests are checked against each node's allocatable only (pods already there are not counted).
    """
    spec = _spec(pod)
    if spec.get("nodeName") or _is_being_deleted(pod) or _pod_phase(pod) in ("Succeeded", "Failed"):
        return []
    scheduler_name = spec.get("schedulerName") or "default-scheduler"
    if scheduler_name != "default-scheduler":
        return []
    stamp = format_time(now) if now is not None else None
    involved = _object_ref(pod)
    reasons: dict[str, int] = {}

    def reject(reason: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1

    requests = _pod_requests(spec)
    feasible: list[Obj] = []
    for node in nodes:
        if not _fits_node_selection(spec, node):
            reject("node(s) didn't match Pod's node affinity/selector")
            continue
        if _spec(node).get("unschedulable") and not _tolerates(
            list(spec.get("tolerations") or []), {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
        ):
            reject("node(s) were unschedulable")
            continue
        taint = _untolerated_taint(spec, node, ("NoSchedule", "NoExecute"))
        if taint is not None:
            reject(f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}")
            continue
        allocatable = _status(node).get("allocatable") or {}
        short = [
            resource
            for resource, wanted in sorted(requests.items())
            if resource in allocatable and wanted > parse_quantity(allocatable[resource])
        ]
        if short:
            for resource in short:
                reject(f"Insufficient {resource}")
            continue
        feasible.append(node)

    if feasible:
        # Spread pods deterministically over the nodes that fit.
        chosen = feasible[_fnv32a(f"{_namespace(pod)}/{_name(pod)}/{_uid(pod)}".encode()) % len(feasible)]
        bound = copy.deepcopy(pod)
        bound.setdefault("spec", {})["nodeName"] = _name(chosen)
        scheduled: Obj = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        status = bound.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            scheduled
        ]
        message = f"Successfully assigned {_namespace(pod) or 'default'}/{_name(pod)} to {_name(chosen)}"
        return [Update(bound), RecordEvent(involved, "Normal", "Scheduled", message)]

    if not nodes:
        message = "no nodes available to schedule pods"
    else:
        summary = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
        message = (
            f"0/{len(nodes)} nodes are available: {summary}. preemption: 0/{len(nodes)} nodes are available: "
            f"{len(nodes)} Preemption is not helpful for scheduling."
        )
    current = _pod_condition(pod, "PodScheduled")
    if (
        current is not None
        and current.get("status") == "False"
        and current.get("reason") == "Unschedulable"
        and current.get("message") == message
    ):
        return []
    unschedulable = copy.deepcopy(pod)
    status = unschedulable.setdefault("status", {})
    status.setdefault("phase", "Pending")
    condition: Obj = {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": (current or {}).get("lastTransitionTime")
        if current is not None and current.get("status") == "False"
        else stamp,
        "reason": "Unschedulable",
        "message": message,
    }
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [condition]
    return [UpdateStatus(unschedulable), RecordEvent(involved, "Warning", "FailedScheduling", message)]
