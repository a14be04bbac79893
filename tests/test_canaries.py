"""canaries.py: the canary object, which Deployments get one, leftovers, and the hold's decision each tick,
table-tested with a fake clock (Instant readings handed in)."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployer import canaries
from deployer.canaries import CheckReading, HeldCanary, HoldPolicy, HoldSnapshot, HoldState, hold_step
from deployer.clocks import Instant
from deployer.errors import OptionError
from deployer.revision_pods import RevisionPods
from deployer.rollbacks import ObjectRef
from deployer.rollout_wait import WaitOutcome

T0 = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def at(seconds: float) -> Instant:
    return Instant(1000.0 + seconds, T0 + timedelta(seconds=seconds))


def web(image: str = "web:2") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "labels": {"team": "a"}, "annotations": {"x": "y"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


# --- the canary object --------------------------------------------------------------------------------------


def test_canary_is_the_new_template_with_the_canary_label_in_pods_and_selector() -> None:
    stable = web()
    before = copy.deepcopy(stable)

    canary = canaries.canary_of(stable, replicas=2)

    assert stable == before  # the rendered Deployment is not changed
    assert canary["metadata"]["name"] == "web-canary"
    assert canary["metadata"]["namespace"] == "prod"
    assert canary["metadata"]["labels"] == {"team": "a", "deployer/canary": "true"}
    assert canary["metadata"]["annotations"] == {"x": "y", "deployer/canary-of": "web"}
    assert canary["spec"]["replicas"] == 2
    assert canary["spec"]["selector"] == {"matchLabels": {"app": "web", "deployer/canary": "true"}}
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {"app": "web", "tier": "front", "deployer/canary": "true"}
    assert canary["spec"]["template"]["spec"] == stable["spec"]["template"]["spec"]


def test_a_selector_of_the_stable_pods_still_selects_the_canary_pods_but_not_the_reverse() -> None:
    stable = web()
    canary = canaries.canary_of(stable, replicas=1)
    service_selector = {"app": "web"}  # what a Service of the app selects
    canary_pods = canary["spec"]["template"]["metadata"]["labels"]
    stable_pods = stable["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in selector.items())

    assert selects(service_selector, canary_pods) and selects(service_selector, stable_pods)
    assert not selects(canary["spec"]["selector"]["matchLabels"], stable_pods)


@pytest.mark.parametrize(
    ("live", "planned", "changes"),
    [
        (None, web(), False),  # a new Deployment: nothing stable to protect
        (web("web:1"), web("web:2"), True),
        (web("web:2"), web("web:2"), False),
    ],
    ids=["new", "new image", "same template"],
)
def test_template_changes(live: dict[str, Any] | None, planned: dict[str, Any], changes: bool) -> None:
    assert canaries.template_changes(live, planned) is changes


def test_template_changes_ignores_the_pod_template_hash_and_a_replicas_change() -> None:
    live = web()
    live["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "abc"
    planned = web()
    planned["spec"]["replicas"] = 7

    assert not canaries.template_changes(live, planned)


def test_leftovers_are_the_canaries_of_the_deployments_deployed_only() -> None:
    def listed(name: str, of: str, namespace: str = "prod") -> dict[str, Any]:
        labels, annotations = {"deployer/canary": "true"}, {"deployer/canary-of": of}
        return {"metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}}

    found = canaries.leftovers(
        [listed("web-canary", "web"), listed("api-canary", "api"), listed("web-canary", "web", "staging")],
        [ObjectRef("apps/v1", "Deployment", "prod", "web")],
    )

    assert found == [ObjectRef("apps/v1", "Deployment", "prod", "web-canary")]


CANARY_REF = ObjectRef("apps/v1", "Deployment", "prod", "web-canary")


@pytest.mark.parametrize(
    ("live", "deployed", "problem"),
    [
        (None, [], None),
        (canaries.canary_of(web(), 1), [], None),  # deployer's own (a race with a leftover): taken over
        ({"metadata": {"name": "web-canary"}}, [], "deployment/web-canary exists and is not deployer's canary"),
        (None, [CANARY_REF], "deployment/web-canary is in the manifests"),
    ],
    ids=["free", "ours", "a user's", "in the manifests"],
)
def test_a_canary_never_takes_the_name_of_a_users_deployment(
    live: dict[str, Any] | None, deployed: list[ObjectRef], problem: str | None
) -> None:
    taken = canaries.name_taken("web", live, deployed, CANARY_REF)

    assert taken is None if problem is None else taken is not None and taken.startswith(problem)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8080/healthz", "http://127.0.0.1:8080/healthz"),
        ("https://user:secret@example.com/x?token=abc", "https://example.com/x?…"),
    ],
)
def test_a_check_url_is_shown_without_credentials_or_query(url: str, shown: str) -> None:
    assert canaries.check_url(url) == url
    assert canaries.shown_url(url) == shown


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/healthz", "http:///x"])
def test_a_check_url_that_is_not_http_is_refused_naming_the_flag(url: str) -> None:
    with pytest.raises(OptionError, match="--canary-check"):
        canaries.check_url(url)


# --- the hold -----------------------------------------------------------------------------------------------

REF = ObjectRef("apps/v1", "Deployment", "prod", "web-canary")
REVISION = RevisionPods("Deployment", "web-canary", "rs-uid", ("pod-template-hash", "h1"))


def deployment(available: int = 1) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "web-canary", "generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": available,
        },
    }


def pod(name: str = "web-canary-h1-a", *, ready: bool = True, restarts: int = 0, waiting: str | None = None) -> Any:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {
            "name": name,
            "labels": {"pod-template-hash": "h1"},
            "ownerReferences": [{"controller": True, "uid": "rs-uid"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "web", "restartCount": restarts, "state": state}],
        },
    }


def seen(*pods: Any, live: Any = None, checks: tuple[CheckReading, ...] = ()) -> HoldSnapshot:
    canary = HeldCanary(REF, deployment() if live is None else live, pods, REVISION)
    return HoldSnapshot(True, False, [canary], checks)


POLICY = HoldPolicy(started=1000.0, hold=10.0)


def run(ticks: list[tuple[float, HoldSnapshot]]) -> list[tuple[WaitOutcome | None, str]]:
    """The verdict of each tick, the state carried from one to the next as the loop does."""
    state, verdicts = HoldState(), []
    for seconds, snapshot in ticks:
        state, verdict = hold_step(POLICY, state, snapshot, at(seconds))
        verdicts.append((verdict.outcome, verdict.reason))
    return verdicts


def test_a_healthy_canary_passes_once_the_hold_is_over_and_not_before() -> None:
    verdicts = run([(0, seen(pod())), (9.9, seen(pod())), (10, seen(pod()))])

    assert verdicts == [(None, ""), (None, ""), (WaitOutcome.DONE, "held for 10s")]


@pytest.mark.parametrize(
    ("later", "reason"),
    [
        (seen(pod(restarts=1)), "deployment/web-canary: pod web-canary-h1-a container web: Restarted: restarted"),
        (seen(pod(ready=False)), "pod web-canary-h1-a: NotReady: lost its readiness during the hold"),
        (seen(pod("web-canary-h1-b")), "pod web-canary-h1-a: PodGone: the pod went away during the hold"),
        (seen(pod(waiting="CrashLoopBackOff", restarts=1)), "CrashLoopBackOff"),
        (seen(pod(), live=deployment(available=0)), "NotAvailable: Waiting for deployment"),
        (HoldSnapshot(True, False, [HeldCanary(REF, None)]), "Deleted: the canary was deleted during the hold"),
    ],
    ids=["restart", "lost readiness", "pod replaced", "crash loop", "unavailable", "deleted"],
)
def test_anything_a_proven_pod_must_not_do_fails_the_hold_half_way(later: HoldSnapshot, reason: str) -> None:
    verdicts = run([(0, seen(pod())), (5, later)])

    assert verdicts[0] == (None, "")
    assert verdicts[1][0] is WaitOutcome.FAILED
    assert reason in verdicts[1][1]


def test_a_check_fails_the_hold_after_its_attempts_in_a_row_not_before() -> None:
    flaky = CheckReading("http://127.0.0.1:9/x?k=secret", answered_ok=1, failed_in_a_row=2, last_problem="answered 500")
    broken = replace(flaky, failed_in_a_row=3, last_problem="answered 500 Internal Server Error")

    verdicts = run([(0, seen(pod(), checks=(flaky,))), (1, seen(pod(), checks=(broken,)))])

    assert verdicts[0] == (None, "")
    assert verdicts[1] == (
        WaitOutcome.FAILED,
        "--canary-check http://127.0.0.1:9/x?… failed 3 times in a row: answered 500 Internal Server Error",
    )


def test_a_check_that_never_answered_2xx_fails_the_hold_at_its_end() -> None:
    silent = CheckReading("http://127.0.0.1:9/", failed_in_a_row=1, last_problem="no answer within 5s")

    verdicts = run([(10, seen(pod(), checks=(silent,)))])

    reason = "--canary-check http://127.0.0.1:9/ never answered 2xx during the hold: no answer within 5s"
    assert verdicts == [(WaitOutcome.FAILED, reason)]


def test_cancel_ends_the_hold_first_and_an_unsynced_view_is_not_judged() -> None:
    verdicts = run([(0, HoldSnapshot(False)), (20, HoldSnapshot(False)), (1, HoldSnapshot(True, cancelled=True))])

    assert verdicts == [(None, ""), (None, ""), (WaitOutcome.CANCELLED, "cancelled while holding the canary")]
