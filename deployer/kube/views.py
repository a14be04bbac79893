"""What a waiting loop sees of the cluster: workloads, their revision objects and pods, kept current by watchers.

One watcher (kube/watching.py) per kind and namespace, whatever the number of workloads; Jobs applied by this
connection are watched from their apply instead of listed (see ClusterView). The view reads no clock and makes
no decision: the waits (kube/waiting.py, kube/restoring.py) judge what it holds.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Mapping, Sequence

from deployer.errors import KubernetesError
from deployer.kinds import KubeDict, KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.resources import CONTROLLER_REVISIONS, PODS, REPLICA_SETS, WORKLOAD_RESOURCES, Resource
from deployer.kube.watching import GaveUp, Listed, Watcher, WatchMessage
from deployer.revision_pods import RevisionPods, newest_revision_pods, pods_of
from deployer.rollbacks import ObjectRef

# A watched kind in a namespace.
ViewKey = tuple[str, str | None]


class ClusterView:
    """What the waiting loop sees: workloads, their ReplicaSets/ControllerRevisions and pods, kept current by
    one watcher per kind and namespace, and the last state of the workloads deleted meanwhile.

    With ``applied`` (each workload as its apply answered), the Jobs of a namespace whose every Job was applied
    are not listed: their view starts from the apply's answers and their watch from the resourceVersion of the
    first of them applied, replaying every change since, a deletion included, which a LIST made after the
    TTL-after-finished controller removed a Job could not show. An API server keeps that history for minutes
    (etcd compaction); when it is gone already (410), the watcher lists as for any other kind.
    """

    def __init__(
        self,
        api: KubeAPI,
        default_namespace: str,
        workloads: Sequence[ObjectRef],
        *,
        with_revision_objects: bool,
        applied: Mapping[ObjectRef, KubeObject] | None = None,
        deadline: float | None = None,
    ) -> None:
        self._api = api
        self._default_namespace = default_namespace
        self._events: queue.Queue[tuple[ViewKey, WatchMessage]] = queue.Queue()
        self._store: dict[ViewKey, dict[str, KubeDict]] = {}
        self._departed: dict[tuple[str, str | None, str], KubeDict] = {}
        self._workloads = list(workloads)
        self._watchers: list[Watcher] = []
        applied = applied or {}
        # An object of the same name with another uid is another object (an earlier Job of that name, whose
        # deletion a replayed history may hold): not the history of the one applied.
        self._uids: dict[tuple[str, str | None, str], str] = {
            (ref.kind, ref.namespace or default_namespace, ref.name): str(uid)
            for ref, obj in applied.items()
            if (uid := (obj.get("metadata") or {}).get("uid"))
        }
        self._watch_from: dict[ViewKey, str] = {}
        wanted: dict[ViewKey, Resource] = {}
        for ref in workloads:
            namespace = ref.namespace or default_namespace
            wanted[(ref.kind, namespace)] = WORKLOAD_RESOURCES[ref.kind]
            wanted[("Pod", namespace)] = PODS
            if with_revision_objects and ref.kind == "Deployment":
                wanted[("ReplicaSet", namespace)] = REPLICA_SETS
            if with_revision_objects and ref.kind == "DaemonSet":
                wanted[("ControllerRevision", namespace)] = CONTROLLER_REVISIONS
        for key, resource in wanted.items():
            self._watchers.append(Watcher(api, resource, key[1], self._sink_for(key), deadline=deadline))
            if key[0] == "Job":
                self._start_from_apply(key, applied)
        self._pending = {(w.resource.kind, w.namespace) for w in self._watchers} - set(self._watch_from)

    def _start_from_apply(self, key: ViewKey, applied: Mapping[ObjectRef, KubeObject]) -> None:
        """Seed the view of a namespace's Jobs with their applied state, to watch from the first one's apply."""
        refs = [r for r in self._workloads if r.kind == key[0] and (r.namespace or self._default_namespace) == key[1]]
        seeded: dict[str, KubeDict] = {}
        first_version = ""
        # In apply order, which is the order of resourceVersions (opaque strings, never compared here).
        for ref, obj in applied.items():
            if ref not in refs:
                continue
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if not version or (ref.kind, key[1], ref.name) not in self._uids:
                return
            first_version = first_version or version
            seeded[ref.name] = dict(obj)
        if len(seeded) < len(set(refs)):
            return  # a Job this connection did not apply: only a LIST tells where it stands
        self._store[key] = seeded
        self._watch_from[key] = first_version

    def _sink_for(self, key: ViewKey) -> Callable[[WatchMessage], None]:
        def sink(item: WatchMessage) -> None:
            self._events.put((key, item))

        return sink

    def __enter__(self) -> ClusterView:
        for watcher in self._watchers:
            watcher.start(resource_version=self._watch_from.get((watcher.resource.kind, watcher.namespace)))
        return self

    def __exit__(self, *exc: object) -> None:
        for watcher in self._watchers:
            watcher.request_stop()
        for watcher in self._watchers:
            watcher.stop()

    @property
    def synced(self) -> bool:
        """Every watcher has listed once."""
        return not self._pending

    def pump(self, wait: float) -> None:
        """Take in what the watchers sent, waiting up to ``wait`` seconds for the first item. Raises the
        first refusal of the credentials any request of the connection got: watches opened before it keep
        streaming, but nothing the run does next would be let through."""
        if self._api.refused is not None:
            raise self._api.refused
        try:
            item = self._events.get(timeout=wait)
        except queue.Empty:
            return
        while True:
            self._take(*item)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return

    def _take(self, key: ViewKey, message: WatchMessage) -> None:
        if isinstance(message, GaveUp):
            if isinstance(message.error, KubernetesError):
                raise message.error
            raise KubernetesError(f"watching {key[0]} in {key[1]} failed: {message.error}") from message.error
        store = self._store.setdefault(key, {})
        if isinstance(message, Listed):
            store.clear()
            for obj in message.items:
                if self._is_applied_one(key, obj):
                    store[str(obj["metadata"]["name"])] = obj
            self._pending.discard(key)
            return
        if not self._is_applied_one(key, message.obj):
            return
        name = str((message.obj.get("metadata") or {}).get("name", ""))
        if message.event_type == "DELETED":
            store.pop(name, None)
            # Its last state: a Job deleted once finished is judged by it (rollouts.judge_departed).
            self._departed[(key[0], key[1], name)] = message.obj
        else:
            store[name] = message.obj

    def _is_applied_one(self, key: ViewKey, obj: KubeObject) -> bool:
        meta = obj.get("metadata") or {}
        uid = self._uids.get((key[0], key[1], str(meta.get("name", ""))))
        return uid is None or meta.get("uid") == uid

    def _items(self, kind: str, namespace: str | None) -> list[KubeDict]:
        return list(self._store.get((kind, namespace or self._default_namespace), {}).values())

    def workload(self, ref: ObjectRef) -> KubeDict | None:
        return self._store.get((ref.kind, ref.namespace or self._default_namespace), {}).get(ref.name)

    def departed(self, ref: ObjectRef) -> KubeDict | None:
        """The last state of the workload when a DELETED event said it is gone; None if none did."""
        return self._departed.get((ref.kind, ref.namespace or self._default_namespace, ref.name))

    def pods_in(self, namespace: str | None) -> list[KubeDict]:
        return self._items("Pod", namespace)

    def replica_sets(self, namespace: str | None) -> list[KubeDict]:
        return self._items("ReplicaSet", namespace)

    def revision(self, ref: ObjectRef) -> RevisionPods | None:
        obj = self.workload(ref)
        if obj is None:
            return None
        return newest_revision_pods(
            obj,
            replica_sets=self._items("ReplicaSet", ref.namespace),
            controller_revisions=self._items("ControllerRevision", ref.namespace),
        )

    def revision_pods(self, ref: ObjectRef) -> list[KubeDict]:
        return [dict(p) for p in pods_of(self.revision(ref), self.pods_in(ref.namespace))]
