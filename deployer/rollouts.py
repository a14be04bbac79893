"""Judging a rollout from the objects the Kubernetes API returns: pure computation over plain dicts.

Owns: the verdict on one workload with ``kubectl rollout status``'s exact conditions and messages
(Deployment, StatefulSet, DaemonSet; Jobs to completion), the short progress line for CI logs, which pods
belong to a workload's newest revision, and which of those pods (or which workload conditions) show a
failure that waiting cannot heal. Must not do any I/O, import the kubernetes client or read the clock:
callers pass ``now`` and the objects as the API's JSON (camelCase keys, as ``GET`` returns them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

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


# --- small readers over API JSON ----------------------------------------------------------------------


def _int(value: Any) -> int:
    """Status integers the API omits when zero count as 0, as in the Go structs kubectl decodes into."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _section(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name", ""))


def condition(obj: Mapping[str, Any], condition_type: str) -> Mapping[str, Any] | None:
    """The status condition of that type, or None."""
    for cond in _section(obj, "status").get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == condition_type:
            return cond
    return None


def _condition_true(obj: Mapping[str, Any], condition_type: str) -> bool:
    cond = condition(obj, condition_type)
    return cond is not None and cond.get("status") == "True"


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner (the ownerReference with controller: true)."""
    for ref in _meta(obj).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller"):
            uid = ref.get("uid")
            return str(uid) if uid else None
    return None


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _quoted(name: str) -> str:
    # Go's %q; Kubernetes names never need escaping beyond the quotes.
    return f'"{name}"'


# --- verdicts -----------------------------------------------------------------------------------------


def judge_workload(obj: Mapping[str, Any]) -> RolloutVerdict:
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


def _generation_observed(obj: Mapping[str, Any]) -> bool:
    return _int(_meta(obj).get("generation")) <= _int(_section(obj, "status").get("observedGeneration"))


def _judge_deployment(obj: Mapping[str, Any]) -> RolloutVerdict:
    name = _name(obj)
    spec, status = _section(obj, "spec"), _section(obj, "status")
    updated, total = _int(status.get("updatedReplicas")), _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    wanted = spec.get("replicas")
    shown_wanted = _int(wanted) if wanted is not None else updated
    progress = f"{name}: {updated}/{shown_wanted} updated, {available}/{shown_wanted} available"
    if total > updated:
        progress += f", {total - updated} old pending termination"

    def verdict(state: RolloutState, message: str, line: str = progress) -> RolloutVerdict:
        return RolloutVerdict("Deployment", name, state, message, line)

    if not _generation_observed(obj):
        return verdict(
            RolloutState.WAITING,
            "Waiting for deployment spec update to be observed...",
            f"{name}: waiting for the controller to observe the new spec",
        )
    progressing = condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return verdict(RolloutState.FAILED, f"deployment {_quoted(name)} exceeded its progress deadline")
    prefix = f"Waiting for deployment {_quoted(name)} rollout to finish: "
    if wanted is not None and updated < _int(wanted):
        return verdict(
            RolloutState.WAITING, prefix + f"{updated} out of {_int(wanted)} new replicas have been updated..."
        )
    if total > updated:
        return verdict(RolloutState.WAITING, prefix + f"{total - updated} old replicas are pending termination...")
    if available < updated:
        return verdict(RolloutState.WAITING, prefix + f"{available} of {updated} updated replicas are available...")
    return verdict(RolloutState.DONE, f"deployment {_quoted(name)} successfully rolled out")


ROLLING_UPDATE_ONLY = "rollout status is only available for RollingUpdate strategy type"


def _not_waited_on(name: str, spec: Mapping[str, Any]) -> str:
    # kubectl refuses (error, exit 1) but counts it as done: under OnDelete nothing rolls out until someone
    # deletes pods, so there is nothing to wait for, and failing every deploy of such a workload helps no one.
    return (
        f"{name}: not waited on: updateStrategy {_strategy_type(spec)} replaces pods only when they are deleted "
        f"(kubectl: {ROLLING_UPDATE_ONLY})"
    )


def _strategy_type(spec: Mapping[str, Any]) -> str:
    # The API server defaults an absent strategy to RollingUpdate; objects straight from a manifest lack it.
    return str(_section(spec, "updateStrategy").get("type") or "RollingUpdate")


def _judge_daemon_set(obj: Mapping[str, Any]) -> RolloutVerdict:
    name = _name(obj)
    spec, status = _section(obj, "spec"), _section(obj, "status")
    desired = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    available = _int(status.get("numberAvailable"))
    progress = f"{name}: {updated}/{desired} updated, {available}/{desired} available"

    def verdict(state: RolloutState, message: str, line: str = progress) -> RolloutVerdict:
        return RolloutVerdict("DaemonSet", name, state, message, line)

    if _strategy_type(spec) != "RollingUpdate":
        return verdict(RolloutState.DONE, ROLLING_UPDATE_ONLY, _not_waited_on(name, spec))
    if not _generation_observed(obj):
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


def _judge_stateful_set(obj: Mapping[str, Any]) -> RolloutVerdict:
    name = _name(obj)
    spec, status = _section(obj, "spec"), _section(obj, "status")
    wanted = spec.get("replicas")
    ready, updated = _int(status.get("readyReplicas")), _int(status.get("updatedReplicas"))
    shown_wanted = _int(wanted) if wanted is not None else _int(status.get("replicas"))
    progress = f"{name}: {updated}/{shown_wanted} updated, {ready}/{shown_wanted} ready"

    def verdict(state: RolloutState, message: str, line: str = progress) -> RolloutVerdict:
        return RolloutVerdict("StatefulSet", name, state, message, line)

    if _strategy_type(spec) != "RollingUpdate":
        return verdict(RolloutState.DONE, ROLLING_UPDATE_ONLY, _not_waited_on(name, spec))
    observed = _int(status.get("observedGeneration"))
    if observed == 0 or _int(_meta(obj).get("generation")) > observed:
        return verdict(
            RolloutState.WAITING,
            "Waiting for statefulset spec update to be observed...",
            f"{name}: waiting for the controller to observe the new spec",
        )
    if wanted is not None and ready < _int(wanted):
        return verdict(RolloutState.WAITING, f"Waiting for {_int(wanted) - ready} pods to be ready...")
    rolling_update = _section(spec, "updateStrategy").get("rollingUpdate")
    if isinstance(rolling_update, Mapping):
        partition = rolling_update.get("partition")
        if wanted is not None and partition is not None:
            target = _int(wanted) - _int(partition)
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
        f"statefulset rolling update complete {_int(status.get('currentReplicas'))} pods at revision "
        f"{current_revision}...",
    )


def _judge_job(obj: Mapping[str, Any]) -> RolloutVerdict:
    # kubectl has no rollout status for Jobs; this follows `kubectl wait --for=condition=complete` and
    # fails on the Failed condition, with messages in the same voice as the others.
    name = _name(obj)
    spec, status = _section(obj, "spec"), _section(obj, "status")
    completions = _int(spec.get("completions")) if spec.get("completions") is not None else 1
    succeeded, active, failed = (_int(status.get(k)) for k in ("succeeded", "active", "failed"))
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
    kind: str, name: str, last_seen: Mapping[str, Any] | None, applied: Mapping[str, Any] | None
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
        if any(_condition_true(last_seen, success) for success in ("Complete", "SuccessCriteriaMet")):
            message = f"job {_quoted(name)} completed, then was deleted"
            return RolloutVerdict(kind, name, RolloutState.DONE, message, verdict.progress), []
    label = f"{kind.lower()}/{name}"
    hint = ""
    if kind == "Job" and any(
        _section(obj, "spec").get("ttlSecondsAfterFinished") is not None for obj in (applied, last_seen) if obj
    ):
        hint = " (ttlSecondsAfterFinished?)"
    verdict = RolloutVerdict(kind, name, RolloutState.FAILED, f"{label} not found", f"{name}: gone")
    return verdict, [WorkloadFailure(kind, name, "NotFound", f"{label} was deleted{hint}")]


# --- the newest revision's pods -----------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionPods:
    """Which pods belong to a workload's newest revision.

    A pod belongs when its controlling owner has ``owner_uid`` (the new ReplicaSet for a Deployment, the
    workload itself otherwise) and, when ``label`` is set, it carries that label with that value
    (``pod-template-hash`` or ``controller-revision-hash``).
    """

    kind: str
    name: str
    owner_uid: str
    label: tuple[str, str] | None = None

    def matches(self, pod: Mapping[str, Any]) -> bool:
        if controller_uid(pod) != self.owner_uid:
            return False
        if self.label is not None:
            key, value = self.label
            return _labels(pod).get(key) == value
        return True


def templates_equal_ignoring_hash(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Pod templates equal once the ``pod-template-hash`` label is dropped, as the Deployment controller compares.

    Also blind to what only serialisation adds: null and empty values (Go writes ``creationTimestamp: null``
    and ``resources: {}``) and a ControllerRevision's ``$patch: replace`` directive.
    """
    return bool(_pruned(_without_hash(a)) == _pruned(_without_hash(b)))


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        pruned = {k: _pruned(v) for k, v in value.items() if k != "$patch"}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def _without_hash(template: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(template, Mapping):
        return {}
    copy = dict(template)
    meta = dict(copy.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    if meta:
        copy["metadata"] = meta
    else:
        copy.pop("metadata", None)
    return copy


def owned_by(objects: Iterable[Mapping[str, Any]], owner: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The objects whose controlling owner is ``owner`` (matched by uid)."""
    uid = _meta(owner).get("uid")
    return [obj for obj in objects if uid and controller_uid(obj) == uid]


def new_replica_set(
    deployment: Mapping[str, Any], replica_sets: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The ReplicaSet the Deployment controller considers new: owned by it, same template ignoring the hash."""
    template = _section(deployment, "spec").get("template")
    for rs in owned_by(replica_sets, deployment):
        if templates_equal_ignoring_hash(_section(rs, "spec").get("template"), template):
            return rs
    return None


def revision_number(obj: Mapping[str, Any]) -> int:
    """A ReplicaSet's or Deployment's ``deployment.kubernetes.io/revision``, or a ControllerRevision's revision."""
    if "revision" in obj:  # ControllerRevisions keep it at the top level
        return _int(obj.get("revision"))
    annotations = _meta(obj).get("annotations") or {}
    try:
        return int(annotations.get("deployment.kubernetes.io/revision", 0))
    except (TypeError, ValueError):
        return 0


def newest_revision_pods(
    workload: Mapping[str, Any],
    *,
    replica_sets: Iterable[Mapping[str, Any]] = (),
    controller_revisions: Iterable[Mapping[str, Any]] = (),
) -> RevisionPods | None:
    """How to recognise the pods of the workload's newest revision; None until its controller made it."""
    kind, name = str(workload.get("kind")), _name(workload)
    uid = str(_meta(workload).get("uid") or "")
    if kind == "Deployment":
        rs = new_replica_set(workload, replica_sets)
        if rs is None or not _meta(rs).get("uid"):
            return None
        hash_label = _labels(rs).get("pod-template-hash")
        return RevisionPods(
            kind, name, str(_meta(rs)["uid"]), ("pod-template-hash", str(hash_label)) if hash_label else None
        )
    if not uid:
        return None
    if kind in ("StatefulSet", "DaemonSet") and not _generation_observed(workload):
        # Until the controller saw the new spec, its newest revision is still the previous one.
        return None
    if kind == "StatefulSet":
        update_revision = _section(workload, "status").get("updateRevision")
        if not update_revision:
            return None
        # StatefulSet pods carry the whole ControllerRevision name as their revision label.
        return RevisionPods(kind, name, uid, ("controller-revision-hash", str(update_revision)))
    if kind == "DaemonSet":
        revisions = owned_by(controller_revisions, workload)
        if not revisions:
            return None
        newest = max(revisions, key=revision_number)
        # DaemonSet pods carry only the hash, which the ControllerRevision has as a label (and name suffix).
        revision_hash = _labels(newest).get("controller-revision-hash") or _name(newest).rsplit("-", 1)[-1]
        return RevisionPods(kind, name, uid, ("controller-revision-hash", str(revision_hash)))
    if kind == "Job":
        return RevisionPods(kind, name, uid)
    return None


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


def _pod_problems(pod: Mapping[str, Any], is_job: bool) -> list[tuple[str | None, bool, str, str]]:
    """(container, is_init, reason, message) for every problem the pod shows right now."""
    problems: list[tuple[str | None, bool, str, str]] = []
    status = _section(pod, "status")
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
            state = _section(container, "state")
            waiting, terminated = _section(state, "waiting"), _section(state, "terminated")
            if waiting.get("reason") in fatal:
                problems.append((cname, init, str(waiting["reason"]), str(waiting.get("message") or "")))
            elif init and not is_job and terminated and _int(terminated.get("exitCode")) != 0:
                problems.append(
                    (
                        cname,
                        init,
                        str(terminated.get("reason") or "Error"),
                        f"exited with code {_int(terminated.get('exitCode'))}"
                        + (f": {terminated['message']}" if terminated.get("message") else ""),
                    )
                )
    scheduled = condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        problems.append((None, False, "Unschedulable", str(scheduled.get("message") or "")))
    return problems


def find_pod_failures(
    pods: Iterable[Mapping[str, Any]],
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
        if not revision.matches(pod) or _meta(pod).get("deletionTimestamp"):
            continue
        pod_name = _name(pod)
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


def find_workload_failures(obj: Mapping[str, Any]) -> list[WorkloadFailure]:
    """Conditions that say the rollout will not finish: ProgressDeadlineExceeded, ReplicaFailure, a failed Job."""
    kind, name = str(obj.get("kind")), _name(obj)
    failures: list[WorkloadFailure] = []
    if kind != "Job" and not _generation_observed(obj):
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


def pods_of(revision: RevisionPods | None, pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods that belong to that revision (none when the revision does not exist yet)."""
    return [pod for pod in pods if revision is not None and revision.matches(pod)]
