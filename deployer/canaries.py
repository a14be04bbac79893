"""The canary strategy's decisions: which Deployments get a canary, what the canary object is, and the hold.

Pure computation over the API's JSON and the readings a loop hands in; no I/O, no clock of its own:
``hold_step(policy, state, snapshot, now) -> (state, verdict)`` is one tick of the hold, which kube/holding.py
runs and deployer/canarying.py wires into the deploy. The canary is judged first by the rollout wait's own
rules (rollout_wait.step, rollouts.find_pod_failures); the hold reuses those and adds what a proven pod must
not do while it serves: restart, lose readiness, go away, or have a ``--canary-check`` URL fail.

The canary of Deployment ``web`` is Deployment ``web-canary``: the new pod template with one more label,
``CANARY_LABEL: "true"``, in its pods and in its selector. Why adding it is safe:

- a Service (or NetworkPolicy, PodDisruptionBudget) selects pods by a subset of their labels, so whatever
  selects the stable pods selects the canary's too: the canary gets its share of the Service's traffic;
- the canary's selector requires the label, which the stable pods lack, so its ReplicaSet can never claim them;
- the stable Deployment's selector does match the canary's pods and ReplicaSet, but the controllers claim only
  orphans: the canary's ReplicaSet has the canary Deployment as its controlling owner, and its pods that
  ReplicaSet. The stable ReplicaSets also select by their own ``pod-template-hash``, which the canary's
  pods (another template: the extra label) do not carry, and the Deployment controller counts only the
  ReplicaSets it owns. So the stable Deployment never adopts or counts a canary pod, as long as canaries
  are deleted with their dependents (deployer deletes them with propagationPolicy Background; an orphaning
  delete, ``kubectl delete --cascade=orphan``, would hand the canary's ReplicaSet to the stable Deployment).

The canary Deployment carries the label itself and ``CANARY_OF_ANNOTATION`` naming its stable Deployment, so
that one left behind by a killed run is found (one LIST by label) and deleted by the next deploy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from deployer import rollouts
from deployer.clocks import Instant
from deployer.errors import OptionError
from deployer.kinds import KubeDict, KubeObject
from deployer.objects import condition_true, int_field, metadata_of, name_of, section_of
from deployer.revision_pods import RevisionPods, pods_of, templates_equal_ignoring_hash
from deployer.rollbacks import ObjectRef
from deployer.rollout_wait import WaitOutcome
from deployer.rollouts import Failure, PodFailure, WorkloadFailure
from deployer.settings import format_duration

STRATEGIES = ("rolling", "canary")
CANARY_LABEL = "deployer/canary"
CANARY_LABEL_VALUE = "true"
CANARY_OF_ANNOTATION = "deployer/canary-of"
CANARY_SUFFIX = "-canary"
# A --canary-check URL fails the canary after this many failed GETs in a row (no answer within
# CHECK_TIMEOUT_SECONDS, or an answer that is not 2xx); the GETs are CHECK_INTERVAL_SECONDS apart.
CHECK_ATTEMPTS = 3
CHECK_TIMEOUT_SECONDS = 5.0
CHECK_INTERVAL_SECONDS = 1.0


def canary_name(name: str) -> str:
    return name + CANARY_SUFFIX


def canary_of(deployment: KubeObject, replicas: int) -> KubeDict:
    """The canary of a Deployment as rendered: ``<name>-canary`` with ``replicas`` pods of the same template,
    the canary label added to its pods and its selector (see the module's docstring), marked as whose canary
    it is. Its own name is the only other change: the image, env, probes and the rest are the new ones."""
    metadata = metadata_of(deployment)
    name = name_of(deployment)
    spec: KubeDict = copy.deepcopy(dict(section_of(deployment, "spec")))
    spec["replicas"] = replicas
    selector = dict(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), CANARY_LABEL: CANARY_LABEL_VALUE}
    spec["selector"] = selector
    template = dict(spec.get("template") or {})
    template_metadata = dict(template.get("metadata") or {})
    template_metadata["labels"] = {**(template_metadata.get("labels") or {}), CANARY_LABEL: CANARY_LABEL_VALUE}
    template["metadata"] = template_metadata
    spec["template"] = template
    canary_metadata: KubeDict = {
        "name": canary_name(name),
        "labels": {**(metadata.get("labels") or {}), CANARY_LABEL: CANARY_LABEL_VALUE},
        "annotations": {**(metadata.get("annotations") or {}), CANARY_OF_ANNOTATION: name},
    }
    if metadata.get("namespace"):
        canary_metadata["namespace"] = metadata["namespace"]
    return {
        "apiVersion": deployment.get("apiVersion", "apps/v1"),
        "kind": "Deployment",
        "metadata": canary_metadata,
        "spec": spec,
    }


def template_changes(live: KubeObject | None, planned: KubeObject) -> bool:
    """Whether applying would change an existing Deployment's pod template: ``planned`` is the server's
    dry-run answer (defaulted as the live one is). A new Deployment has no stable version to protect: None."""
    if live is None:
        return False
    live_template = section_of(live, "spec").get("template")
    return not templates_equal_ignoring_hash(live_template, section_of(planned, "spec").get("template"))


def is_canary_of(obj: KubeObject, name: str) -> bool:
    """Whether ``obj`` is the canary deployer makes for Deployment ``name`` (its name, label and annotation)."""
    metadata = metadata_of(obj)
    return (
        name_of(obj) == canary_name(name)
        and (metadata.get("labels") or {}).get(CANARY_LABEL) == CANARY_LABEL_VALUE
        and (metadata.get("annotations") or {}).get(CANARY_OF_ANNOTATION) == name
    )


def leftovers(listed: Sequence[KubeObject], deployments: Sequence[ObjectRef]) -> list[ObjectRef]:
    """The canaries (found by CANARY_LABEL) of the Deployments being deployed: left by an earlier run that
    did not get to delete them. A canary of another Deployment is not this deploy's to remove."""
    found = []
    for obj in listed:
        namespace = metadata_of(obj).get("namespace")
        if any(ref.namespace == namespace and is_canary_of(obj, ref.name) for ref in deployments):
            found.append(ObjectRef("apps/v1", "Deployment", namespace, name_of(obj)))
    return found


def name_taken(stable: str, canary: KubeObject | None, deployed: Sequence[ObjectRef], ref: ObjectRef) -> str | None:
    """Why the canary of ``stable`` cannot be ``ref``: a Deployment of that name that is not deployer's canary
    exists (``canary``, live) or is in the manifests (``deployed``); None when the name is free."""
    if ref in deployed:
        return f"{ref} is in the manifests: the canary of deployment/{stable} would take its name"
    if canary is not None and not is_canary_of(canary, stable):
        return f"{ref} exists and is not deployer's canary of deployment/{stable}: the canary would take its name"
    return None


def check_urls(urls: Sequence[str], strategy: str) -> tuple[str, ...]:
    """The --canary-check URLs, each checked (check_url); refused without --strategy canary (exit 2)."""
    if urls and strategy != "canary":
        raise OptionError("--canary-check", "checks a canary's hold: it needs --strategy canary")
    return tuple(check_url(url) for url in urls)


def check_url(url: str) -> str:
    """A --canary-check URL as given, refused (exit 2) unless it is an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError("--canary-check", f"{shown_url(url)!r} is not an http(s) URL")
    return url.strip()


def shown_url(url: str) -> str:
    """A check URL as the log shows it: without a user or password, and its query (which may hold a token)
    cut to ``?…``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


# --- the hold ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldPolicy:
    """Hold for ``hold`` seconds from ``started`` (on the monotonic clock); a check fails after
    ``check_attempts`` failed GETs in a row."""

    started: float
    hold: float
    check_attempts: int = CHECK_ATTEMPTS


@dataclass(frozen=True)
class CheckReading:
    """What the GETs of one --canary-check URL have found so far in the hold."""

    url: str
    answered_ok: int = 0
    failed_in_a_row: int = 0
    last_problem: str = ""


@dataclass(frozen=True)
class HeldCanary:
    """What the watches show of one canary: the Deployment (None once deleted), its namespace's pods and
    which of them are its newest revision's."""

    ref: ObjectRef
    live: KubeObject | None
    pods: Sequence[KubeObject] = ()
    revision: RevisionPods | None = None


@dataclass(frozen=True)
class HoldSnapshot:
    synced: bool
    cancelled: bool = False
    canaries: Sequence[HeldCanary] = ()
    checks: Sequence[CheckReading] = ()


@dataclass(frozen=True)
class HoldState:
    """The pods each canary had when the hold began, with their containers' restart counts, and when each
    pod failure was first seen (rollouts.find_pod_failures' memory)."""

    restarts: dict[ObjectRef, dict[str, int]] = field(default_factory=dict)
    first_seen: dict[ObjectRef, dict[str, datetime]] = field(default_factory=dict)


@dataclass(frozen=True)
class HoldVerdict:
    """``outcome`` None: hold on. ``failures``: per canary, what failed it."""

    outcome: WaitOutcome | None
    reason: str = ""
    failures: dict[ObjectRef, list[Failure]] = field(default_factory=dict)


def hold_step(
    policy: HoldPolicy, state: HoldState, snapshot: HoldSnapshot, now: Instant
) -> tuple[HoldState, HoldVerdict]:
    """One tick of the hold: cancelled first, then any failure of a canary (in the order given), then a
    failing check URL; the hold passes once its time is up with every check URL answered 2xx at least once."""
    if snapshot.cancelled:
        return state, HoldVerdict(WaitOutcome.CANCELLED, "cancelled while holding the canary")
    if not snapshot.synced:
        return state, HoldVerdict(None)
    failures: dict[ObjectRef, list[Failure]] = {}
    for canary in snapshot.canaries:
        state, found = _judged(state, canary, now.utc)
        if found:
            failures[canary.ref] = found
    if failures:
        ref, found = next(iter(failures.items()))
        return state, HoldVerdict(WaitOutcome.FAILED, f"{ref}: {found[0].describe()}", failures)
    for check in snapshot.checks:
        if check.failed_in_a_row >= policy.check_attempts:
            reason = (
                f"--canary-check {shown_url(check.url)} failed {check.failed_in_a_row} times in a row: "
                f"{check.last_problem}"
            )
            return state, HoldVerdict(WaitOutcome.FAILED, reason)
    if now.monotonic < policy.started + policy.hold:
        return state, HoldVerdict(None)
    silent = [check for check in snapshot.checks if check.answered_ok == 0]
    if silent:
        problem = silent[0].last_problem or "no answer yet"
        reason = f"--canary-check {shown_url(silent[0].url)} never answered 2xx during the hold: {problem}"
        return state, HoldVerdict(WaitOutcome.FAILED, reason)
    return state, HoldVerdict(WaitOutcome.DONE, f"held for {format_duration(policy.hold)}")


def _judged(state: HoldState, canary: HeldCanary, now: datetime) -> tuple[HoldState, list[Failure]]:
    ref = canary.ref
    if canary.live is None:
        return state, [WorkloadFailure(ref.kind, ref.name, "Deleted", "the canary was deleted during the hold")]
    found: list[Failure] = list(rollouts.find_workload_failures(canary.live))
    scan = rollouts.find_pod_failures(canary.pods, canary.revision, now=now, first_seen=state.first_seen.get(ref))
    state = replace(state, first_seen={**state.first_seen, ref: scan.first_seen})
    found += scan.failures
    pods = pods_of(canary.revision, canary.pods)
    counts = {key: count for pod in pods for key, count in _restart_counts(pod).items()}
    if ref not in state.restarts:
        state = replace(state, restarts={**state.restarts, ref: counts})
    found += _changes_since_start(ref, state.restarts[ref], counts, pods, now)
    if not found:
        verdict = rollouts.judge_workload(canary.live)
        if not verdict.done:
            found.append(WorkloadFailure(ref.kind, ref.name, "NotAvailable", verdict.message))
    return state, found


def _restart_counts(pod: KubeObject) -> dict[str, int]:
    """``pod/container`` -> restartCount, for every container of the pod."""
    statuses = section_of(pod, "status").get("containerStatuses") or ()
    return {
        f"{name_of(pod)}/{status.get('name', '')}": int_field(status.get("restartCount"))
        for status in statuses
        if isinstance(status, Mapping)
    }


def _changes_since_start(
    ref: ObjectRef, started: Mapping[str, int], counts: Mapping[str, int], pods: Sequence[KubeObject], now: datetime
) -> list[Failure]:
    """What a proven canary must not do during the hold: a container restarted, a pod gone (and replaced),
    a pod no longer ready."""
    failures: list[Failure] = []

    def failure(pod: str, container: str | None, reason: str, message: str) -> PodFailure:
        return PodFailure(ref.kind, ref.name, pod, container, reason, message, now)

    for key, before in started.items():
        pod, _, container = key.partition("/")
        if key not in counts:
            failures.append(failure(pod, None, "PodGone", "the pod went away during the hold"))
        elif counts[key] > before:
            message = f"restarted during the hold (restart count {before} -> {counts[key]})"
            failures.append(failure(pod, container, "Restarted", message))
    for ready_once in pods:
        if not condition_true(ready_once, "Ready"):
            failures.append(failure(name_of(ready_once), None, "NotReady", "lost its readiness during the hold"))
    return _unique(failures)


def _unique(failures: list[Failure]) -> list[Failure]:
    """One failure per pod and container (a pod gone is reported once, not per container)."""
    seen: set[tuple[str, str | None, str]] = set()
    unique: list[Failure] = []
    for item in failures:
        key = (item.pod, item.container, item.reason) if isinstance(item, PodFailure) else ("", None, item.reason)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
