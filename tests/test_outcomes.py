"""How a failed rollout ends (exit 1, 3 or 4, or on to the rollback) and each workload's line in the report:
tables over plain data, as deployer.outcomes decides them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from deployer.deploy_report import WorkloadResult
from deployer.errors import (
    ApplyError,
    ExitCode,
    KubernetesError,
    LockLostError,
    RollbackFailedError,
    RolloutFailedError,
    RolloutFailure,
    RolloutLeftInPlaceError,
    RolloutOutcomeError,
    WorkloadOutcome,
)
from deployer.outcomes import (
    ROLL_BACK,
    Ending,
    FailedRollout,
    decide_outcome,
    live_revision,
    pending_workloads,
    rolled_back_workloads,
    waited_workloads,
)
from deployer.rollbacks import LiveRecord, ObjectRecord, ObjectRef, RecordedRevision

REASON = "rollout failed: deployment/web: ImagePullBackOff"
LOST = LockLostError("lost the deploy lock in namespace web: https://ci/run/9 holds it now")
REFUSED = ApplyError("deployment/web conflicts with other field managers")
EXPIRED = KubernetesError("the cluster refused the credentials")
BUG = RuntimeError("no such key")
ROLLED_BACK = [WorkloadOutcome("Deployment", "web", "rolled back", "to revision 1")]


def failed(**facts: Any) -> FailedRollout:
    return FailedRollout(RolloutFailure(REASON, diagnosis="pod web-1: ImagePullBackOff"), **facts)


@pytest.mark.parametrize(
    ("facts", "error_type", "exit_code", "message"),
    [
        pytest.param(
            failed(rollback_outcomes=ROLLED_BACK),
            RolloutFailedError,
            ExitCode.ROLLED_BACK,
            f"{REASON}; rolled back deployment/web to revision 1",
            id="rolled back: exit 3",
        ),
        pytest.param(
            failed(rollback_outcomes=ROLLED_BACK, rollback_problems=["deployment/web: not ready after 5m"]),
            RollbackFailedError,
            ExitCode.ROLLBACK_FAILED,
            f"{REASON}; rollback failed: deployment/web: not ready after 5m; left: deployment/web: rolled back "
            "(to revision 1)",
            id="rollback not ready in time: exit 4",
        ),
        pytest.param(
            failed(rollback_error=EXPIRED),
            RollbackFailedError,
            ExitCode.ROLLBACK_FAILED,
            f"{REASON}; rollback failed: the cluster refused the credentials",
            id="rollback refused by the API: exit 4 with the rollout's reason",
        ),
        pytest.param(
            failed(rollback_error=BUG),
            RollbackFailedError,
            ExitCode.ROLLBACK_FAILED,
            f"{REASON}; rollback failed: unexpected error: RuntimeError: no such key",
            id="rollback stopped by a bug: exit 4",
        ),
        pytest.param(
            failed(rollback_enabled=False),
            RolloutLeftInPlaceError,
            ExitCode.FAILURE,
            f"{REASON}; --no-rollback: the failed rollout is left in place",
            id="--no-rollback: left in place, exit 1",
        ),
        pytest.param(
            failed(lock_lost=LOST),
            LockLostError,
            ExitCode.FAILURE,
            f"{LOST}; not rolling back, which would undo that run's deploy: this run's objects stay as it left "
            f"them ({REASON})",
            id="lock lost: no rollback, exit 1",
        ),
        pytest.param(
            failed(lock_lost=LOST, rollback_enabled=False),
            LockLostError,
            ExitCode.FAILURE,
            f"{LOST}; not rolling back, which would undo that run's deploy: this run's objects stay as it left "
            f"them ({REASON})",
            id="lock lost wins over --no-rollback",
        ),
        pytest.param(
            failed(stopped_apply=REFUSED, undoes_a_change=False),
            ApplyError,
            ExitCode.FAILURE,
            "deployment/web conflicts with other field managers",
            id="apply refused before any change: the apply's own error, exit 1",
        ),
        pytest.param(
            failed(stopped_apply=REFUSED, undoes_a_change=False, rollback_enabled=False),
            ApplyError,
            ExitCode.FAILURE,
            "deployment/web conflicts with other field managers",
            id="apply refused before any change, --no-rollback: still the apply's error",
        ),
        pytest.param(
            failed(stopped_apply=REFUSED, rollback_outcomes=ROLLED_BACK),
            RolloutFailedError,
            ExitCode.ROLLED_BACK,
            f"{REASON}; rolled back deployment/web to revision 1",
            id="apply refused after a change, rolled back: exit 3",
        ),
        pytest.param(
            FailedRollout(RolloutFailure("rollout cancelled: received SIGTERM"), rollback_outcomes=ROLLED_BACK),
            RolloutFailedError,
            ExitCode.ROLLED_BACK,
            "rollout cancelled: received SIGTERM; rolled back deployment/web to revision 1",
            id="cancelled during the wait, rolled back: exit 3",
        ),
    ],
)
def test_decide_outcome_ends_a_failed_rollout(
    facts: FailedRollout, error_type: type[BaseException], exit_code: int, message: str
) -> None:
    ending = decide_outcome(facts)

    assert isinstance(ending, Ending)
    assert type(ending.error) is error_type
    assert getattr(ending.error, "exit_code", None) == exit_code
    assert str(ending.error) == message


@pytest.mark.parametrize(
    "facts",
    [
        pytest.param(failed(), id="the wait failed"),
        pytest.param(failed(stopped_apply=REFUSED), id="the apply stopped after a change"),
        pytest.param(failed(unexpected=BUG, stopped_apply=BUG), id="a bug stopped the apply after a change"),
    ],
)
def test_decide_outcome_rolls_back_what_nothing_else_ends(facts: FailedRollout) -> None:
    assert decide_outcome(facts) == ROLL_BACK


def test_an_ending_carries_the_rollout_error_and_chains_the_unexpected_cause() -> None:
    ending = decide_outcome(failed(unexpected=BUG, stopped_apply=BUG, rollback_outcomes=ROLLED_BACK))

    assert isinstance(ending, Ending) and isinstance(ending.error, RolloutOutcomeError)
    assert ending.cause is BUG
    assert ending.error.failure.diagnosis == "pod web-1: ImagePullBackOff"
    assert ending.error.failure.outcomes == ROLLED_BACK


def test_a_rollback_error_is_the_cause_of_exit_4() -> None:
    ending = decide_outcome(failed(rollback_error=EXPIRED))

    assert isinstance(ending, Ending) and ending.cause is EXPIRED


# --- each workload's line in the report ----------------------------------------------------------------------

WEB = ObjectRef("apps/v1", "Deployment", "shop", "web")
DB = ObjectRef("apps/v1", "StatefulSet", "shop", "db")


@pytest.mark.parametrize(
    ("live", "revision"),
    [
        ({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "4"}}}, "4"),
        ({"metadata": {}, "status": {"updateRevision": "db-7d9f"}}, "db-7d9f"),
        ({"metadata": {"annotations": {}}, "status": {}}, None),
        ({}, None),
        ({"metadata": {"annotations": None}, "status": None}, None),
    ],
)
def test_live_revision_reads_the_deployment_annotation_or_the_update_revision(
    live: dict[str, Any], revision: str | None
) -> None:
    assert live_revision(live) == revision


def test_pending_workloads_carry_the_revision_live_before_the_apply() -> None:
    record = LiveRecord(
        [
            ObjectRecord(WEB, existed=True, content={}, revision=RecordedRevision(3, "web-abc", {})),
            ObjectRecord(DB, existed=False),
        ]
    )

    results = pending_workloads([WEB, DB], record)

    assert results == [
        WorkloadResult("Deployment", "web", "shop", result="pending", previous_revision="3"),
        WorkloadResult("StatefulSet", "db", "shop", result="pending", previous_revision=None),
    ]


@dataclass
class Verdict:
    done: bool


@dataclass
class Waited:
    verdicts: Mapping[ObjectRef, Verdict]
    failures: Mapping[ObjectRef, Sequence[object]] = field(default_factory=dict)
    workloads: Mapping[ObjectRef, Mapping[str, Any]] = field(default_factory=dict)
    elapsed: float = 12.5


def test_waited_workloads_say_ready_failed_or_not_ready_with_the_live_revision() -> None:
    worker = ObjectRef("apps/v1", "Deployment", "shop", "worker")
    before = [WorkloadResult(r.kind, r.name, r.namespace, result="pending") for r in (WEB, DB, worker)]
    waited = Waited(
        verdicts={WEB: Verdict(True), DB: Verdict(False), worker: Verdict(False)},
        failures={DB: ["ImagePullBackOff"]},
        workloads={WEB: {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "4"}}}},
    )

    results = waited_workloads(before, waited)

    assert [(w.name, w.result, w.revision, w.seconds) for w in results] == [
        ("web", "ready", "4", 12.5),
        ("db", "failed", None, 12.5),
        ("worker", "not ready", None, 12.5),
    ]
    assert [w.result for w in before] == ["pending"] * 3  # the report's earlier lines are not changed in place


def test_a_workload_the_wait_did_not_see_stays_as_it_was() -> None:
    pending = WorkloadResult("Deployment", "web", "shop", result="pending", previous_revision="2")

    assert waited_workloads([pending], Waited(verdicts={})) == [pending]


def test_rolled_back_workloads_take_their_rollback_state() -> None:
    before = [
        WorkloadResult("Deployment", "web", "shop", result="failed"),
        WorkloadResult("StatefulSet", "db", "shop", result="ready"),
    ]

    results = rolled_back_workloads(before, [WorkloadOutcome("Deployment", "web", "rolled back")])

    assert [(w.name, w.result) for w in results] == [("web", "rolled back"), ("db", "ready")]
