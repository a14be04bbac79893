"""How a deploy's rollout ends, decided from what happened: pure computation, no I/O.

Owns the decision after a rollout failed or its apply stopped (roll back, or end with which error and so
which exit code: 1 for a lost lock, an apply refused before it changed anything, or --no-rollback; 3 when
everything was put back; 4 when the rollback failed) and each workload's line in the report, read from the
record taken before the apply, the objects the wait last saw, and the rollback's outcomes.

Must not talk to the cluster, print or read the clock: deployer.deploying gathers the facts and carries out
what is decided here. Kubernetes objects arrive as the API's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from deployer.deploy_report import WorkloadResult
from deployer.errors import (
    KubernetesError,
    LockLostError,
    RollbackFailedError,
    RolloutFailedError,
    RolloutFailure,
    RolloutLeftInPlaceError,
    WorkloadOutcome,
)
from deployer.kinds import KubeObject
from deployer.rollbacks import LiveRecord, ObjectRef

ROLL_BACK: Literal["roll back"] = "roll back"

# Where a workload says which revision is live: a Deployment's annotation, or a StatefulSet's or DaemonSet's
# status (the name of its ControllerRevision).
_DEPLOYMENT_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Ending:
    """How the run ends: the error it raises, chained (``raise error from cause``) to ``cause``."""

    error: BaseException
    cause: BaseException | None = None


@dataclass(frozen=True)
class FailedRollout:
    """What is known about a failed rollout when its end is decided.

    ``lock_lost`` is the lock's verdict read before anything is put back; ``stopped_apply`` the error that
    stopped the apply part-way (None when every object was applied); ``undoes_a_change`` whether the planned
    rollback would undo anything this run changed. After the rollback: ``rollback_error`` when it raised,
    else ``rollback_outcomes`` and ``rollback_problems``. ``unexpected`` is an error deployer has none of its
    own for that stopped the apply or the wait: the run's error is chained to it.
    """

    failure: RolloutFailure
    rollback_enabled: bool = True
    lock_lost: LockLostError | None = None
    stopped_apply: BaseException | None = None
    undoes_a_change: bool = True
    unexpected: BaseException | None = None
    rollback_error: BaseException | None = None
    rollback_outcomes: list[WorkloadOutcome] | None = None
    rollback_problems: list[str] = field(default_factory=list)


def decide_outcome(rollout: FailedRollout) -> Ending | Literal["roll back"]:
    """The run's end, or ``ROLL_BACK`` while the rollback has yet to run and nothing stops it."""
    failure = rollout.failure
    if rollout.lock_lost is not None:
        # The namespace is another run's now: a rollback to this run's record would undo that run's deploy.
        lost = LockLostError(
            f"{rollout.lock_lost}; not rolling back, which would undo that run's deploy: this run's objects stay "
            f"as it left them ({failure.reason})"
        )
        return Ending(lost, cause=rollout.lock_lost)
    if rollout.stopped_apply is not None and not rollout.undoes_a_change:
        # The first change was refused (e.g. a conflict under --no-force-conflicts): nothing was rolled out and
        # nothing needs rolling back, so this is the apply's own failure (exit 1), not exit 3.
        return Ending(rollout.stopped_apply, cause=rollout.stopped_apply.__cause__)
    if not rollout.rollback_enabled:
        return Ending(RolloutLeftInPlaceError(failure))
    if rollout.rollback_error is not None:
        # E.g. the credentials expired during the wait: the failed rollout is still live, which is exit 4 with
        # the rollout's reason, not a bare API error that hides that nothing was put back.
        problem = rollback_problem(rollout.rollback_error)
        return Ending(RollbackFailedError(failure, problem), cause=rollout.rollback_error)
    if rollout.rollback_outcomes is None:
        return ROLL_BACK
    restored = replace(failure, outcomes=list(rollout.rollback_outcomes))
    if not rollout.rollback_problems:
        return Ending(RolloutFailedError(restored), cause=rollout.unexpected)
    return Ending(RollbackFailedError(restored, "; ".join(rollout.rollback_problems)), cause=rollout.unexpected)


def rollback_problem(error: BaseException) -> str:
    """What stopped the rollback, in one line: deployer's own errors as they read, others as unexpected."""
    if isinstance(error, KubernetesError):
        return str(error)
    return f"unexpected error: {describe_unexpected(error)}"


def describe_unexpected(error: BaseException) -> str:
    """An exception deployer has no error of its own for, in one line: its type and message."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# --- each workload's line in the report ------------------------------------------------------------------


class _Verdict(Protocol):
    @property
    def done(self) -> bool: ...


class WaitedRollout(Protocol):
    """What the rollout wait last saw (the Kubernetes adapter's wait result)."""

    @property
    def verdicts(self) -> Mapping[ObjectRef, _Verdict]: ...

    @property
    def failures(self) -> Mapping[ObjectRef, Sequence[object]]: ...

    @property
    def workloads(self) -> Mapping[ObjectRef, KubeObject]: ...

    @property
    def elapsed(self) -> float: ...


def pending_workloads(workloads: Sequence[ObjectRef], record: LiveRecord) -> list[WorkloadResult]:
    """The workloads about to be applied, each with the revision that was live before (None when new)."""
    results = []
    for ref in workloads:
        before = record.find(ref)
        revision = before.revision if before is not None else None
        previous = str(revision.number) if revision is not None else None
        results.append(WorkloadResult(ref.kind, ref.name, ref.namespace, result="pending", previous_revision=previous))
    return results


def live_revision(workload: KubeObject) -> str | None:
    """The revision a workload says is live: a Deployment's revision annotation, else the status's
    ``updateRevision`` (StatefulSets, DaemonSets); None when it says none."""
    metadata = workload.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = workload.get("status") or {}
    revision = annotations.get(_DEPLOYMENT_REVISION_ANNOTATION) or status.get("updateRevision")
    return str(revision) if revision else None


def waited_workloads(workloads: Sequence[WorkloadResult], waited: WaitedRollout) -> list[WorkloadResult]:
    """Each workload's result, time and live revision from the last state the wait saw; a workload the wait
    did not see stays as it was."""
    by_key = {(ref.kind, ref.namespace, ref.name): ref for ref in waited.verdicts}
    results = []
    for workload in workloads:
        ref = by_key.get((workload.kind, workload.namespace, workload.name))
        if ref is None:
            results.append(workload)
            continue
        if waited.verdicts[ref].done:
            result = "ready"
        else:
            result = "failed" if waited.failures.get(ref) else "not ready"
        revision = live_revision(waited.workloads.get(ref) or {})
        results.append(replace(workload, result=result, seconds=waited.elapsed, revision=revision))
    return results


def ready_workloads(workloads: Sequence[WorkloadResult]) -> list[WorkloadResult]:
    """Every workload ready: the rollout succeeded."""
    return [replace(workload, result="ready") for workload in workloads]


def rolled_back_workloads(
    workloads: Sequence[WorkloadResult], outcomes: Sequence[WorkloadOutcome]
) -> list[WorkloadResult]:
    """Each workload's result after the rollback: its outcome's state where the rollback touched it."""
    states = {(outcome.kind, outcome.name): outcome.state for outcome in outcomes}
    return [replace(w, result=states.get((w.kind, w.name), w.result)) for w in workloads]
