"""The simulator's kubelet against an in-test sink and a clock the test moves: statuses, events, back-off, logs.

The Docker-mode tests run real containers from images built FROM the busybox base and pushed to the test
registry; every container and image they create is named deployer-test-kubelet-*.
"""

from __future__ import annotations

import base64
import copy
import json
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubesim.kubelet import (
    Behaviour,
    LogsUnavailable,
    ScriptedKubelet,
    behaviour_from_tag,
    expand_references,
    go_duration,
    parse_image,
)

JSON = dict[str, Any]
START = 1_700_000_000.0


class ManualClock:
    """Simulated time that moves only when the test says so."""

    def __init__(self, speed: float = 1.0) -> None:
        self._now = START
        self.speed = speed
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class RecordingSink:
    """What the API server would store: the latest status per pod, every status write and every event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statuses: dict[str, JSON] = {}
        self.writes: list[tuple[str, JSON]] = []
        self.events: list[JSON] = []
        self.objects: dict[tuple[str, str, str], JSON] = {}

    def update_pod_status(self, namespace: str, name: str, uid: str, status: JSON) -> None:
        with self._lock:
            self.statuses[name] = copy.deepcopy(status)
            self.writes.append((name, copy.deepcopy(status)))

    def record_event(self, involved_object: JSON, type: str, reason: str, message: str) -> None:
        with self._lock:
            self.events.append({"involvedObject": involved_object, "type": type, "reason": reason, "message": message})

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        with self._lock:
            return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def status(self, name: str) -> JSON:
        with self._lock:
            return copy.deepcopy(self.statuses.get(name, {}))

    def status_names(self) -> list[str]:
        with self._lock:
            return list(self.statuses)

    def event_list(self, pod: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(e["reason"], e["message"]) for e in self.events if e["involvedObject"]["name"] == pod]

    def waiting_reasons(self, pod: str) -> list[str]:
        with self._lock:
            reasons: list[str] = []
            for name, status in self.writes:
                for cs in status.get("containerStatuses", []) if name == pod else []:
                    reason = cs["state"].get("waiting", {}).get("reason")
                    if reason and (not reasons or reasons[-1] != reason):
                        reasons.append(reason)
            return reasons


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_pod(
    name: str,
    image: str = "app:1",
    *,
    containers: list[JSON] | None = None,
    init_containers: list[JSON] | None = None,
    restart_policy: str | None = None,
    namespace: str = "default",
) -> JSON:
    spec: JSON = {"nodeName": "kubesim", "containers": containers or [{"name": "app", "image": image}]}
    if init_containers:
        spec["initContainers"] = init_containers
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def container_status(status: JSON, name: str = "app", init: bool = False) -> JSON:
    key = "initContainerStatuses" if init else "containerStatuses"
    return next(cs for cs in status.get(key, []) if cs["name"] == name)


def restart_count(sink: RecordingSink, pod: str) -> int:
    """The app container's restartCount, 0 before the first status write."""
    try:
        return int(container_status(sink.status(pod))["restartCount"])
    except StopIteration:
        return 0


def condition(status: JSON, type_: str) -> JSON:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def is_ready(status: JSON) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def waiting_reason(status: JSON, name: str = "app", init: bool = False) -> str | None:
    try:
        reason = container_status(status, name, init)["state"].get("waiting", {}).get("reason")
    except StopIteration:
        return None
    return reason if isinstance(reason, str) else None


Scripted = tuple[ScriptedKubelet, RecordingSink, ManualClock]


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    kubelet = ScriptedKubelet()
    sink = RecordingSink()
    clock = ManualClock()
    kubelet.start(sink, clock)
    yield kubelet, sink, clock
    kubelet.stop()


# -- pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(10, "10s"), (20, "20s"), (80, "1m20s"), (160, "2m40s"), (300, "5m0s"), (0.5123, "512.3ms"), (1.25, "1.25s")],
)
def test_durations_read_as_go_prints_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("image", "parsed"),
    [
        ("nginx", ("nginx", None, None)),
        ("nginx:1.27", ("nginx", "1.27", None)),
        ("127.0.0.1:5000/acme/app:abc1234", ("127.0.0.1:5000/acme/app", "abc1234", None)),
        ("ghcr.io/o/n@sha256:" + "a" * 64, ("ghcr.io/o/n", None, "sha256:" + "a" * 64)),
        ("Nginx:1", None),
        ("nginx:", None),
        ("my app:1", None),
        ("nginx::1", None),
    ],
)
def test_image_references_parse_as_the_kubelet_parses_them(
    image: str, parsed: tuple[str, str | None, str | None] | None
) -> None:
    assert parse_image(image) == parsed


