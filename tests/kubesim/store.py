"""The simulator's etcd and registry: objects, resourceVersions, watch history and garbage collection.

It owns every stored object (plain dicts, never mutated once stored: each write stores a new dict, so
readers and the watch history can share them), the global monotonic resourceVersion, the write pipeline
of the API server (defaulting, validation, generation, managedFields, preconditions, dryRun), the
ownerReference cascade on delete, and the event log watchers read from. It must not speak HTTP (the
server does) nor decide what controllers do (controllers.py does); it only tells listeners what changed.

Public calls take (api_version, kind) or an object; results are copies the caller may change.
"""

from __future__ import annotations

import bisect
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import statuses
from .admission import Cause, apply_defaults, validation_causes
from .applying import (
    ApplyConflictError,
    describe_path,
    managed_fields_problems,
    record_update,
    server_side_apply,
)
from .clock import SimClock
from .patches import PatchError, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from .resources import RESOURCE_TYPES, ResourceType, resource_for_kind
from .selectors import FieldRequirement, Requirement, fields_match, labels_match
from .statuses import ApiError

Obj = dict[str, Any]
_T = TypeVar("_T")
ObjectKey = tuple[ResourceType, str, str]  # (type, namespace or "", name)
ChangeListener = Callable[[str, ResourceType, "Obj | None", "Obj | None", str], None]

