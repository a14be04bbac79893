"""Judging a rollout from the objects the Kubernetes API returns: pure computation over plain dicts.

Owns: the verdict on one workload with ``kubectl rollout status``'s exact conditions and messages
(Deployment, StatefulSet, DaemonSet; Jobs to completion), the short progress line for CI logs, and which pods
of the newest revision (revision_pods.py) or which workload conditions show a failure that waiting cannot
heal. Must not do any I/O, import the kubernetes client or read the clock:
callers pass ``now`` and the objects as the API's JSON (camelCase keys, as ``GET`` returns them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from deployer.kinds import WORKLOAD_KINDS, KubeObject
from deployer.objects import (
    condition,
    condition_true,
    generation_observed,
    int_field,
    metadata_of,
    name_of,
    section_of,
)
from deployer.revision_pods import RevisionPods

# Waiting reasons after which a container cannot start without a change to the deploy itself: waiting
# longer only burns the timeout (kubedog treats the first four as errors; the last three never heal either).
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CrashLoopBackOff",
        "RunContainerError",
    }
)

DEFAULT_UNSCHEDULABLE_GRACE = timedelta(seconds=60)


class RolloutState(StrEnum):
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutVerdict:
    """Where one workload's rollout stands.

    ``message`` is what ``kubectl rollout status`` prints for the same object (without its trailing
    newline; for failures, its error text); ``progress`` is a short line such as
    ``web: 2/3 updated, 1/3 available`` to print once per change in a CI log.
    """

    kind: str
    name: str
    state: RolloutState
    message: str
    progress: str

    @property
    def done(self) -> bool:
        return self.state is RolloutState.DONE

    @property
    def failed(self) -> bool:
        return self.state is RolloutState.FAILED


def _quoted(name: str) -> str:
    # Go's %q; Kubernetes names never need escaping beyond the quotes.
    return f'"{name}"'


# --- verdicts -----------------------------------------------------------------------------------------


def judge_workload(obj: KubeObject) -> RolloutVerdict:
    """Judge a workload exactly as ``kubectl rollout status`` does (Jobs: to completion)."""
    kind = obj.get("kind")
    if kind == "Deployment":
        return _judge_deployment(obj)
    if kind == "StatefulSet":
        return _judge_stateful_set(obj)
    if kind == "DaemonSet":
        return _judge_daemon_set(obj)
    if kind == "Job":
        return _judge_job(obj)
    raise ValueError(f"no rollout status for kind {kind!r}; workloads are {', '.join(WORKLOAD_KINDS)}")


def _judge_deployment(obj: KubeObject) -> RolloutVerdict:
    name = name_of(obj)
    spec, status = section_of(obj, "spec"), section_of(obj, "status")
    updated, total = int_field(status.get("updatedReplicas")), int_field(status.get("replicas"))
    available = int_field(status.get("availableReplicas"))
    wanted = spec.get("replicas")
    shown_wanted = int_field(wanted) if wanted is not None else updated
    progress = f"{name}: {updated}/{shown_wanted} updated, {available}/{shown_wanted} available"
    if total > updated:
        progress += f", {total - updated} old pending termination"

    def verdict(state: RolloutState, message: str, line: str = progress) -> RolloutVerdict:
        return RolloutVerdict("Deployment", name, state, message, line)

    if not generation_observed(obj):
        return verdict(
            RolloutState.WAITING,
            "Waiting for deployment spec update to be observed...",
            f"{name}: waiting for the controller to observe the new spec",
        )
    progressing = condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return verdict(RolloutState.FAILED, f"deployment {_quoted(name)} exceeded its progress deadline")
    prefix = f"Waiting for deployment {_quoted(name)} rollout to finish: "
    if wanted is not None and updated < int_field(wanted):
        return verdict(
            RolloutState.WAITING, prefix + f"{updated} out of {int_field(wanted)} new replicas have been updated..."
        )
    if total > updated:
        return verdict(RolloutState.WAITING, prefix + f"{total - updated} old replicas are pending termination...")
    if available < updated:
        return verdict(RolloutState.WAITING, prefix + f"{available} of {updated} updated replicas are available...")
    return verdict(RolloutState.DONE, f"deployment {_quoted(name)} successfully rolled out")


ROLLING_UPDATE_ONLY = "rollout status is only available for RollingUpdate strategy type"


def _not_waited_on(name: str, spec: KubeObject) -> str:
    # kubectl refuses (error, exit 1) but counts it as done: under OnDelete nothing rolls out until someone
    # deletes pods, so there is nothing to wait for, and failing every deploy of such a workload helps no one.
    return (
        f"{name}: not waited on: updateStrategy {_strategy_type(spec)} replaces pods only when they are deleted "
        f"(kubectl: {ROLLING_UPDATE_ONLY})"
    )


def _strategy_type(spec: KubeObject) -> str:
    # The API server defaults an absent strategy to RollingUpdate; objects straight from a manifest lack it.
    return str(section_of(spec, "updateStrategy").get("type") or "RollingUpdate")


def _judge_daemon_set(obj: KubeObject) -> RolloutVerdict:
    name = name_of(obj)
    spec, status = section_of(obj, "spec"), section_of(obj, "status")
    desired = int_field(status.get("desiredNumberScheduled"))
    updated = int_field(status.get("updatedNumberScheduled"))
    available = int_field(status.get("numberAvailable"))
    progress = f"{name}: {updated}/{desired} updated, {available}/{desired} available"

    def verdict(state: RolloutState, message: str, line: str = progress) -> RolloutVerdict:
        return RolloutVerdict("DaemonSet", name, state, message, line)

    if _strategy_type(spec) != "RollingUpdate":
        return verdict(RolloutState.DONE, ROLLING_UPDATE_ONLY, _not_waited_on(name, spec))
    if not generation_observed(obj):
        return verdict(
            RolloutState.WAITING,
            "Waiting for daemon set spec update to be observed...",
            f"{name}: waiting for the controller to observe the new spec",
        )
    prefix = f"Waiting for daemon set {_quoted(name)} rollout to finish: "
    if updated < desired:
        return verdict(RolloutState.WAITING, prefix + f"{updated} out of {desired} new pods have been updated...")
    if available < desired:
        return verdict(RolloutState.WAITING, prefix + f"{available} of {desired} updated pods are available...")
    return verdict(RolloutState.DONE, f"daemon set {_quoted(name)} successfully rolled out")


def _judge_stateful_set(obj: KubeObject) -> RolloutVerdict:
    name = name_of(obj)
    spec, status = section_of(obj, "spec"), section_of(obj, "status")
    wanted = spec.get("replicas")
    ready, updated = int_field(status.get("readyReplicas")), int_field(status.get("updatedReplicas"))
    shown_wanted = int_field(wanted) if wanted is not None else int_field(status.get("replicas"))
    progress = f"{name}: {updated}/{shown_wanted} updated, {ready}/{shown_wanted} ready"

    def verdict(state: RolloutState, message: str, line: str = progress) -> RolloutVerdict:
        return RolloutVerdict("StatefulSet", name, state, message, line)

    if _strategy_type(spec) != "RollingUpdate":
        return verdict(RolloutState.DONE, ROLLING_UPDATE_ONLY, _not_waited_on(name, spec))
    observed = int_field(status.get("observedGeneration"))
    if observed == 0 or int_field(metadata_of(obj).get("generation")) > observed:
        return verdict(
            RolloutState.WAITING,
            "Waiting for statefulset spec update to be observed...",
            f"{name}: waiting for the controller to observe the new spec",
        )
    if wanted is not None and ready < int_field(wanted):
        return verdict(RolloutState.WAITING, f"Waiting for {int_field(wanted) - ready} pods to be ready...")
    rolling_update = section_of(spec, "updateStrategy").get("rollingUpdate")
    if isinstance(rolling_update, Mapping):
        partition = rolling_update.get("partition")
        if wanted is not None and partition is not None:
            target = int_field(wanted) - int_field(partition)
            if updated < target:
                return verdict(
                    RolloutState.WAITING,
                    f"Waiting for partitioned roll out to finish: {updated} out of {target} new pods have been "
                    "updated...",
                )
        return verdict(RolloutState.DONE, f"partitioned roll out complete: {updated} new pods have been updated...")
    update_revision = str(status.get("updateRevision") or "")
    current_revision = str(status.get("currentRevision") or "")
    if update_revision != current_revision:
        return verdict(
            RolloutState.WAITING,
            f"waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}...",
        )
    return verdict(
        RolloutState.DONE,
        f"statefulset rolling update complete {int_field(status.get('currentReplicas'))} pods at revision "
        f"{current_revision}...",
    )


def _judge_job(obj: KubeObject) -> RolloutVerdict:
    # kubectl has no rollout status for Jobs; this follows `kubectl wait --for=condition=complete` and
    # fails on the Failed condition, with messages in the same voice as the others.
    name = name_of(obj)
    spec, status = section_of(obj, "spec"), section_of(obj, "status")
    completions = int_field(spec.get("completions")) if spec.get("completions") is not None else 1
    succeeded, active, failed = (int_field(status.get(k)) for k in ("succeeded", "active", "failed"))
    progress = f"{name}: {succeeded}/{completions} succeeded"
    if active:
        progress += f", {active} running"
    if failed:
        progress += f", {failed} failed"

    def verdict(state: RolloutState, message: str) -> RolloutVerdict:
        return RolloutVerdict("Job", name, state, message, progress)

    for failed_type in ("Failed", "FailureTarget"):
        cond = condition(obj, failed_type)
        if cond is not None and cond.get("status") == "True":
            detail = ": ".join(str(part) for part in (cond.get("reason"), cond.get("message")) if part)
            return verdict(RolloutState.FAILED, f"job {_quoted(name)} failed" + (f": {detail}" if detail else ""))
    complete = condition(obj, "Complete")
    if complete is not None and complete.get("status") == "True":
        return verdict(RolloutState.DONE, f"job {_quoted(name)} completed")
    if spec.get("suspend") is True:
        return verdict(RolloutState.WAITING, f"Waiting for job {_quoted(name)}: the job is suspended...")
    return verdict(
        RolloutState.WAITING,
        f"Waiting for job {_quoted(name)} to complete: {succeeded} of {completions} completions succeeded...",
    )


def judge_departed(
    kind: str, name: str, last_seen: KubeObject | None, applied: KubeObject | None
) -> tuple[RolloutVerdict, list[WorkloadFailure]]:
    """Judge a workload that is no longer there, by the last state seen of it (a DELETED event's object).

    A Job is removed on purpose once finished (``ttlSecondsAfterFinished``, the TTL-after-finished
    controller): one that succeeded (Complete, or SuccessCriteriaMet, which always leads to Complete) is done,
    one that failed failed as it would have live. Anything else is a failure, NotFound; when the Job as
    applied (or last seen) had ``ttlSecondsAfterFinished``, the message says that may be why it is gone.
    """
    if last_seen is not None and kind == "Job":
        verdict = _judge_job(last_seen)
        if verdict.failed:
            return verdict, find_workload_failures(last_seen)
        if any(condition_true(last_seen, success) for success in ("Complete", "SuccessCriteriaMet")):
            message = f"job {_quoted(name)} completed, then was deleted"
            return RolloutVerdict(kind, name, RolloutState.DONE, message, verdict.progress), []
    label = f"{kind.lower()}/{name}"
    hint = ""
    if kind == "Job" and any(
        section_of(obj, "spec").get("ttlSecondsAfterFinished") is not None for obj in (applied, last_seen) if obj
    ):
        hint = " (ttlSecondsAfterFinished?)"
    verdict = RolloutVerdict(kind, name, RolloutState.FAILED, f"{label} not found", f"{name}: gone")
    return verdict, [WorkloadFailure(kind, name, "NotFound", f"{label} was deleted{hint}")]


# --- failures that waiting cannot heal ----------------------------------------------------------------


@dataclass(frozen=True)
class PodFailure:
    """A pod of the newest revision that cannot become ready without a change to the deploy."""

    kind: str
    workload: str
    pod: str
    container: str | None  # None for pod-level failures (Failed phase, unschedulable)
    reason: str
    message: str
    first_seen: datetime
    init_container: bool = False

    @property
    def key(self) -> str:
        return failure_key(self.pod, self.container, self.init_container)

    def describe(self) -> str:
        where = f"pod {self.pod}"
        if self.container is not None:
            where += f" {'init container' if self.init_container else 'container'} {self.container}"
        return f"{where}: {self.reason}" + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class WorkloadFailure:
    """A workload-level signal that the rollout will not finish (a condition the controller set)."""

    kind: str
    workload: str
    reason: str
    message: str

    def describe(self) -> str:
        # Without the workload's name, like PodFailure.describe: every caller puts "kind/name: " in front.
        return self.reason + (f": {self.message}" if self.message else "")


# Either kind of failure that ends a wait.
Failure = PodFailure | WorkloadFailure


def failure_key(pod: str, container: str | None, init_container: bool = False) -> str:
    return f"{pod}/{'init:' if init_container else ''}{container or ''}"


@dataclass(frozen=True)
class PodFailureScan:
    """The outcome of one look at a workload's pods.

    ``failures`` count now; ``tolerated`` are seen but younger than ``--tolerate-failures-for`` (or the
    unschedulable grace); ``first_seen`` is the memory to pass to the next scan.
    """

    failures: list[PodFailure] = field(default_factory=list)
    tolerated: list[PodFailure] = field(default_factory=list)
    first_seen: dict[str, datetime] = field(default_factory=dict)


def _pod_problems(pod: KubeObject, is_job: bool) -> list[tuple[str | None, bool, str, str]]:
    """(container, is_init, reason, message) for every problem the pod shows right now."""
    problems: list[tuple[str | None, bool, str, str]] = []
    status = section_of(pod, "status")
    # A Job retries a crashed container or a failed pod up to its backoffLimit (restartPolicy OnFailure counts
    # restarts, Never failed pods) and then says so in its Failed condition: that is its verdict, not the first
    # crash. What no retry heals (an image that cannot be pulled, a missing ConfigMap) still fails at once.
    if status.get("phase") == "Failed" and not is_job:
        problems.append((None, False, str(status.get("reason") or "Failed"), str(status.get("message") or "")))
        return problems
    fatal = FATAL_WAITING_REASONS - {"CrashLoopBackOff"} if is_job else FATAL_WAITING_REASONS
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for container in status.get(key) or ():
            if not isinstance(container, Mapping):
                continue
            cname = str(container.get("name", ""))
            state = section_of(container, "state")
            waiting, terminated = section_of(state, "waiting"), section_of(state, "terminated")
            if waiting.get("reason") in fatal:
                problems.append((cname, init, str(waiting["reason"]), str(waiting.get("message") or "")))
            elif init and not is_job and terminated and int_field(terminated.get("exitCode")) != 0:
                problems.append(
                    (
                        cname,
                        init,
                        str(terminated.get("reason") or "Error"),
                        f"exited with code {int_field(terminated.get('exitCode'))}"
                        + (f": {terminated['message']}" if terminated.get("message") else ""),
                    )
                )
    scheduled = condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        problems.append((None, False, "Unschedulable", str(scheduled.get("message") or "")))
    return problems


def find_pod_failures(
    pods: Iterable[KubeObject],
    revision: RevisionPods | None,
    *,
    now: datetime,
    first_seen: Mapping[str, datetime] | None = None,
    tolerate_failures_for: timedelta = timedelta(0),
    unschedulable_grace: timedelta = DEFAULT_UNSCHEDULABLE_GRACE,
) -> PodFailureScan:
    """Failures of the newest revision's pods that waiting cannot heal.

    Pods of older revisions never count: they are what a rollback returns to. A failure counts once it
    has been seen for ``tolerate_failures_for`` (unschedulable pods: at least ``unschedulable_grace``),
    measured from the first scan that saw it for that pod and container; that memory is kept for as long
    as the pod exists, so a crash loop's brief running spells do not restart the count.
    """
    memory = dict(first_seen or {})
    scan = PodFailureScan()
    if revision is None:
        return scan
    alive: set[str] = set()
    for pod in pods:
        if not revision.matches(pod) or metadata_of(pod).get("deletionTimestamp"):
            continue
        pod_name = name_of(pod)
        alive.add(pod_name)
        for container, init, reason, message in _pod_problems(pod, revision.kind == "Job"):
            key = failure_key(pod_name, container, init)
            seen = memory.setdefault(key, now)
            failure = PodFailure(revision.kind, revision.name, pod_name, container, reason, message, seen, init)
            wait_for = (
                max(tolerate_failures_for, unschedulable_grace)
                if reason == "Unschedulable"
                else (tolerate_failures_for)
            )
            (scan.failures if now - seen >= wait_for else scan.tolerated).append(failure)
    scan.first_seen.update({k: v for k, v in memory.items() if k.split("/", 1)[0] in alive})
    return scan


def find_workload_failures(obj: KubeObject) -> list[WorkloadFailure]:
    """Conditions that say the rollout will not finish: ProgressDeadlineExceeded, ReplicaFailure, a failed Job."""
    kind, name = str(obj.get("kind")), name_of(obj)
    failures: list[WorkloadFailure] = []
    if kind != "Job" and not generation_observed(obj):
        return failures  # conditions of the previous generation: a stale deadline says nothing about this one
    progressing = condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        failures.append(WorkloadFailure(kind, name, "ProgressDeadlineExceeded", str(progressing.get("message") or "")))
    replica_failure = condition(obj, "ReplicaFailure")
    if replica_failure is not None and replica_failure.get("status") == "True":
        failures.append(
            WorkloadFailure(
                kind,
                name,
                str(replica_failure.get("reason") or "ReplicaFailure"),
                str(replica_failure.get("message") or ""),
            )
        )
    if kind == "Job":
        verdict = _judge_job(obj)
        if verdict.failed:
            cond = condition(obj, "Failed") or condition(obj, "FailureTarget") or {}
            failures.append(
                WorkloadFailure(kind, name, str(cond.get("reason") or "Failed"), str(cond.get("message") or ""))
            )
    return failures
