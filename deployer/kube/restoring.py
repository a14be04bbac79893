"""Carrying a rollback out: each planned step (rollbacks.plan_rollback) as one request, then the wait until every
restored workload is ready again, decided by rollback_wait.step with the clock injected.

A step that fails does not stop the others; its problem is reported. The rollback's own patches are sent by
the ``deployer-rollback`` field manager, so that the next deploy names them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from deployer import rollback_wait
from deployer.errors import APINotFoundError, KubernetesError, WorkloadOutcome
from deployer.kube.api import KubeAPI
from deployer.kube.discovery import Discovery
from deployer.kube.resources import PODS
from deployer.kube.views import ClusterView
from deployer.kube.watching import TICK_SECONDS
from deployer.rollback_wait import RestoredWorkload, RestoreSnapshot, RestoreWaitPolicy, RestoreWaitState
from deployer.rollbacks import ObjectRef, RollbackAction, RollbackStep, RollbackTarget

ROLLBACK_FIELD_MANAGER = "deployer-rollback"


@dataclass
class RollbackResult:
    """What the rollback did to each object; ``problems`` is empty when everything is back and ready."""

    outcomes: list[WorkloadOutcome]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def roll_back(
    api: KubeAPI,
    discovery: Discovery,
    steps: Sequence[RollbackStep],
    policy: RestoreWaitPolicy,
    on_progress: Callable[[str], None],
    cancel: threading.Event | None,
    clock: Callable[[], float] = time.monotonic,
) -> RollbackResult:
    """Carry out ``steps``, then wait for the workloads they restore (``policy.targets`` is filled here)."""
    outcomes: dict[ObjectRef, WorkloadOutcome] = {}
    problems: list[str] = []
    waiting: dict[ObjectRef, RollbackTarget] = {}
    for step in steps:
        on_progress(step.summary)
        try:
            carry_out(api, discovery, step)
        except KubernetesError as e:
            problems.append(f"{step.ref}: {e}")
            outcomes[step.ref] = WorkloadOutcome(step.ref.kind, step.ref.name, "not restored", str(e))
            continue
        if step.problem:
            problems.append(f"{step.ref}: {step.problem}")
        outcomes[step.ref] = WorkloadOutcome(step.ref.kind, step.ref.name, step.outcome, step.detail)
        if step.waits and step.target is not None:
            waiting[step.ref] = step.target
    if waiting:
        targets = RestoreWaitPolicy(waiting, policy.started, policy.timeout)
        for ref, problem in wait_restored(
            api, discovery.default_namespace, targets, on_progress, cancel, clock
        ).items():
            problems.append(f"{ref}: {problem}")
            outcome = outcomes[ref]
            detail = f"{outcome.detail}: {problem}" if outcome.detail else problem
            outcomes[ref] = WorkloadOutcome(ref.kind, ref.name, "not ready", detail)
    return RollbackResult([outcomes[step.ref] for step in steps if step.ref in outcomes], problems)


def carry_out(api: KubeAPI, discovery: Discovery, step: RollbackStep) -> None:
    ref = step.ref
    resource = discovery.resource_of(ref)
    path = resource.path(ref.namespace, ref.name)
    # Named, so that the next deploy says it took these fields back from deployer's rollback rather than
    # from the client library's default manager ("OpenAPI-Generator"), which no user would recognise.
    manager = {"fieldManager": ROLLBACK_FIELD_MANAGER}
    if step.action is RollbackAction.PATCH:
        content_type = (
            "application/json-patch+json" if step.patch_type == "json" else "application/strategic-merge-patch+json"
        )
        api.request("PATCH", path, query=manager, body=step.body, content_type=content_type)
    elif step.action is RollbackAction.REPLACE:
        api.request("PUT", path, query=manager, body=step.body)
    elif step.action is RollbackAction.CREATE:
        api.request("POST", resource.path(ref.namespace), query=manager, body=step.body)
    elif step.action is RollbackAction.DELETE:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            api.request("DELETE", path, body=body)
        except APINotFoundError:
            pass  # gone already: what the step wanted


def wait_restored(
    api: KubeAPI,
    default_namespace: str,
    policy: RestoreWaitPolicy,
    on_progress: Callable[[str], None],
    cancel: threading.Event | None,
    clock: Callable[[], float],
) -> dict[ObjectRef, str]:
    """Wait until each target is ready; returns what is still wrong per workload (empty: all ready)."""
    deadline = policy.started + policy.timeout if policy.timeout > 0 else None
    refs = list(policy.targets)
    view = ClusterView(api, default_namespace, refs, with_revision_objects=True, deadline=deadline)
    state = RestoreWaitState()
    with view:
        while True:
            view.pump(TICK_SECONDS)
            state, verdict = rollback_wait.step(policy, state, _snapshot(view, refs, cancel), clock())
            for line in verdict.progress:
                on_progress(line)
            for ref, pod in verdict.delete:
                try:
                    api.request("DELETE", PODS.path(ref.namespace, pod))
                except APINotFoundError:
                    pass  # gone already
            if verdict.problems is not None:
                return verdict.problems


def _snapshot(view: ClusterView, refs: Sequence[ObjectRef], cancel: threading.Event | None) -> RestoreSnapshot:
    cancelled = cancel is not None and cancel.is_set()
    if not view.synced:
        return RestoreSnapshot(False, cancelled)
    workloads: Mapping[ObjectRef, RestoredWorkload] = {
        ref: RestoredWorkload(view.workload(ref), view.pods_in(ref.namespace), view.replica_sets(ref.namespace))
        for ref in refs
    }
    return RestoreSnapshot(True, cancelled, workloads)
