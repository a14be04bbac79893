"""``Cluster``: one connection to one cluster, the face the deploy sequence talks to.

Each method hands its work to the module that does it: kube/recording.py (what is live before apply),
kube/applying.py (server-side apply), kube/locking.py (the deploy lock), kube/waiting.py (the rollout wait),
kube/diagnosing.py (events and logs of a failure), kube/restoring.py (the rollback), kube/holding.py (the
canary strategy's canaries). It holds the transport
(kube/api.py) and discovery (kube/discovery.py) they share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta

from deployer import diagnoses, rollbacks
from deployer.applysets import ApplySet, GroupKind
from deployer.canaries import CheckReading, HoldPolicy
from deployer.clocks import Clocks
from deployer.credentials import KubeCredentials
from deployer.errors import RunCancelledError
from deployer.kinds import KubeDict, KubeObject
from deployer.kube import applying, diagnosing, diffing, holding, locking, pruning, recording, restoring, waiting
from deployer.kube.api import KubeAPI
from deployer.kube.applying import FIELD_MANAGER, ApplyOptions, ApplyResult
from deployer.kube.diffing import DryRunAnswer
from deployer.kube.discovery import Discovery
from deployer.kube.locking import DEFAULT_LEASE_SECONDS, Lock
from deployer.kube.resources import Resource
from deployer.kube.restoring import RollbackResult
from deployer.kube.waiting import WaitResult
from deployer.rollback_wait import RestoreWaitPolicy
from deployer.rollbacks import LiveRecord, ObjectRef, RollbackStep
from deployer.rollout_wait import WaitPolicy
from deployer.rollouts import DEFAULT_UNSCHEDULABLE_GRACE

log = logging.getLogger(__name__)

# Diagnosing is worth little against a rollback that waits: its requests retry briefly.
DIAGNOSIS_RETRY_SECONDS = 10.0
# Deleting the canaries is the clean-up of every canary run, a failed one included: worth a rollback's patience.
CANARY_DELETE_RETRY_SECONDS = 120.0


class Cluster:
    """One connection to one cluster. Create with ``Cluster.connect(credentials)``; ``close()`` when done.

    Requests that are safe to repeat are retried while the API is unavailable (see kube/api.py), within the
    deadline of the phase that sends them (the wait's, the rollback's); ``warn`` is told once when the API
    stops answering, ``inform`` once when it is back.
    """

    def __init__(self, api: KubeAPI, default_namespace: str, *, clocks: Clocks | None = None) -> None:
        self._api = api
        self._discovery = Discovery(api, default_namespace)
        self.default_namespace = default_namespace
        self.host = api.host
        self._clocks = clocks or Clocks()

    @classmethod
    def connect(
        cls,
        credentials: KubeCredentials,
        *,
        warn: Callable[[str], None] = log.warning,
        inform: Callable[[str], None] = log.info,
    ) -> Cluster:
        """A client for the credentials' context, loaded in memory. Makes no request."""
        api = KubeAPI.connect(credentials, warn=warn, inform=inform)
        contexts = {c.get("name"): c.get("context") or {} for c in credentials.kubeconfig.get("contexts") or ()}
        namespace = str(contexts.get(credentials.context, {}).get("namespace") or "default")
        return cls(api, namespace)

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------------------

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """Where a kind lives; asks the API (once per group version) for kinds it does not know."""
        return self._discovery.resource_for(api_version, kind)

    def ref_of(self, obj: KubeObject) -> ObjectRef:
        """The object's address, with the default namespace filled in for namespaced kinds."""
        return self._discovery.ref_of(obj)

    def get(self, ref: ObjectRef) -> KubeDict | None:
        """The live object, or None when it does not exist."""
        return self._api.get(self._discovery.resource_of(ref), ref.namespace, ref.name)

    def fetch(self, refs: Sequence[ObjectRef]) -> dict[ObjectRef, KubeDict | None]:
        """The live state of each object (None when absent), e.g. for ``rollbacks.plan_rollback``."""
        return {ref: self.get(ref) for ref in refs}

    def record(self, objects: Sequence[KubeObject]) -> LiveRecord:
        """What is live for each object before apply, in apply order, with each workload's current revision."""
        return recording.record(self._api, self._discovery, objects)

    # --- applying -----------------------------------------------------------------------------------------

    def ensure_namespace(self, name: str, *, create: bool = True) -> bool:
        """Make sure the namespace exists; True when this call created it. Raises KubernetesError when it is
        missing and ``create`` is False (--no-create-namespace)."""
        return applying.ensure_namespace(self._api, name, create=create)

    def apply(
        self,
        objects: Sequence[KubeObject],
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
        options = ApplyOptions(field_manager, force, dry_run)
        return applying.apply(self._api, self._discovery, objects, options, record, origins)

    def dry_run_answers(
        self,
        objects: Sequence[KubeObject],
        *,
        force: bool = True,
        origins: Mapping[ObjectRef, str] | None = None,
        missing_namespace: str | None = None,
    ) -> list[DryRunAnswer]:
        """What applying would store for each object (server-side dry run), beside what is live, in the order
        given; objects in ``missing_namespace`` (created first by a real run) are not sent. One dry-run apply
        per object and one read per kind and namespace (kube/diffing.py). Stores nothing."""
        options = ApplyOptions(FIELD_MANAGER, force, dry_run=True)
        return diffing.dry_run_answers(self._api, self._discovery, objects, options, origins, missing_namespace)

    # --- the ApplySet and its pruning ---------------------------------------------------------------------

    def applyset_parent(self, applyset: ApplySet) -> KubeDict | None:
        """The set's live parent Secret, or None when there is none yet."""
        return pruning.read_parent(self._api, applyset)

    def apply_applyset_parent(self, body: KubeObject) -> None:
        """Server-side apply of the parent (applysets.parent_body) by its own field manager."""
        pruning.apply_parent(self._api, body)

    def applyset_members(
        self, applyset: ApplySet, group_kinds: Iterable[GroupKind], namespaces: Iterable[str]
    ) -> tuple[list[KubeDict], list[GroupKind]]:
        """The set's members found as kubectl finds them: one LIST per group-kind (and namespace, for a
        namespaced kind) with the part-of label selector; and the group-kinds the cluster no longer serves."""
        return pruning.list_members(self._api, self._discovery, applyset, group_kinds, namespaces)

    def delete(self, ref: ObjectRef) -> bool:
        """Delete one object, its dependents in the background; False when it was gone already."""
        return pruning.delete(self._api, self._discovery, ref)

    # --- the deploy lock ----------------------------------------------------------------------------------

    def acquire_lock(
        self,
        namespace: str,
        holder: str,
        timeout: float,
        *,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        cancel: threading.Event | None = None,
        cancelled: Callable[[str], RunCancelledError] | None = None,
        on_progress: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> Lock:
        """Take the namespace's deploy lock (Lease ``deployer-lock``), waiting up to ``timeout`` seconds (0: as
        long as it takes).

        ``holder`` names this run (its URL) and is told to whoever waits; a unique suffix is added. A lease
        not renewed for ``lease_seconds`` belongs to a run that died (or stopped) and is taken over. Raises
        LockTimeoutError naming the holder; when ``cancel`` is set while waiting, the RunCancelledError that
        ``cancelled`` makes from when it came (the run's cancellation knows which signal). ``on_lost`` is
        called when the lock is found lost (Lock).
        """
        return locking.acquire_lock(
            self._api,
            namespace,
            holder,
            timeout,
            lease_seconds=lease_seconds,
            cancel=cancel,
            cancelled=cancelled,
            on_progress=on_progress,
            on_lost=on_lost,
            clocks=self._clocks,
        )

    # --- the rollout wait and its diagnosis ---------------------------------------------------------------

    def wait(
        self,
        workloads: Sequence[ObjectRef],
        *,
        timeout: float,
        tolerate_failures_for: float = 0.0,
        unschedulable_grace: float = DEFAULT_UNSCHEDULABLE_GRACE.total_seconds(),
        on_progress: Callable[[str], None] = lambda line: None,
        cancel: threading.Event | None = None,
        applied: Sequence[ApplyResult] = (),
    ) -> WaitResult:
        """Wait for every workload as ``kubectl rollout status`` would (Jobs: to completion), all at once.

        Returns on the first failure that cannot heal (see rollouts.find_pod_failures; with
        ``tolerate_failures_for`` a failure must persist that long), when all are done, at the deadline
        (``timeout`` seconds; 0 waits forever) or when ``cancel`` is set (rollout_wait.step decides).
        ``on_progress`` gets a line per change of a workload's progress. Requests: one LIST and one WATCH per
        kind and namespace, whatever the number of workloads; no LIST of Jobs when ``applied`` has every Job.

        ``applied`` is what ``apply`` returned, in its order. Only the pod template applied counts: a workload
        whose template someone else changed since (another deploy, ``kubectl edit``) fails the wait instead of
        passing on that other revision. A Job may finish and be deleted (``ttlSecondsAfterFinished``) before
        or while this waits: its history is watched from its apply (its resourceVersion then), so that its last
        state, which the DELETED event carries, says whether it completed (rollouts.judge_departed).
        """
        policy = WaitPolicy(
            self._clocks.monotonic(),
            timeout,
            timedelta(seconds=tolerate_failures_for),
            timedelta(seconds=unschedulable_grace),
        )
        wanted = set(workloads)
        applied_objects = {r.ref: r.live for r in applied if r.ref in wanted and r.live}
        return waiting.wait(
            self._api,
            self.default_namespace,
            workloads,
            policy,
            on_progress=on_progress,
            cancel=cancel,
            applied=applied_objects,
            clocks=self._clocks,
        )

    def diagnose(self, result: WaitResult, *, refs: Sequence[ObjectRef] | None = None) -> list[diagnoses.Diagnosis]:
        """Explain the failed or unfinished workloads of ``result``: their pods, latest events and crash logs.

        One LIST of events per namespace and one log request per container worth reading (at most three
        per workload). Problems fetching these are noted in the diagnosis, never raised.
        """
        chosen = list(refs) if refs is not None else result.unfinished
        with self._api.retrying_until(time.monotonic() + DIAGNOSIS_RETRY_SECONDS):
            return diagnosing.diagnose(self._api, self.default_namespace, result, chosen)

    def container_log(self, namespace: str, request: diagnoses.LogRequest, tail_lines: int = 20) -> list[str]:
        """The last lines of one container's log (the previous instance's when asked); a note if unavailable."""
        return diagnosing.container_log(self._api, namespace, request, tail_lines)

    # --- canaries (--strategy canary) ----------------------------------------------------------------------

    def find_canaries(self, deployments: Sequence[ObjectRef]) -> list[ObjectRef]:
        """The canaries of these Deployments that exist now (left by a run that did not delete them)."""
        return holding.find_leftovers(self._api, deployments)

    def delete_canaries(self, refs: Sequence[ObjectRef]) -> None:
        """Delete the canaries with their ReplicaSets and pods; retried while the API is unavailable (up to
        CANARY_DELETE_RETRY_SECONDS), with expired credentials renewed when their source can."""
        with self._api.renewing_credentials(), self._api.retrying_until(time.monotonic() + CANARY_DELETE_RETRY_SECONDS):
            holding.delete(self._api, refs)

    def hold(
        self,
        canaries: Sequence[ObjectRef],
        *,
        seconds: float,
        checks: Callable[[], Sequence[CheckReading]] = lambda: (),
        cancel: threading.Event | None = None,
    ) -> WaitResult:
        """Hold the canaries ``seconds`` (canaries.hold_step decides each tick): any restart, failure, lost
        readiness or failing check (``checks`` reads them) ends the hold as failed; ``cancel`` as cancelled."""
        policy = HoldPolicy(self._clocks.monotonic(), seconds)
        return holding.hold(
            self._api, self.default_namespace, canaries, policy, checks=checks, cancel=cancel, clocks=self._clocks
        )

    # --- the rollback -------------------------------------------------------------------------------------

    def plan_rollback(self, record: LiveRecord, *, delete_created_on_failure: bool = False) -> list[RollbackStep]:
        """What to do to put back everything in ``record``, from what is live now (rollbacks.plan_rollback).
        Renews expired credentials when their source can (see KubeAPI.renewing_credentials)."""
        with self._api.renewing_credentials():
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
        workload's recorded revision is ready again (rollback_wait.step). A step that fails does not stop the
        others; its problem is reported. Requests retry while the API is unavailable, within ``timeout``;
        expired credentials are renewed when their source can."""
        clock = self._clocks.monotonic
        policy = RestoreWaitPolicy({}, clock(), timeout)
        with self._api.renewing_credentials():
            if timeout > 0:
                with self._api.retrying_until(policy.started + timeout):
                    return restoring.roll_back(self._api, self._discovery, steps, policy, on_progress, cancel, clock)
            return restoring.roll_back(self._api, self._discovery, steps, policy, on_progress, cancel, clock)
