"""The simulator's kubelet: runs the containers of pods bound to the node and reports their status.

Sink contract: besides ``update_pod_status`` and ``record_event`` the kubelet needs
``PodSink.get_object(kind, namespace, name)`` to read the ConfigMaps ("ConfigMap") and Secrets ("Secret") that
env/envFrom reference; the server implements it (returning the stored object dict, or None when absent).

Two modes share one state machine (``_KubeletCore``), which owns everything a real kubelet decides: the order of
init and regular containers, image pull and crash back-off (10 s doubling to 300 s on the simulated clock), the
restart policy, env resolution from ConfigMaps and Secrets, pod phase and conditions, container statuses and
the events (Pulling, Pulled, Failed, BackOff, Created, Started, Killing, Unhealthy):

- ``ScriptedKubelet`` runs no process. What a container does is a ``Behaviour`` chosen by image pattern, by
  the image tag (``pull-error``, ``crash``, ``never-ready``, ``ready-after-<N>s``, ``complete``,
  ``liveness-fail``) or the default. One thread and a timer heap keyed on simulated time keep it cheap.
- ``DockerKubelet`` runs every container on the Docker engine, pulls with the pod's imagePullSecrets or else
  the test registry's credentials, publishes container ports on 127.0.0.1 only and probes those, restarts
  exited containers and serves their real logs.

Both serve kubesim (whose store is the sink) and the node agent of the real control plane
(tests/controlplane/node_agent.py, whose sink writes to the real API server). Given ``on_pod_stopped``, a pod
marked for deletion has its containers stopped within its grace period and is then handed to that callback for
the final delete, as a kubelet does; without it (kubesim) the store deletes pods and containers go at once.

All work happens on the kubelet's own thread (Docker calls on small worker pools that post their results back);
sink calls are made without holding the kubelet's lock, so the server may call ``pod_changed`` from inside
``update_pod_status``. ``logs`` raises ``LogsUnavailable`` (the server answers 400 with its message) when the
API server would refuse the request.

This module must not touch the API store directly, schedule pods (that is the scheduler's job, as is the
Scheduled event) or address a container by anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import heapq
import http.client
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

JSON = dict[str, Any]

INITIAL_BACKOFF = 10.0
MAX_BACKOFF = 300.0
HOST_IP = "127.0.0.1"


@dataclass(frozen=True)
class Behaviour:
    """What a scripted container does; times are simulated seconds from the container's start.

    For a regular container: Ready after ``ready_after`` unless ``never_ready``; with ``crash`` it exits with
    ``exit_code`` after ``crash_after``; with ``completes`` it exits 0 after ``crash_after`` (a Job's pod). An
    init container runs for ``ready_after`` and exits 0, or behaves as above with ``crash``/``never_ready``
    (then it never finishes). ``liveness_fails``: a container with a livenessProbe fails it after the probe's
    initialDelaySeconds + periodSeconds * failureThreshold and is killed (exit 137) and restarted.
    ``probe_output`` is what a failing exec probe's command prints (the Unhealthy event carries it, line breaks
    included, as a real kubelet's does); ``termination_message`` what a crashing container leaves in its
    terminationMessagePath (its terminated state's ``message``).
    """

    ready_after: float = 0.0
    pull_error: bool = False
    crash: bool = False
    never_ready: bool = False
    exit_code: int = 1
    logs: str = ""
    crash_after: float = 1.0
    completes: bool = False
    liveness_fails: bool = False
    pull_seconds: float = 0.0
    pull_error_message: str = ""  # empty: containerd's "not found" message for the image
    probe_output: str = ""
    termination_message: str = ""


class Clock(Protocol):
    """Simulated epoch seconds; ``speed`` is simulated seconds per real second."""

    @property
    def speed(self) -> float: ...

    def now(self) -> float: ...


class PodSink(Protocol):
    def update_pod_status(self, namespace: str, name: str, uid: str, status: JSON) -> None: ...

    def record_event(self, involved_object: JSON, type: str, reason: str, message: str) -> None: ...

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None: ...


class LogsUnavailable(LookupError):
    """The API server would refuse this log request (400); the message is the one it returns."""


def format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String() (10s, 1m20s, 5m0s, 512.3ms), as kubelet messages show them."""
    if seconds < 1:
        millis = round(seconds * 1000, 3)
        return f"{millis:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{round(secs, 3):g}s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_text}"
    if minutes:
        return f"{int(minutes)}m{sec_text}"
    return sec_text


# The reference grammar of distribution/reference, which the kubelet uses to parse an image name.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


def parse_image(image: str) -> tuple[str, str | None, str | None] | None:
    """(repository, tag, digest) of an image reference, or None when it does not parse."""
    match = _REFERENCE.match(image)
    if match is None or len(match.group("name")) > 255:
        return None
    return match.group("name"), match.group("tag"), match.group("digest")


def image_domain(repository: str) -> str:
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def behaviour_from_tag(image: str) -> Behaviour | None:
    """The behaviour an image tag asks for (the CLI-started simulator has no other way to script it)."""
    parsed = parse_image(image)
    tag = parsed[1] if parsed else None
    if not tag:
        return None
    values: dict[str, Any] = {}
    if "pull-error" in tag:
        values["pull_error"] = True
    if "crash" in tag:
        values["crash"] = True
    if "never-ready" in tag:
        values["never_ready"] = True
    if "liveness-fail" in tag:
        values["liveness_fails"] = True
    if "complete" in tag:
        values["completes"] = True
    ready = re.search(r"ready-after-(\d+(?:\.\d+)?)s", tag)
    if ready:
        values["ready_after"] = float(ready.group(1))
    return Behaviour(**values) if values else None


def expand_references(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, text)


def _decode_secret_value(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", errors="replace")
    except (ValueError, TypeError):
        return value


def _field_ref(pod: JSON, path: str, pod_ip: str) -> str:
    meta = pod.get("metadata", {})
    label = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if label:
        return str(meta.get(label.group(1), {}).get(label.group(2), ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod.get("spec", {}).get("nodeName"),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName"),
        "status.hostIP": HOST_IP,
        "status.podIP": pod_ip,
    }
    return str(values.get(path) or "")


def pull_policy(container: JSON) -> str:
    explicit = container.get("imagePullPolicy")
    if explicit:
        return str(explicit)
    parsed = parse_image(str(container.get("image", "")))
    if parsed and parsed[2] is None and parsed[1] in (None, "latest"):
        return "Always"
    return "IfNotPresent"


@dataclass
class _Container:
    name: str
    spec: JSON
    init: bool
    state: JSON | None = None  # None: never created, the default waiting reason applies
    last_state: JSON = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    image_id: str = ""
    container_id: str = ""
    attempt: int = 0  # bumped whenever a start or kill begins: callbacks of an older attempt are dropped
    busy: bool = False
    created_once: bool = False
    pull_backoff: float = 0.0
    pull_retry_at: float = 0.0
    pull_error: str = ""
    crash_backoff: float = 0.0
    finished_at: float = 0.0
    backoff_event_for: float = -1.0  # retry time the last BackOff event was written for

    @property
    def image(self) -> str:
        return str(self.spec.get("image", ""))

    @property
    def field_path(self) -> str:
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    def succeeded(self) -> bool:
        return self.state is not None and self.state.get("terminated", {}).get("exitCode", -1) == 0

    def terminated(self) -> JSON | None:
        return None if self.state is None else self.state.get("terminated")


@dataclass
class _Pod:
    uid: str
    namespace: str
    name: str
    pod: JSON
    inits: list[_Container]
    containers: list[_Container]
    start_time: float
    pod_ip: str
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_written: JSON | None = None
    deleting: bool = False

    @property
    def restart_policy(self) -> str:
        return str(self.pod.get("spec", {}).get("restartPolicy") or "Always")

    def container(self, name: str) -> _Container | None:
        for c in itertools.chain(self.inits, self.containers):
            if c.name == name:
                return c
        return None


class _KubeletCore:
    """The state machine both modes share; subclasses supply the runtime (pull, run, kill, logs)."""

    def __init__(self, on_pod_stopped: Callable[[JSON], None] | None = None) -> None:
        # Given: a pod marked for deletion has its containers stopped within its grace period, then this is
        # called with the pod (outside the lock) so that the caller can delete it, as a kubelet does. None: the
        # simulator's store deletes pods itself and the containers are removed at once.
        self._on_pod_stopped = on_pod_stopped
        self._lock = threading.RLock()
        self._wake = threading.Condition(threading.Lock())
        self._inbox: list[Callable[[], None]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._outbox: list[Callable[[PodSink], None]] = []
        self._pods: dict[str, _Pod] = {}
        self._ips = itertools.count(2)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._sink: PodSink | None = None
        self._clock: Clock | None = None
        self._timer_due: float | None = None
        self._dirty: set[str] = set()  # uids whose status may have changed in the current step

    # -- public interface -------------------------------------------------------------------------

    def start(self, sink: PodSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"kubesim-{type(self).__name__}", daemon=True)
        self._thread.start()

    def pod_changed(self, pod: JSON) -> None:
        self._post(lambda: self._on_pod(pod))

    def pod_deleted(self, pod: JSON) -> None:
        uid = str(pod.get("metadata", {}).get("uid", ""))
        self._post(lambda: self._on_pod_deleted(uid))

    def stop(self) -> None:
        self._stopping = True
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._thread = None

    # -- loop ---------------------------------------------------------------------------------------

    def _post(self, fn: Callable[[], None]) -> None:
        """Run fn on the kubelet thread (from any thread)."""
        with self._wake:
            self._inbox.append(fn)
            self._wake.notify_all()

    def _at(self, due: float, fn: Callable[[], None]) -> None:
        """Run fn on the kubelet thread once the simulated clock reaches due (kubelet thread only)."""
        heapq.heappush(self._timers, (due, next(self._seq), fn))

    @property
    def clock(self) -> Clock:
        assert self._clock is not None, "the kubelet is not started"
        return self._clock

    def now(self) -> float:
        """Simulated now; inside a timer, its due time, so that a jump of the clock replays events in order."""
        if self._timer_due is not None:
            return self._timer_due
        return self.clock.now()

    def _run(self) -> None:
        while not self._stopping:
            self._drain()
            with self._wake:
                if self._inbox or self._stopping:
                    continue
                self._wake.wait(timeout=self._idle_seconds())

    def _idle_seconds(self) -> float:
        """Real seconds to sleep: until the next timer, but short enough to notice a clock moved by hand."""
        wait = 0.05
        if self._timers and self._clock is not None:
            speed = max(self._clock.speed, 1e-9)
            wait = min(wait, max(0.0, (self._timers[0][0] - self._clock.now()) / speed))
        return wait

    def _drain(self) -> None:
        with self._wake:
            items, self._inbox = self._inbox, []
        for fn in items:
            self._call(fn)
        now = self.now()
        budget = 5000  # bounded work per pass, so new pods and stop() are noticed under load
        while self._timers and self._timers[0][0] <= now and budget > 0 and not self._stopping:
            due, _, fn = heapq.heappop(self._timers)
            self._timer_due = due
            try:
                self._call(fn)
            finally:
                self._timer_due = None
            budget -= 1
        self._call(self._tick)

    def _call(self, fn: Callable[[], None]) -> None:
        """One step of the state machine, then its effects on the API, written outside the lock."""
        with self._lock:
            fn()
            self._collect_statuses()
            outbox, self._outbox = self._outbox, []
        sink = self._sink
        if sink is None:
            return
        for effect in outbox:
            effect(sink)

    def _tick(self) -> None:
        """Periodic runtime work (Docker: notice exits, run probes); the scripted kubelet needs none."""

    # -- effects ---------------------------------------------------------------------------------

    def _event(self, p: _Pod, c: _Container | None, type_: str, reason: str, message: str) -> None:
        involved: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": p.namespace,
            "name": p.name,
            "uid": p.uid,
        }
        rv = p.pod.get("metadata", {}).get("resourceVersion")
        if rv:
            involved["resourceVersion"] = rv
        if c is not None:
            involved["fieldPath"] = c.field_path
        self._outbox.append(lambda sink: sink.record_event(involved, type_, reason, message))

    def _collect_statuses(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for uid in dirty:
            p = self._pods.get(uid)
            if p is None or p.deleting:
                continue
            status = self._status(p)
            if status != p.last_written:
                p.last_written = status
                self._outbox.append(_status_write(p.namespace, p.name, p.uid, status))

    # -- pods ---------------------------------------------------------------------------------------

    def _on_pod(self, pod: JSON) -> None:
        meta = pod.get("metadata", {})
        uid = str(meta.get("uid", ""))
        if not pod.get("spec", {}).get("nodeName"):
            return
        p = self._pods.get(uid)
        if p is None:
            if meta.get("deletionTimestamp"):
                return
            p = self._admit(pod)
            self._pods[uid] = p
            self._sync(p)
            return
        p.pod = pod
        self._dirty.add(uid)
        if meta.get("deletionTimestamp") and not p.deleting:
            if self._on_pod_stopped is None:
                self._kill_all(p, "Stopping container {name}")
            else:
                self._terminate(p, float(meta.get("deletionGracePeriodSeconds") or 0))
            p.deleting = True
            return
        # Only images of a pod's containers may change in place; the kubelet replaces the container.
        specs = {c["name"]: c for c in pod.get("spec", {}).get("initContainers", []) or []}
        specs.update({c["name"]: c for c in pod.get("spec", {}).get("containers", []) or []})
        for c in itertools.chain(p.inits, p.containers):
            new = specs.get(c.name)
            if new is None or new.get("image") == c.image:
                continue
            c.spec = new
            c.pull_backoff, c.pull_retry_at = 0.0, 0.0
            if c.state is not None and "running" in c.state:
                self._event(p, c, "Normal", "Killing", f"Container {c.name} definition changed, will be restarted")
                self._kill(p, c)
            elif c.state is not None and "waiting" in c.state:
                c.attempt += 1
                c.busy = False
        self._sync(p)

    def _admit(self, pod: JSON) -> _Pod:
        meta = pod["metadata"]
        spec = pod.get("spec", {})
        n = next(self._ips)
        return _Pod(
            uid=str(meta.get("uid", "")),
            namespace=str(meta.get("namespace", "default")),
            name=str(meta.get("name", "")),
            pod=pod,
            inits=[_Container(str(c["name"]), c, True) for c in spec.get("initContainers", []) or []],
            containers=[_Container(str(c["name"]), c, False) for c in spec.get("containers", []) or []],
            start_time=self.now(),
            pod_ip=f"10.244.{(n // 254) % 256}.{n % 254 + 1}",
        )

    def _on_pod_deleted(self, uid: str) -> None:
        p = self._pods.pop(uid, None)
        if p is None:
            return
        if not p.deleting:
            self._kill_all(p, "Stopping container {name}")
        p.deleting = True
        self._forget_pod(p)

    def _terminate(self, p: _Pod, grace: float) -> None:
        """Graceful deletion: stop every container (SIGTERM, SIGKILL after ``grace`` seconds), then report."""
        self._kill_all(p, "Stopping container {name}")
        self._report_stopped(p)

    def _report_stopped(self, p: _Pod) -> None:
        callback = self._on_pod_stopped
        if callback is not None:
            pod = p.pod
            self._outbox.append(lambda sink: callback(pod))

    def _kill_all(self, p: _Pod, message: str) -> None:
        for c in itertools.chain(p.inits, p.containers):
            if c.state is not None and "running" in c.state:
                self._event(p, c, "Normal", "Killing", message.format(name=c.name))
            c.attempt += 1
            c.busy = False
        self._remove_pod_containers(p)

    def _sync(self, p: _Pod) -> None:
        """What a kubelet's SyncPod decides: the next init container, else every regular container."""
        if p.deleting or self._pods.get(p.uid) is not p:
            return
        self._dirty.add(p.uid)
        if self._phase(p) in ("Succeeded", "Failed"):
            return
        for c in p.inits:
            if c.succeeded():
                continue
            self._advance(p, c)
            return
        for c in p.containers:
            self._advance(p, c)

    def _sync_later(self, p: _Pod, due: float) -> None:
        self._at(due, lambda: self._sync(p))

    def _should_restart(self, p: _Pod, c: _Container) -> bool:
        term = c.terminated() or {}
        policy = p.restart_policy
        if c.init and policy == "Always":
            return term.get("exitCode") != 0
        if policy == "Always":
            return True
        if policy == "OnFailure":
            return term.get("exitCode") != 0
        return False

    def _advance(self, p: _Pod, c: _Container) -> None:
        if c.busy or (c.state is not None and "running" in c.state):
            return
        now = self.now()
        if c.terminated() is not None:
            if not self._should_restart(p, c):
                return
            if c.crash_backoff == 0:
                c.crash_backoff = INITIAL_BACKOFF
            else:
                retry_at = c.finished_at + c.crash_backoff
                if now < retry_at:
                    self._crash_loop(p, c, retry_at)
                    return
                c.crash_backoff = min(c.crash_backoff * 2, MAX_BACKOFF)
            self._retire(c)
        elif c.state is not None and c.state.get("waiting", {}).get("reason") == "CrashLoopBackOff":
            retry_at = c.finished_at + c.crash_backoff
            if now < retry_at:
                self._sync_later(p, retry_at)
                return
            c.crash_backoff = min(c.crash_backoff * 2, MAX_BACKOFF)
        self._begin_start(p, c)

    def _retire(self, c: _Container) -> None:
        term = c.terminated()
        if term is not None:
            c.last_state = {"terminated": term}

    def _crash_loop(self, p: _Pod, c: _Container, retry_at: float) -> None:
        self._retire(c)
        pod_ref = f"{p.name}_{p.namespace}({p.uid})"
        delay = go_duration(c.crash_backoff)
        c.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay} restarting failed container={c.name} pod={pod_ref}",
            }
        }
        c.ready = False
        c.started = False
        if c.backoff_event_for != retry_at:
            c.backoff_event_for = retry_at
            self._event(p, c, "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {pod_ref}")
        self._sync_later(p, retry_at)

    def _set_waiting(self, c: _Container, reason: str, message: str | None = None) -> None:
        waiting: JSON = {"reason": reason}
        if message:
            waiting["message"] = message
        if c.terminated() is not None:
            self._retire(c)
        c.state = {"waiting": waiting}
        c.ready = False
        c.started = False

    def _begin_start(self, p: _Pod, c: _Container) -> None:
        now = self.now()
        image = c.image
        if parse_image(image) is None:
            message = (
                f'Failed to apply default image tag "{image}": '
                f'couldn\'t parse image name "{image}": invalid reference format'
            )
            if (c.state or {}).get("waiting", {}).get("reason") != "InvalidImageName":
                self._event(p, c, "Warning", "InspectFailed", message)
                self._event(p, c, "Warning", "Failed", "Error: InvalidImageName")
            self._set_waiting(c, "InvalidImageName", message)
            return
        if c.pull_retry_at > now:
            self._set_waiting(c, "ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {c.pull_error}')
            if c.backoff_event_for != c.pull_retry_at:
                c.backoff_event_for = c.pull_retry_at
                self._event(p, c, "Normal", "BackOff", f'Back-off pulling image "{image}"')
                self._event(p, c, "Warning", "Failed", "Error: ImagePullBackOff")
            self._sync_later(p, c.pull_retry_at)
            return
        c.attempt += 1
        c.busy = True
        self._ensure_image(p, c, c.attempt, pull_policy(c.spec))

    def _current(self, uid: str, name: str, attempt: int) -> tuple[_Pod, _Container] | None:
        p = self._pods.get(uid)
        if p is None or p.deleting:
            return None
        c = p.container(name)
        if c is None or c.attempt != attempt:
            return None
        self._dirty.add(uid)
        return p, c

    def _pulling(self, uid: str, name: str, attempt: int) -> None:
        found = self._current(uid, name, attempt)
        if found:
            p, c = found
            self._event(p, c, "Normal", "Pulling", f'Pulling image "{c.image}"')

    def _image_ready(
        self, uid: str, name: str, attempt: int, image_id: str, pulled_in: float | None, size: int
    ) -> None:
        """The image is on the node: pulled_in is the pull's duration, None when it was already present."""
        found = self._current(uid, name, attempt)
        if not found:
            return
        p, c = found
        c.image_id = image_id
        if pulled_in is None:
            self._event(p, c, "Normal", "Pulled", f'Container image "{c.image}" already present on machine')
        else:
            took = go_duration(pulled_in)
            self._event(
                p,
                c,
                "Normal",
                "Pulled",
                f'Successfully pulled image "{c.image}" in {took} ({took} including waiting). '
                f"Image size: {size} bytes.",
            )
        env, error = self._resolve_env(p, c.spec)
        if error is not None or env is None:
            message = error or "unknown"
            self._set_waiting(c, "CreateContainerConfigError", message)
            self._event(p, c, "Warning", "Failed", f"Error: {message}")
            c.busy = False
            # A kubelet retries on its next sync; the configmap may appear meanwhile.
            self._sync_later(p, self.now() + max(INITIAL_BACKOFF, self.clock.speed))
            return
        self._run_container(p, c, attempt, env)

    def _pull_failed(self, uid: str, name: str, attempt: int, message: str, never_pull: bool = False) -> None:
        found = self._current(uid, name, attempt)
        if not found:
            return
        p, c = found
        c.busy = False
        if never_pull:
            text = f'Container image "{c.image}" is not present with pull policy of Never'
            self._set_waiting(c, "ErrImageNeverPull", text)
            self._event(p, c, "Warning", "ErrImageNeverPull", text)
            self._event(p, c, "Warning", "Failed", "Error: ErrImageNeverPull")
            return
        now = self.now()
        self._event(p, c, "Warning", "Failed", f'Failed to pull image "{c.image}": {message}')
        self._event(p, c, "Warning", "Failed", "Error: ErrImagePull")
        self._set_waiting(c, "ErrImagePull", message)
        c.pull_error = message
        c.pull_backoff = INITIAL_BACKOFF if c.pull_backoff == 0 else min(c.pull_backoff * 2, MAX_BACKOFF)
        c.pull_retry_at = now + c.pull_backoff
        # A separate step, so that ErrImagePull is written before ImagePullBackOff replaces it.
        self._at(now, lambda: self._sync(p))

    def _container_started(self, uid: str, name: str, attempt: int, container_id: str) -> None:
        found = self._current(uid, name, attempt)
        if not found:
            return
        p, c = found
        c.busy = False
        if c.created_once:
            c.restart_count += 1
        c.created_once = True
        self._retire(c)
        c.container_id = container_id
        self._event(p, c, "Normal", "Created", f"Created container: {c.name}")
        self._event(p, c, "Normal", "Started", f"Started container {c.name}")
        c.state = {"running": {"startedAt": format_time(self.now())}}
        c.started = "startupProbe" not in c.spec
        c.ready = False
        self._on_running(p, c, attempt)

    def _start_failed(self, uid: str, name: str, attempt: int, message: str, created: bool) -> None:
        """Create failed (CreateContainerError, retried) or start failed (StartError, counts as an exit)."""
        found = self._current(uid, name, attempt)
        if not found:
            return
        p, c = found
        c.busy = False
        self._event(p, c, "Warning", "Failed", f"Error: {message}")
        if not created:
            self._set_waiting(c, "CreateContainerError", message)
            self._sync_later(p, self.now() + max(INITIAL_BACKOFF, self.clock.speed))
            return
        if c.created_once:
            c.restart_count += 1
        c.created_once = True
        self._retire(c)
        now = format_time(self.now())
        c.state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": message,
                "startedAt": "1970-01-01T00:00:00Z",
                "finishedAt": now,
            }
        }
        c.finished_at = self.now()
        self._at(self.now(), lambda: self._sync(p))

    def _container_exited(
        self, uid: str, name: str, attempt: int, exit_code: int, reason: str = "", message: str = ""
    ) -> None:
        found = self._current(uid, name, attempt)
        if not found:
            return
        p, c = found
        self._stop_probing(p, c)
        started_at = (c.state or {}).get("running", {}).get("startedAt", format_time(self.now()))
        terminated: JSON = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": started_at,
            "finishedAt": format_time(self.now()),
        }
        if c.container_id:
            terminated["containerID"] = c.container_id
        if message:
            terminated["message"] = message
        c.state = {"terminated": terminated}
        c.ready = c.init and exit_code == 0
        c.started = False
        c.finished_at = self.now()
        c.attempt += 1
        # Written before the restart decision, as a real kubelet reports the exit before acting on it.
        self._at(self.now(), lambda: self._sync(p))

    def _set_ready(self, uid: str, name: str, attempt: int, ready: bool) -> None:
        found = self._current(uid, name, attempt)
        if found and found[1].state is not None and "running" in found[1].state:
            found[1].ready = ready

    # -- status ------------------------------------------------------------------------------------

    def _phase(self, p: _Pod) -> str:
        policy = p.restart_policy
        for c in p.inits:
            if c.succeeded():
                continue
            term = c.terminated()
            if term is not None and policy == "Never":
                return "Failed"
            return "Pending"
        running = waiting = stopped = succeeded = failed = 0
        for c in p.containers:
            state = c.state or {}
            if "running" in state:
                running += 1
            elif "terminated" in state:
                stopped += 1
                if state["terminated"].get("exitCode") == 0:
                    succeeded += 1
                else:
                    failed += 1
            elif "terminated" in c.last_state:
                stopped += 1
            else:
                waiting += 1
        if waiting > 0:
            return "Pending"
        if running > 0:
            return "Running"
        if stopped == len(p.containers):
            if policy == "Always":
                return "Running"
            if stopped == succeeded:
                return "Succeeded"
            if policy == "Never":
                return "Failed"
            return "Running"
        return "Pending"

    def _container_status(self, p: _Pod, c: _Container, default_reason: str) -> JSON:
        state = c.state if c.state is not None else {"waiting": {"reason": default_reason}}
        status: JSON = {
            "name": c.name,
            "image": c.image,
            "imageID": c.image_id,
            "ready": c.ready,
            "started": c.started,
            "restartCount": c.restart_count,
            "state": state,
            "lastState": c.last_state,
        }
        if c.container_id:
            status["containerID"] = c.container_id
        return status

    def _condition(self, p: _Pod, type_: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        value = "True" if ok else "False"
        previous = p.transitions.get(type_)
        if previous is None or previous[0] != value:
            p.transitions[type_] = (value, format_time(self.now()))
        condition: JSON = {
            "type": type_,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": p.transitions[type_][1],
        }
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        return condition

    def _status(self, p: _Pod) -> JSON:
        phase = self._phase(p)
        pending_inits = [c.name for c in p.inits if not c.succeeded()]
        inits_done = not pending_inits
        default_reason = "ContainerCreating" if inits_done else "PodInitializing"
        unready = [c.name for c in p.containers if not c.ready]
        conditions = [self._condition(p, "PodReadyToStartContainers", True)]
        if inits_done:
            conditions.append(self._condition(p, "Initialized", True))
        else:
            conditions.append(
                self._condition(
                    p,
                    "Initialized",
                    False,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(pending_inits)}]",
                )
            )
        if phase in ("Succeeded", "Failed"):
            reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            ready = self._condition(p, "Ready", False, reason)
            containers_ready = self._condition(p, "ContainersReady", False, reason)
        elif unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            ready = self._condition(p, "Ready", False, "ContainersNotReady", message)
            containers_ready = self._condition(p, "ContainersReady", False, "ContainersNotReady", message)
        else:
            ready = self._condition(p, "Ready", True)
            containers_ready = self._condition(p, "ContainersReady", True)
        conditions += [ready, containers_ready]
        scheduled = next(
            (c for c in p.pod.get("status", {}).get("conditions", []) or [] if c.get("type") == "PodScheduled"),
            None,
        )
        conditions.append(scheduled or self._condition(p, "PodScheduled", True))
        status: JSON = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": p.pod_ip,
            "podIPs": [{"ip": p.pod_ip}],
            "startTime": format_time(p.start_time),
            "qosClass": p.pod.get("status", {}).get("qosClass") or _qos_class(p.pod),
            "containerStatuses": [self._container_status(p, c, default_reason) for c in p.containers],
        }
        if p.inits:
            status["initContainerStatuses"] = [self._container_status(p, c, "PodInitializing") for c in p.inits]
        return status

    # -- env ---------------------------------------------------------------------------------------

    def _resolve_env(self, p: _Pod, spec: JSON) -> tuple[dict[str, str] | None, str | None]:
        """The container's environment as the kubelet builds it, or the CreateContainerConfigError message."""
        assert self._sink is not None
        env: dict[str, str] = {}
        ns = p.namespace
        for source in spec.get("envFrom", []) or []:
            prefix = str(source.get("prefix", ""))
            for kind, key, text in (("ConfigMap", "configMapRef", "configmap"), ("Secret", "secretRef", "secret")):
                ref = source.get(key)
                if ref is None:
                    continue
                obj = self._sink.get_object(kind, ns, str(ref.get("name", "")))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    return None, f'{text} "{ref.get("name", "")}" not found'
                for k, v in (obj.get("data") or {}).items():
                    env[prefix + k] = _decode_secret_value(v) if kind == "Secret" else str(v)
        for var in spec.get("env", []) or []:
            name = str(var.get("name", ""))
            source = var.get("valueFrom")
            if source is None:
                env[name] = expand_references(str(var.get("value", "")), env)
                continue
            if "fieldRef" in source:
                env[name] = _field_ref(p.pod, str(source["fieldRef"].get("fieldPath", "")), p.pod_ip)
                continue
            for kind, key, text in (
                ("ConfigMap", "configMapKeyRef", "configmap"),
                ("Secret", "secretKeyRef", "secret"),
            ):
                ref = source.get(key)
                if ref is None:
                    continue
                ref_name = str(ref.get("name", ""))
                obj = self._sink.get_object(kind, ns, ref_name)
                if obj is None:
                    if ref.get("optional"):
                        break
                    return None, f'{text} "{ref_name}" not found'
                data = obj.get("data") or {}
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    return None, f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref_name}"
                value = data[ref["key"]]
                env[name] = _decode_secret_value(value) if kind == "Secret" else str(value)
                break
        return env, None

    # -- runtime hooks -------------------------------------------------------------------------------

    def _ensure_image(self, p: _Pod, c: _Container, attempt: int, policy: str) -> None:
        raise NotImplementedError

    def _run_container(self, p: _Pod, c: _Container, attempt: int, env: dict[str, str]) -> None:
        raise NotImplementedError

    def _on_running(self, p: _Pod, c: _Container, attempt: int) -> None:
        """Schedule what the running container does next (exit, readiness, probes)."""

    def _stop_probing(self, p: _Pod, c: _Container) -> None:
        """Forget probes of the container's current instance."""

    def _kill(self, p: _Pod, c: _Container) -> None:
        raise NotImplementedError

    def _remove_pod_containers(self, p: _Pod) -> None:
        """Remove the pod's containers from the runtime."""

    def _forget_pod(self, p: _Pod) -> None:
        """Drop per-pod runtime bookkeeping after the pod is deleted."""

    def _log_container_id(self, namespace: str, name: str, container: str, previous: bool) -> str:
        """The runtime id whose logs a request reads (the kubelet's rule), or LogsUnavailable with the API's message."""
        with self._lock:
            p = next((p for p in self._pods.values() if p.namespace == namespace and p.name == name), None)
            if p is None:
                raise LogsUnavailable(f'pods "{name}" not found')
            c = p.container(container)
            if c is None:
                raise LogsUnavailable(f"container {container} is not valid for pod {name}")
            state = c.state or {}
            last = c.last_state.get("terminated")
            if previous:
                if last is None or not last.get("containerID"):
                    raise LogsUnavailable(f'previous terminated container "{container}" in pod "{name}" not found')
                return str(last["containerID"])
            current = state.get("running") or state.get("terminated")
            if current is not None and c.container_id:
                return str(current.get("containerID") or c.container_id)
            if last is not None and last.get("containerID"):
                return str(last["containerID"])
            reason = state.get("waiting", {}).get("reason", "ContainerCreating")
            raise LogsUnavailable(f'container "{container}" in pod "{name}" is waiting to start: {reason}')

    def _kept_container_ids(self, c: _Container) -> set[str]:
        """Runtime ids a log request may still name: the current instance and the previous one."""
        ids = {c.container_id}
        last = c.last_state.get("terminated")
        if last and last.get("containerID"):
            ids.add(str(last["containerID"]))
        return ids