@pytest.mark.parametrize(
    ("image", "behaviour"),
    [
        ("app:1", None),
        ("app", None),
        ("reg/app:pull-error", Behaviour(pull_error=True)),
        ("reg/app:v2-crash", Behaviour(crash=True)),
        ("app:never-ready", Behaviour(never_ready=True)),
        ("app:ready-after-30s", Behaviour(ready_after=30.0)),
        ("app:ready-after-2.5s-crash", Behaviour(ready_after=2.5, crash=True)),
        ("app:complete", Behaviour(completes=True)),
        ("app:liveness-fail", Behaviour(liveness_fails=True)),
    ],
)
def test_image_tags_script_the_behaviour(image: str, behaviour: Behaviour | None) -> None:
    assert behaviour_from_tag(image) == behaviour


@pytest.mark.parametrize(
    ("text", "expanded"),
    [("$(A)-x", "a-x"), ("$$(A)", "$(A)"), ("$(MISSING)", "$(MISSING)"), ("plain", "plain"), ("$(A)$(B)", "ab")],
)
def test_env_references_expand_as_kubernetes_expands_them(text: str, expanded: str) -> None:
    assert expand_references(text, {"A": "a", "B": "b"}) == expanded


def test_a_pattern_wins_over_the_tag_and_the_default() -> None:
    kubelet = ScriptedKubelet(default=Behaviour(ready_after=7))
    kubelet.set_behaviour("*/special:*", Behaviour(crash=True))
    assert kubelet.behaviour_for("reg/special:never-ready") == Behaviour(crash=True)
    assert kubelet.behaviour_for("reg/other:never-ready") == Behaviour(never_ready=True)
    assert kubelet.behaviour_for("reg/other:1") == Behaviour(ready_after=7)


# -- scripted kubelet ------------------------------------------------------------------------------


