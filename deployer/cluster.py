"""Talking to the Kubernetes API: record, apply, lock, watch a rollout, diagnose and roll back.

The only module that imports the kubernetes client. It turns the client into plain JSON requests (the
objects stay dicts shaped like the API's JSON) and leaves every decision to the pure modules: rollouts.py
judges workloads and finds failures, rollbacks.py plans and judges the rollback, diagnoses.py explains a
failure. It never sleeps to poll: waiting is list+watch with resourceVersion resumption (re-listing on
410 Gone; Jobs are watched from their apply's resourceVersion instead of listed), and one overall
deadline. It sleeps only to back off while the API is unavailable (deployer/retries.py decides how long),
retrying only what is safe to repeat. It must not print (progress goes to the ``on_progress`` callback,
notices to ``warn``/``inform``), call sys.exit, or let a token or kubeconfig reach a message: errors are
deployer.errors, chained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3

from deployer import diagnoses, managed_fields, rollbacks, rollouts
from deployer.credentials import KubeCredentials, memory_backed_kubeconfig
from deployer.errors import (
    ApplyError,
    CredentialsExpiredError,
    DeployerError,
    KubernetesError,
    LockLostError,
    LockTimeoutError,
    UnknownKindError,
    WorkloadOutcome,
)
from deployer.plans import apply_rank
from deployer.retries import Availability, Retrier, RetryPolicy, Transient, parse_retry_after
from deployer.rollbacks import LiveRecord, ObjectRecord, ObjectRef, RollbackAction, RollbackStep, RollbackTarget
from deployer.rollouts import PodFailure, RolloutVerdict, WorkloadFailure
from deployer.settings import format_duration

log = logging.getLogger(__name__)

FIELD_MANAGER = "deployer"
ROLLBACK_FIELD_MANAGER = "deployer-rollback"
LOCK_NAME = "deployer-lock"
DEFAULT_LEASE_SECONDS = 60
# What kubectl logs sends: the log is text/plain, but a real API server answers a bare "text/plain" with 406.
LOG_ACCEPT = "application/json, */*"
# A watch is re-opened from its last resourceVersion after this long: one request per window, not polling.
WATCH_WINDOW_SECONDS = 300
# How often the waiting loop looks at the clock without news from a watch: for the cancel event, the
# deadline and failures whose tolerance window runs out. Local only, never a request.
TICK_SECONDS = 0.1
CONNECT_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 60.0
# A watch the server has not ended (timeoutSeconds) nor written to this long after its window is dead.
WATCH_READ_TIMEOUT_SECONDS = WATCH_WINDOW_SECONDS + 30.0
# How long a request outside the wait and the rollback (record, apply, lock) keeps retrying while the API is
# unavailable: a control plane restarting for maintenance (DOKS's default is not highly available) is back
# within a minute or two.
REQUEST_RETRY_SECONDS = 120.0
# ... but only briefly while the API has not answered once (a wrong server address fails fast).
FIRST_CONTACT_RETRY_SECONDS = 10.0
# Diagnosing is worth little against a rollback that waits: its requests retry briefly.
DIAGNOSIS_RETRY_SECONDS = 10.0
REQUEST_RETRY_POLICY = RetryPolicy(budget=REQUEST_RETRY_SECONDS)
# Attempts at upgrading client-side apply ownership when the object keeps changing under it (kubectl's
# maxPatchRetry): each 409 means a newer version to read and compute the upgrade from again.
UPGRADE_ATTEMPTS = 5

Failure = PodFailure | WorkloadFailure


# --- where each kind lives ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """How the API addresses one kind: ``/apis/apps/v1/namespaces/NS/deployments``."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is needed")
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{urllib.parse.quote(name)}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


# The kinds deployer touches most: known without a discovery request (saves requests per deploy).
_KNOWN_RESOURCES = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "Namespace", "namespaces", False),
        Resource("v1", "ConfigMap", "configmaps", True),
        Resource("v1", "Secret", "secrets", True),
        Resource("v1", "Service", "services", True),
        Resource("v1", "ServiceAccount", "serviceaccounts", True),
        Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
        Resource("v1", "Pod", "pods", True),
        Resource("v1", "Event", "events", True),
        Resource("apps/v1", "Deployment", "deployments", True),
        Resource("apps/v1", "StatefulSet", "statefulsets", True),
        Resource("apps/v1", "DaemonSet", "daemonsets", True),
        Resource("apps/v1", "ReplicaSet", "replicasets", True),
        Resource("apps/v1", "ControllerRevision", "controllerrevisions", True),
        Resource("batch/v1", "Job", "jobs", True),
        Resource("batch/v1", "CronJob", "cronjobs", True),
        Resource("networking.k8s.io/v1", "Ingress", "ingresses", True),
        Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
        Resource("rbac.authorization.k8s.io/v1", "Role", "roles", True),
        Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
        Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
        Resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
        Resource("coordination.k8s.io/v1", "Lease", "leases", True),
        Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
        Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    )
}
NAMESPACES = _KNOWN_RESOURCES[("v1", "Namespace")]
PODS = _KNOWN_RESOURCES[("v1", "Pod")]
EVENTS = _KNOWN_RESOURCES[("v1", "Event")]
REPLICA_SETS = _KNOWN_RESOURCES[("apps/v1", "ReplicaSet")]
CONTROLLER_REVISIONS = _KNOWN_RESOURCES[("apps/v1", "ControllerRevision")]
LEASES = _KNOWN_RESOURCES[("coordination.k8s.io/v1", "Lease")]
WORKLOAD_RESOURCES = {
    kind: _KNOWN_RESOURCES[(api_version, kind)]
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
    )
}


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """One applied object: ``action`` is created, configured or unchanged; ``taken_over`` maps each other
    field manager to the fields this apply took from it (with force, or by upgrading a client-side apply
    manager, whose every field this run now applies); ``upgraded`` names the client-side apply managers whose
    ownership was moved to deployer's, as kubectl apply --server-side does."""

    ref: ObjectRef
    action: str
    taken_over: dict[str, list[str]] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict, repr=False)
    upgraded: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.ref} {self.action}"
        for manager, fields in sorted(self.taken_over.items()):
            text += f"; took {', '.join(fields)} from {manager}"
        return text


class WaitOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"


@dataclass
class WaitResult:
    """How the wait ended, with the last state seen: enough to diagnose without fetching it again."""

    outcome: WaitOutcome
    reason: str
    verdicts: dict[ObjectRef, RolloutVerdict] = field(default_factory=dict)
    failures: dict[ObjectRef, list[Failure]] = field(default_factory=dict)
    workloads: dict[ObjectRef, dict[str, Any]] = field(default_factory=dict, repr=False)
    pods: dict[ObjectRef, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is WaitOutcome.DONE

    @property
    def unfinished(self) -> list[ObjectRef]:
        """The workloads that failed or were not done when the wait ended."""
        return [ref for ref, verdict in self.verdicts.items() if not verdict.done or self.failures.get(ref)]


@dataclass
class RollbackResult:
    """What the rollback did to each object; ``problems`` is empty when everything is back and ready."""

    outcomes: list[WorkloadOutcome]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- the lock -----------------------------------------------------------------------------------------------


class Lock:
    """The per-namespace deploy lock: a Lease this run holds and renews until ``release``.

    A renewal that finds another holder, or no lease at all, means the lease ran out while this run could not
    renew it (paused, cut off) and the namespace may be another run's now: ``lost_to`` says who holds it
    ("" for nobody) and ``on_lost`` is called once, so that the run stops as it would on a signal.
    """

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        holder: str,
        lease_seconds: int,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.lost_to: str | None = None
        self._cluster = cluster
        self._on_lost = on_lost
        self._released = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_released, name="deployer-lock-renewer", daemon=True)
        self._renewer.start()

    def _renew_until_released(self) -> None:
        while not self._released.wait(self.lease_seconds / 3):
            try:
                holder = self._cluster._renew_lease(self.namespace, self.holder, self.lease_seconds)
            except Exception as e:  # noqa: BLE001 - a renewal that fails is retried; the lease expires otherwise
                log.warning("could not renew the deploy lock in %s: %s", self.namespace, e)
                continue
            if holder is not None:
                self._lose(holder)
                return

    def _lose(self, holder: str) -> None:
        if self.lost_to is None:
            self.lost_to = holder
            if self._on_lost is not None:
                self._on_lost()

    def verify(self) -> None:
        """Raise LockLostError unless this run still holds the lock, read afresh: a run that was paused past
        its lease must not trust what it last saw, nor wait for its renewer to notice."""
        if self.lost_to is None:
            try:
                holder = self._cluster._lease_holder(self.namespace)
            except KubernetesError as e:
                # Unreadable now (the API is down): what the renewer last found stands.
                log.warning("could not read the deploy lock in %s: %s", self.namespace, e)
                holder = self.holder
            if holder != self.holder:
                self._lose(holder)
        if self.lost_to is not None:
            now = f"{self.lost_to} holds it now" if self.lost_to else "its lease is gone"
            raise LockLostError(
                f"lost the deploy lock in namespace {self.namespace}: {now}; this run could not renew it within "
                f"its {self.lease_seconds}s lease (paused or cut off), so another run may have deployed since"
            )

    def release(self) -> None:
        """Give the lock up (idempotent). A run that dies without it lets the Lease expire on its own."""
        if self._released.is_set():
            return
        self._released.set()
        self._renewer.join(timeout=5)
        self._cluster._release_lease(self.namespace, self.holder)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            self.release()
        except KubernetesError:
            # Leaving with an error already (e.g. expired credentials, which also stop the release): that
            # error is the one to report; the Lease left behind expires on its own.
            if exc_type is None:
                raise


