"""The rollout wait: watch every workload as ``kubectl rollout status`` would, until rollout_wait.step decides.

A short loop: take in what the watches sent (kube/views.py), hand a snapshot and the clocks' reading to the
pure step, show its progress lines, return when it decides. The clocks are injected so that nothing here
decides by time itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from deployer import rollout_wait
from deployer.clocks import Clocks
from deployer.kinds import KubeDict, KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.views import ClusterView
from deployer.kube.watching import TICK_SECONDS
from deployer.rollbacks import ObjectRef
from deployer.rollout_wait import (
    RolloutSnapshot,
    RolloutWaitState,
    WaitOutcome,
    WaitPolicy,
    WatchedWorkload,
)
from deployer.rollouts import Failure, RolloutVerdict


@dataclass
class WaitResult:
    """How the wait ended, with the last state seen: enough to diagnose without fetching it again."""

    outcome: WaitOutcome
    reason: str
    verdicts: dict[ObjectRef, RolloutVerdict] = field(default_factory=dict)
    failures: dict[ObjectRef, list[Failure]] = field(default_factory=dict)
    workloads: dict[ObjectRef, KubeDict] = field(default_factory=dict, repr=False)
    pods: dict[ObjectRef, list[KubeDict]] = field(default_factory=dict, repr=False)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is WaitOutcome.DONE

    @property
    def unfinished(self) -> list[ObjectRef]:
        """The workloads that failed or were not done when the wait ended."""
        return [ref for ref, verdict in self.verdicts.items() if not verdict.done or self.failures.get(ref)]


def wait(
    api: KubeAPI,
    default_namespace: str,
    workloads: Sequence[ObjectRef],
    policy: WaitPolicy,
    *,
    on_progress: Callable[[str], None],
    cancel: threading.Event | None,
    applied: Mapping[ObjectRef, KubeObject],
    clocks: Clocks,
) -> WaitResult:
    """Wait for every workload (see Cluster.wait); ``policy.started`` is on ``clocks.monotonic``."""
    deadline = policy.started + policy.timeout if policy.timeout > 0 else None
    view = ClusterView(
        api, default_namespace, workloads, with_revision_objects=True, applied=applied, deadline=deadline
    )
    state = RolloutWaitState()
    with view:
        while True:
            view.pump(TICK_SECONDS)
            snapshot = _snapshot(view, workloads, applied, cancelled=cancel is not None and cancel.is_set())
            state, verdict = rollout_wait.step(policy, state, snapshot, clocks.now())
            for line in verdict.progress:
                on_progress(line)
            if verdict.outcome is not None:
                return WaitResult(
                    verdict.outcome,
                    verdict.reason,
                    dict(state.verdicts),
                    {ref: list(found) for ref, found in state.failures.items() if found},
                    {ref: obj for ref in workloads if (obj := view.workload(ref) or view.departed(ref)) is not None},
                    {ref: view.revision_pods(ref) for ref in workloads},
                    clocks.monotonic() - policy.started,
                )


def _snapshot(
    view: ClusterView, workloads: Sequence[ObjectRef], applied: Mapping[ObjectRef, KubeObject], *, cancelled: bool
) -> RolloutSnapshot:
    if cancelled or not view.synced:
        return RolloutSnapshot(view.synced, cancelled)
    watched = [
        WatchedWorkload(
            ref,
            live := view.workload(ref),
            view.departed(ref) if live is None else None,
            applied.get(ref),
            view.pods_in(ref.namespace) if live is not None else (),
            view.revision(ref) if live is not None else None,
        )
        for ref in workloads
    ]
    return RolloutSnapshot(True, False, watched)