def _status_write(namespace: str, name: str, uid: str, status: JSON) -> Callable[[PodSink], None]:
    return lambda sink: sink.update_pod_status(namespace, name, uid, status)


def _qos_class(pod: JSON) -> str:
    containers = (pod.get("spec", {}).get("containers") or []) + (pod.get("spec", {}).get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = r.get("limits") or {}
        requests = r.get("requests") or limits
        if set(limits) < {"cpu", "memory"} or any(requests.get(k) != limits.get(k) for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def _probe_message(probe: JSON | None, kind: str) -> str:
    if probe and "tcpSocket" in probe:
        return f"dial tcp: connect: connection refused ({kind})"
    if probe and "exec" in probe:
        return "command exited with non-zero status 1"
    return "HTTP probe failed with statuscode: 503" if kind == "Readiness" else "HTTP probe failed with statuscode: 500"


class ScriptedKubelet(_KubeletCore):
    """A kubelet without containers: each image behaves as scripted, on the simulated clock."""

    def __init__(self, default: Behaviour = Behaviour(), on_pod_stopped: Callable[[JSON], None] | None = None) -> None:
        super().__init__(on_pod_stopped)
        self._default = default
        self._patterns: dict[str, Behaviour] = {}
        self._present: set[str] = set()
        self._logs: dict[str, str] = {}  # container id -> what that instance printed
        self._log_owners: dict[tuple[str, str], list[str]] = {}

    def set_behaviour(self, image_pattern: str, behaviour: Behaviour) -> None:
        with self._lock:
            self._patterns.pop(image_pattern, None)
            self._patterns[image_pattern] = behaviour

    def behaviour_for(self, image: str) -> Behaviour:
        """The latest pattern set that matches, else what the tag asks for, else the default."""
        with self._lock:
            for pattern, behaviour in reversed(self._patterns.items()):
                if fnmatch.fnmatchcase(image, pattern):
                    return behaviour
        return behaviour_from_tag(image) or self._default

    def logs(self, namespace: str, name: str, container: str, previous: bool = False) -> str:
        container_id = self._log_container_id(namespace, name, container, previous)
        with self._lock:
            return self._logs.get(container_id, "")

    def _ensure_image(self, p: _Pod, c: _Container, attempt: int, policy: str) -> None:
        b = self.behaviour_for(c.image)
        uid, name = p.uid, c.name
        digest = hashlib.sha256(c.image.encode()).hexdigest()
        image_id = f"docker-pullable://{(parse_image(c.image) or (c.image,))[0]}@sha256:{digest}"
        if b.pull_error:
            message = b.pull_error_message or (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{c.image}": '
                f'failed to resolve reference "{c.image}": {c.image}: not found'
            )
            self._pulling(uid, name, attempt)
            self._at(self.now() + b.pull_seconds, lambda: self._pull_failed(uid, name, attempt, message))
            return
        if policy != "Always" and c.image in self._present:
            self._image_ready(uid, name, attempt, image_id, None, 0)
            return
        if policy == "Never":
            self._pull_failed(uid, name, attempt, "", never_pull=True)
            return
        self._pulling(uid, name, attempt)

        def pulled() -> None:
            self._present.add(c.image)
            self._image_ready(uid, name, attempt, image_id, max(b.pull_seconds, 0.001), 1_048_576)

        if b.pull_seconds > 0:
            self._at(self.now() + b.pull_seconds, pulled)
        else:
            pulled()

    def _run_container(self, p: _Pod, c: _Container, attempt: int, env: dict[str, str]) -> None:
        container_id = "containerd://" + hashlib.sha256(f"{p.uid}/{c.name}/{attempt}".encode()).hexdigest()
        self._container_started(p.uid, c.name, attempt, container_id)

    def _on_running(self, p: _Pod, c: _Container, attempt: int) -> None:
        b = self.behaviour_for(c.image)
        uid, name = p.uid, c.name
        now = self.now()
        c.started = True
        self._logs[c.container_id] = b.logs
        for old in [i for i in self._log_owners.get((uid, name), []) if i not in self._kept_container_ids(c)]:
            self._logs.pop(old, None)
        self._log_owners[(uid, name)] = sorted(self._kept_container_ids(c))
        if b.crash or b.completes:
            code = 0 if b.completes and not b.crash else b.exit_code
            self._at(
                now + b.crash_after,
                lambda: self._container_exited(uid, name, attempt, code, message=b.termination_message),
            )
        elif c.init and not b.never_ready:
            self._at(now + b.ready_after, lambda: self._container_exited(uid, name, attempt, 0))
        if c.init:
            return
        if b.never_ready:
            probe = c.spec.get("readinessProbe")
            self._unhealthy_loop(uid, name, attempt, probe, "Readiness", now, b.probe_output)
        elif b.ready_after <= 0:
            c.ready = True
        else:
            self._at(now + b.ready_after, lambda: self._set_ready(uid, name, attempt, True))
        liveness = c.spec.get("livenessProbe")
        if b.liveness_fails and liveness:
            delay = float(liveness.get("initialDelaySeconds", 0))
            period = float(liveness.get("periodSeconds", 10))
            threshold = int(liveness.get("failureThreshold", 3))
            self._at(now + delay + period * threshold, lambda: self._liveness_kill(uid, name, attempt, liveness))

    def _unhealthy_loop(
        self, uid: str, name: str, attempt: int, probe: JSON | None, kind: str, since: float, output: str = ""
    ) -> None:
        delay = float((probe or {}).get("initialDelaySeconds", 0))
        period = float((probe or {}).get("periodSeconds", 10))
        # At a high clock speed one event per real second is enough: the recorder would aggregate them anyway.
        interval = max(period, self.clock.speed)

        def fire() -> None:
            found = self._current(uid, name, attempt)
            if not found:
                return
            p, c = found
            said = (output if probe and "exec" in probe else "") or _probe_message(probe, kind)
            self._event(p, c, "Warning", "Unhealthy", f"{kind} probe failed: {said}")
            self._at(self.now() + interval, fire)

        self._at(since + delay + period, fire)

    def _liveness_kill(self, uid: str, name: str, attempt: int, probe: JSON) -> None:
        found = self._current(uid, name, attempt)
        if not found:
            return
        p, c = found
        self._event(p, c, "Warning", "Unhealthy", f"Liveness probe failed: {_probe_message(probe, 'Liveness')}")
        self._event(p, c, "Normal", "Killing", f"Container {name} failed liveness probe, will be restarted")
        self._container_exited(uid, name, attempt, 137)

    def _kill(self, p: _Pod, c: _Container) -> None:
        self._container_exited(p.uid, c.name, c.attempt, 137)

    def _forget_pod(self, p: _Pod) -> None:
        for c in itertools.chain(p.inits, p.containers):
            for container_id in self._log_owners.pop((p.uid, c.name), []):
                self._logs.pop(container_id, None)


@dataclass
class _Probe:
    kind: str  # "Startup", "Liveness" or "Readiness", as the kubelet's event messages name them
    spec: JSON
    due: float  # time.monotonic(): real containers are probed in real time
    successes: int = 0
    failures: int = 0
    in_flight: bool = False

    def seconds(self, key: str, default: float) -> float:
        return float(self.spec.get(key, default))


@dataclass
class _Probing:
    uid: str
    name: str
    attempt: int
    docker_id: str
    host_ports: dict[int, int]  # container port -> host port published on 127.0.0.1
    probes: list[_Probe]


def _docker_message(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    if explanation:
        return f"Error response from daemon: {explanation}"
    return str(error) or type(error).__name__


def registry_auth(secret: JSON | None, domain: str) -> JSON | None:
    """Docker credentials for ``domain`` from an image pull Secret (dockerconfigjson or legacy dockercfg)."""
    data = (secret or {}).get("data") or {}
    try:
        if ".dockerconfigjson" in data:
            entries = json.loads(base64.b64decode(data[".dockerconfigjson"])).get("auths") or {}
        elif ".dockercfg" in data:
            entries = json.loads(base64.b64decode(data[".dockercfg"]))
        else:
            return None
    except (ValueError, TypeError):  # a malformed secret counts as no credentials, as for the kubelet
        return None
    for key, entry in entries.items():
        host = str(key).split("://", 1)[-1].split("/", 1)[0]
        if host != domain or not isinstance(entry, dict):
            continue
        username, password = entry.get("username"), entry.get("password")
        if not username and entry.get("auth"):
            username, _, password = base64.b64decode(entry["auth"]).decode(errors="replace").partition(":")
        return {"username": username or "", "password": password or ""}
    return None


def _image_id(image: Any) -> str:
    digests = (getattr(image, "attrs", {}) or {}).get("RepoDigests") or []
    if digests:
        return f"docker-pullable://{digests[0]}"
    return f"docker://{getattr(image, 'id', '')}"


class DockerKubelet(_KubeletCore):
    """A kubelet whose containers really run on the Docker engine, reachable and probed on 127.0.0.1 only.

    Every container carries the labels kubesim.kubelet (this instance), kubesim.prefix, kubesim.pod-uid,
    kubesim.namespace, kubesim.pod and kubesim.container, and a name starting with ``name_prefix``; ``stop``
    removes every container of this instance. Each pod container is its own Docker container (no shared
    network namespace). Back-off runs on the simulated clock; probes run in real seconds. A tcpSocket probe
    counts a connection that Docker's port proxy accepts and closes at once as refused, since the proxy accepts
    on behalf of a container that is not listening.
    """

    POLL_SECONDS = 0.2

    def __init__(
        self,
        docker_client: Any,
        registry: tuple[str, str, str] | None = None,
        name_prefix: str = "kubesim",
        on_pod_stopped: Callable[[JSON], None] | None = None,
    ) -> None:
        super().__init__(on_pod_stopped)
        self._docker = docker_client
        self._registry = None
        if registry is not None:
            host = registry[0].split("://", 1)[-1].rstrip("/")
            self._registry = (host, registry[1], registry[2])
        self._prefix = name_prefix
        self._kubelet_id = uuid.uuid4().hex[:12]
        self._ops = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{name_prefix}-docker")
        self._probe_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{name_prefix}-probe")
        # Exits are noticed on their own thread, so that slow pulls cannot delay a restart.
        self._watch = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name_prefix}-watch")
        # Graceful stops wait out grace periods: on threads of their own, never holding up pulls and starts.
        self._terminations = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"{name_prefix}-terminate")
        self._running: dict[str, tuple[str, str, int]] = {}  # docker id -> (pod uid, container, attempt)
        self._probing: dict[tuple[str, str], _Probing] = {}
        self._instances: dict[tuple[str, str], list[str]] = {}  # docker ids kept for logs, oldest first
        self._host_ports: dict[str, dict[int, int]] = {}
        self._poll_in_flight = False
        self._next_poll = 0.0

    @property
    def kubelet_id(self) -> str:
        """The value of the kubesim.kubelet label on every container this kubelet starts."""
        return self._kubelet_id

    def stop(self) -> None:
        super().stop()
        self._ops.shutdown(wait=True, cancel_futures=True)
        self._probe_pool.shutdown(wait=True, cancel_futures=True)
        self._watch.shutdown(wait=True, cancel_futures=True)
        self._terminations.shutdown(wait=False, cancel_futures=True)
        for entry in self._docker.api.containers(all=True, filters={"label": f"kubesim.kubelet={self._kubelet_id}"}):
            try:
                self._docker.api.remove_container(entry["Id"], force=True)
            except Exception:  # already gone: nothing left to clean
                pass

    def logs(self, namespace: str, name: str, container: str, previous: bool = False) -> str:
        container_id = self._log_container_id(namespace, name, container, previous)
        docker_id = container_id.split("://", 1)[-1]
        try:
            output = self._docker.api.logs(docker_id, stdout=True, stderr=True)
        except Exception as e:
            raise LogsUnavailable(f'container "{container}" in pod "{name}" has no logs: {_docker_message(e)}') from e
        return output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output)

    # -- images ----------------------------------------------------------------------------------------

    def _auth_for(self, repository: str, p: _Pod) -> JSON | None:
        """The pod's imagePullSecrets for the image's registry first, then the node's own credentials."""
        domain = image_domain(repository)
        for ref in p.pod.get("spec", {}).get("imagePullSecrets") or []:
            secret = self._sink.get_object("Secret", p.namespace, str(ref.get("name", ""))) if self._sink else None
            auth = registry_auth(secret, domain)
            if auth is not None:
                return auth
        if self._registry is None or domain != self._registry[0]:
            return None
        return {"username": self._registry[1], "password": self._registry[2]}

    def _ensure_image(self, p: _Pod, c: _Container, attempt: int, policy: str) -> None:
        uid, name, image = p.uid, c.name, c.image
        parsed = parse_image(image)
        assert parsed is not None
        repository, tag, digest = parsed
        auth = self._auth_for(repository, p) if policy != "Never" else None

        def work() -> None:
            try:
                local = self._docker.images.get(image)
            except Exception:
                local = None
            if policy != "Always" and local is not None:
                self._post(lambda: self._image_ready(uid, name, attempt, _image_id(local), None, 0))
                return
            if policy == "Never":
                self._post(lambda: self._pull_failed(uid, name, attempt, "", never_pull=True))
                return
            self._post(lambda: self._pulling(uid, name, attempt))
            started = time.monotonic()
            try:
                pulled = self._docker.images.pull(repository, tag=digest or tag or "latest", auth_config=auth)
            except Exception as e:
                message = _docker_message(e)
                self._post(lambda: self._pull_failed(uid, name, attempt, message))
                return
            took = time.monotonic() - started
            size = int((pulled.attrs or {}).get("Size", 0))
            self._post(lambda: self._image_ready(uid, name, attempt, _image_id(pulled), took, size))

        self._ops.submit(work)

    # -- containers -------------------------------------------------------------------------------------

    def _published_ports(self, spec: JSON) -> list[str]:
        ports = {
            f"{port['containerPort']}/{str(port.get('protocol', 'TCP')).lower()}" for port in spec.get("ports", [])
        }
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = self._probe_port(spec, spec.get(kind) or {})
            if port is not None:
                ports.add(f"{port}/tcp")
        return sorted(ports)

    @staticmethod
    def _probe_port(spec: JSON, probe: JSON) -> int | None:
        action = probe.get("httpGet") or probe.get("tcpSocket")
        if not action:
            return None
        port = action.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = next((p for p in spec.get("ports", []) if p.get("name") == port), None)
            return int(named["containerPort"]) if named else None
        return int(port) if port is not None else None

    def _run_container(self, p: _Pod, c: _Container, attempt: int, env: dict[str, str]) -> None:
        uid, name, spec = p.uid, c.name, c.spec
        container_name = re.sub(
            r"[^a-zA-Z0-9_.-]", "-", f"{self._prefix}-{p.namespace}-{p.name}-{name}-{uid[:8]}-{attempt}"
        )
        options: JSON = {
            "image": c.image,
            "name": container_name,
            "detach": True,
            # Kubernetes' command replaces the entrypoint and args replace the image's CMD.
            "entrypoint": [expand_references(str(x), env) for x in spec.get("command") or []] or None,
            "command": [expand_references(str(x), env) for x in spec.get("args") or []] or None,
            "environment": env,
            "working_dir": spec.get("workingDir") or None,
            "ports": {port: ("127.0.0.1", None) for port in self._published_ports(spec)},
            "labels": {
                "kubesim.kubelet": self._kubelet_id,
                "kubesim.prefix": self._prefix,
                "kubesim.pod-uid": uid,
                "kubesim.namespace": p.namespace,
                "kubesim.pod": p.name,
                "kubesim.container": name,
            },
            "tty": bool(spec.get("tty", False)),
            "stdin_open": bool(spec.get("stdin", False)),
        }

        def work() -> None:
            try:
                container = self._docker.containers.create(**options)
            except Exception as e:
                message = _docker_message(e)
                self._post(lambda: self._start_failed(uid, name, attempt, message, created=False))
                return
            try:
                container.start()
                container.reload()
            except Exception as e:
                message = _docker_message(e)
                self._post(lambda: self._docker_start_failed(uid, name, attempt, container.id, message))
                return
            host_ports: dict[int, int] = {}
            for key, bindings in ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).items():
                for binding in bindings or []:
                    if binding.get("HostIp") == "127.0.0.1":
                        host_ports[int(key.split("/")[0])] = int(binding["HostPort"])
            self._post(lambda: self._docker_started(uid, name, attempt, container.id, host_ports))

        self._ops.submit(work)

    def _keep_instance(self, uid: str, name: str, docker_id: str) -> None:
        """Remember the new instance and remove those that neither it nor its lastState name any more."""
        instances = self._instances.setdefault((uid, name), [])
        instances.append(docker_id)
        p = self._pods.get(uid)
        c = p.container(name) if p else None
        keep = {i.split("://", 1)[-1] for i in self._kept_container_ids(c)} if c else {docker_id}
        for old in [i for i in instances if i not in keep]:
            instances.remove(old)
            self._remove_later(old)

    def _remove_later(self, docker_id: str) -> None:
        def work() -> None:
            try:
                self._docker.api.remove_container(docker_id, force=True)
            except Exception:  # already gone
                pass

        self._ops.submit(work)

    def _docker_started(self, uid: str, name: str, attempt: int, docker_id: str, host_ports: dict[int, int]) -> None:
        if self._current(uid, name, attempt) is None:
            self._remove_later(docker_id)
            return
        self._running[docker_id] = (uid, name, attempt)
        self._host_ports[docker_id] = host_ports
        self._container_started(uid, name, attempt, f"docker://{docker_id}")
        self._keep_instance(uid, name, docker_id)

    def _docker_start_failed(self, uid: str, name: str, attempt: int, docker_id: str, message: str) -> None:
        found = self._current(uid, name, attempt)
        if found is None:
            self._remove_later(docker_id)
            return
        found[1].container_id = f"docker://{docker_id}"
        self._start_failed(uid, name, attempt, message, created=True)
        self._keep_instance(uid, name, docker_id)

    def _on_running(self, p: _Pod, c: _Container, attempt: int) -> None:
        docker_id = c.container_id.split("://", 1)[-1]
        now = time.monotonic()
        probes = [
            _Probe(kind, c.spec[key], now + float(c.spec[key].get("initialDelaySeconds", 0)))
            for kind, key in (
                ("Startup", "startupProbe"),
                ("Liveness", "livenessProbe"),
                ("Readiness", "readinessProbe"),
            )
            if c.spec.get(key) and not c.init
        ]
        if not any(probe.kind == "Readiness" for probe in probes):
            c.ready = c.started and not c.init
        if probes:
            self._probing[(p.uid, c.name)] = _Probing(
                p.uid, c.name, attempt, docker_id, self._host_ports.get(docker_id, {}), probes
            )

    def _stop_probing(self, p: _Pod, c: _Container) -> None:
        self._probing.pop((p.uid, c.name), None)

    def _kill(self, p: _Pod, c: _Container) -> None:
        """Stop the running instance; its exit, noticed by the poll, drives the restart."""
        self._stop_probing(p, c)
        docker_id = c.container_id.split("://", 1)[-1]
        grace = min(float(p.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)), 2.0)

        def work() -> None:
            try:
                self._docker.api.stop(docker_id, timeout=int(grace))
            except Exception:  # already stopped or removed
                pass

        self._ops.submit(work)

    def _terminate(self, p: _Pod, grace: float) -> None:
        """Stop the running instances together (SIGTERM, SIGKILL after ``grace``), remove them, then report."""
        running = [
            c.container_id.split("://", 1)[-1]
            for c in itertools.chain(p.inits, p.containers)
            if c.state is not None and "running" in c.state
        ]
        for c in itertools.chain(p.inits, p.containers):
            if c.state is not None and "running" in c.state:
                self._event(p, c, "Normal", "Killing", f"Stopping container {c.name}")
            c.attempt += 1
            c.busy = False
            self._probing.pop((p.uid, c.name), None)
        instances = [
            docker_id
            for c in itertools.chain(p.inits, p.containers)
            for docker_id in self._instances.pop((p.uid, c.name), [])
        ]
        for docker_id in instances:
            self._running.pop(docker_id, None)
            self._host_ports.pop(docker_id, None)

        def stop(docker_id: str) -> None:
            try:
                self._docker.api.stop(docker_id, timeout=max(int(grace), 0))
            except Exception:  # already stopped or removed
                pass

        def work() -> None:
            try:
                for future in [self._terminations.submit(stop, docker_id) for docker_id in running]:
                    future.result()
            except (CancelledError, RuntimeError):
                # The kubelet is stopping (its pool refuses or cancels the stops): its stop removes every
                # container it started, so there is nothing left for this pod to do or to report.
                return
            for docker_id in instances:
                try:
                    self._docker.api.remove_container(docker_id, force=True)
                except Exception:  # already gone
                    pass
            self._post(lambda: self._report_stopped(p))

        threading.Thread(target=work, name=f"{self._prefix}-stop-{p.name}", daemon=True).start()

    def _remove_pod_containers(self, p: _Pod) -> None:
        for c in itertools.chain(p.inits, p.containers):
            self._probing.pop((p.uid, c.name), None)
            for docker_id in self._instances.pop((p.uid, c.name), []):
                self._running.pop(docker_id, None)
                self._host_ports.pop(docker_id, None)
                self._remove_later(docker_id)

    # -- the periodic part: exits and probes ------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        if not self._poll_in_flight and now >= self._next_poll and self._running:
            self._poll_in_flight = True
            self._next_poll = now + self.POLL_SECONDS
            self._watch.submit(self._poll_exits, set(self._running))
        for probing in list(self._probing.values()):
            p = self._pods.get(probing.uid)
            c = p.container(probing.name) if p else None
            if c is None or c.attempt != probing.attempt:
                continue
            for probe in probing.probes:
                if probe.in_flight or probe.due > now or (probe.kind != "Startup" and not c.started):
                    continue
                probe.in_flight = True
                self._probe_pool.submit(self._probe_work, probing, probe, c.spec)

    def _poll_exits(self, running: set[str]) -> None:
        """One list call for every container of this kubelet; inspect only those that just exited."""
        exits: list[tuple[str, int, str]] = []
        try:
            listed = self._docker.api.containers(
                all=True, filters={"label": f"kubesim.kubelet={self._kubelet_id}", "status": ["exited", "dead"]}
            )
            for entry in listed:
                docker_id = entry["Id"]
                if docker_id not in running:
                    continue
                state = self._docker.api.inspect_container(docker_id)["State"]
                reason = "OOMKilled" if state.get("OOMKilled") else ""
                exits.append((docker_id, int(state.get("ExitCode", 0)), reason))
        except Exception:  # the next poll tries again
            pass

        def report() -> None:
            self._poll_in_flight = False
            for docker_id, code, reason in exits:
                owner = self._running.pop(docker_id, None)
                self._host_ports.pop(docker_id, None)
                if owner is not None:
                    self._container_exited(owner[0], owner[1], owner[2], code, reason)

        self._post(report)

    def _probe_work(self, probing: _Probing, probe: _Probe, spec: JSON) -> None:
        try:
            ok, message = self._run_probe(probing, probe, spec)
        except Exception as e:  # a probe that cannot run has failed
            ok, message = False, str(e)
        self._post(lambda: self._probe_done(probing, probe, ok, message))

    def _run_probe(self, probing: _Probing, probe: _Probe, spec: JSON) -> tuple[bool, str]:
        timeout = probe.seconds("timeoutSeconds", 1)
        if "exec" in probe.spec:
            command = [str(x) for x in probe.spec["exec"].get("command", [])]
            started = time.monotonic()
            exec_id = self._docker.api.exec_create(probing.docker_id, command, stdout=True, stderr=True)["Id"]
            output = self._docker.api.exec_start(exec_id)
            code = self._docker.api.exec_inspect(exec_id).get("ExitCode")
            text = output.decode("utf-8", errors="replace").strip() if isinstance(output, bytes) else str(output)
            if time.monotonic() - started > timeout:
                return False, f"command {command!r} timed out"
            return code == 0, text or f"command {command!r} exited with {code}"
        port = self._probe_port(spec, probe.spec)
        host_port = probing.host_ports.get(port) if port is not None else None
        if host_port is None:
            return False, f"port {port} of the container is not published on 127.0.0.1"
        if "httpGet" in probe.spec:
            return self._http_probe(probe.spec["httpGet"], host_port, timeout)
        return self._tcp_probe(host_port, timeout)

    @staticmethod
    def _http_probe(action: JSON, host_port: int, timeout: float) -> tuple[bool, str]:
        scheme = str(action.get("scheme", "HTTP")).upper()
        path = str(action.get("path", "/")) or "/"
        url = f"{scheme.lower()}://{HOST_IP}:{host_port}{path}"
        connection: http.client.HTTPConnection
        if scheme == "HTTPS":
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates either
            connection = http.client.HTTPSConnection(HOST_IP, host_port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(HOST_IP, host_port, timeout=timeout)
        headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*"}
        headers.update({str(h["name"]): str(h["value"]) for h in action.get("httpHeaders", [])})
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read(10240)
        except TimeoutError:
            return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        except ConnectionRefusedError:
            return False, f'Get "{url}": dial tcp {HOST_IP}:{host_port}: connect: connection refused'
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return False, f'Get "{url}": EOF'
        except OSError as e:
            return False, f'Get "{url}": {e}'
        finally:
            connection.close()
        if 200 <= response.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {response.status}"

    @staticmethod
    def _tcp_probe(host_port: int, timeout: float) -> tuple[bool, str]:
        refused = f"dial tcp {HOST_IP}:{host_port}: connect: connection refused"
        try:
            with socket.create_connection((HOST_IP, host_port), timeout=timeout) as sock:
                sock.settimeout(0.1)
                try:
                    if sock.recv(1) == b"":
                        return False, refused  # Docker's proxy accepted, then found nobody listening
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    return False, refused
        except TimeoutError:
            return False, f"dial tcp {HOST_IP}:{host_port}: i/o timeout"
        except OSError:
            return False, refused
        return True, ""

    def _probe_done(self, probing: _Probing, probe: _Probe, ok: bool, message: str) -> None:
        probe.in_flight = False
        probe.due = time.monotonic() + probe.seconds("periodSeconds", 10)
        if self._probing.get((probing.uid, probing.name)) is not probing:
            return
        found = self._current(probing.uid, probing.name, probing.attempt)
        if found is None:
            return
        p, c = found
        if ok:
            probe.successes, probe.failures = probe.successes + 1, 0
        else:
            probe.successes, probe.failures = 0, probe.failures + 1
            self._event(p, c, "Warning", "Unhealthy", f"{probe.kind} probe failed: {message}")
        passed = probe.successes >= int(probe.spec.get("successThreshold", 1))
        failed = probe.failures >= int(probe.spec.get("failureThreshold", 3))
        if probe.kind == "Readiness":
            if passed:
                c.ready = True
            elif failed:
                c.ready = False
        elif probe.kind == "Startup" and passed:
            c.started = True
            probing.probes.remove(probe)
            if not any(other.kind == "Readiness" for other in probing.probes):
                c.ready = True
        elif failed:
            self._event(
                p, c, "Normal", "Killing", f"Container {c.name} failed {probe.kind.lower()} probe, will be restarted"
            )
            self._kill(p, c)
