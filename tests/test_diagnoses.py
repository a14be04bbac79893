"""diagnoses.py: what a person reads when a rollout failed, built from API-shaped pods and events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from deployer.diagnoses import (
    LogRequest,
    describe_container_state,
    diagnose,
    format_event,
    logs_to_collect,
    render_text,
)
from deployer.rollouts import PodFailure, WorkloadFailure

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "prod"}}


def failure(
    reason: str, message: str = "", pod: str = "web-bbb-1", container: str | None = "web", init: bool = False
) -> PodFailure:
    return PodFailure("Deployment", "web", pod, container, reason, message, T0, init)


def pod(name: str, containers: list[dict[str, Any]], phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name},
        "status": {"phase": phase, "containerStatuses": containers, **status},
    }


def exited(container: str, exit_code: int, at: str) -> dict[str, Any]:
    """The status of a container that ran and exited (``at``: the time of day it finished)."""
    reason = "Error" if exit_code else "Completed"
    terminated = {"reason": reason, "exitCode": exit_code, "finishedAt": f"2026-01-01T{at}Z"}
    return {"name": container, "ready": False, "state": {"terminated": terminated}}


def event(subject_kind: str, subject: str, reason: str, message: str, at: str, count: int = 1) -> dict[str, Any]:
    return {
        "kind": "Event",
        "involvedObject": {"kind": subject_kind, "name": subject},
        "reason": reason,
        "message": message,
        "lastTimestamp": at,
        "count": count,
    }


@pytest.mark.parametrize(
    ("state", "phrase"),
    [
        (
            {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "web:bad"'}},
            'waiting: ImagePullBackOff: Back-off pulling image "web:bad"',
        ),
        ({"waiting": {"reason": "ContainerCreating"}}, "waiting: ContainerCreating"),
        ({"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "running since 2026-01-01T00:00:00Z"),
        (
            {"terminated": {"reason": "Error", "exitCode": 1, "message": "boom\n"}},
            "terminated: Error, exit code 1: boom",
        ),
        ({"terminated": {"reason": "OOMKilled", "exitCode": 137}}, "terminated: OOMKilled, exit code 137"),
        ({}, "unknown"),
    ],
)
def test_container_state_reads_as_one_phrase(state: dict[str, Any], phrase: str) -> None:
    assert describe_container_state(state) == phrase


@pytest.mark.parametrize(
    ("failures", "pods", "expected"),
    [
        # The crashed instance is the previous container; the current one is waiting in back-off.
        ([failure("CrashLoopBackOff")], [], [LogRequest("web-bbb-1", "web", previous=True)]),
        # Never started: no logs exist.
        ([failure("ImagePullBackOff"), failure("CreateContainerConfigError")], [], []),
        # An init container that exited with an error: its logs are its current ones.
        ([failure("Error", container="migrate", init=True)], [], [LogRequest("web-bbb-1", "migrate")]),
        ([WorkloadFailure("Deployment", "web", "ProgressDeadlineExceeded", "")], [], []),
        # Running but never ready (a timeout): the current logs say why.
        (
            [],
            [pod("web-bbb-2", [{"name": "web", "ready": False, "state": {"running": {}}}], "Running")],
            [LogRequest("web-bbb-2", "web")],
        ),
        ([], [pod("web-bbb-2", [{"name": "web", "ready": True, "state": {"running": {}}}], "Running")], []),
        # A failed Job's pods (restartPolicy Never): the exited containers' current logs, the latest attempt first.
        (
            [WorkloadFailure("Job", "migrate", "BackoffLimitExceeded", "")],
            [
                pod("migrate-a", [exited("migrate", 1, "00:00:05")], "Failed"),
                pod("migrate-b", [exited("migrate", 1, "00:00:20")], "Failed"),
                pod("migrate-c", [exited("migrate", 0, "00:00:30")], "Succeeded"),
            ],
            [LogRequest("migrate-b", "migrate"), LogRequest("migrate-a", "migrate")],
        ),
        # restartPolicy OnFailure: the Job gave up on a crash-looping container; the crashed instance tells why.
        (
            [WorkloadFailure("Job", "migrate", "BackoffLimitExceeded", "")],
            [pod("migrate-a", [{"name": "migrate", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}], "Running")],
            [LogRequest("migrate-a", "migrate", previous=True)],
        ),
    ],
)
def test_logs_to_collect_picks_the_containers_whose_logs_explain_the_failure(
    failures: list[PodFailure | WorkloadFailure], pods: list[dict[str, Any]], expected: list[LogRequest]
) -> None:
    assert logs_to_collect(failures, pods) == expected


def test_logs_to_collect_is_bounded() -> None:
    failures = [failure("CrashLoopBackOff", pod=f"web-{i}") for i in range(10)]
    assert len(logs_to_collect(failures, limit=3)) == 3


def test_event_is_reason_colon_message_with_its_subject_and_count() -> None:
    e = event("Pod", "web-bbb-1", "Failed", 'Failed to pull image "web:bad": not found', "2026-01-01T00:00:05Z", 3)
    assert format_event(e) == 'pod/web-bbb-1: Failed: Failed to pull image "web:bad": not found (x3)'


def crash_loop_diagnosis() -> Any:
    crashing = pod(
        "web-bbb-1",
        [
            {
                "name": "web",
                "ready": False,
                "restartCount": 4,
                "state": {
                    "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}
                },
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
            }
        ],
        "Running",
    )
    healthy_old = pod("web-aaa-1", [{"name": "web", "ready": True, "state": {"running": {}}}], "Running")
    events = [
        event("Pod", "web-bbb-1", "BackOff", "Back-off restarting failed container web", "2026-01-01T00:00:09Z", 4),
        event("Deployment", "web", "ScalingReplicaSet", "Scaled up replica set web-bbb to 1", "2026-01-01T00:00:01Z"),
        event("ReplicaSet", "web-bbb", "SuccessfulCreate", "Created pod: web-bbb-1", "2026-01-01T00:00:02Z"),
        event("Pod", "unrelated-1", "Killing", "Stopping container", "2026-01-01T00:00:03Z"),
        event("Deployment", "webapp", "ScalingReplicaSet", "not this deployment", "2026-01-01T00:00:04Z"),
    ]
    logs = {
        LogRequest("web-bbb-1", "web", previous=True): [f"line {i}" for i in range(30)] + ["panic: no DATABASE_URL"]
    }
    return diagnose(
        WEB,
        [failure("CrashLoopBackOff", "back-off 40s restarting failed container")],
        [healthy_old, crashing],
        events,
        logs,
    )


def test_diagnosis_text_names_reason_pods_events_and_crash_logs() -> None:
    text = crash_loop_diagnosis().text()
    lines = text.splitlines()
    assert (
        lines[0]
        == "deployment/web failed: pod web-bbb-1 container web: CrashLoopBackOff: back-off 40s restarting failed"
        " container"
    )
    # Failing pods first, with container state, restarts and the last state.
    assert lines[1:4] == [
        "  pods:",
        "    web-bbb-1 (Running)",
        "      container web: waiting: CrashLoopBackOff: back-off 40s restarting failed container (restarts 4, last: "
        "terminated: Error, exit code 1)",
    ]
    # Events of the workload, its ReplicaSets and its pods only, oldest first.
    events_at = lines.index("  events:")
    assert lines[events_at + 1 : events_at + 4] == [
        "    deployment/web: ScalingReplicaSet: Scaled up replica set web-bbb to 1",
        "    replicaset/web-bbb: SuccessfulCreate: Created pod: web-bbb-1",
        "    pod/web-bbb-1: BackOff: Back-off restarting failed container web (x4)",
    ]
    assert "unrelated-1" not in text and "not this deployment" not in text
    # The last lines of the previous (crashed) container, bounded.
    assert "  last log lines of web-bbb-1/web (previous container):" in lines
    assert lines[-1] == "    | panic: no DATABASE_URL"
    assert "    | line 10" not in lines and "    | line 11" in lines


def test_timeout_diagnosis_uses_the_given_reason_and_shows_unschedulable_pods() -> None:
    pending = {
        "kind": "Pod",
        "metadata": {"name": "web-bbb-1"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available",
                }
            ],
        },
    }
    d = diagnose(WEB, [], [pending], [], {}, reason="timed out after 10m0s: 0 of 3 updated replicas are available")
    assert d.text().splitlines()[:3] == [
        "deployment/web failed: timed out after 10m0s: 0 of 3 updated replicas are available",
        "  pods:",
        "    web-bbb-1 (Pending): Unschedulable: 0/1 nodes are available",
    ]


def test_several_diagnoses_render_together() -> None:
    one = diagnose(WEB, [failure("ErrImagePull")], [], [], {})
    other = diagnose({"kind": "StatefulSet", "metadata": {"name": "db"}}, [], [], [], {})
    assert (
        render_text([one, other]) == "deployment/web failed: pod web-bbb-1 container web: ErrImagePull\n\n"
        "statefulset/db failed: the rollout did not finish"
    )


def test_events_within_the_same_second_keep_the_servers_order() -> None:
    same_second = "2026-01-01T00:00:01Z"
    later = event("Pod", "web-bbb-1", "Failed", "second", same_second)
    later["metadata"] = {"resourceVersion": "12"}
    earlier = event("ReplicaSet", "web-bbb", "SuccessfulCreate", "first", same_second)
    earlier["metadata"] = {"resourceVersion": "9"}
    d = diagnose(WEB, [], [pod("web-bbb-1", [])], [later, earlier], {})
    assert d.events == ["replicaset/web-bbb: SuccessfulCreate: first", "pod/web-bbb-1: Failed: second"]


def test_an_event_with_a_microsecond_event_time_is_ordered_by_the_server_within_its_second() -> None:
    # What a real cluster mixes (kubesim wrote every event the core/v1 way): the controller-manager's events
    # carry lastTimestamp to the second, the scheduler's events.k8s.io events only a microsecond eventTime.
    created = event("ReplicaSet", "web-bbb", "SuccessfulCreate", "Created pod: web-bbb-1", "2026-01-01T00:00:01Z")
    created["metadata"] = {"resourceVersion": "9"}
    scheduled = event("Pod", "web-bbb-1", "Scheduled", "Successfully assigned", "")
    scheduled.update(lastTimestamp=None, eventTime="2026-01-01T00:00:01.250000Z")
    scheduled["metadata"] = {"resourceVersion": "12"}
    d = diagnose(WEB, [], [pod("web-bbb-1", [])], [scheduled, created], {})
    assert d.events == [
        "replicaset/web-bbb: SuccessfulCreate: Created pod: web-bbb-1",
        "pod/web-bbb-1: Scheduled: Successfully assigned",
    ]
