"""The simulator's kube-controller-manager, scheduler and kubelet driver: one thread that runs the pure
reconcile functions of controllers.py on the objects that changed and applies the actions they return.

It owns the work queue (an ordered set of dirty keys, filled by the store's change listener, so a change
costs one reconcile of the objects it concerns and never a full rescan), the periodic resync of workloads
whose progress depends on time (progress deadlines, minReadySeconds, Job deadlines), the retry of
unschedulable pods, and the calls into the kubelet. It must not decide what a controller does (that is
controllers.py) nor how the API server stores objects (store.py).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from . import controllers
from .clock import SimClock
from .resources import RESOURCE_TYPES, ResourceType
from .selectors import selector_matches_labels
from .statuses import ApiError
from .store import ObjectStore, clone

Obj = dict[str, Any]
WorkKey = tuple[str, str, str]  # (what, namespace, name)

_TYPES = {r.kind: r for r in RESOURCE_TYPES}
_RECONCILED = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")
_RESYNC_SECONDS = 0.2  # real seconds between checks of time-dependent progress
_UNSCHEDULABLE_RETRY_SECONDS = 1.0


class Kubelet(Protocol):
    def pod_changed(self, pod: Obj) -> None: ...

    def pod_deleted(self, pod: Obj) -> None: ...


def _controller_owner(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


class ControlLoop:
    """Runs reconciles on a background thread; ``errors`` collects unexpected exceptions for tests to check."""

    def __init__(self, store: ObjectStore, clock: SimClock, kubelet: Kubelet | None) -> None:
        self.store = store
        self.clock = clock
        self.kubelet = kubelet
        self.errors: list[str] = []
        self._queue: dict[WorkKey, None] = {}
        self._deleted_pods: dict[WorkKey, Obj] = {}
        self._wake = threading.Condition()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_resync = 0.0
        self._last_unschedulable_retry = 0.0
        self.reconciles = 0
        store.add_listener(self._on_change)

    # ------------------------------------------------------------ queue

    def _enqueue(self, key: WorkKey) -> None:
        with self._wake:
            self._queue[key] = None
            self._wake.notify()

    def poke(self) -> None:
        """Run the time-dependent resync now (e.g. after the clock jumped)."""
        with self._wake:
            self._last_resync = 0.0
            self._wake.notify()

    def _on_change(
        self, event_type: str, rtype: ResourceType, old: Obj | None, new: Obj | None, subresource: str
    ) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        kind = rtype.kind
        if kind in _RECONCILED:
            self._enqueue((kind, ns, meta["name"]))
        for ref in (old, new):
            owner = _controller_owner(ref) if ref is not None else None
            if owner is not None and owner.get("kind") in _RECONCILED:
                self._enqueue((owner["kind"], ns, owner.get("name", "")))
        if kind == "Pod":
            if new is None:
                key = ("pod-deleted", ns, meta["name"] + "/" + meta.get("uid", ""))
                with self._wake:
                    self._deleted_pods[key] = old or {}
                self._enqueue(key)
            elif not new.get("spec", {}).get("nodeName"):
                if old is None or subresource != "status":
                    self._enqueue(("schedule", ns, meta["name"]))
            elif subresource != "status":
                self._enqueue(("kubelet", ns, meta["name"]))
            elif old is not None and old.get("metadata", {}).get("labels") != meta.get("labels"):
                self._enqueue(("kubelet", ns, meta["name"]))
        elif kind == "Node":
            for ds in self.store.objects_of(_TYPES["DaemonSet"]):
                self._enqueue(("DaemonSet", ds["metadata"]["namespace"], ds["metadata"]["name"]))
            self._last_unschedulable_retry = 0.0

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kubesim-control-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def idle(self) -> bool:
        with self._wake:
            return not self._queue

    def _run(self) -> None:
        while not self._stopped.is_set():
            with self._wake:
                if not self._queue:
                    self._wake.wait(_RESYNC_SECONDS / 2)
                batch = list(self._queue)
                self._queue.clear()
            now_real = time.monotonic()
            if now_real - self._last_resync >= _RESYNC_SECONDS:
                self._last_resync = now_real
                batch.extend(k for k in self._time_dependent() if k not in batch)
            if now_real - self._last_unschedulable_retry >= _UNSCHEDULABLE_RETRY_SECONDS:
                self._last_unschedulable_retry = now_real
                batch.extend(k for k in self._unscheduled() if k not in batch)
            for key in batch:
                if self._stopped.is_set():
                    return
                try:
                    self._process(key)
                except Exception:  # a bug in one reconcile must not stop the simulated cluster
                    message = f"kubesim: {key} failed:\n{traceback.format_exc()}"
                    self.errors.append(message)
                    print(message, file=sys.stderr)

    def _time_dependent(self) -> list[WorkKey]:
        keys: list[WorkKey] = []
        for kind in _RECONCILED:
            for obj in self.store.objects_of(_TYPES[kind]):
                spec = obj.get("spec") or {}
                status = obj.get("status") or {}
                if kind == "Deployment":
                    conditions = status.get("conditions") or []
                    progressing: Obj = next((c for c in conditions if c.get("type") == "Progressing"), {})
                    settled = progressing.get("reason") in (
                        "NewReplicaSetAvailable",
                        "ProgressDeadlineExceeded",
                    ) and status.get("observedGeneration") == obj["metadata"].get("generation")
                    if settled and not spec.get("minReadySeconds"):
                        continue
                elif kind in ("ReplicaSet", "StatefulSet", "DaemonSet") and not spec.get("minReadySeconds"):
                    continue
                keys.append((kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
        return keys

    def _unscheduled(self) -> list[WorkKey]:
        return [
            ("schedule", p["metadata"]["namespace"], p["metadata"]["name"])
            for p in self.store.objects_of(_TYPES["Pod"])
            if not (p.get("spec") or {}).get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]

    # ------------------------------------------------------------ one key

    def _stored(self, kind: str, ns: str, name: str) -> Obj | None:
        try:
            return self.store.get_stored(_TYPES[kind], ns, name)
        except ApiError:
            return None

    def _candidates(self, owner: Obj, kind: str) -> list[Obj]:
        """Objects of ``kind`` the owner owns, plus orphans its selector matches (it may adopt those)."""
        uid = owner["metadata"]["uid"]
        owned = [o for t, o in self.store.children_of(uid) if t.kind == kind]
        selector = (owner.get("spec") or {}).get("selector")
        orphans = [
            o
            for o in self.store.orphans(_TYPES[kind], owner["metadata"].get("namespace", ""))
            if selector and selector_matches_labels(selector, o["metadata"].get("labels"))
        ]
        return owned + orphans

    def _process(self, key: WorkKey) -> None:
        what, ns, name = key
        now = self.clock.now()
        if what == "pod-deleted":
            with self._wake:
                pod = self._deleted_pods.pop(key, None)
            if pod is not None and self.kubelet is not None and (pod.get("spec") or {}).get("nodeName"):
                self.kubelet.pod_deleted(clone(pod))
            return
        if what == "kubelet":
            pod = self._stored("Pod", ns, name)
            if pod is not None and self.kubelet is not None and pod["spec"].get("nodeName"):
                self.kubelet.pod_changed(clone(pod))
            return
        if what == "schedule":
            pod = self._stored("Pod", ns, name)
            scheduler = getattr(controllers, "schedule_pod", None)
            if pod is None or pod["spec"].get("nodeName") or scheduler is None:
                return
            nodes = list(self.store.objects_of(_TYPES["Node"]))
            self._apply(scheduler(clone(pod), clone(nodes), now))
            return
        obj = self._stored(what, ns, name)
        if obj is None:
            return
        self.reconciles += 1
        actions: list[Any]
        if what == "Deployment":
            actions = controllers.reconcile_deployment(clone(obj), clone(self._candidates(obj, "ReplicaSet")), now)
        elif what == "ReplicaSet":
            actions = controllers.reconcile_replicaset(clone(obj), clone(self._candidates(obj, "Pod")), now)
        elif what == "StatefulSet":
            reconcile: Callable[..., list[Any]] | None = getattr(controllers, "reconcile_statefulset", None)
            if reconcile is None:
                return
            actions = reconcile(
                clone(obj), clone(self._candidates(obj, "Pod")), clone(self._candidates(obj, "ControllerRevision")), now
            )
        elif what == "DaemonSet":
            reconcile = getattr(controllers, "reconcile_daemonset", None)
            if reconcile is None:
                return
            nodes = list(self.store.objects_of(_TYPES["Node"]))
            actions = reconcile(
                clone(obj),
                clone(self._candidates(obj, "Pod")),
                clone(self._candidates(obj, "ControllerRevision")),
                clone(nodes),
                now,
            )
        elif what == "Job":
            reconcile = getattr(controllers, "reconcile_job", None)
            if reconcile is None:
                return
            actions = reconcile(clone(obj), clone(self._candidates(obj, "Pod")), now)
        else:
            return
        self._apply(actions)

    def _apply(self, actions: list[Any]) -> None:
        for action in actions:
            try:
                if isinstance(action, controllers.Create):
                    self.store.create(action.obj)
                elif isinstance(action, controllers.Update):
                    self.store.write_internal(action.obj)
                elif isinstance(action, controllers.UpdateStatus):
                    self.store.write_internal(action.obj, subresource="status")
                elif isinstance(action, controllers.Delete):
                    self.store.delete(action.api_version, action.kind, action.namespace, action.name)
                elif isinstance(action, controllers.RecordEvent):
                    self.store.record_event(action.involved_object, action.type, action.reason, action.message)
            except ApiError as e:
                # 409/404 mean the controller acted on a stale view; the write that made it stale re-queued it.
                if e.code not in (404, 409):
                    message = f"kubesim: {type(action).__name__} refused: {e.code} {e.message}"
                    self.errors.append(message)
                    print(message, file=sys.stderr)