# --- the cluster --------------------------------------------------------------------------------------------


class Cluster:
    """One connection to one cluster. Create with ``Cluster.connect(credentials)``; ``close()`` when done.

    Requests that are safe to repeat (reads, server-side apply, the rollback's patches, lease updates) are
    retried while the API is unavailable (connection errors, 429, 5xx), within the deadline of the phase
    that sends them (the wait's, the rollback's) or REQUEST_RETRY_SECONDS; ``warn`` is told once when the API
    stops answering, ``inform`` once when it is back.
    """

    def __init__(
        self,
        api: Any,
        credentials: KubeCredentials,
        default_namespace: str,
        *,
        warn: Callable[[str], None] = log.warning,
        inform: Callable[[str], None] = log.info,
        retry_policy: RetryPolicy = REQUEST_RETRY_POLICY,
    ) -> None:
        self._api = api
        self._credentials = credentials
        self.default_namespace = default_namespace
        self._resources: dict[tuple[str, str], Resource] = dict(_KNOWN_RESOURCES)
        self._resources_lock = threading.Lock()
        self.host = str(api.configuration.host)
        self._inform = inform
        availability = Availability(
            f"the Kubernetes API at {self.host}", clock=time.monotonic, on_lost=warn, on_regained=inform
        )
        self._retrier = Retrier(retry_policy, availability, clock=time.monotonic, sleep=time.sleep)
        # The deadline of the phase the calling thread is in (the rollback's, the diagnosis's), if any.
        self._phase = threading.local()
        self._api_lock = threading.Lock()
        self._renewing = False
        # What closes the in-memory key files of each client this connection made.
        self._releases: list[Callable[[], None]] = []
        # The first 401 any request of this connection got (the lock's renewal included): it ends a wait.
        self.refused: KubernetesError | None = None

    @classmethod
    def connect(
        cls,
        credentials: KubeCredentials,
        *,
        warn: Callable[[str], None] = log.warning,
        inform: Callable[[str], None] = log.info,
    ) -> Cluster:
        """A client for the credentials' context, loaded in memory. Makes no request."""
        api, release = _client_for(credentials)
        contexts = {c.get("name"): c.get("context") or {} for c in credentials.kubeconfig.get("contexts") or ()}
        namespace = str(contexts.get(credentials.context, {}).get("namespace") or "default")
        connected = cls(api, credentials, namespace, warn=warn, inform=inform)
        connected._releases.append(release)
        return connected

    def close(self) -> None:
        self._api.close()
        while self._releases:
            self._releases.pop()()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- retrying -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _retrying_until(self, deadline: float) -> Iterator[None]:
        """Requests of this thread retry until ``deadline`` (time.monotonic) within the block."""
        outer = getattr(self._phase, "deadline", None)
        self._phase.deadline = deadline
        try:
            yield
        finally:
            self._phase.deadline = outer

    def _request_deadline(self) -> float | None:
        deadline: float | None = getattr(self._phase, "deadline", None)
        if deadline is None and not self._retrier.availability.ever_answered:
            # A server that never answered this run is more likely a wrong address than a restart.
            return time.monotonic() + FIRST_CONTACT_RETRY_SECONDS
        return deadline

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: Any = (CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS),
    ) -> Any:
        """One request; returns the urllib3 response, unread (the caller reads or streams it). A connection
        failure is a retryable KubernetesError whose cause says whether the request was ever sent."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()]
        with self._api_lock:
            api = self._api
        try:
            serialized = api.param_serialize(
                method=method,
                resource_path=path,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*serialized, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise _unreachable(self.host, e) from e
        except kubernetes.client.exceptions.ApiException as e:
            raise KubernetesError(f"{method} {path}: {e.reason}", status=e.status or None) from e
        if not _unavailable_status(int(response.response.status)):
            self._retrier.availability.answered()
        return response.response

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        allow: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """A request whose answer is JSON; raises for a status outside 2xx unless it is in ``allow``.

        Retried while the API is unavailable, except a POST, whose repetition could create twice: it is
        retried only when it was never sent or was refused with 429. Refused credentials are renewed once
        when the source can mint new ones (see ``_renewing_credentials``)."""

        def attempt() -> tuple[int, Any]:
            return self._attempt(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                allow=allow,
                repeatable=method != "POST",
            )

        try:
            return self._retrier.call(attempt, deadline=self._request_deadline())
        except KubernetesError as e:
            if e.status != 401 or not self._renew_credentials():
                raise
        return self._retrier.call(attempt, deadline=self._request_deadline())

    def _attempt(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        allow: tuple[int, ...],
        repeatable: bool,
    ) -> tuple[int, Any]:
        """One try of ``_request``; raises Transient for a failure that repeating may heal."""
        try:
            response = self._send(method, path, query=query, body=body, content_type=content_type)
            try:
                data = response.data
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Transient(_unreachable(self.host, e)) from e
        except KubernetesError as e:
            if e.retryable and (repeatable or _never_sent(e)):
                raise Transient(e) from e.__cause__
            raise
        status = int(response.status)
        parsed: Any = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data.decode("utf-8", "replace")
        if 200 <= status < 300 or status in allow:
            return status, parsed
        error = self._error(method, path, status, parsed, response.headers)
        if error.retryable and (repeatable or status == 429):
            raise Transient(error, _advised_wait(response.headers))
        raise error

    @contextlib.contextmanager
    def _renewing_credentials(self) -> Iterator[None]:
        """Within the block, a 401 has this thread renew the credentials once (when their source can: a
        DigitalOcean token mints new ones) and repeat the request: a rollback must not fail because the wait
        outlived the token."""
        outer = getattr(self._phase, "renew", False)
        self._phase.renew = True
        try:
            yield
        finally:
            self._phase.renew = outer

    def _renew_credentials(self) -> bool:
        """New credentials from their source and a client for them; False when this thread may not renew
        (outside ``_renewing_credentials``), the source cannot, or it was done already."""
        if not getattr(self._phase, "renew", False) or self._credentials.renew is None:
            return False
        with self._api_lock:
            if self._renewing:
                return False
            self._renewing = True
        try:
            fresh = self._credentials.renew()
        except DeployerError as e:
            # Still a refusal by the cluster (what the rollback reports), with why no new ones came.
            raise KubernetesError(
                f"the cluster refused the credentials from {self._credentials.description}, and new ones could "
                f"not be fetched: {e}",
                status=401,
            ) from e
        api, release = _client_for(fresh)
        self._releases.append(release)
        with self._api_lock:
            stale, self._api, self._credentials = self._api, api, fresh
            self.refused = None
        self._retrier.availability.answered()
        self._inform(f"the cluster refused the credentials; using new ones: {fresh.description}")
        stale.close()
        return True

    def _error(self, method: str, path: str, status: int, body: Any, headers: Any) -> KubernetesError:
        message = body.get("message") if isinstance(body, Mapping) else None
        request_id = headers.get("Audit-Id") if headers is not None else None
        if status == 401:
            refusal = self._refusal(request_id)
            with self._api_lock:
                self.refused = self.refused or refusal
            return refusal
        text = message or (body if isinstance(body, str) and body else f"{method} {path} failed")
        if status == 422:
            text = without_value_dumps(str(text))
        retryable = _unavailable_status(status)
        return KubernetesError(str(text), status=status, request_id=request_id, retryable=retryable)

    def _refusal(self, request_id: str | None) -> KubernetesError:
        if self._credentials.has_expired():
            expired = self._credentials.expires_at
            return CredentialsExpiredError(
                f"the cluster refused the credentials from {self._credentials.description}: they expired at "
                f"{expired.isoformat() if expired else 'an unknown time'}",
                status=401,
                request_id=request_id,
            )
        return KubernetesError(
            f"the cluster refused the credentials from {self._credentials.description}",
            status=401,
            request_id=request_id,
        )

    def _get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        status, body = self._request("GET", resource.path(namespace, name), allow=(404,))
        return None if status == 404 else dict(body)

    def _list(
        self,
        resource: Resource,
        namespace: str | None,
        query: Mapping[str, Any] | None = None,
        *,
        retried: bool = True,
    ) -> dict[str, Any]:
        """LIST; with ``retried`` False one try that raises Transient, for a caller that retries itself."""
        path = resource.path(namespace if resource.namespaced else None)
        if retried:
            _, body = self._request("GET", path, query=query)
        else:
            _, body = self._attempt(
                "GET", path, query=query, body=None, content_type="application/json", allow=(), repeatable=True
            )
        listed = dict(body)
        # A list's items come without kind and apiVersion; the pure modules read them.
        for item in listed.get("items") or ():
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return listed

    # --- discovery --------------------------------------------------------------------------------------

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """Where a kind lives; asks the API (once per group version) for kinds it does not know."""
        with self._resources_lock:
            known = self._resources.get((api_version, kind))
            if known is not None:
                return known
            # A miss asks again even for a group version seen before: a CRD may have been applied since.
            self._discover(api_version)
            known = self._resources.get((api_version, kind))
        if known is None:
            raise UnknownKindError(
                f'resource mapping not found: no matches for kind "{kind}" in version "{api_version}"; '
                "ensure CRDs are installed first"
            )
        return known

    def _discover(self, api_version: str) -> None:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, body = self._request("GET", path, allow=(404,))
        if status == 404 or not isinstance(body, Mapping):
            return
        for entry in body.get("resources") or ():
            if "/" in str(entry.get("name", "")):
                continue  # subresources such as deployments/status
            resource = Resource(api_version, str(entry["kind"]), str(entry["name"]), bool(entry.get("namespaced")))
            self._resources.setdefault((api_version, resource.kind), resource)

    def ref_of(self, obj: Mapping[str, Any]) -> ObjectRef:
        """The object's address, with the default namespace filled in for namespaced kinds."""
        resource = self.resource_for(str(obj.get("apiVersion")), str(obj.get("kind")))
        ref = ObjectRef.of(obj)
        if resource.namespaced and not ref.namespace:
            return ObjectRef(ref.api_version, ref.kind, self.default_namespace, ref.name)
        if not resource.namespaced and ref.namespace:
            return ObjectRef(ref.api_version, ref.kind, None, ref.name)
        return ref

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        return self._get(self.resource_for(ref.api_version, ref.kind), ref.namespace, ref.name)

    def fetch(self, refs: Sequence[ObjectRef]) -> dict[ObjectRef, dict[str, Any] | None]:
        """The live state of each object (None when absent), e.g. for ``rollbacks.plan_rollback``."""
        return {ref: self.get(ref) for ref in refs}

    # --- record and apply -------------------------------------------------------------------------------

    def record(self, objects: Sequence[Mapping[str, Any]]) -> LiveRecord:
        """What is live for each object before apply, in apply order, with each workload's current revision.

        One GET per object, and one LIST of ReplicaSets / ControllerRevisions per namespace that has
        Deployments / StatefulSets or DaemonSets.
        """
        records: list[ObjectRecord] = []
        replica_sets: dict[str, list[dict[str, Any]]] = {}
        revisions: dict[str, list[dict[str, Any]]] = {}
        for obj in sorted(objects, key=lambda o: apply_rank(str(o.get("kind")))):
            ref = self.ref_of(obj)
            live = self.get(ref)
            revision = None
            if live is not None and ref.kind in rollbacks.ROLLED_BACK_KINDS and ref.namespace:
                if ref.kind == "Deployment":
                    if ref.namespace not in replica_sets:
                        replica_sets[ref.namespace] = self._list(REPLICA_SETS, ref.namespace).get("items") or []
                    revision = rollbacks.record_revision(live, replica_sets=replica_sets[ref.namespace])
                else:
                    if ref.namespace not in revisions:
                        listed = self._list(CONTROLLER_REVISIONS, ref.namespace)
                        revisions[ref.namespace] = listed.get("items") or []
                    revision = rollbacks.record_revision(live, controller_revisions=revisions[ref.namespace])
            records.append(ObjectRecord(ref, live is not None, live, revision))
        return LiveRecord(records)

    def ensure_namespace(self, name: str, *, create: bool = True) -> bool:
        """Make sure the namespace exists; True when this call created it.

        Raises KubernetesError when it is missing and ``create`` is False (--no-create-namespace).
        """
        if self._get(NAMESPACES, None, name) is not None:
            return False
        if not create:
            raise KubernetesError(f'namespace "{name}" does not exist (--no-create-namespace)', status=404)
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        status, _ = self._request("POST", NAMESPACES.path(None), body=body, allow=(409,))
        return status != 409

    def apply(
        self,
        objects: Sequence[Mapping[str, Any]],
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        record: LiveRecord | None = None,
        origins: Mapping[ObjectRef, str] | None = None,
        dry_run: bool = False,
    ) -> list[ApplyResult]:
        """Server-side apply of every object, in dependency order.

        With ``force`` the fields other managers own (``kubectl-client-side-apply``, ``kubectl-edit``...)
        are taken over and reported; without it a conflict raises ApplyError naming the fields and their
        managers. With ``dry_run`` nothing is stored (``dryRun=All``). ``record`` (from ``record()``) tells
        created from configured from unchanged and which fields were taken; ``origins`` names each object's
        file and document in error messages. The field ownership of client-side ``kubectl apply`` is upgraded
        to ``field_manager``'s as ``kubectl apply --server-side`` does (ApplyResult.upgraded), so that fields
        the manifests no longer have are removed.
        """
        results = []
        for obj in sorted(objects, key=lambda o: apply_rank(str(o.get("kind")))):
            ref = self.ref_of(obj)
            resource = self.resource_for(ref.api_version, ref.kind)
            where = f"{origins[ref]}: " if origins and ref in origins else ""
            before = record.find(ref) if record is not None else None
            # Fields that `kubectl apply` (client-side) owns would outlive their removal from the manifests:
            # a server-side apply only removes fields its own manager applied before. kubectl apply
            # --server-side moves them into its own Apply entry (see managed_fields). kubectl does it after
            # its apply, from the answer, then applies again, to save a GET on every apply. With force,
            # deployer has read every object already (record) and upgrades first, from that read: one request
            # more for such an object, none for the others, and the apply that follows drops what the
            # manifests dropped. Upgrading first cannot change what a forced apply takes (all conflicting
            # fields anyway); without force it would hide the conflicts --no-force-conflicts must refuse, so
            # then deployer keeps kubectl's order: only an apply that went through is followed by the upgrade.
            # Never in a dry run: a dry-run upgrade is not stored, so no dry-run apply could build on it.
            recorded = before.content if before is not None else None
            upgrade_first = force and not dry_run and recorded is not None
            upgraded: list[str] = []
            if upgrade_first and recorded is not None:
                upgraded = self._upgrade_client_side_apply(resource, ref, recorded, field_manager)
            status, live = self._server_side_apply(resource, ref, obj, field_manager, force, dry_run, where)
            if not upgrade_first and not dry_run and isinstance(live, Mapping):
                upgraded = self._upgrade_client_side_apply(resource, ref, live, field_manager)
                if upgraded:
                    status, live = self._server_side_apply(resource, ref, obj, field_manager, force, dry_run, where)
            results.append(_apply_result(ref, status, live, before, field_manager, upgraded))
        return results

    def _server_side_apply(
        self,
        resource: Resource,
        ref: ObjectRef,
        obj: Mapping[str, Any],
        field_manager: str,
        force: bool,
        dry_run: bool,
        where: str,
    ) -> tuple[int, Any]:
        query: dict[str, Any] = {"fieldManager": field_manager, "force": force}
        if dry_run:
            # The server runs admission and defaulting and answers with what it would store.
            query["dryRun"] = "All"
        try:
            status, live = self._request(
                "PATCH",
                resource.path(ref.namespace, ref.name),
                query=query,
                body=dict(obj),
                content_type="application/apply-patch+yaml",
                allow=(409,),
            )
        except CredentialsExpiredError:
            raise
        except KubernetesError as e:
            raise ApplyError(
                f"{where}{ref} was refused: {e.message}{_refusal_hint(ref, e)}",
                status=e.status,
                request_id=e.request_id,
                retryable=e.retryable,
            ) from e
        if status == 409:
            raise ApplyError(
                f"{where}{ref} conflicts with other field managers: {_conflict_text(live)}; "
                "without --no-force-conflicts deployer takes these fields over",
                status=409,
            )
        return status, live

    def _upgrade_client_side_apply(
        self, resource: Resource, ref: ObjectRef, live: Mapping[str, Any], field_manager: str
    ) -> list[str]:
        """Move the client-side apply managers' fields into ``field_manager``'s Apply entry, as kubectl apply
        --server-side does; returns the managers upgraded (empty: nothing to do, or it did not work).

        One JSON patch of metadata.managedFields guarded by the resourceVersion read; on 409 (the object changed
        since) read it again and recompute, up to UPGRADE_ATTEMPTS times. Like kubectl, a failure only warns:
        the apply goes on as it would without the upgrade, and the next run tries again.
        """
        path = resource.path(ref.namespace, ref.name)
        current: Mapping[str, Any] | None = live
        for _ in range(UPGRADE_ATTEMPTS):
            if current is None:
                return []
            managers = managed_fields.client_side_apply_managers(
                (current.get("metadata") or {}).get("managedFields") or ()
            )
            patch = managed_fields.upgrade_patch(current, field_manager)
            if patch is None:
                return []
            try:
                status, _ = self._request(
                    "PATCH", path, body=patch, content_type="application/json-patch+json", allow=(409,)
                )
            except CredentialsExpiredError:
                raise
            except KubernetesError as e:
                log.warning("could not upgrade the client-side apply field ownership of %s: %s", ref, e)
                return []
            if status != 409:
                return managers
            current = self._get(resource, ref.namespace, ref.name)
        log.warning(
            "could not upgrade the client-side apply field ownership of %s: it kept changing (%d attempts)",
            ref,
            UPGRADE_ATTEMPTS,
        )
        return []

    # --- the deploy lock --------------------------------------------------------------------------------

    def acquire_lock(
        self,
        namespace: str,
        holder: str,
        timeout: float,
        *,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        cancel: threading.Event | None = None,
        on_progress: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> Lock:
        """Take the namespace's deploy lock (Lease ``deployer-lock``), waiting up to ``timeout`` seconds (0: as
        long as it takes).

        ``holder`` names this run (its URL) and is told to whoever waits; a unique suffix is added. A lease
        not renewed for ``lease_seconds`` belongs to a run that died (or stopped) and is taken over. Raises
        LockTimeoutError naming the holder. ``on_lost`` is called when the lock is found lost (Lock).
        """
        identity = f"{holder} ({uuid.uuid4().hex[:8]})"
        deadline = time.monotonic() + timeout if timeout > 0 else math.inf
        announced: str | None = None
        # Expiry is judged on this machine's clock: since when has the holder's record stayed unchanged?
        unchanged_since: tuple[str, float] | None = None
        while True:
            lease = self._get(LEASES, namespace, LOCK_NAME)
            if lease is None:
                if self._create_lease(namespace, identity, lease_seconds):
                    return Lock(self, namespace, identity, lease_seconds, on_lost)
                continue
            spec = lease.get("spec") or {}
            current = str(spec.get("holderIdentity") or "")
            if current == identity:
                # Our create or take-over went through but its answer was lost (the retry then met a conflict
                # with ourselves): the lock is ours, not someone's to wait for.
                return Lock(self, namespace, identity, lease_seconds, on_lost)
            duration = int(spec.get("leaseDurationSeconds") or lease_seconds)
            signature = f"{current}@{spec.get('renewTime')}"
            if unchanged_since is None or unchanged_since[0] != signature:
                unchanged_since = (signature, time.monotonic())
            stale = time.monotonic() - unchanged_since[1] >= duration
            if not current or stale or _lease_expired(spec, duration):
                if self._take_lease(namespace, lease, identity, lease_seconds):
                    return Lock(self, namespace, identity, lease_seconds, on_lost)
                continue
            if announced != current and on_progress is not None:
                on_progress(f"waiting for the deploy lock in {namespace}, held by {current}")
                announced = current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(
                    f"the deploy lock in namespace {namespace} is held by {current}; "
                    f"gave up after {format_duration(timeout)} (--lock-timeout)"
                )
            if cancel is not None and cancel.is_set():
                raise LockTimeoutError(f"cancelled while waiting for the deploy lock held by {current}")
            # Wake on any change of the lease, or when it would expire, whichever comes first.
            self._watch_once(
                LEASES,
                namespace,
                str((lease.get("metadata") or {}).get("resourceVersion") or ""),
                min(remaining, duration - (time.monotonic() - unchanged_since[1]) + 0.5),
                field_selector=f"metadata.name={LOCK_NAME}",
                cancel=cancel,
            )

    def _lease_body(self, holder: str | None, lease_seconds: int, acquired: bool) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": lease_seconds, "renewTime": now}
        if acquired:
            spec["acquireTime"] = now
        return spec

    def _create_lease(self, namespace: str, holder: str, lease_seconds: int) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LOCK_NAME, "namespace": namespace},
            "spec": self._lease_body(holder, lease_seconds, True),
        }
        try:
            status, _ = self._request("POST", LEASES.path(namespace), body=body, allow=(409,))
        except KubernetesError as e:
            if e.status is None or e.status < 500:
                raise
            return False  # a POST is not repeated blindly: the next read of the lease tells whether it was made
        return status != 409

    def _take_lease(self, namespace: str, lease: dict[str, Any], holder: str, lease_seconds: int) -> bool:
        body = dict(lease)
        body["spec"] = {**(lease.get("spec") or {}), **self._lease_body(holder, lease_seconds, True)}
        # The resourceVersion in the body makes this a compare-and-swap: 409 when another run was faster.
        status, _ = self._request("PUT", LEASES.path(namespace, LOCK_NAME), body=body, allow=(409, 404))
        return status < 300

    def _renew_lease(self, namespace: str, holder: str, lease_seconds: int) -> str | None:
        """Renew ``holder``'s lease; None when renewed, else who holds the lock now ("" when no one does)."""
        for _ in range(UPGRADE_ATTEMPTS):
            lease = self._get(LEASES, namespace, LOCK_NAME)
            current = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
            if lease is None or current != holder:
                return current
            body = dict(lease)
            body["spec"] = {**(lease.get("spec") or {}), **self._lease_body(holder, lease_seconds, False)}
            # A compare-and-swap on the resourceVersion read: 409 when another run took it meanwhile, which
            # the next read tells.
            status, _ = self._request("PUT", LEASES.path(namespace, LOCK_NAME), body=body, allow=(409,))
            if status != 409:
                return None
        return None  # changed under every attempt; the next renewal, a third of the lease later, tries again

    def _lease_holder(self, namespace: str) -> str:
        """Who holds the deploy lock now; "" when no one does."""
        lease = self._get(LEASES, namespace, LOCK_NAME)
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def _release_lease(self, namespace: str, holder: str) -> None:
        lease = self._get(LEASES, namespace, LOCK_NAME)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != holder:
            return
        version = (lease.get("metadata") or {}).get("resourceVersion")
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": version}}
        self._request("DELETE", LEASES.path(namespace, LOCK_NAME), body=body, allow=(404, 409))

    # --- watching ---------------------------------------------------------------------------------------

    def _watch_once(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        seconds: float,
        *,
        field_selector: str | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Block until one change arrives on a watch, the time is up, or ``cancel`` is set."""
        changed = threading.Event()
        deadline = time.monotonic() + max(seconds, 0.0)
        watcher = _Watcher(
            self, resource, namespace, lambda _: changed.set(), field_selector=field_selector, deadline=deadline
        )
        watcher.start(resource_version=resource_version)
        try:
            while not changed.is_set() and time.monotonic() < deadline:
                if cancel is not None and cancel.is_set():
                    return
                changed.wait(min(TICK_SECONDS * 5, max(deadline - time.monotonic(), 0.0)))
        finally:
            watcher.stop()

    def wait(
        self,
        workloads: Sequence[ObjectRef],
        *,
        timeout: float,
        tolerate_failures_for: float = 0.0,
        unschedulable_grace: float = rollouts.DEFAULT_UNSCHEDULABLE_GRACE.total_seconds(),
        on_progress: Callable[[str], None] = lambda line: None,
        cancel: threading.Event | None = None,
        applied: Sequence[ApplyResult] = (),
    ) -> WaitResult:
        """Wait for every workload as ``kubectl rollout status`` would (Jobs: to completion), all at once.

        Returns on the first failure that cannot heal (see rollouts.find_pod_failures; with
        ``tolerate_failures_for`` a failure must persist that long), when all are done, at the deadline
        (``timeout`` seconds; 0 waits forever) or when ``cancel`` is set. ``on_progress`` gets a line per
        change of a workload's progress. Requests: one LIST and one WATCH per kind and namespace,
        whatever the number of workloads; no LIST of Jobs when ``applied`` has every Job.

        ``applied`` is what ``apply`` returned, in its order. Only the pod template applied counts: a workload
        whose template someone else changed since (another deploy, ``kubectl edit``) fails the wait instead of
        passing on that other revision. A Job may finish and be deleted
        (``ttlSecondsAfterFinished``) before or while this waits: its history is watched from its apply (its
        resourceVersion then), so that its last state, which the DELETED event carries, says whether it
        completed (rollouts.judge_departed).
        """
        started = time.monotonic()
        deadline = started + timeout if timeout > 0 else None
        wanted = set(workloads)
        applied_objects = {r.ref: r.live for r in applied if r.ref in wanted and r.live}
        view = _ClusterView(self, workloads, with_revision_objects=True, applied=applied_objects, deadline=deadline)
        tolerate = timedelta(seconds=tolerate_failures_for)
        grace = timedelta(seconds=unschedulable_grace)
        first_seen: dict[ObjectRef, dict[str, datetime]] = {}
        shown: dict[ObjectRef, str] = {}
        verdicts: dict[ObjectRef, RolloutVerdict] = {}
        failures: dict[ObjectRef, list[Failure]] = {}

        def result(outcome: WaitOutcome, reason: str) -> WaitResult:
            return WaitResult(
                outcome,
                reason,
                dict(verdicts),
                {ref: list(found) for ref, found in failures.items() if found},
                {ref: obj for ref in workloads if (obj := view.workload(ref) or view.departed(ref)) is not None},
                {ref: view.revision_pods(ref) for ref in workloads},
                time.monotonic() - started,
            )

        with view:
            while True:
                view.pump(TICK_SECONDS)
                if cancel is not None and cancel.is_set():
                    return result(WaitOutcome.CANCELLED, "cancelled while waiting for the rollout")
                if view.synced:
                    now = datetime.now(UTC)
                    for ref in workloads:
                        obj = view.workload(ref)
                        if obj is None:
                            verdict, gone = rollouts.judge_departed(
                                ref.kind, ref.name, view.departed(ref), applied_objects.get(ref)
                            )
                            verdicts[ref], failures[ref] = verdict, list(gone)
                            if shown.get(ref) != verdict.progress:
                                shown[ref] = verdict.progress
                                on_progress(verdict.progress)
                            continue
                        verdict = rollouts.judge_workload(obj)
                        verdicts[ref] = verdict
                        if shown.get(ref) != verdict.progress:
                            shown[ref] = verdict.progress
                            on_progress(verdict.progress)
                        found: list[Failure] = list(rollouts.find_workload_failures(obj))
                        replaced = _template_replaced(obj, applied_objects.get(ref))
                        if replaced:
                            found.insert(0, WorkloadFailure(ref.kind, ref.name, "TemplateReplaced", replaced))
                        scan = rollouts.find_pod_failures(
                            view.pods_in(ref.namespace),
                            view.revision(ref),
                            now=now,
                            first_seen=first_seen.get(ref),
                            tolerate_failures_for=tolerate,
                            unschedulable_grace=grace,
                        )
                        first_seen[ref] = scan.first_seen
                        found.extend(scan.failures)
                        failures[ref] = found
                    failed = [ref for ref in workloads if failures.get(ref)]
                    if failed:
                        first = failed[0]
                        return result(WaitOutcome.FAILED, f"{first}: {failures[first][0].describe()}")
                    if all(verdicts[ref].done for ref in workloads):
                        return result(WaitOutcome.DONE, "every workload rolled out")
                if deadline is not None and time.monotonic() >= deadline:
                    waiting = [verdicts[ref] for ref in workloads if ref in verdicts and not verdicts[ref].done]
                    detail = f": {waiting[0].message}" if waiting else ""
                    return result(WaitOutcome.TIMED_OUT, f"timed out after {format_duration(timeout)}{detail}")

    # --- diagnosis --------------------------------------------------------------------------------------

    def diagnose(self, result: WaitResult, *, refs: Sequence[ObjectRef] | None = None) -> list[diagnoses.Diagnosis]:
        """Explain the failed or unfinished workloads of ``result``: their pods, latest events and crash logs.

        One LIST of events per namespace and one log request per container worth reading (at most three
        per workload). Problems fetching these are noted in the diagnosis, never raised.
        """
        with self._retrying_until(time.monotonic() + DIAGNOSIS_RETRY_SECONDS):
            return self._diagnose(result, list(refs) if refs is not None else result.unfinished)

    def _diagnose(self, result: WaitResult, chosen: Sequence[ObjectRef]) -> list[diagnoses.Diagnosis]:
        events_by_namespace: dict[str, list[dict[str, Any]]] = {}
        found: list[diagnoses.Diagnosis] = []
        for ref in chosen:
            workload = result.workloads.get(ref) or {"kind": ref.kind, "metadata": {"name": ref.name}}
            failures = result.failures.get(ref, [])
            pods = result.pods.get(ref, [])
            namespace = ref.namespace or self.default_namespace
            if namespace not in events_by_namespace:
                try:
                    events_by_namespace[namespace] = self._list(EVENTS, namespace).get("items") or []
                except KubernetesError as e:
                    log.warning("could not list events in %s: %s", namespace, e)
                    events_by_namespace[namespace] = []
            logs: dict[diagnoses.LogRequest, list[str]] = {}
            for request in diagnoses.logs_to_collect(failures, pods):
                logs[request] = self.container_log(namespace, request)
            reason = None
            if not failures:
                verdict = result.verdicts.get(ref)
                reason = f"{result.reason}" if verdict is None else f"{result.outcome}: {verdict.message}"
            found.append(
                diagnoses.diagnose(workload, failures, pods, events_by_namespace[namespace], logs, reason=reason)
            )
        return found

    def container_log(self, namespace: str, request: diagnoses.LogRequest, tail_lines: int = 20) -> list[str]:
        """The last lines of one container's log (the previous instance's when asked); a note if unavailable."""
        query = {"container": request.container, "tailLines": tail_lines, "previous": request.previous}
        try:
            response = self._send("GET", PODS.path(namespace, request.pod, "log"), query=query, accept=LOG_ACCEPT)
            try:
                data, status = response.data, int(response.status)
            finally:
                response.release_conn()
        except KubernetesError as e:
            return [f"(logs unavailable: {e})"]
        text: str = data.decode("utf-8", "replace")
        if status >= 300:
            try:
                text = str(json.loads(text).get("message") or text)
            except (ValueError, AttributeError):
                pass
            return [f"(logs unavailable: {text.strip()})"]
        return text.splitlines()

    # --- rollback ---------------------------------------------------------------------------------------

    def plan_rollback(self, record: LiveRecord, *, delete_created_on_failure: bool = False) -> list[RollbackStep]:
        """What to do to put back everything in ``record``, from what is live now (rollbacks.plan_rollback).
        Renews expired credentials when their source can (see ``_renewing_credentials``)."""
        with self._renewing_credentials():
            current = self.fetch([r.ref for r in record.objects])
        return rollbacks.plan_rollback(record, current, delete_created_on_failure=delete_created_on_failure)

    def rollback(
        self,
        steps: Sequence[RollbackStep],
        *,
        timeout: float,
        on_progress: Callable[[str], None] = lambda line: None,
        cancel: threading.Event | None = None,
    ) -> RollbackResult:
        """Carry out the steps, then wait (up to ``timeout`` seconds, 0 = forever) until every restored
        workload's recorded revision is ready again (rollbacks.rollback_verdict). A step that fails does not
        stop the others; its problem is reported. Requests retry while the API is unavailable, within
        ``timeout``; expired credentials are renewed when their source can."""
        started = time.monotonic()
        with self._renewing_credentials():
            if timeout > 0:
                with self._retrying_until(started + timeout):
                    return self._roll_back(steps, started, timeout, on_progress, cancel)
            return self._roll_back(steps, started, timeout, on_progress, cancel)

    def _roll_back(
        self,
        steps: Sequence[RollbackStep],
        started: float,
        timeout: float,
        on_progress: Callable[[str], None],
        cancel: threading.Event | None,
    ) -> RollbackResult:
        outcomes: dict[ObjectRef, WorkloadOutcome] = {}
        problems: list[str] = []
        waiting: dict[ObjectRef, RollbackTarget] = {}
        for step in steps:
            on_progress(step.summary)
            try:
                self._carry_out(step)
            except KubernetesError as e:
                problems.append(f"{step.ref}: {e}")
                outcomes[step.ref] = WorkloadOutcome(step.ref.kind, step.ref.name, "not restored", str(e))
                continue
            if step.problem:
                problems.append(f"{step.ref}: {step.problem}")
            outcomes[step.ref] = WorkloadOutcome(step.ref.kind, step.ref.name, step.outcome, step.detail)
            if step.waits and step.target is not None:
                waiting[step.ref] = step.target
        if waiting:
            remaining = max(timeout - (time.monotonic() - started), 0.001) if timeout > 0 else 0.0
            for ref, problem in self._wait_restored(waiting, remaining, on_progress, cancel).items():
                problems.append(f"{ref}: {problem}")
                outcome = outcomes[ref]
                detail = f"{outcome.detail}: {problem}" if outcome.detail else problem
                outcomes[ref] = WorkloadOutcome(ref.kind, ref.name, "not ready", detail)
        return RollbackResult([outcomes[step.ref] for step in steps if step.ref in outcomes], problems)

    def _carry_out(self, step: RollbackStep) -> None:
        ref = step.ref
        resource = self.resource_for(ref.api_version, ref.kind)
        path = resource.path(ref.namespace, ref.name)
        # Named, so that the next deploy says it took these fields back from deployer's rollback rather than
        # from the client library's default manager ("OpenAPI-Generator"), which no user would recognise.
        manager = {"fieldManager": ROLLBACK_FIELD_MANAGER}
        if step.action is RollbackAction.PATCH:
            content_type = (
                "application/json-patch+json" if step.patch_type == "json" else "application/strategic-merge-patch+json"
            )
            self._request("PATCH", path, query=manager, body=step.body, content_type=content_type)
        elif step.action is RollbackAction.REPLACE:
            self._request("PUT", path, query=manager, body=step.body)
        elif step.action is RollbackAction.CREATE:
            self._request("POST", resource.path(ref.namespace), query=manager, body=step.body)
        elif step.action is RollbackAction.DELETE:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
            self._request("DELETE", path, body=body, allow=(404,))

    def _wait_restored(
        self,
        targets: Mapping[ObjectRef, RollbackTarget],
        timeout: float,
        on_progress: Callable[[str], None],
        cancel: threading.Event | None,
    ) -> dict[ObjectRef, str]:
        """Wait until each target is ready; returns what is still wrong per workload (empty: all ready)."""
        deadline = time.monotonic() + timeout if timeout > 0 else None
        refs = list(targets)
        view = _ClusterView(self, refs, with_revision_objects=True, deadline=deadline)
        shown: dict[ObjectRef, str] = {}
        verdicts: dict[ObjectRef, RolloutVerdict] = {}
        deleted: set[str] = set()
        with view:
            while True:
                view.pump(TICK_SECONDS)
                if view.synced:
                    for ref, target in targets.items():
                        obj = view.workload(ref)
                        if obj is None:
                            verdicts[ref] = RolloutVerdict(
                                ref.kind, ref.name, rollouts.RolloutState.FAILED, "deleted during the rollback", ""
                            )
                            continue
                        if ref.kind == "StatefulSet":
                            for pod in rollbacks.stuck_stateful_set_pods(obj, target, view.pods_in(ref.namespace)):
                                if pod not in deleted:
                                    deleted.add(pod)
                                    on_progress(
                                        f"{ref.name}: deleting pod {pod} of the failed revision (forced rollback)"
                                    )
                                    self._request("DELETE", PODS.path(ref.namespace, pod), allow=(404,))
                        verdict = rollbacks.rollback_verdict(obj, target, replica_sets=view.replica_sets(ref.namespace))
                        verdicts[ref] = verdict
                        if shown.get(ref) != verdict.progress:
                            shown[ref] = verdict.progress
                            on_progress(verdict.progress)
                    if all(v.done or v.failed for v in verdicts.values()) and len(verdicts) == len(refs):
                        return {ref: v.message for ref, v in verdicts.items() if not v.done}
                if cancel is not None and cancel.is_set():
                    return {ref: "rollback wait cancelled" for ref in refs if not verdicts.get(ref, _NOT_YET).done}
                if deadline is not None and time.monotonic() >= deadline:
                    return {
                        ref: f"not ready after {format_duration(timeout)} (--rollback-timeout): "
                        f"{verdicts[ref].message if ref in verdicts else 'no status seen'}"
                        for ref in refs
                        if not verdicts.get(ref, _NOT_YET).done
                    }


_NOT_YET = RolloutVerdict("", "", rollouts.RolloutState.WAITING, "", "")


# --- list + watch ---------------------------------------------------------------------------------------------


class _Watcher:
    """List, then watch from the list's resourceVersion, forever: re-watch when the server ends a watch,
    re-list on 410 Gone. While the API is unavailable (a dropped stream, connection errors, 429, 5xx) it
    retries with back-off until ``deadline`` (on the cluster's clock; None: until stopped), resuming from the
    last resourceVersion it saw so that no event is lost. Hands every list (``("sync", items)``) and event
    (``("event", type, obj)``) to ``sink``; ``("error", exception)`` when it gives up. Runs in a daemon
    thread until ``stop``."""

    def __init__(
        self,
        cluster: Cluster,
        resource: Resource,
        namespace: str | None,
        sink: Callable[[tuple[Any, ...]], None],
        *,
        field_selector: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self._cluster = cluster
        self.resource = resource
        self.namespace = namespace
        self._sink = sink
        self._field_selector = field_selector
        self._deadline = deadline if deadline is not None else math.inf
        self._stopped = threading.Event()
        self._response: Any = None
        self._response_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._resource_version: str | None = None

    def start(self, *, resource_version: str | None = None) -> None:
        """Start; with ``resource_version``, skip the first list and watch from there."""
        self._resource_version = resource_version
        self._thread = threading.Thread(target=self._run, name=f"deployer-watch-{self.resource.plural}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._response_lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the read in the watching thread
            except Exception:  # noqa: BLE001 - already closed or released: nothing left to stop
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _query(self) -> dict[str, Any]:
        return {"fieldSelector": self._field_selector} if self._field_selector else {}

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                # One Retrying per watch: a watch that ran its window resets the back-off.
                self._cluster._retrier.call(
                    self._list_and_watch,
                    deadline=self._deadline,
                    sleep=self._stopped.wait,
                    stop=self._stopped.is_set,
                )
            except Exception as e:  # noqa: BLE001 - reported to the waiting loop, which raises it
                if not self._stopped.is_set():
                    self._sink(("error", e))
                return

    def _list_and_watch(self) -> None:
        """List when there is no resourceVersion to resume from, then watch until the server ends the watch."""
        if self._stopped.is_set():
            return
        try:
            if not self._resource_version:
                listed = self._cluster._list(self.resource, self.namespace, self._query(), retried=False)
                self._resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                self._sink(("sync", listed.get("items") or []))
            self._watch(self._resource_version)
        except _Gone:
            self._resource_version = None
        except KubernetesError as e:
            if e.retryable:
                raise Transient(e) from e
            raise
        except (urllib3.exceptions.HTTPError, OSError) as e:
            # The stream broke (a control plane restarting cuts every connection): resume from where it was.
            raise Transient(_unreachable(self._cluster.host, e)) from e

    def _watch(self, resource_version: str) -> None:
        """One watch request, until the server ends it; ``_resource_version`` follows every event."""
        query = {
            **self._query(),
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": WATCH_WINDOW_SECONDS,
        }
        path = self.resource.path(self.namespace if self.resource.namespaced else None)
        response = self._cluster._send(
            "GET", path, query=query, timeout=(CONNECT_TIMEOUT_SECONDS, WATCH_READ_TIMEOUT_SECONDS)
        )
        with self._response_lock:
            self._response = response
        finished = False
        try:
            if self._stopped.is_set():
                return
            if response.status == 410:
                raise _Gone()
            if response.status >= 300:
                body = response.data
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = body.decode("utf-8", "replace")
                error = self._cluster._error("GET", path, int(response.status), parsed, response.headers)
                if error.retryable:
                    raise Transient(error, _advised_wait(response.headers))
                raise error
            for line in _lines(response):
                try:
                    event = json.loads(line)
                except ValueError as e:
                    raise KubernetesError("a watch stream broke off mid-event", retryable=True) from e
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    code = obj.get("code")
                    raise KubernetesError(
                        str(obj.get("message") or "watch error"),
                        status=code,
                        retryable=isinstance(code, int) and _unavailable_status(code),
                    )
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._resource_version = str(version)
                if kind != "BOOKMARK":
                    self._sink(("event", kind, obj))
            finished = not self._stopped.is_set()
        finally:
            with self._response_lock:
                self._response = None
            try:
                if not finished:
                    # Unread watch data (or a shut-down socket) must never go back to the pool for reuse.
                    response.close()
                response.release_conn()
            except Exception:  # noqa: BLE001 - the connection was shut down by stop()
                pass


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-delimited JSON of a watch, as it arrives."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


class _ClusterView:
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
        cluster: Cluster,
        workloads: Sequence[ObjectRef],
        *,
        with_revision_objects: bool,
        applied: Mapping[ObjectRef, Mapping[str, Any]] | None = None,
        deadline: float | None = None,
    ) -> None:
        self._cluster = cluster
        self._events: queue.Queue[tuple[tuple[str, str | None], tuple[Any, ...]]] = queue.Queue()
        self._store: dict[tuple[str, str | None], dict[str, dict[str, Any]]] = {}
        self._departed: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._workloads = list(workloads)
        self._watchers: list[_Watcher] = []
        applied = applied or {}
        # An object of the same name with another uid is another object (an earlier Job of that name, whose
        # deletion a replayed history may hold): not the history of the one applied.
        self._uids: dict[tuple[str, str | None, str], str] = {
            (ref.kind, ref.namespace or cluster.default_namespace, ref.name): str(uid)
            for ref, obj in applied.items()
            if (uid := (obj.get("metadata") or {}).get("uid"))
        }
        self._watch_from: dict[tuple[str, str | None], str] = {}
        wanted: dict[tuple[str, str | None], Resource] = {}
        for ref in workloads:
            namespace = ref.namespace or cluster.default_namespace
            wanted[(ref.kind, namespace)] = WORKLOAD_RESOURCES[ref.kind]
            wanted[("Pod", namespace)] = PODS
            if with_revision_objects and ref.kind == "Deployment":
                wanted[("ReplicaSet", namespace)] = REPLICA_SETS
            if with_revision_objects and ref.kind == "DaemonSet":
                wanted[("ControllerRevision", namespace)] = CONTROLLER_REVISIONS
        for key, resource in wanted.items():
            self._watchers.append(_Watcher(cluster, resource, key[1], self._sink_for(key), deadline=deadline))
            if key[0] == "Job":
                self._start_from_apply(key, applied)
        self._pending = {(w.resource.kind, w.namespace) for w in self._watchers} - set(self._watch_from)

    def _start_from_apply(self, key: tuple[str, str | None], applied: Mapping[ObjectRef, Mapping[str, Any]]) -> None:
        """Seed the view of a namespace's Jobs with their applied state, to watch from the first one's apply."""
        refs = [
            r
            for r in self._workloads
            if r.kind == key[0] and (r.namespace or self._cluster.default_namespace) == key[1]
        ]
        seeded: dict[str, dict[str, Any]] = {}
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

    def _sink_for(self, key: tuple[str, str | None]) -> Callable[[tuple[Any, ...]], None]:
        def sink(item: tuple[Any, ...]) -> None:
            self._events.put((key, item))

        return sink

    def __enter__(self) -> _ClusterView:
        for watcher in self._watchers:
            watcher.start(resource_version=self._watch_from.get((watcher.resource.kind, watcher.namespace)))
        return self

    def __exit__(self, *exc: object) -> None:
        for watcher in self._watchers:
            watcher._stopped.set()
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
        if self._cluster.refused is not None:
            raise self._cluster.refused
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

    def _take(self, key: tuple[str, str | None], message: tuple[Any, ...]) -> None:
        if message[0] == "error":
            error = message[1]
            if isinstance(error, KubernetesError):
                raise error
            raise KubernetesError(f"watching {key[0]} in {key[1]} failed: {error}") from error
        store = self._store.setdefault(key, {})
        if message[0] == "sync":
            store.clear()
            for obj in message[1]:
                if self._is_applied_one(key, obj):
                    store[str(obj["metadata"]["name"])] = obj
            self._pending.discard(key)
            return
        _, event_type, obj = message
        if not self._is_applied_one(key, obj):
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        if event_type == "DELETED":
            store.pop(name, None)
            # Its last state: a Job deleted once finished is judged by it (rollouts.judge_departed).
            self._departed[(key[0], key[1], name)] = obj
        else:
            store[name] = obj

    def _is_applied_one(self, key: tuple[str, str | None], obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        uid = self._uids.get((key[0], key[1], str(meta.get("name", ""))))
        return uid is None or meta.get("uid") == uid

    def _items(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return list(self._store.get((kind, namespace or self._cluster.default_namespace), {}).values())

    def workload(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self._store.get((ref.kind, ref.namespace or self._cluster.default_namespace), {}).get(ref.name)

    def departed(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The last state of the workload when a DELETED event said it is gone; None if none did."""
        return self._departed.get((ref.kind, ref.namespace or self._cluster.default_namespace, ref.name))

    def pods_in(self, namespace: str | None) -> list[dict[str, Any]]:
        return self._items("Pod", namespace)

    def replica_sets(self, namespace: str | None) -> list[dict[str, Any]]:
        return self._items("ReplicaSet", namespace)

    def revision(self, ref: ObjectRef) -> rollouts.RevisionPods | None:
        obj = self.workload(ref)
        if obj is None:
            return None
        return rollouts.newest_revision_pods(
            obj,
            replica_sets=self._items("ReplicaSet", ref.namespace),
            controller_revisions=self._items("ControllerRevision", ref.namespace),
        )

    def revision_pods(self, ref: ObjectRef) -> list[dict[str, Any]]:
        return [dict(p) for p in rollouts.pods_of(self.revision(ref), self.pods_in(ref.namespace))]


# --- small pure pieces kept here because only this module needs them ---------------------------------------


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease_expired(spec: Mapping[str, Any], duration: int) -> bool:
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    try:
        when = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    except ValueError:
        return True
    return datetime.now(UTC) > when + timedelta(seconds=duration)


def _template_replaced(live: Mapping[str, Any], applied: Mapping[str, Any] | None) -> str | None:
    """Why ``live`` no longer runs the pod template this run applied (the apply's answer), or None when it does.

    The server defaults a template once, when it is written, so the applied answer and the live object hold
    the same template until another writer changes it. A Job's template cannot change.
    """
    if applied is None or live.get("kind") == "Job":
        return None
    applied_template = (applied.get("spec") or {}).get("template")
    if applied_template is None or (live.get("spec") or {}).get("template") == applied_template:
        return None
    generation = (live.get("metadata") or {}).get("generation")
    applied_generation = (applied.get("metadata") or {}).get("generation")
    return (
        f"its pod template is no longer the one this run applied (generation {generation} now, this run applied "
        f"{applied_generation}): another deploy or writer changed it"
    )


def _refusal_hint(ref: ObjectRef, error: KubernetesError) -> str:
    """What to do about a refusal whose cause is known: a Job's pod template, which the API never lets change
    (a re-deploy of the same Job with a new image)."""
    if ref.kind == "Job" and error.status == 422 and "spec.template" in error.message and "immutable" in error.message:
        return (
            "; a Job's pod template cannot change: delete the finished Job before deploying, name the Job per "
            "deploy, or set ttlSecondsAfterFinished so that it is removed once finished"
        )
    return ""


INVALID_VALUE = "Invalid value: "
# A value in a 422 longer than this is a Go dump of a whole struct (a Job's pod template runs to kilobytes).
LONGEST_INVALID_VALUE = 80


def without_value_dumps(message: str) -> str:
    """A 422 message with each long ``Invalid value: <value>: <detail>`` value cut to its type.

    The API server prints the refused value with Go's %#v: for ``spec.template: field is immutable`` that is
    the whole pod template, kilobytes on one line, twice in the message. The field and the reason are what a
    person needs; the value is theirs already, in the manifest.
    """
    pieces: list[str] = []
    rest = message
    while INVALID_VALUE in rest:
        before, _, after = rest.partition(INVALID_VALUE)
        end = _end_of_value(after)
        value = after[:end]
        if len(value) > LONGEST_INVALID_VALUE:
            kind = value.split("{", 1)[0] if "{" in value[:60] else ""
            value = f"{kind}{{...}}" if kind else f"({len(value)} characters)"
        pieces.append(before + INVALID_VALUE + value)
        rest = after[end:]
    return "".join(pieces) + rest


def _end_of_value(text: str) -> int:
    """Where a %#v value ends: at the first ``": "`` outside brackets and quoted strings (else the end)."""
    depth, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
            continue
        if char == '"':
            quoted = True
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth = max(depth - 1, 0)
        elif char == ":" and depth == 0 and text[index + 1 : index + 2] == " ":
            return index
    return len(text)


def _conflict_text(body: Any) -> str:
    """The fields and managers of a 409 apply conflict, from the Status's causes (or its message)."""
    if not isinstance(body, Mapping):
        return str(body or "conflict")
    causes = (body.get("details") or {}).get("causes") or ()
    by_manager: dict[str, list[str]] = {}
    for cause in causes:
        message = str(cause.get("message") or "")
        manager = message.split('"')[1] if message.count('"') >= 2 else "another manager"
        by_manager.setdefault(manager, []).append(str(cause.get("field") or message))
    if not by_manager:
        return str(body.get("message") or "conflict")
    return "; ".join(f"{', '.join(fields)} owned by {manager}" for manager, fields in sorted(by_manager.items()))


def field_paths(fields: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The leaf field paths of a managedFields ``fieldsV1`` set, written as the API server writes them in
    conflict messages: ``.spec.template.spec.containers[name="web"].image``."""
    paths: set[str] = set()
    for key, sub in fields.items():
        if key == ".":
            continue
        kind, _, rest = key.partition(":")
        if kind == "f":
            path = f"{prefix}.{rest}"
        elif kind == "k":
            try:
                keys = json.loads(rest)
                path = prefix + "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
            except ValueError:
                path = f"{prefix}[{rest}]"
        elif kind == "v":
            path = f"{prefix}[={rest}]"
        elif kind == "i":
            path = f"{prefix}[{rest}]"
        else:
            path = f"{prefix}.{key}"
        if isinstance(sub, Mapping) and any(k != "." for k in sub):
            paths |= field_paths(sub, path)
        else:
            paths.add(path)
    return paths


def _managed_fields(obj: Mapping[str, Any] | None, operation: str | None = None) -> dict[str, set[str]]:
    owned: dict[str, set[str]] = {}
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or ():
        if operation is not None and entry.get("operation") != operation:
            continue
        fields = entry.get("fieldsV1") or {}
        owned.setdefault(str(entry.get("manager", "")), set()).update(field_paths(fields))
    return owned


def _apply_result(
    ref: ObjectRef,
    status: int,
    live: Any,
    before: ObjectRecord | None,
    field_manager: str,
    upgraded: Sequence[str] = (),
) -> ApplyResult:
    live_obj = dict(live) if isinstance(live, Mapping) else {}
    previous = before.content if before is not None else None
    if status == 201 or (before is not None and not before.existed):
        action = "created"
    elif previous is not None and (previous.get("metadata") or {}).get("resourceVersion") == (
        live_obj.get("metadata") or {}
    ).get("resourceVersion"):
        action = "unchanged"
    else:
        action = "configured"
    taken: dict[str, list[str]] = {}
    if previous is not None:
        owned_before, owned_after = _managed_fields(previous), _managed_fields(live_obj)
        mine = owned_after.get(field_manager, set())
        for manager, fields in owned_before.items():
            if manager == field_manager:
                continue
            lost = (fields - owned_after.get(manager, set())) & mine
            if lost:
                taken[manager] = sorted(lost)
    # Compared with the record, taken before any upgrade: an upgraded manager's fields that this apply keeps
    # are reported as taken from it, which is what happened to them.
    return ApplyResult(ref, action, taken, live_obj, list(upgraded))


def _client_for(credentials: KubeCredentials) -> tuple[Any, Callable[[], None]]:
    """A client for the credentials, and what to call once it is closed (its key material lives in memory
    files: see credentials.memory_backed_kubeconfig).

    An ``exec`` credential plugin runs while the client loads; the client only logs its failure (the
    plugin's whole stderr, on the root logger) and goes on without credentials, which the API then refuses
    as a bare 401. That log record is caught here instead, and the plugin's failure is the error."""
    config, release = memory_backed_kubeconfig(credentials.kubeconfig)
    plugin_failures = _ExecPluginFailures()
    root = logging.getLogger()
    root.addFilter(plugin_failures)
    try:
        api = kubernetes.config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
            config, context=credentials.context, persist_config=False
        )
    except Exception as e:  # the loader raises ConfigException, ValueError, KeyError...
        release()
        raise KubernetesError(f"cannot use the kubeconfig from {credentials.description}: {e}") from e
    finally:
        root.removeFilter(plugin_failures)
    if plugin_failures.messages:
        api.close()
        release()
        raise KubernetesError(
            f"the exec credential plugin {_exec_command(credentials)} of {credentials.description} failed: "
            f"{_plugin_failure_text(plugin_failures.messages[0])}"
        )
    return api, release


class _ExecPluginFailures(logging.Filter):
    """Keeps (and keeps off the console) what the Kubernetes client logs when an exec plugin fails."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("exec:"):
            self.messages.append(message)
            return False
        return True


# How much of a failed plugin's stderr is shown, and what in it looks like a credential.
PLUGIN_STDERR_LIMIT = 160
_CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9+/=_.~-]{20,}")


def _exec_command(credentials: KubeCredentials) -> str:
    """The plugin's command, without its arguments (which may carry a secret)."""
    config = credentials.kubeconfig
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or ()}
    user_name = contexts.get(credentials.context, {}).get("user")
    for entry in config.get("users") or ():
        if entry.get("name") == user_name:
            command = ((entry.get("user") or {}).get("exec") or {}).get("command")
            if command:
                return repr(str(command))
    return "(unknown command)"


def _plugin_failure_text(message: str) -> str:
    """The client's "exec: process returned N. STDERR" as "exited with code N: first stderr line", with
    anything shaped like a token blanked, control characters dropped and the length bounded: the plugin's
    output is not deployer's and may hold a secret."""
    match = re.match(r"exec: process returned (-?\d+)(?:\. (.*))?\Z", message, re.DOTALL)
    if match is None:
        text, prefix = message.removeprefix("exec:").strip(), ""
    else:
        text, prefix = (match.group(2) or "").strip(), f"exited with code {match.group(1)}"
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    printable = "".join(ch for ch in first_line if ch.isprintable()).strip()
    redacted = _CREDENTIAL_LIKE.sub("[redacted]", printable)
    if len(redacted) > PLUGIN_STDERR_LIMIT:
        redacted = redacted[: PLUGIN_STDERR_LIMIT - 1] + "…"
    if prefix and redacted:
        return f"{prefix}: {redacted}"
    return prefix or redacted or "no output"


def _unavailable_status(status: int) -> bool:
    """Statuses of an API that is overloaded or (re)starting: waiting may help. 501 never heals."""
    return status == 429 or (status >= 500 and status != 501)


def _unreachable(host: str, error: BaseException) -> KubernetesError:
    """A connection failure, said in one short line (urllib3's text repeats the pool, URL and retries)."""
    reason: BaseException | None = error
    while isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    text = str(reason)
    if isinstance(reason, urllib3.exceptions.NewConnectionError) and ": " in text:
        text = text.rsplit(": ", 1)[-1]
    elif isinstance(reason, urllib3.exceptions.ProtocolError) and reason.args:
        text = str(reason.args[0])
    return KubernetesError(f"cannot reach the Kubernetes API at {host}: {text}", retryable=True)


def _never_sent(error: KubernetesError) -> bool:
    """True when the request could not have reached the server (no connection was made)."""
    cause: BaseException | None = error.__cause__
    while isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    return isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


def _advised_wait(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    return parse_retry_after(value, time.time())
