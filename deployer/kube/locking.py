"""The per-namespace deploy lock: a Lease (``deployer-lock``) taken, renewed in a thread, and released.

A lease not renewed for its duration belongs to a run that died and is taken over; expiry is judged on this
machine's clock (since when has the holder's record stayed unchanged?) as well as from the lease's own times.
Every write is a compare-and-swap on the resourceVersion read, so two runs never both hold the lock.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from deployer import lease_wait
from deployer.clocks import Clocks
from deployer.errors import (
    APIConflictError,
    APINotFoundError,
    APIServerError,
    KubernetesError,
    LockLostError,
    LockTimeoutError,
    RunCancelledError,
)
from deployer.kinds import KubeDict, KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.resources import LEASES
from deployer.kube.watching import watch_once
from deployer.lease_wait import LeaseAction, LeaseWaitPolicy, LeaseWaitState
from deployer.settings import format_duration

log = logging.getLogger(__name__)

LOCK_NAME = "deployer-lock"
DEFAULT_LEASE_SECONDS = 60
# Compare-and-swap attempts at renewing when the lease keeps changing under the renewal.
RENEW_ATTEMPTS = 5


class Leases:
    """The deploy lock's Lease in each namespace, read and written through one connection."""

    def __init__(self, api: KubeAPI) -> None:
        self._api = api

    def read(self, namespace: str) -> KubeDict | None:
        return self._api.get(LEASES, namespace, LOCK_NAME)

    def holder(self, namespace: str) -> str:
        """Who holds the deploy lock now; "" when no one does."""
        return _holder_of(self.read(namespace))

    def create(self, namespace: str, holder: str, lease_seconds: int) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LOCK_NAME, "namespace": namespace},
            "spec": _lease_spec(holder, lease_seconds, acquired=True),
        }
        try:
            self._api.request("POST", LEASES.path(namespace), body=body)
        except (APIConflictError, APIServerError):
            # Another run was faster; or a POST that is not repeated blindly: the next read tells whether it was made.
            return False
        return True

    def take(self, namespace: str, lease: KubeObject, holder: str, lease_seconds: int) -> bool:
        body = dict(lease)
        body["spec"] = {**(lease.get("spec") or {}), **_lease_spec(holder, lease_seconds, acquired=True)}
        # The resourceVersion in the body makes this a compare-and-swap: 409 when another run was faster.
        try:
            self._api.request("PUT", LEASES.path(namespace, LOCK_NAME), body=body)
        except (APIConflictError, APINotFoundError):
            return False
        return True

    def renew(self, namespace: str, holder: str, lease_seconds: int) -> str | None:
        """Renew ``holder``'s lease; None when renewed, else who holds the lock now ("" when no one does)."""
        for _ in range(RENEW_ATTEMPTS):
            lease = self.read(namespace)
            current = _holder_of(lease)
            if lease is None or current != holder:
                return current
            body = dict(lease)
            body["spec"] = {**(lease.get("spec") or {}), **_lease_spec(holder, lease_seconds, acquired=False)}
            # A compare-and-swap on the resourceVersion read: 409 when another run took it meanwhile, which
            # the next read tells.
            try:
                self._api.request("PUT", LEASES.path(namespace, LOCK_NAME), body=body)
            except APIConflictError:
                continue
            return None
        return None  # changed under every attempt; the next renewal, a third of the lease later, tries again

    def release(self, namespace: str, holder: str) -> None:
        lease = self.read(namespace)
        if lease is None or _holder_of(lease) != holder:
            return
        version = (lease.get("metadata") or {}).get("resourceVersion")
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": version}}
        try:
            self._api.request("DELETE", LEASES.path(namespace, LOCK_NAME), body=body)
        except (APINotFoundError, APIConflictError):
            pass  # gone already, or another run's now: not this run's to delete