_GENERATION_KINDS = {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Ingress"}
_BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_EVENT_COMPONENTS = {
    "Deployment": "deployment-controller",
    "ReplicaSet": "replicaset-controller",
    "StatefulSet": "statefulset-controller",
    "DaemonSet": "daemonset-controller",
    "Job": "job-controller",
}

PATCH_JSON = "application/json-patch+json"
PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"


def clone(value: _T) -> _T:
    """A deep copy of JSON-shaped data (faster than copy.deepcopy for it)."""
    copied: _T = json.loads(json.dumps(value))
    return copied


@dataclass
class WatchEvent:
    """One change in the history: the object before (None on create) and after (None on delete)."""

    rv: int
    rtype: ResourceType
    namespace: str
    old: Obj | None
    new: Obj | None
    deleted_snapshot: Obj | None = None  # the object as DELETED events carry it (rv of the deletion)


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def _same_content(a: Obj, b: Obj) -> bool:
    """Equal apart from the bookkeeping a no-op write would change."""

    def strip(o: Obj) -> Obj:
        meta = {k: v for k, v in (o.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
        return {**o, "metadata": meta}

    return strip(a) == strip(b)


def _without_times(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    return [{k: v for k, v in e.items() if k != "time"} for e in entries if isinstance(e, dict)]


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class ObjectStore:
    """Thread-safe object store; one lock guards objects, history and indexes."""

    def __init__(self, clock: SimClock, history_limit: int = 50_000) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[ResourceType, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCE_TYPES}
        self._rv = 0
        self._history: list[WatchEvent] = []
        self._history_rvs: list[int] = []
        self._history_limit = history_limit
        self._oldest_servable_rv = 0  # a watch may resume from any rv >= this
        self._children: dict[str, set[ObjectKey]] = {}
        self._uids: set[str] = set()
        # Objects without a controller ownerReference, by type and namespace: what controllers may adopt.
        self._orphans: dict[ResourceType, dict[str, set[str]]] = {r: {} for r in RESOURCE_TYPES}
        self._listeners: list[ChangeListener] = []
        self._event_index: dict[tuple[str, str, str, str, str], str] = {}
        self._event_serial = 0
        self._next_cluster_ip = 10
        self.closed = False
        for name in _BUILTIN_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ------------------------------------------------------------ listeners and history

    def add_listener(self, listener: ChangeListener) -> None:
        """``listener(event_type, rtype, old, new, subresource)`` runs under the store lock: keep it tiny."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def _record(
        self,
        event_type: str,
        rtype: ResourceType,
        namespace: str,
        old: Obj | None,
        new: Obj | None,
        subresource: str = "",
        deleted_snapshot: Obj | None = None,
    ) -> None:
        event = WatchEvent(self._rv, rtype, namespace, old, new, deleted_snapshot)
        self._history.append(event)
        self._history_rvs.append(self._rv)
        if len(self._history) > self._history_limit:
            drop = len(self._history) - self._history_limit // 2
            self._oldest_servable_rv = self._history_rvs[drop - 1]
            del self._history[:drop]
            del self._history_rvs[:drop]
        for listener in self._listeners:
            listener(event_type, rtype, old, new, subresource)
        self._changed.notify_all()

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: watches from older versions get 410 Gone."""
        with self._lock:
            self._oldest_servable_rv = self._rv
            self._history.clear()
            self._history_rvs.clear()

    def wait_for_events(self, after_rv: int, timeout: float) -> list[WatchEvent]:
        """Events with rv > ``after_rv``, waiting up to ``timeout`` for the first; raises 410 Gone if too old."""
        with self._lock:
            if after_rv < self._oldest_servable_rv:
                raise statuses.gone(f"too old resource version: {after_rv} ({self._oldest_servable_rv + 1})")
            if self._rv <= after_rv and not self.closed:
                self._changed.wait(timeout)
            if after_rv < self._oldest_servable_rv:
                raise statuses.gone(f"too old resource version: {after_rv} ({self._oldest_servable_rv + 1})")
            start = bisect.bisect_right(self._history_rvs, after_rv)
            return self._history[start:]

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._changed.notify_all()

    # ------------------------------------------------------------ reads

    def _type(self, api_version: str, kind: str) -> ResourceType:
        rtype = resource_for_kind(api_version, kind)
        if rtype is None:
            raise ApiError(404, "NotFound", f'no kind "{kind}" is registered for version "{api_version}"')
        return rtype

    def _ns(self, rtype: ResourceType, namespace: str | None) -> str:
        return (namespace or "default") if rtype.namespaced else ""

    def get_stored(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        """The stored dict itself (do not mutate); raises NotFound."""
        with self._lock:
            obj = self._objects[rtype].get((namespace, name))
            if obj is None:
                raise statuses.not_found(rtype, name)
            return obj

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj:
        rtype = self._type(api_version, kind)
        result: Obj = clone(self.get_stored(rtype, self._ns(rtype, namespace), name))
        return result

    def find(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        """Like ``get`` but None when absent."""
        try:
            return self.get(api_version, kind, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def list_stored(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
    ) -> tuple[list[Obj], int]:
        """Matching stored dicts (do not mutate), sorted by namespace and name, and the list's resourceVersion."""
        with self._lock:
            items = [
                obj
                for (ns, _), obj in sorted(self._objects[rtype].items(), key=lambda kv: kv[0])
                if (namespace is None or ns == namespace)
                and (not labels or labels_match(labels, _meta(obj).get("labels")))
                and (not fields or fields_match(fields, obj))
            ]
            return items, self._rv

    def children_of(self, owner_uid: str) -> list[tuple[ResourceType, Obj]]:
        """Stored objects whose ownerReferences name ``owner_uid`` (do not mutate)."""
        with self._lock:
            found = []
            for rtype, ns, name in self._children.get(owner_uid, ()):
                obj = self._objects[rtype].get((ns, name))
                if obj is not None:
                    found.append((rtype, obj))
            return found

    # ------------------------------------------------------------ indexes

    def orphans(self, rtype: ResourceType, namespace: str) -> list[Obj]:
        """Stored objects of a type in a namespace that no controller owns (do not mutate)."""
        with self._lock:
            names = self._orphans[rtype].get(namespace, ())
            return [self._objects[rtype][(namespace, n)] for n in names if (namespace, n) in self._objects[rtype]]

    def _index_owners(self, rtype: ResourceType, obj: Obj, add: bool) -> None:
        meta = _meta(obj)
        key = (rtype, meta.get("namespace", ""), meta["name"])
        refs = meta.get("ownerReferences") or []
        if not any(r.get("controller") for r in refs):
            bucket_names = self._orphans[rtype].setdefault(key[1], set())
            if add:
                bucket_names.add(key[2])
            else:
                bucket_names.discard(key[2])
        for ref in meta.get("ownerReferences") or []:
            uid = ref.get("uid")
            if not uid:
                continue
            if add:
                self._children.setdefault(uid, set()).add(key)
            else:
                bucket = self._children.get(uid)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del self._children[uid]

    # ------------------------------------------------------------ writes

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if rtype.namespaced and ("", namespace) not in self._objects[_NAMESPACE]:
            raise statuses.namespace_not_found(namespace)

    def _prepare_identity(self, rtype: ResourceType, obj: Obj, namespace: str | None) -> tuple[str, str]:
        meta = _meta(obj)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        if rtype.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise statuses.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            ns = ""
            meta.pop("namespace", None)
        return ns, str(meta.get("name") or "")

    def create(
        self,
        obj: Obj,
        namespace: str | None = None,
        manager: str | None = None,
        dry_run: bool = False,
        keep_status: bool = False,
    ) -> Obj:
        """POST: a new object (AlreadyExists if the name is taken, NotFound if the namespace is missing).

        Status is dropped unless ``keep_status`` (internal callers that create e.g. nodes with status)."""
        rtype = self._type(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        new = clone(obj)
        with self._lock:
            ns, name = self._prepare_identity(rtype, new, namespace)
            meta = _meta(new)
            if not name and meta.get("generateName"):
                name = meta["generateName"] + "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
                meta["name"] = name
            self._check_namespace(rtype, ns)
            if name and (ns, name) in self._objects[rtype]:
                raise statuses.already_exists(rtype, name)
            for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self.clock.timestamp()
            if rtype.kind in _GENERATION_KINDS:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            if rtype.has_status and not keep_status and rtype.kind != "Namespace":
                new.pop("status", None)
            apply_defaults(new, self._cluster_ip(rtype))
            causes = validation_causes(new, None)
            if causes:
                raise statuses.invalid(rtype, name, causes)
            if manager:
                record_update(None, new, manager, rtype.api_version, self.clock.timestamp())
            if dry_run:
                return clone(new)
            return self._store_created(rtype, ns, name, new)

    def _store_created(self, rtype: ResourceType, ns: str, name: str, new: Obj) -> Obj:
        _meta(new)["resourceVersion"] = str(self._next_rv())
        self._objects[rtype][(ns, name)] = new
        self._uids.add(new["metadata"]["uid"])
        self._index_owners(rtype, new, add=True)
        self._record("ADDED", rtype, ns, None, new)
        result: Obj = clone(new)
        return result

    def _cluster_ip(self, rtype: ResourceType) -> str:
        if rtype.kind != "Service":
            return ""
        self._next_cluster_ip += 1
        return f"10.96.{self._next_cluster_ip // 250}.{self._next_cluster_ip % 250 + 1}"

    def update(
        self,
        obj: Obj,
        namespace: str | None = None,
        manager: str | None = None,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """PUT: replace an object; 409 Conflict when metadata.resourceVersion is stale."""
        rtype = self._type(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        new = clone(obj)
        with self._lock:
            ns, name = self._prepare_identity(rtype, new, namespace)
            old = self._objects[rtype].get((ns, name))
            if old is None:
                raise statuses.not_found(rtype, name)
            wanted_rv = _meta(new).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise statuses.stale_resource_version(rtype, name)
            return self._write(rtype, ns, name, old, new, manager, subresource, dry_run)

    def _write(
        self,
        rtype: ResourceType,
        ns: str,
        name: str,
        old: Obj,
        new: Obj,
        manager: str | None,
        subresource: str,
        dry_run: bool,
        managed_fields_done: bool = False,
    ) -> Obj:
        """The shared tail of update, patch and apply: reset what this endpoint may not change, default,
        validate, bump generation, record ownership, store."""
        meta = _meta(new)
        old_meta = old["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if subresource == "status":
            # Through /status only status and metadata other than labels may change.
            through_status = clone(old)
            if "status" in new:
                through_status["status"] = new["status"]
            else:
                through_status.pop("status", None)
            through_status["metadata"] = {k: v for k, v in meta.items() if k != "labels"}
            if "labels" in old_meta:
                through_status["metadata"]["labels"] = old_meta["labels"]
            new = through_status
            meta = new["metadata"]
        elif rtype.has_status and rtype.kind != "Namespace":
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        if "managedFields" not in meta and "managedFields" in old_meta:
            meta["managedFields"] = clone(old_meta["managedFields"])
        apply_defaults(new)
        causes = validation_causes(new, old)
        if causes:
            raise statuses.invalid(rtype, name, causes)
        if rtype.kind in _GENERATION_KINDS and _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if manager and not managed_fields_done:
            record_update(old, new, manager, rtype.api_version, self.clock.timestamp(), subresource)
            # Metadata validation sees the managedFields the field manager settled on (a client's, when it
            # set decodable ones), after it, as in the API server's write path.
            problems = managed_fields_problems(new)
            if problems:
                raise statuses.invalid(rtype, name, [Cause(f, "FieldValueInvalid", m) for f, m in problems])
        if _same_content(new, old) and _without_times(meta.get("managedFields")) == _without_times(
            old_meta.get("managedFields")
        ):
            result: Obj = clone(old)
            return result
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            if dry_run:
                return clone(new)
            self._remove(rtype, ns, name, old, "Background")
            return clone(new)
        if dry_run:
            meta["resourceVersion"] = old_meta["resourceVersion"]
            return clone(new)
        meta["resourceVersion"] = str(self._next_rv())
        self._index_owners(rtype, old, add=False)
        self._objects[rtype][(ns, name)] = new
        self._index_owners(rtype, new, add=True)
        self._record("MODIFIED", rtype, ns, old, new, subresource)
        result = clone(new)
        return result

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        manager: str | None = None,
        force: bool = False,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """PATCH in any of the four types; apply creates the object when it does not exist."""
        rtype = self._type(api_version, kind)
        ns = self._ns(rtype, namespace)
        with self._lock:
            old = self._objects[rtype].get((ns, name))
            if patch_type == PATCH_APPLY:
                return self._apply(rtype, ns, name, old, body, manager or "", force, subresource, dry_run)
            if old is None:
                raise statuses.not_found(rtype, name)
            try:
                if patch_type == PATCH_JSON:
                    new = apply_json_patch(old, body)
                elif patch_type == PATCH_MERGE:
                    new = apply_merge_patch(old, body)
                elif patch_type == PATCH_STRATEGIC:
                    new = apply_strategic_merge_patch(old, body)
                else:
                    raise statuses.unsupported_media_type(patch_type)
            except PatchError as e:
                raise ApiError(422, "Invalid", str(e)) from e
            if not isinstance(new, dict):
                raise statuses.bad_request("the patch did not produce an object")
            new = clone(new)
            new_meta = _meta(new)
            if new_meta.get("name", name) != name:
                raise statuses.bad_request(
                    f"the name of the object ({new_meta.get('name')}) does not match the name on the URL ({name})"
                )
            wanted_rv = new_meta.get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise statuses.stale_resource_version(rtype, name)
            new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
            new_meta["name"] = name
            if rtype.namespaced:
                new_meta["namespace"] = ns
            return self._write(rtype, ns, name, old, new, manager, subresource, dry_run)

    def _apply(
        self,
        rtype: ResourceType,
        ns: str,
        name: str,
        old: Obj | None,
        body: Any,
        manager: str,
        force: bool,
        subresource: str,
        dry_run: bool,
    ) -> Obj:
        if not manager:
            raise statuses.bad_request("PATCH requests with application/apply-patch+yaml require fieldManager")
        if not isinstance(body, dict):
            raise statuses.bad_request("the applied configuration must be an object")
        if body.get("apiVersion") != rtype.api_version or body.get("kind") != rtype.kind:
            raise statuses.bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({rtype.api_version})"
                if body.get("apiVersion") != rtype.api_version
                else f"the kind in the data ({body.get('kind')}) does not match the expected kind ({rtype.kind})"
            )
        body_meta = body.get("metadata") or {}
        if body_meta.get("name") and body_meta["name"] != name:
            raise statuses.bad_request(
                f"the name of the object ({body_meta['name']}) does not match the name on the URL ({name})"
            )
        if rtype.namespaced and body_meta.get("namespace") and body_meta["namespace"] != ns:
            raise statuses.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        timestamp = self.clock.timestamp()
        try:
            merged = server_side_apply(old, body, manager, force, rtype.api_version, timestamp)
        except ApplyConflictError as e:
            raise statuses.apply_conflict(
                rtype,
                name,
                str(e),
                [(describe_path(c.path), f'conflict with "{c.manager}" using {c.api_version}') for c in e.conflicts],
            ) from e
        meta = _meta(merged)
        meta["name"] = name
        merged["apiVersion"], merged["kind"] = rtype.api_version, rtype.kind
        if rtype.namespaced:
            meta["namespace"] = ns
        if old is None:
            self._check_namespace(rtype, ns)
            managed = meta.get("managedFields")
            created = self.create(merged, ns, None, dry_run=True)
            created["metadata"]["managedFields"] = managed
            if dry_run:
                return created
            created["metadata"].pop("resourceVersion", None)
            return self._store_created(rtype, ns, name, created)
        return self._write(rtype, ns, name, old, merged, manager, subresource, dry_run, managed_fields_done=True)

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str | None = None,
        dry_run: bool = False,
        preconditions: dict[str, Any] | None = None,
    ) -> Obj:
        """DELETE: returns a Status (removed at once) or the object (kept by finalizers)."""
        rtype = self._type(api_version, kind)
        ns = self._ns(rtype, namespace)
        with self._lock:
            old = self._objects[rtype].get((ns, name))
            if old is None:
                raise statuses.not_found(rtype, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise statuses.conflict(
                    rtype,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {old['metadata']['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise statuses.conflict(
                    rtype,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{old['metadata']['resourceVersion']}",
                )
            if dry_run:
                return self._deleted_status(rtype, old)
            if old["metadata"].get("finalizers"):
                if not old["metadata"].get("deletionTimestamp"):
                    new = clone(old)
                    new["metadata"]["deletionTimestamp"] = self.clock.timestamp()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    new["metadata"]["resourceVersion"] = str(self._next_rv())
                    self._objects[rtype][(ns, name)] = new
                    self._record("MODIFIED", rtype, ns, old, new)
                    old = new
                result: Obj = clone(old)
                return result
            self._remove(rtype, ns, name, old, propagation or "Background")
            return self._deleted_status(rtype, old)

    @staticmethod
    def _deleted_status(rtype: ResourceType, obj: Obj) -> Obj:
        details: Obj = {"name": obj["metadata"]["name"], "kind": rtype.plural, "uid": obj["metadata"]["uid"]}
        if rtype.group:
            details["group"] = rtype.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _remove(self, rtype: ResourceType, ns: str, name: str, old: Obj, propagation: str) -> None:
        """Drop the object and cascade to its dependents (or orphan them)."""
        uid = old["metadata"]["uid"]
        if rtype.kind == "Namespace":
            for other in RESOURCE_TYPES:
                if other.namespaced:
                    for (child_ns, child_name), child in list(self._objects[other].items()):
                        if child_ns == name:
                            self._remove(other, child_ns, child_name, child, "Background")
        snapshot = clone(old)
        snapshot["metadata"]["resourceVersion"] = str(self._next_rv())
        del self._objects[rtype][(ns, name)]
        self._uids.discard(uid)
        self._index_owners(rtype, old, add=False)
        self._record("DELETED", rtype, ns, old, None, deleted_snapshot=snapshot)
        for child_type, child in self.children_of(uid):
            child_meta = child["metadata"]
            remaining = [r for r in child_meta.get("ownerReferences") or [] if r.get("uid") != uid]
            still_owned = any(self._uid_exists(r.get("uid", "")) for r in remaining)
            if propagation == "Orphan" or still_owned:
                updated = clone(child)
                if remaining:
                    updated["metadata"]["ownerReferences"] = remaining
                else:
                    updated["metadata"].pop("ownerReferences", None)
                self._write(
                    child_type, child_meta.get("namespace", ""), child_meta["name"], child, updated, None, "", False
                )
            else:
                self._remove(child_type, child_meta.get("namespace", ""), child_meta["name"], child, "Background")
        self._children.pop(uid, None)

    def _uid_exists(self, uid: str) -> bool:
        return uid in self._uids

    # ------------------------------------------------------------ the internal writers (controllers, kubelet)

    def write_internal(self, obj: Obj, subresource: str = "") -> Obj | None:
        """A controller's write: no managedFields, 409 on a stale resourceVersion, None when the object is gone."""
        try:
            return self.update(obj, subresource=subresource)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def update_pod_status(self, namespace: str, name: str, uid: str, status: Obj) -> None:
        """The kubelet's status write; ignored when the pod is gone or was replaced by a namesake."""
        pod_type = _POD
        with self._lock:
            old = self._objects[pod_type].get((namespace, name))
            if old is None or old["metadata"].get("uid") != uid:
                return
            if old.get("status") == status:
                return
            new = {**old, "status": clone(status)}
            new["metadata"] = dict(old["metadata"])
            self._write(pod_type, namespace, name, old, new, None, "status", False)

    def record_event(self, involved_object: Obj, type: str, reason: str, message: str) -> None:
        """Write (or count up) a core/v1 Event about ``involved_object``, as a controller or kubelet would."""
        kind = str(involved_object.get("kind", ""))
        if kind == "Pod":
            component = "default-scheduler" if reason in ("Scheduled", "FailedScheduling") else "kubelet"
        else:
            component = _EVENT_COMPONENTS.get(kind, "kubesim")
        namespace = str(involved_object.get("namespace") or "default")
        involved = {
            k: involved_object[k]
            for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
            if involved_object.get(k) is not None
        }
        key = (namespace, str(involved.get("uid", involved.get("name", ""))), type, reason, message)
        now = self.clock.timestamp()
        with self._lock:
            if ("", namespace) not in self._objects[_NAMESPACE]:
                return
            existing_name = self._event_index.get(key)
            existing = self._objects[_EVENT].get((namespace, existing_name)) if existing_name else None
            if existing is not None:
                updated = clone(existing)
                updated["count"] = int(existing.get("count", 1)) + 1
                updated["lastTimestamp"] = now
                self._write(_EVENT, namespace, existing_name or "", existing, updated, None, "", False)
                return
            self._event_serial += 1
            name = f"{involved.get('name', 'unknown')}.{int(self.clock.now() * 1e9) + self._event_serial:x}"
            event: Obj = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": type,
                "source": {"component": component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": "",
            }
            self._event_index[key] = name
            self.create(event)

    def get_object(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The kubelet's read of a ConfigMap or Secret (a copy), None when absent."""
        rtype = next((r for r in RESOURCE_TYPES if r.kind == kind), None)
        if rtype is None:
            return None
        with self._lock:
            obj = self._objects[rtype].get((namespace if rtype.namespaced else "", name))
            return None if obj is None else clone(obj)

    def objects_of(self, rtype: ResourceType) -> Iterable[Obj]:
        """Every stored object of a type (stored dicts: do not mutate)."""
        with self._lock:
            return list(self._objects[rtype].values())

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
    ) -> list[Obj]:
        rtype = self._type(api_version, kind)
        items, _ = self.list_stored(rtype, namespace, labels, fields)
        result: list[Obj] = clone(items)
        return result


def _type_of(kind: str) -> ResourceType:
    return next(r for r in RESOURCE_TYPES if r.kind == kind)


_NAMESPACE = _type_of("Namespace")
_POD = _type_of("Pod")
_EVENT = _type_of("Event")
