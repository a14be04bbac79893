"""The rollback wait's decisions: is each restored workload ready again, which pods must go, and when the
wait ends. Pure, so that it is table-tested with a fake clock.

``rollback_verdict`` judges one restored workload (not ``kubectl rollout status``: see there);
``stuck_stateful_set_pods`` names the pods a StatefulSet's controller will never replace on its own; ``step``
decides each tick from what the watches show (``RestoreSnapshot``) and the monotonic clock's reading: the
pods to delete, the progress lines to show, and once every workload is ready or failed, cancelled or past the
deadline, what is still wrong with each (empty: all back). The loop (kube/restoring.py) does the I/O and
reads the clock; this module reads neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deployer.kinds import KubeObject
from deployer.objects import condition
from deployer.revision_pods import new_replica_set, owned_by, templates_equal_ignoring_hash
from deployer.rollbacks import ObjectRef, RollbackTarget
from deployer.rollouts import RolloutState, RolloutVerdict, judge_workload
from deployer.settings import format_duration


@dataclass(frozen=True)
class RestoredWorkload:
    """What the watches show of one restored workload: ``live`` (None once deleted), its namespace's pods
    and ReplicaSets."""

    live: KubeObject | None
    pods: Sequence[KubeObject] = ()
    replica_sets: Sequence[KubeObject] = ()


@dataclass(frozen=True)
class RestoreSnapshot:
    """The cluster as the rollback wait sees it at one tick; until ``synced`` nothing is judged."""

    synced: bool
    cancelled: bool = False
    workloads: Mapping[ObjectRef, RestoredWorkload] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreWaitState:
    """What the rollback wait remembers between ticks: the last verdicts, the progress shown, the pods it
    deleted already."""

    verdicts: dict[ObjectRef, RolloutVerdict] = field(default_factory=dict)
    shown: dict[ObjectRef, str] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RestoreWaitVerdict:
    """``problems`` None: go on waiting; else what is still wrong per workload (empty: every one is back).
    ``delete``: pods to delete now (namespace, name); ``progress``: lines to show now."""

    problems: dict[ObjectRef, str] | None
    delete: list[tuple[ObjectRef, str]] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreWaitPolicy:
    """What the rollback waits for, from ``started`` for ``timeout`` seconds (0: no deadline)."""

    targets: Mapping[ObjectRef, RollbackTarget]
    started: float
    timeout: float


def step(
    policy: RestoreWaitPolicy, state: RestoreWaitState, snapshot: RestoreSnapshot, now: float
) -> tuple[RestoreWaitState, RestoreWaitVerdict]:
    """One tick of the rollback wait (see the module's docstring); ``now`` is the monotonic clock's reading."""
    delete: list[tuple[ObjectRef, str]] = []
    progress: list[str] = []
    if snapshot.synced:
        state, delete, progress = _judged(policy, state, snapshot)
        verdicts = state.verdicts
        if len(verdicts) == len(policy.targets) and all(v.done or v.failed for v in verdicts.values()):
            return state, RestoreWaitVerdict(
                {ref: v.message for ref, v in verdicts.items() if not v.done}, delete, progress
            )
    unfinished = [ref for ref in policy.targets if not (ref in state.verdicts and state.verdicts[ref].done)]
    if snapshot.cancelled:
        return state, RestoreWaitVerdict({ref: "rollback wait cancelled" for ref in unfinished}, delete, progress)
    if policy.timeout > 0 and now >= policy.started + policy.timeout:
        waited = f"not ready after {format_duration(policy.timeout)} (--rollback-timeout)"
        problems = {
            ref: f"{waited}: {state.verdicts[ref].message if ref in state.verdicts else 'no status seen'}"
            for ref in unfinished
        }
        return state, RestoreWaitVerdict(problems, delete, progress)
    return state, RestoreWaitVerdict(None, delete, progress)


def _judged(
    policy: RestoreWaitPolicy, state: RestoreWaitState, snapshot: RestoreSnapshot
) -> tuple[RestoreWaitState, list[tuple[ObjectRef, str]], list[str]]:
    verdicts, shown, deleted = dict(state.verdicts), dict(state.shown), set(state.deleted)
    delete: list[tuple[ObjectRef, str]] = []
    progress: list[str] = []
    for ref, target in policy.targets.items():
        watched = snapshot.workloads.get(ref)
        live = watched.live if watched is not None else None
        if watched is None or live is None:
            verdicts[ref] = RolloutVerdict(ref.kind, ref.name, RolloutState.FAILED, "deleted during the rollback", "")
            continue
        if ref.kind == "StatefulSet":
            for pod in stuck_stateful_set_pods(live, target, watched.pods):
                if pod not in deleted:
                    deleted.add(pod)
                    delete.append((ref, pod))
                    progress.append(f"{ref.name}: deleting pod {pod} of the failed revision (forced rollback)")
        verdict = rollback_verdict(live, target, replica_sets=watched.replica_sets)
        verdicts[ref] = verdict
        if shown.get(ref) != verdict.progress:
            shown[ref] = verdict.progress
            progress.append(verdict.progress)
    return RestoreWaitState(verdicts, shown, frozenset(deleted)), delete, progress


def rollback_verdict(
    workload: KubeObject,
    target: RollbackTarget,
    *,
    replica_sets: Iterable[KubeObject] = (),
) -> RolloutVerdict:
    """Whether the restored revision is ready: not ``kubectl rollout status``.

    A Deployment that failed keeps its stale ProgressDeadlineExceeded condition after a rollback, so
    kubectl would keep saying failed. Instead: the live template is the target's, the ReplicaSet with that
    template has ``spec.replicas`` available, and every other ReplicaSet is scaled to 0 (their pods may
    still be terminating). StatefulSets and DaemonSets have no such condition: the target template plus
    kubectl's own conditions.
    """
    kind = str(workload.get("kind"))
    meta = workload.get("metadata") or {}
    name = str(meta.get("name", ""))
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    revision = f"revision {target.revision}" if target.revision else "the recorded template"

    def verdict(state: RolloutState, message: str, progress: str) -> RolloutVerdict:
        return RolloutVerdict(kind, name, state, message, f"{name}: rolling back to {revision}: {progress}")

    if not templates_equal_ignoring_hash(spec.get("template"), target.template):
        return verdict(
            RolloutState.WAITING,
            f'Waiting for {kind.lower()} "{name}" to take the restored template...',
            "template not restored yet",
        )
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return verdict(
            RolloutState.WAITING,
            f"Waiting for {kind.lower()} spec update to be observed...",
            "waiting for the controller",
        )
    if kind != "Deployment":
        kubectl = judge_workload(workload)
        state = RolloutState.DONE if kubectl.done else RolloutState.WAITING
        progress = kubectl.progress.split(": ", 1)[-1]
        message = f'{kind.lower()} "{name}" rolled back to {revision}' if kubectl.done else kubectl.message
        return verdict(state, message, progress)
    return _deployment_verdict(workload, list(replica_sets), revision, verdict)


def _deployment_verdict(
    workload: KubeObject,
    all_sets: list[KubeObject],
    revision: str,
    verdict: Callable[[RolloutState, str, str], RolloutVerdict],
) -> RolloutVerdict:
    """A Deployment whose template is the target's: ready once the ReplicaSet with that template has all its
    replicas available and every other one is scaled to 0."""
    name = str((workload.get("metadata") or {}).get("name", ""))
    spec = workload.get("spec") or {}
    restored = new_replica_set(workload, all_sets)
    wanted = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    if restored is None:
        return verdict(
            RolloutState.WAITING,
            f'Waiting for deployment "{name}" rollback: no ReplicaSet with the restored template yet...',
            f"0/{wanted} available",
        )
    available = int((restored.get("status") or {}).get("availableReplicas") or 0)
    progress = f"{available}/{wanted} available"
    if available < wanted:
        return verdict(
            RolloutState.WAITING,
            f'Waiting for deployment "{name}" rollback to finish: {available} of {wanted} restored replicas are '
            "available...",
            progress,
        )
    restored_uid = (restored.get("metadata") or {}).get("uid")
    leftover = sum(
        int((rs.get("spec") or {}).get("replicas") or 0)
        for rs in owned_by(all_sets, workload)
        if (rs.get("metadata") or {}).get("uid") != restored_uid
    )
    if leftover:
        return verdict(
            RolloutState.WAITING,
            f'Waiting for deployment "{name}" rollback to finish: {leftover} replicas of other revisions are '
            "still scheduled...",
            progress + f", {leftover} other",
        )
    return verdict(RolloutState.DONE, f'deployment "{name}" rolled back to {revision}', progress)


def stuck_stateful_set_pods(statefulset: KubeObject, target: RollbackTarget, pods: Iterable[KubeObject]) -> list[str]:
    """Pods of a StatefulSet's failed revision that its controller will never replace on its own.

    With OrderedReady pod management the controller waits for a broken pod to become Ready before it
    moves on, so after the template is restored it must be deleted ("forced rollback" in the Kubernetes
    docs). Only once the controller has observed the restored template; only pods not Ready.
    """
    spec, status = statefulset.get("spec") or {}, statefulset.get("status") or {}
    meta = statefulset.get("metadata") or {}
    if not templates_equal_ignoring_hash(spec.get("template"), target.template):
        return []
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return []
    restored = status.get("updateRevision")
    if not restored:
        return []
    stuck = []
    for pod in owned_by(pods, statefulset):
        pod_meta = pod.get("metadata") or {}
        if pod_meta.get("deletionTimestamp"):
            continue
        if (pod_meta.get("labels") or {}).get("controller-revision-hash") == restored:
            continue
        ready = condition(pod, "Ready")
        if ready is None or ready.get("status") != "True":
            stuck.append(str(pod_meta.get("name", "")))
    return stuck