def test_a_healthy_pod_becomes_ready_with_the_status_a_kubelet_writes(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    pod = make_pod("web")
    kubelet.pod_changed(pod)
    status = wait_for("Ready", lambda: (s := sink.status("web")) and is_ready(s) and s)
    assert status["phase"] == "Running"
    assert status["hostIP"] == "127.0.0.1"
    assert status["podIP"].startswith("10.244.")
    assert status["startTime"] == "2023-11-14T22:13:20Z"
    assert {c["type"] for c in status["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    assert all(c["lastTransitionTime"] for c in status["conditions"])
    cs = container_status(status)
    assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
    assert cs["state"]["running"]["startedAt"] == "2023-11-14T22:13:20Z"
    assert cs["image"] == "app:1" and cs["imageID"] and cs["containerID"]
    assert cs["lastState"] == {}
    assert [r for r, _ in sink.event_list("web")] == ["Pulling", "Pulled", "Created", "Started"]
    assert ("Pulling", 'Pulling image "app:1"') in sink.event_list("web")
    assert ("Started", "Started container app") in sink.event_list("web")
    first = sink.writes[0][1]
    assert first["phase"] in ("Pending", "Running")


def test_readiness_waits_for_the_scripted_delay_on_the_simulated_clock(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("slow:*", Behaviour(ready_after=30))
    kubelet.pod_changed(make_pod("slow", "slow:1"))
    status = wait_for("running", lambda: (s := sink.status("slow")) and s.get("phase") == "Running" and s)
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [app]"
    clock.advance(29)
    time.sleep(0.1)  # nothing is due yet: give the kubelet a chance to be wrong
    assert not is_ready(sink.status("slow"))
    clock.advance(1)
    wait_for("Ready after 30 s", lambda: is_ready(sink.status("slow")))


def test_a_pull_error_shows_err_image_pull_then_back_off_doubling_from_10s(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("*:missing", Behaviour(pull_error=True, pull_error_message="manifest unknown"))
    kubelet.pod_changed(make_pod("bad", "reg/app:missing"))
    wait_for("ImagePullBackOff", lambda: waiting_reason(sink.status("bad")) == "ImagePullBackOff")
    assert sink.waiting_reasons("bad")[-2:] == ["ErrImagePull", "ImagePullBackOff"]
    status = sink.status("bad")
    assert container_status(status)["state"]["waiting"]["message"] == (
        'Back-off pulling image "reg/app:missing": ErrImagePull: manifest unknown'
    )
    assert status["phase"] == "Pending"
    events = sink.event_list("bad")
    assert ("Failed", 'Failed to pull image "reg/app:missing": manifest unknown') in events
    assert ("Failed", "Error: ErrImagePull") in events
    assert ("BackOff", 'Back-off pulling image "reg/app:missing"') in events
    assert ("Failed", "Error: ImagePullBackOff") in events

    def pulls() -> int:
        return sum(1 for reason, _ in sink.event_list("bad") if reason == "Pulling")

    assert pulls() == 1
    clock.advance(10)
    wait_for("a second pull after 10 s", lambda: pulls() == 2)
    clock.advance(19)
    time.sleep(0.1)
    assert pulls() == 2, "the second back-off is 20 s"
    clock.advance(1)
    wait_for("a third pull after 20 s more", lambda: pulls() == 3)


def test_a_crashing_container_restarts_into_crash_loop_back_off_with_growing_delays(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("crasher:*", Behaviour(crash=True, crash_after=1, exit_code=3, logs="boom\n"))
    kubelet.pod_changed(make_pod("crash", "crasher:1"))

    def cs() -> JSON:
        try:
            return container_status(sink.status("crash"))
        except StopIteration:
            return {}

    wait_for("running", lambda: "running" in cs().get("state", {}))
    clock.advance(1)  # first exit: restarted at once, as a kubelet does
    wait_for("first restart", lambda: cs().get("restartCount") == 1 and "running" in cs()["state"])
    assert cs()["lastState"]["terminated"]["exitCode"] == 3
    assert cs()["lastState"]["terminated"]["reason"] == "Error"
    clock.advance(1)  # second exit: back-off 10 s
    wait_for("CrashLoopBackOff", lambda: waiting_reason(sink.status("crash")) == "CrashLoopBackOff")
    status = sink.status("crash")
    assert status["phase"] == "Running"
    assert cs()["restartCount"] == 1
    message = cs()["state"]["waiting"]["message"]
    assert message.startswith("back-off 10s restarting failed container=app pod=crash_default(")
    assert kubelet.logs("default", "crash", "app", previous=True) == "boom\n"
    assert kubelet.logs("default", "crash", "app") == "boom\n"
    assert any(
        r == "BackOff" and m.startswith("Back-off restarting failed container app in pod crash_default(")
        for r, m in sink.event_list("crash")
    )
    clock.advance(10)
    wait_for("second restart", lambda: cs().get("restartCount") == 2)
    clock.advance(1)
    wait_for("back-off 20s", lambda: "back-off 20s" in cs().get("state", {}).get("waiting", {}).get("message", ""))
    clock.advance(20)
    wait_for("third restart", lambda: cs().get("restartCount") == 3)


def test_logs_refuse_what_the_api_server_refuses(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("*:missing", Behaviour(pull_error=True))
    kubelet.pod_changed(make_pod("quiet", "app:1"))
    kubelet.pod_changed(make_pod("stuck", "app:missing"))
    wait_for("ready", lambda: is_ready(sink.status("quiet")))
    wait_for("back-off", lambda: waiting_reason(sink.status("stuck")) == "ImagePullBackOff")
    with pytest.raises(LogsUnavailable, match='previous terminated container "app" in pod "quiet" not found'):
        kubelet.logs("default", "quiet", "app", previous=True)
    with pytest.raises(LogsUnavailable, match='container "app" in pod "stuck" is waiting to start: ImagePullBackOff'):
        kubelet.logs("default", "stuck", "app")
    with pytest.raises(LogsUnavailable, match="container nope is not valid for pod quiet"):
        kubelet.logs("default", "quiet", "nope")


def test_a_never_ready_container_runs_and_reports_failing_readiness(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    pod = make_pod(
        "nr",
        containers=[
            {"name": "app", "image": "app:never-ready", "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 5}}
        ],
    )
    kubelet.pod_changed(pod)
    wait_for("running", lambda: sink.status("nr").get("phase") == "Running")
    clock.advance(5)
    wait_for(
        "Unhealthy",
        lambda: (
            ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503") in sink.event_list("nr")
        ),
    )
    clock.advance(60)
    time.sleep(0.1)
    status = sink.status("nr")
    assert not is_ready(status)
    assert container_status(status)["started"] is True
    assert container_status(status)["restartCount"] == 0


def test_a_missing_configmap_blocks_the_container_until_it_appears(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    pod = make_pod(
        "cfg",
        containers=[
            {
                "name": "app",
                "image": "app:1",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}}],
            }
        ],
    )
    kubelet.pod_changed(pod)
    wait_for("config error", lambda: waiting_reason(sink.status("cfg")) == "CreateContainerConfigError")
    cs = container_status(sink.status("cfg"))
    assert cs["state"]["waiting"]["message"] == 'configmap "settings" not found'
    assert ("Failed", 'Error: configmap "settings" not found') in sink.event_list("cfg")
    sink.objects[("ConfigMap", "default", "settings")] = {"data": {"other": "x"}}
    clock.advance(10)
    wait_for(
        "missing key",
        lambda: (
            container_status(sink.status("cfg"))["state"].get("waiting", {}).get("message")
            == "couldn't find key a in ConfigMap default/settings"
        ),
    )
    sink.objects[("ConfigMap", "default", "settings")] = {"data": {"a": "1"}}
    clock.advance(10)
    wait_for("ready", lambda: is_ready(sink.status("cfg")))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ([{"name": "S", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}], 'secret "creds" not found'),
        ([], 'configmap "bulk" not found'),
    ],
)
def test_missing_env_sources_name_the_object(scripted: Scripted, env: list[JSON], message: str) -> None:
    kubelet, sink, clock = scripted
    spec: JSON = {"name": "app", "image": "app:1", "env": env}
    if not env:
        spec["envFrom"] = [{"configMapRef": {"name": "bulk"}}]
    kubelet.pod_changed(make_pod("env", containers=[spec]))
    wait_for("config error", lambda: waiting_reason(sink.status("env")) == "CreateContainerConfigError")
    assert container_status(sink.status("env"))["state"]["waiting"]["message"] == message


def test_optional_env_sources_may_be_missing(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    spec: JSON = {
        "name": "app",
        "image": "app:1",
        "envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "a", "optional": True}}}],
    }
    kubelet.pod_changed(make_pod("opt", containers=[spec]))
    wait_for("ready", lambda: is_ready(sink.status("opt")))


def test_an_unparsable_image_is_invalid_image_name(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.pod_changed(make_pod("inv", "Bad Image:1"))
    wait_for("InvalidImageName", lambda: waiting_reason(sink.status("inv")) == "InvalidImageName")
    assert container_status(sink.status("inv"))["state"]["waiting"]["message"] == (
        'Failed to apply default image tag "Bad Image:1": couldn\'t parse image name "Bad Image:1": '
        "invalid reference format"
    )
    assert ("Failed", "Error: InvalidImageName") in sink.event_list("inv")


def test_init_containers_run_in_order_before_the_app(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("init-one:*", Behaviour(ready_after=5))
    kubelet.set_behaviour("init-two:*", Behaviour(ready_after=5))
    pod = make_pod(
        "ini",
        init_containers=[{"name": "one", "image": "init-one:1"}, {"name": "two", "image": "init-two:1"}],
    )
    kubelet.pod_changed(pod)
    status = wait_for(
        "first init running",
        lambda: (
            (s := sink.status("ini"))
            and s.get("initContainerStatuses")
            and "running" in container_status(s, "one", init=True)["state"]
            and s
        ),
    )
    assert status["phase"] == "Pending"
    assert waiting_reason(status, "two", init=True) == "PodInitializing"
    assert waiting_reason(status, "app") == "PodInitializing"
    assert condition(status, "Initialized")["message"] == "containers with incomplete status: [one two]"
    clock.advance(5)
    wait_for("second init running", lambda: "running" in container_status(sink.status("ini"), "two", True)["state"])
    one = container_status(sink.status("ini"), "one", init=True)
    assert one["state"]["terminated"]["reason"] == "Completed" and one["ready"] is True
    clock.advance(5)
    wait_for("ready", lambda: is_ready(sink.status("ini")))
    assert condition(sink.status("ini"), "Initialized")["status"] == "True"


def test_a_failing_init_container_fails_a_never_restarting_pod(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("migrate:*", Behaviour(crash=True, crash_after=1))
    pod = make_pod("mig", init_containers=[{"name": "migrate", "image": "migrate:1"}], restart_policy="Never")
    kubelet.pod_changed(pod)
    wait_for("init running", lambda: sink.status("mig").get("initContainerStatuses"))
    clock.advance(1)
    status = wait_for("failed", lambda: (s := sink.status("mig")) and s.get("phase") == "Failed" and s)
    assert container_status(status, "migrate", init=True)["state"]["terminated"]["reason"] == "Error"
    assert waiting_reason(status, "app") == "PodInitializing"


def test_a_failing_init_container_restarts_with_back_off_under_always(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("migrate:*", Behaviour(crash=True, crash_after=1))
    kubelet.pod_changed(make_pod("mig2", init_containers=[{"name": "migrate", "image": "migrate:1"}]))
    wait_for("init running", lambda: sink.status("mig2").get("initContainerStatuses"))
    clock.advance(30)  # crash at 1 s, restart, crash at 2 s, restart at 12 s, crash at 13 s: back-off 20 s
    wait_for(
        "init crash loop",
        lambda: waiting_reason(sink.status("mig2"), "migrate", init=True) == "CrashLoopBackOff",
    )
    assert sink.status("mig2")["phase"] == "Pending"
    migrate = container_status(sink.status("mig2"), "migrate", init=True)
    assert migrate["restartCount"] == 2
    assert migrate["state"]["waiting"]["message"].startswith("back-off 20s restarting failed container=migrate")
    assert migrate["lastState"]["terminated"]["finishedAt"] == "2023-11-14T22:13:33Z"


@pytest.mark.parametrize(
    ("behaviour", "policy", "phase", "reason"),
    [
        (Behaviour(completes=True), "Never", "Succeeded", "Completed"),
        (Behaviour(completes=True), "OnFailure", "Succeeded", "Completed"),
        (Behaviour(crash=True, exit_code=2), "Never", "Failed", "Error"),
    ],
)
def test_containers_that_exit_finish_the_pod_per_restart_policy(
    scripted: Scripted, behaviour: Behaviour, policy: str, phase: str, reason: str
) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("job:*", behaviour)
    kubelet.pod_changed(make_pod("job", "job:1", restart_policy=policy))
    wait_for("running", lambda: sink.status("job").get("phase") == "Running")
    clock.advance(1)
    status = wait_for(phase, lambda: (s := sink.status("job")) and s.get("phase") == phase and s)
    assert container_status(status)["state"]["terminated"]["reason"] == reason
    assert condition(status, "Ready")["reason"] == ("PodCompleted" if phase == "Succeeded" else "PodFailed")
    clock.advance(100)
    time.sleep(0.1)
    assert container_status(sink.status("job"))["restartCount"] == 0


def test_a_failing_liveness_probe_kills_and_restarts_the_container(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5, "failureThreshold": 2}
    kubelet.pod_changed(
        make_pod("live", containers=[{"name": "app", "image": "app:liveness-fail", "livenessProbe": probe}])
    )
    wait_for("running", lambda: sink.status("live").get("phase") == "Running")
    clock.advance(10)
    wait_for("restart", lambda: container_status(sink.status("live"))["restartCount"] == 1)
    assert ("Killing", "Container app failed liveness probe, will be restarted") in sink.event_list("live")
    assert container_status(sink.status("live"))["lastState"]["terminated"]["exitCode"] == 137


def test_a_deleted_pod_gets_no_more_status_writes(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("slow:*", Behaviour(ready_after=5))
    pod = make_pod("gone", "slow:1")
    kubelet.pod_changed(pod)
    wait_for("running", lambda: sink.status("gone").get("phase") == "Running")
    kubelet.pod_deleted(pod)
    wait_for("Killing", lambda: ("Killing", "Stopping container app") in sink.event_list("gone"))
    writes = len(sink.writes)
    clock.advance(10)
    time.sleep(0.1)
    assert len(sink.writes) == writes
    with pytest.raises(LogsUnavailable):
        kubelet.logs("default", "gone", "app")


def test_a_changed_image_replaces_the_container(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    pod = make_pod("upd", "app:1")
    kubelet.pod_changed(pod)
    wait_for("ready", lambda: is_ready(sink.status("upd")))
    changed = copy.deepcopy(pod)
    changed["spec"]["containers"][0]["image"] = "app:2"
    kubelet.pod_changed(changed)
    wait_for(
        "new image running",
        lambda: container_status(sink.status("upd"))["image"] == "app:2" and is_ready(sink.status("upd")),
    )
    assert container_status(sink.status("upd"))["restartCount"] == 1


def test_secret_values_are_decoded_for_the_container(scripted: Scripted) -> None:
    kubelet, sink, clock = scripted
    sink.objects[("Secret", "default", "creds")] = {"data": {"pw": base64.b64encode(b"hunter2").decode()}}
    sink.objects[("ConfigMap", "default", "bulk")] = {"data": {"MODE": "fast"}}
    spec: JSON = {
        "name": "app",
        "image": "app:1",
        "envFrom": [{"configMapRef": {"name": "bulk"}, "prefix": "CFG_"}],
        "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}},
            {"name": "URL", "value": "db://$(PW)@$(POD)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    }
    pod = make_pod("envs", containers=[spec])
    kubelet.pod_changed(pod)
    wait_for("ready", lambda: is_ready(sink.status("envs")))
    # The env a container gets is what the Docker kubelet passes on; the scripted one resolves it the same way.
    env, error = kubelet._resolve_env(kubelet._pods[pod["metadata"]["uid"]], spec)
    assert error is None
    assert env == {"CFG_MODE": "fast", "PW": "hunter2", "URL": "db://hunter2@$(POD)", "POD": "envs"}


def test_five_hundred_pods_all_become_ready_after_one_clock_jump(scripted: Scripted) -> None:
    # How fast is bench/'s business: a wall-clock bound here would fail on a loaded CI machine, not on a bug.
    kubelet, sink, clock = scripted
    kubelet.set_behaviour("bulk:*", Behaviour(ready_after=5))
    for i in range(500):
        kubelet.pod_changed(make_pod(f"p{i}", "bulk:1"))
    wait_for("500 running", lambda: len(sink.status_names()) == 500, timeout=30)
    assert not any(is_ready(sink.status(name)) for name in sink.status_names())
    clock.advance(5)
    wait_for("500 ready", lambda: all(is_ready(sink.status(name)) for name in sink.status_names()), timeout=30)


# -- Docker kubelet ----------------------------------------------------------------------------------

PREFIX = "deployer-test-kubelet"


class RunningClock:
    """Simulated time running ``speed`` times faster than real time, as the simulator's clock does."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        return START + (time.monotonic() - self._origin) * self.speed


@pytest.fixture(scope="module")
def web_image(docker_client: Any, registry: Any, busybox_base_image: str) -> Iterator[str]:
    """An httpd image FROM the busybox base, pushed to the test registry and then dropped locally."""
    tag = f"{registry.host}/{PREFIX}-web:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as context:
        (Path(context) / "Dockerfile").write_text(
            f"FROM {busybox_base_image}\n"
            "RUN mkdir -p /www && echo hello-from-kubelet > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
        )
        docker_client.images.build(path=context, tag=tag, rm=True, forcerm=True)
    auth = {"username": registry.username, "password": registry.password}
    repository, _, version = tag.rpartition(":")
    for line in docker_client.images.push(repository, tag=version, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    # Gone locally, so that running it needs a pull with the registry credentials.
    docker_client.images.remove(tag, force=True)
    yield tag
    try:
        docker_client.images.remove(tag, force=True)
    except Exception:
        pass


Dockerised = tuple[Any, RecordingSink, RunningClock]


@pytest.fixture
def docker_kubelet(docker_client: Any, registry: Any) -> Iterator[Dockerised]:
    from tests.kubesim.kubelet import DockerKubelet

    kubelet = DockerKubelet(docker_client, (registry.host, registry.username, registry.password), name_prefix=PREFIX)
    sink = RecordingSink()
    clock = RunningClock(speed=20.0)
    kubelet.start(sink, clock)
    yield kubelet, sink, clock
    kubelet.stop()
    assert our_containers(docker_client, kubelet) == [], "stop() must remove every container the kubelet started"


def docker_pod(name: str, container: JSON, **pod_spec: Any) -> JSON:
    pod = make_pod(name, containers=[{"name": "app", **container}])
    pod["spec"].update(pod_spec)
    return pod


def our_containers(docker_client: Any, kubelet: Any, pod_uid: str | None = None) -> list[JSON]:
    """Containers of this kubelet (and pod), as the engine lists them (no inspect: some may be going away)."""
    label = [f"kubesim.kubelet={kubelet.kubelet_id}"]
    if pod_uid:
        label.append(f"kubesim.pod-uid={pod_uid}")
    return list(docker_client.api.containers(all=True, filters={"label": label}))


@pytest.mark.docker
def test_docker_pod_with_an_http_readiness_probe_becomes_ready(
    docker_kubelet: Dockerised, docker_client: Any, web_image: str
) -> None:
    kubelet, sink, clock = docker_kubelet
    pod = docker_pod(
        "web",
        {
            "image": web_image,
            "imagePullPolicy": "Always",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
        },
    )
    kubelet.pod_changed(pod)
    status = wait_for("Ready", lambda: (s := sink.status("web")) and is_ready(s) and s, timeout=60)
    cs = container_status(status)
    assert cs["containerID"].startswith("docker://")
    assert cs["imageID"].startswith(f"docker-pullable://{web_image.rpartition(':')[0]}@sha256:")
    reasons = [r for r, _ in sink.event_list("web")]
    assert reasons[:4] == ["Pulling", "Pulled", "Created", "Started"]
    assert any(m.startswith(f'Successfully pulled image "{web_image}" in ') for _, m in sink.event_list("web"))
    (listed,) = our_containers(docker_client, kubelet, pod["metadata"]["uid"])
    container = docker_client.containers.get(listed["Id"])
    assert container.name.startswith(f"{PREFIX}-default-web-app-")
    bindings = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    with urllib.request.urlopen(f"http://127.0.0.1:{bindings[0]['HostPort']}/index.html", timeout=5) as response:
        assert response.read() == b"hello-from-kubelet\n"


@pytest.mark.docker
def test_docker_pod_with_a_missing_tag_backs_off_pulling_with_the_registry_message(
    docker_kubelet: Dockerised, registry: Any
) -> None:
    kubelet, sink, clock = docker_kubelet
    image = f"{registry.host}/{PREFIX}-web:no-such-tag"
    kubelet.pod_changed(docker_pod("ghost", {"image": image}))
    wait_for("ImagePullBackOff", lambda: waiting_reason(sink.status("ghost")) == "ImagePullBackOff", timeout=60)
    assert "ErrImagePull" in sink.waiting_reasons("ghost")
    message = container_status(sink.status("ghost"))["state"]["waiting"]["message"]
    assert message.startswith(f'Back-off pulling image "{image}": ErrImagePull: Error response from daemon: ')
    assert "manifest unknown" in message
    assert any(r == "Failed" and m.startswith(f'Failed to pull image "{image}": ') for r, m in sink.event_list("ghost"))


@pytest.mark.docker
def test_docker_crashing_container_restarts_and_keeps_the_previous_logs(
    docker_kubelet: Dockerised, busybox_base_image: str, docker_client: Any
) -> None:
    kubelet, sink, clock = docker_kubelet
    pod = docker_pod(
        "crash",
        {"image": busybox_base_image, "command": ["sh", "-c"], "args": ['echo "crashing as $$"; exit 3']},
    )
    kubelet.pod_changed(pod)

    def cs() -> JSON:
        try:
            return container_status(sink.status("crash"))
        except StopIteration:
            return {}

    wait_for(
        "CrashLoopBackOff",
        lambda: cs().get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff",
        timeout=60,
    )
    assert cs()["restartCount"] >= 1
    assert cs()["lastState"]["terminated"]["exitCode"] == 3
    assert cs()["lastState"]["terminated"]["reason"] == "Error"
    assert kubelet.logs("default", "crash", "app", previous=True).startswith("crashing as ")
    wait_for("restartCount 3", lambda: cs().get("restartCount", 0) >= 3, timeout=60)
    # Only the current and the previous instance are kept for logs; older ones are removed in the background.
    wait_for("old instances removed", lambda: len(our_containers(docker_client, kubelet, pod["metadata"]["uid"])) <= 2)
    assert sink.status("crash")["phase"] == "Running"


@pytest.mark.docker
def test_docker_container_sees_env_from_a_configmap_and_passes_an_exec_probe(
    docker_kubelet: Dockerised, busybox_base_image: str
) -> None:
    kubelet, sink, clock = docker_kubelet
    sink.objects[("ConfigMap", "default", "greetings")] = {"data": {"greeting": "hello from a configmap"}}
    sink.objects[("Secret", "default", "creds")] = {"data": {"TOKEN": base64.b64encode(b"s3cr3t").decode()}}
    pod = docker_pod(
        "env",
        {
            "image": busybox_base_image,
            "command": [
                "sh",
                "-c",
                'echo "greeting=$GREETING token=$TOKEN dir=$(pwd)"; touch /tmp/ready; exec sleep 600',
            ],
            "workingDir": "/tmp",
            "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "greetings", "key": "greeting"}}}],
            "envFrom": [{"secretRef": {"name": "creds"}}],
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
        },
        terminationGracePeriodSeconds=0,
    )
    kubelet.pod_changed(pod)
    wait_for("Ready", lambda: is_ready(sink.status("env")), timeout=60)
    wait_for("output", lambda: kubelet.logs("default", "env", "app"), timeout=10)
    assert kubelet.logs("default", "env", "app") == "greeting=hello from a configmap token=s3cr3t dir=/tmp\n"


@pytest.mark.docker
def test_docker_container_failing_liveness_is_killed_and_restarted(
    docker_kubelet: Dockerised, busybox_base_image: str
) -> None:
    kubelet, sink, clock = docker_kubelet
    pod = docker_pod(
        "dead",
        {
            "image": busybox_base_image,
            "command": ["sleep", "600"],
            # Nothing listens on 9000: Docker's proxy accepts and drops the connection, which must not pass.
            "livenessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1, "failureThreshold": 2},
        },
        terminationGracePeriodSeconds=0,
    )
    kubelet.pod_changed(pod)
    wait_for("restart", lambda: restart_count(sink, "dead") >= 1, timeout=60)
    events = sink.event_list("dead")
    assert ("Killing", "Container app failed liveness probe, will be restarted") in events
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed: dial tcp 127.0.0.1:") for r, m in events)


@pytest.mark.docker
def test_docker_deleted_pod_leaves_no_container(
    docker_kubelet: Dockerised, busybox_base_image: str, docker_client: Any
) -> None:
    kubelet, sink, clock = docker_kubelet
    pod = docker_pod("brief", {"image": busybox_base_image, "command": ["sleep", "600"]})
    kubelet.pod_changed(pod)
    wait_for("Ready", lambda: is_ready(sink.status("brief")), timeout=60)
    assert len(our_containers(docker_client, kubelet, pod["metadata"]["uid"])) == 1
    kubelet.pod_deleted(pod)
    wait_for("removed", lambda: not our_containers(docker_client, kubelet, pod["metadata"]["uid"]), timeout=30)
    assert ("Killing", "Stopping container app") in sink.event_list("brief")


@pytest.mark.docker
def test_docker_failing_http_readiness_keeps_the_pod_unready_while_tcp_liveness_passes(
    docker_kubelet: Dockerised, web_image: str
) -> None:
    kubelet, sink, clock = docker_kubelet
    pod = docker_pod(
        "half",
        {
            "image": web_image,
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1},
        },
    )
    kubelet.pod_changed(pod)
    wait_for(
        "three failed readiness probes",
        lambda: (
            sink.event_list("half").count(
                ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404")
            )
            >= 3
        ),
        timeout=60,
    )
    status = sink.status("half")
    assert not is_ready(status)
    assert restart_count(sink, "half") == 0
    assert not any(m.startswith("Liveness probe failed") for _, m in sink.event_list("half"))


@pytest.mark.docker
def test_docker_pod_pulls_with_its_image_pull_secret_when_the_node_has_no_credentials(
    docker_client: Any, registry: Any, web_image: str
) -> None:
    from tests.kubesim.kubelet import DockerKubelet

    kubelet = DockerKubelet(docker_client, registry=None, name_prefix=PREFIX)
    sink = RecordingSink()
    config = {
        "auths": {
            registry.host: {"auth": base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()}
        }
    }
    sink.objects[("Secret", "default", "regcred")] = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    kubelet.start(sink, RunningClock(speed=20.0))
    try:
        pod = docker_pod(
            "private", {"image": web_image, "imagePullPolicy": "Always"}, imagePullSecrets=[{"name": "regcred"}]
        )
        kubelet.pod_changed(pod)

        wait_for("Ready", lambda: is_ready(sink.status("private")), timeout=60)

        assert any(m.startswith(f'Successfully pulled image "{web_image}"') for _, m in sink.event_list("private"))
    finally:
        kubelet.stop()


@pytest.mark.docker
def test_docker_pod_marked_for_deletion_is_stopped_then_reported_for_the_final_delete(
    docker_client: Any, busybox_base_image: str
) -> None:
    from tests.kubesim.kubelet import DockerKubelet

    stopped: list[tuple[JSON, int]] = []  # the pod reported, and how many of its containers still existed then
    kubelet: Any = None

    def on_pod_stopped(pod: JSON) -> None:
        stopped.append((pod, len(our_containers(docker_client, kubelet, pod["metadata"]["uid"]))))

    kubelet = DockerKubelet(docker_client, name_prefix=PREFIX, on_pod_stopped=on_pod_stopped)
    sink = RecordingSink()
    kubelet.start(sink, RunningClock(speed=20.0))
    try:
        # sleep as PID 1 ignores SIGTERM: the container only goes when the grace period ends in SIGKILL.
        pod = docker_pod("leaving", {"image": busybox_base_image, "command": ["sleep", "600"]})
        kubelet.pod_changed(pod)
        wait_for("Ready", lambda: is_ready(sink.status("leaving")), timeout=60)
        deleting = copy.deepcopy(pod)
        deleting["metadata"].update({"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 1})

        kubelet.pod_changed(deleting)

        wait_for("reported stopped", lambda: stopped, timeout=30)
        assert stopped[0][0]["metadata"]["uid"] == pod["metadata"]["uid"]
        assert stopped[0][1] == 0, "reported before its containers were gone"
        assert ("Killing", "Stopping container app") in sink.event_list("leaving")
    finally:
        kubelet.stop()
