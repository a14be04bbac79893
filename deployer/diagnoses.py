"""Explaining a failed rollout: pure computation from pods, events and log lines to readable text.

Owns: which container logs are worth fetching (``logs_to_collect``), the per-workload ``Diagnosis`` (the
reason, the failing pods with their container states, the latest events as ``Reason: Message``, the last
log lines of crashed containers) and its rendering as plain text: for the log (printed once), the step
summary (in a code block) and the JSON result. Must not do I/O or import the kubernetes client: kube/diagnosing.py
fetches what ``logs_to_collect`` names and passes everything in as the API's JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deployer.kinds import KubeObject
from deployer.rollouts import Failure, PodFailure

MAX_EVENTS = 10
MAX_PODS = 5
MAX_LOG_LINES = 20
MAX_LOGGED_CONTAINERS = 3


@dataclass(frozen=True)
class LogRequest:
    """The logs of one container; ``previous`` asks for the container that crashed before the current one."""

    pod: str
    container: str
    previous: bool = False

    def label(self) -> str:
        return f"{self.pod}/{self.container}" + (" (previous container)" if self.previous else "")


def logs_to_collect(
    failures: Iterable[Failure], pods: Iterable[KubeObject] = (), *, limit: int = MAX_LOGGED_CONTAINERS
) -> list[LogRequest]:
    """Which container logs explain the failure: crashed containers first, then containers that exited with
    an error (the newest first), then running but unready ones.

    A crash-looping container's current instance is usually waiting (no logs yet); the previous one
    holds the crash. A container that exited and is not restarted (a Job's pod with restartPolicy Never)
    keeps its crash as its current log. Containers that never started (image pull, config errors) have no
    logs at all.
    """
    requests: list[LogRequest] = []
    for failure in failures:
        if not isinstance(failure, PodFailure) or failure.container is None:
            continue
        if failure.reason == "CrashLoopBackOff":
            requests.append(LogRequest(failure.pod, failure.container, previous=True))
        elif failure.init_container and failure.reason not in _NEVER_STARTED:
            requests.append(LogRequest(failure.pod, failure.container))
    exited: list[tuple[str, LogRequest]] = []
    unready: list[LogRequest] = []
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name", ""))
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            state = status.get("state") or {}
            terminated = state.get("terminated") or {}
            if terminated and terminated.get("exitCode"):
                finished = str(terminated.get("finishedAt") or "")
                exited.append((finished, LogRequest(name, str(status.get("name", "")))))
            elif (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                # Not a failure of its own for a Job (its backoffLimit decides), yet the crash explains why it gave up.
                requests.append(LogRequest(name, str(status.get("name", "")), previous=True))
            elif "running" in state and not status.get("ready"):
                unready.append(LogRequest(name, str(status.get("name", ""))))
    # RFC 3339 times in UTC sort as text; a Job's latest attempt says the most about why it gave up.
    requests.extend(request for _, request in sorted(exited, key=lambda item: item[0], reverse=True))
    requests.extend(unready)
    unique = list(dict.fromkeys(requests))
    return unique[:limit]


_NEVER_STARTED = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class ContainerReport:
    name: str
    init: bool
    state: str  # e.g. "waiting: CrashLoopBackOff: back-off 20s restarting failed container"
    ready: bool
    restarts: int
    last_state: str = ""  # e.g. "terminated: Error, exit code 1"


@dataclass(frozen=True)
class PodReport:
    name: str
    phase: str
    detail: str  # e.g. "Unschedulable: 0/3 nodes are available" or ""
    containers: list[ContainerReport]


@dataclass(frozen=True)
class Diagnosis:
    """Why one workload's rollout failed."""

    kind: str
    name: str
    reason: str
    failures: list[str] = field(default_factory=list)
    pods: list[PodReport] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    logs: list[tuple[LogRequest, list[str]]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    def text(self) -> str:
        lines = _item_lines("", f"{self.title} failed: {self.reason}")
        for failure in self.failures:
            if failure != self.reason:
                lines += _item_lines("  ", f"also: {failure}")
        if self.pods:
            lines.append("  pods:")
            for pod in self.pods:
                lines += _item_lines("    ", f"{pod.name} ({pod.phase})" + (f": {pod.detail}" if pod.detail else ""))
                for c in pod.containers:
                    lines += _item_lines("      ", _container_line(c))
        if self.events:
            lines.append("  events:")
            for event in self.events:
                lines += _item_lines("    ", event)
        for request, log_lines in self.logs:
            lines.append(f"  last log lines of {request.label()}:")
            pieces = [piece for line in log_lines for piece in line.splitlines() or [""]] or ["(no output)"]
            lines.extend(f"    | {piece}" for piece in pieces)
        return "\n".join(lines)


def _container_line(c: ContainerReport) -> str:
    text = f"{'init container' if c.init else 'container'} {c.name}: {c.state}"
    extras = []
    if c.restarts:
        extras.append(f"restarts {c.restarts}")
    if c.last_state:
        extras.append(f"last: {c.last_state}")
    return text + (f" ({', '.join(extras)})" if extras else "")


def _item_lines(indent: str, text: str) -> list[str]:
    """One item of the text rendering: its first line at ``indent``, each further line of a multi-line field
    (a termination message, a probe's output in an event) under it as ``indent  | line``, so the field stays
    inside its item and none of its lines starts as the item's own lines do."""
    first, *rest = text.splitlines() or [""]
    return [indent + first, *(f"{indent}  | {line}" for line in rest)]


def render_text(diagnoses: Sequence[Diagnosis]) -> str:
    return "\n\n".join(d.text() for d in diagnoses)


# --- building one ---------------------------------------------------------------------------------------


def describe_container_state(state: KubeObject | None) -> str:
    """A container state as one phrase: ``waiting: ImagePullBackOff: Back-off pulling image "x"``."""
    state = state or {}
    if "waiting" in state:
        waiting = state["waiting"] or {}
        return _join("waiting", waiting.get("reason"), waiting.get("message"))
    if "running" in state:
        started = (state["running"] or {}).get("startedAt")
        return f"running since {started}" if started else "running"
    if "terminated" in state:
        terminated = state["terminated"] or {}
        code = terminated.get("exitCode")
        head = _join("terminated", terminated.get("reason"))
        tail = f", exit code {code}" if code is not None else ""
        message = terminated.get("message")
        return head + tail + (f": {str(message).strip()}" if message else "")
    return "unknown"


def _join(*parts: object) -> str:
    return ": ".join(str(p).strip() for p in parts if p)


def _pod_report(pod: KubeObject) -> PodReport:
    status = pod.get("status") or {}
    detail = ""
    for cond in status.get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            detail = _join(cond.get("reason"), cond.get("message"))
    if not detail and (status.get("reason") or status.get("message")):
        detail = _join(status.get("reason"), status.get("message"))
    containers = []
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for c in status.get(key) or ():
            last = c.get("lastState") or {}
            containers.append(
                ContainerReport(
                    name=str(c.get("name", "")),
                    init=init,
                    state=describe_container_state(c.get("state")),
                    ready=bool(c.get("ready")),
                    restarts=int(c.get("restartCount") or 0),
                    last_state=describe_container_state(last) if last else "",
                )
            )
    return PodReport(
        str((pod.get("metadata") or {}).get("name", "")), str(status.get("phase") or "Unknown"), detail, containers
    )


def _event_time(event: KubeObject) -> str:
    # RFC 3339 strings in UTC sort as time; events.k8s.io uses eventTime/series, core/v1 lastTimestamp.
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _event_order(event: KubeObject) -> tuple[str, int]:
    # Event times have one-second resolution; the resourceVersion orders events within a second. Compared to
    # the second only (the first 19 characters): the scheduler's events.k8s.io events carry a microsecond
    # eventTime, and "…:16.5Z" sorts as text before "…:16Z" whatever happened first.
    version = str((event.get("metadata") or {}).get("resourceVersion") or "")
    return _event_time(event)[:19], int(version) if version.isdigit() else 0


def _event_subject(event: KubeObject) -> KubeObject:
    subject = event.get("involvedObject") or event.get("regarding") or {}
    return subject if isinstance(subject, Mapping) else {}


def _belongs(subject: KubeObject, kind: str, name: str, pod_names: set[str]) -> bool:
    subject_kind, subject_name = subject.get("kind"), str(subject.get("name", ""))
    if subject_kind == kind and subject_name == name:
        return True
    if subject_kind == "Pod":
        return subject_name in pod_names
    # A Deployment's ReplicaSets are named <deployment>-<pod-template-hash>.
    return subject_kind == "ReplicaSet" and kind == "Deployment" and subject_name.rsplit("-", 1)[0] == name


def format_event(event: KubeObject) -> str:
    """``pod/web-1: Failed: Failed to pull image "x" (x3)``."""
    subject = _event_subject(event)
    count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
    message = str(event.get("message") or event.get("note") or "").strip()
    text = f"{str(subject.get('kind', '')).lower()}/{subject.get('name', '')}: {event.get('reason', '')}: {message}"
    return text + (f" (x{count})" if count > 1 else "")


def diagnose(
    workload: KubeObject,
    failures: Sequence[Failure],
    pods: Sequence[KubeObject],
    events: Iterable[KubeObject],
    logs: Mapping[LogRequest, Sequence[str]],
    *,
    reason: str | None = None,
    max_events: int = MAX_EVENTS,
    max_log_lines: int = MAX_LOG_LINES,
) -> Diagnosis:
    """Why one workload failed, from its new revision's ``pods``, the namespace's ``events`` and fetched logs.

    ``reason`` overrides the headline (e.g. a timeout with kubectl's last message); by default it is the
    first failure. Pods with failures come first; events are those of the workload, its ReplicaSets and
    the given pods, newest last.
    """
    kind = str(workload.get("kind", ""))
    name = str((workload.get("metadata") or {}).get("name", ""))
    described = [failure.describe() for failure in failures]
    headline = reason or (described[0] if described else "the rollout did not finish")
    failing_pods = {f.pod for f in failures if isinstance(f, PodFailure)}
    ordered = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", "")) not in failing_pods)
    reports = [_pod_report(pod) for pod in ordered[:MAX_PODS]]
    pod_names = {str((p.get("metadata") or {}).get("name", "")) for p in pods}
    relevant = [e for e in events if _belongs(_event_subject(e), kind, name, pod_names)]
    relevant.sort(key=_event_order)
    log_sections = [(request, list(lines)[-max_log_lines:]) for request, lines in logs.items()]
    return Diagnosis(
        kind=kind,
        name=name,
        reason=headline,
        failures=described,
        pods=reports,
        events=[format_event(e) for e in relevant[-max_events:]],
        logs=log_sections,
    )
