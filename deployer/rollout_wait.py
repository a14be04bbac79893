"""The rollout wait's decision at each tick: pure, so that it is table-tested with a fake clock.

``step(state, snapshot, now) -> (state, verdict)``: from what the watches show of every workload (a
``RolloutSnapshot``), what the wait remembered (``RolloutWaitState``: when each pod failure was first seen,
the progress lines shown) and the clocks' reading (``Instant``), it decides whether the wait goes on and, if
not, how it ended and why: cancelled first, then the first failure that waiting cannot heal (in the order the
workloads were given), then all done, then the deadline. The loop (kube/waiting.py) does the I/O and reads
the clocks; this module reads neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from deployer import rollouts
from deployer.clocks import Instant
from deployer.kinds import KubeObject
from deployer.revision_pods import RevisionPods
from deployer.rollbacks import ObjectRef
from deployer.rollouts import Failure, RolloutVerdict, WorkloadFailure
from deployer.settings import format_duration


class WaitOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class WaitPolicy:
    """``timeout`` seconds from ``started`` (0: no deadline); how long a failure must persist to count, and
    how long a pod may stay unschedulable."""

    started: float
    timeout: float
    tolerate_failures_for: timedelta = timedelta(0)
    unschedulable_grace: timedelta = rollouts.DEFAULT_UNSCHEDULABLE_GRACE


@dataclass(frozen=True)
class WatchedWorkload:
    """What the watches show of one workload: ``live`` (None once deleted), its last state when a deletion
    was seen (``departed``), the object as this run applied it, its namespace's pods and its newest revision."""

    ref: ObjectRef
    live: KubeObject | None
    departed: KubeObject | None = None
    applied: KubeObject | None = None
    pods: Sequence[KubeObject] = ()
    revision: RevisionPods | None = None


@dataclass(frozen=True)
class RolloutSnapshot:
    """The cluster as the wait sees it at one tick. Until ``synced`` (every watch listed once) the workloads
    are not judged."""

    synced: bool
    cancelled: bool = False
    workloads: Sequence[WatchedWorkload] = ()


@dataclass(frozen=True)
class RolloutWaitState:
    """What the wait remembers between ticks."""

    verdicts: dict[ObjectRef, RolloutVerdict] = field(default_factory=dict)
    failures: dict[ObjectRef, list[Failure]] = field(default_factory=dict)
    first_seen: dict[ObjectRef, dict[str, datetime]] = field(default_factory=dict)
    shown: dict[ObjectRef, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutWaitVerdict:
    """``outcome`` None: go on waiting. ``progress``: the lines to show now (one per changed workload)."""

    outcome: WaitOutcome | None
    reason: str = ""
    progress: list[str] = field(default_factory=list)


def step(
    policy: WaitPolicy, state: RolloutWaitState, snapshot: RolloutSnapshot, now: Instant
) -> tuple[RolloutWaitState, RolloutWaitVerdict]:
    """One tick of the rollout wait (see the module's docstring)."""
    if snapshot.cancelled:
        return state, RolloutWaitVerdict(WaitOutcome.CANCELLED, "cancelled while waiting for the rollout")
    progress: list[str] = []
    if snapshot.synced:
        state = _judged(policy, state, snapshot, now.utc)
        progress = [
            state.verdicts[w.ref].progress
            for w in snapshot.workloads
            if state.shown.get(w.ref) != state.verdicts[w.ref].progress
        ]
        state = replace(state, shown={**state.shown, **{ref: v.progress for ref, v in state.verdicts.items()}})
        refs = [w.ref for w in snapshot.workloads]
        failed = [ref for ref in refs if state.failures.get(ref)]
        if failed:
            reason = f"{failed[0]}: {state.failures[failed[0]][0].describe()}"
            return state, RolloutWaitVerdict(WaitOutcome.FAILED, reason, progress)
        if all(state.verdicts[ref].done for ref in refs):
            return state, RolloutWaitVerdict(WaitOutcome.DONE, "every workload rolled out", progress)
    if policy.timeout > 0 and now.monotonic >= policy.started + policy.timeout:
        waiting = [v for v in state.verdicts.values() if not v.done]
        detail = f": {waiting[0].message}" if waiting else ""
        reason = f"timed out after {format_duration(policy.timeout)}{detail}"
        return state, RolloutWaitVerdict(WaitOutcome.TIMED_OUT, reason, progress)
    return state, RolloutWaitVerdict(None, "", progress)


def _judged(policy: WaitPolicy, state: RolloutWaitState, snapshot: RolloutSnapshot, now: datetime) -> RolloutWaitState:
    verdicts, failures, first_seen = dict(state.verdicts), dict(state.failures), dict(state.first_seen)
    for watched in snapshot.workloads:
        ref = watched.ref
        if watched.live is None:
            verdict, gone = rollouts.judge_departed(ref.kind, ref.name, watched.departed, watched.applied)
            verdicts[ref], failures[ref] = verdict, list(gone)
            continue
        verdicts[ref] = rollouts.judge_workload(watched.live)
        found: list[Failure] = list(rollouts.find_workload_failures(watched.live))
        replaced = template_replaced(watched.live, watched.applied)
        if replaced:
            found.insert(0, WorkloadFailure(ref.kind, ref.name, "TemplateReplaced", replaced))
        scan = rollouts.find_pod_failures(
            watched.pods,
            watched.revision,
            now=now,
            first_seen=first_seen.get(ref),
            tolerate_failures_for=policy.tolerate_failures_for,
            unschedulable_grace=policy.unschedulable_grace,
        )
        first_seen[ref] = scan.first_seen
        failures[ref] = found + list(scan.failures)
    return replace(state, verdicts=verdicts, failures=failures, first_seen=first_seen)


def template_replaced(live: KubeObject, applied: KubeObject | None) -> str | None:
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