class Lock:
    """The per-namespace deploy lock: a Lease this run holds and renews until ``release``.

    A renewal that finds another holder, or no lease at all, means the lease ran out while this run could not
    renew it (paused, cut off) and the namespace may be another run's now: ``lost_to`` says who holds it
    ("" for nobody) and ``on_lost`` is called once, so that the run stops as it would on a signal.
    """

    def __init__(
        self,
        leases: Leases,
        namespace: str,
        holder: str,
        lease_seconds: int,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.lost_to: str | None = None
        self._leases = leases
        self._on_lost = on_lost
        self._released = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_released, name="deployer-lock-renewer", daemon=True)
        self._renewer.start()

    def _renew_until_released(self) -> None:
        while not self._released.wait(self.lease_seconds / 3):
            try:
                holder = self._leases.renew(self.namespace, self.holder, self.lease_seconds)
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
                holder = self._leases.holder(self.namespace)
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
        self._leases.release(self.namespace, self.holder)

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


def acquire_lock(
    api: KubeAPI,
    namespace: str,
    holder: str,
    timeout: float,
    *,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    cancel: threading.Event | None = None,
    cancelled: Callable[[str], RunCancelledError] | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_lost: Callable[[], None] | None = None,
    clocks: Clocks | None = None,
) -> Lock:
    """Take the namespace's deploy lock (see Cluster.acquire_lock); lease_wait.step decides at each read."""
    clocks = clocks or Clocks()
    leases = Leases(api)
    policy = LeaseWaitPolicy(f"{holder} ({uuid.uuid4().hex[:8]})", lease_seconds, clocks.monotonic(), timeout)
    state = LeaseWaitState()
    while True:
        lease = leases.read(namespace)
        state, verdict = lease_wait.step(policy, state, lease, cancel is not None and cancel.is_set(), clocks.now())
        if verdict.announce and on_progress is not None:
            on_progress(f"waiting for the deploy lock in {namespace}, held by {verdict.holder}")
        if verdict.action in (LeaseAction.CREATE, LeaseAction.TAKE, LeaseAction.OURS):
            if _hold(leases, namespace, lease, policy, verdict.action):
                return Lock(leases, namespace, policy.identity, lease_seconds, on_lost)
            continue  # another run was faster: read again
        if verdict.action is LeaseAction.TIMED_OUT:
            raise LockTimeoutError(
                f"the deploy lock in namespace {namespace} is held by {verdict.holder}; "
                f"gave up after {format_duration(timeout)} (--lock-timeout)"
            )
        if verdict.action is LeaseAction.CANCELLED:
            raise (cancelled or _cancelled)("while waiting for the deploy lock")
        _wait_for_change(api, namespace, lease or {}, verdict.wait_seconds, cancel)


def _hold(
    leases: Leases, namespace: str, lease: KubeObject | None, policy: LeaseWaitPolicy, action: LeaseAction
) -> bool:
    """Create or take over the lease as ``action`` says; False when another run was faster."""
    if action is LeaseAction.CREATE:
        return leases.create(namespace, policy.identity, policy.lease_seconds)
    if action is LeaseAction.TAKE and lease is not None:
        return leases.take(namespace, lease, policy.identity, policy.lease_seconds)
    return action is LeaseAction.OURS


def _wait_for_change(
    api: KubeAPI, namespace: str, lease: KubeObject, seconds: float, cancel: threading.Event | None
) -> None:
    version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
    selector = f"metadata.name={LOCK_NAME}"
    watch_once(api, LEASES, namespace, version, seconds, field_selector=selector, cancel=cancel)


def _cancelled(when: str) -> RunCancelledError:
    """The cancellation error when the caller has no signal to name: a cancelled workflow sends SIGTERM."""
    return RunCancelledError("SIGTERM", int(signal.SIGTERM), f"cancelled {when}; nothing was applied to the cluster")


def _holder_of(lease: KubeObject | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def _lease_spec(holder: str, lease_seconds: int, *, acquired: bool) -> KubeDict:
    now = _micro_time(datetime.now(UTC))
    spec: KubeDict = {"holderIdentity": holder, "leaseDurationSeconds": lease_seconds, "renewTime": now}
    if acquired:
        spec["acquireTime"] = now
    return spec


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
