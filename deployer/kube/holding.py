"""The canary's time in the cluster: finding canaries an earlier run left, holding the canaries while
canaries.hold_step decides, and deleting them.

The hold is a short loop like the rollout wait's (kube/waiting.py): take in what the watches sent
(kube/views.py), hand a snapshot, the check URLs' readings and the clocks' reading to the pure step, return
when it decides. It decides nothing itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from deployer import canaries
from deployer.canaries import CheckReading, HeldCanary, HoldPolicy, HoldSnapshot, HoldState
from deployer.clocks import Clocks
from deployer.errors import APINotFoundError
from deployer.kinds import KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.resources import WORKLOAD_RESOURCES
from deployer.kube.views import ClusterView
from deployer.kube.waiting import WaitResult
from deployer.kube.watching import TICK_SECONDS
from deployer.rollbacks import ObjectRef

DEPLOYMENTS = WORKLOAD_RESOURCES["Deployment"]


def find_leftovers(api: KubeAPI, deployments: Sequence[ObjectRef]) -> list[ObjectRef]:
    """The canaries of these Deployments that exist now: one LIST by the canary label per namespace."""
    found: list[ObjectRef] = []
    for namespace in sorted({ref.namespace or "" for ref in deployments}):
        query = {"labelSelector": f"{canaries.CANARY_LABEL}={canaries.CANARY_LABEL_VALUE}"}
        listed = api.list(DEPLOYMENTS, namespace, query).get("items") or []
        found += canaries.leftovers(listed, [ref for ref in deployments if (ref.namespace or "") == namespace])
    return found


def delete(api: KubeAPI, refs: Sequence[ObjectRef]) -> None:
    """Delete the canaries with their ReplicaSets and pods (Background: never orphaned, see canaries.py);
    one already gone is what was wanted."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    for ref in refs:
        try:
            api.request("DELETE", DEPLOYMENTS.path(ref.namespace, ref.name), body=body)
        except APINotFoundError:
            pass


def hold(
    api: KubeAPI,
    default_namespace: str,
    held: Sequence[ObjectRef],
    policy: HoldPolicy,
    *,
    checks: Callable[[], Sequence[CheckReading]],
    cancel: threading.Event | None,
    clocks: Clocks,
) -> WaitResult:
    """Hold the canaries until canaries.hold_step decides; the result reads like a rollout wait's, so that a
    failed hold is diagnosed as a failed rollout is."""
    view = ClusterView(api, default_namespace, held, with_revision_objects=True)
    state = HoldState()
    with view:
        while True:
            view.pump(TICK_SECONDS)
            snapshot = _snapshot(view, held, checks(), cancelled=cancel is not None and cancel.is_set())
            state, verdict = canaries.hold_step(policy, state, snapshot, clocks.now())
            if verdict.outcome is not None:
                workloads = {ref: obj for ref in held if (obj := view.workload(ref)) is not None}
                return WaitResult(
                    verdict.outcome,
                    verdict.reason,
                    failures=verdict.failures,
                    workloads=workloads,
                    pods={ref: view.revision_pods(ref) for ref in held},
                    elapsed=clocks.monotonic() - policy.started,
                )


def _snapshot(
    view: ClusterView, held: Sequence[ObjectRef], checks: Sequence[CheckReading], *, cancelled: bool
) -> HoldSnapshot:
    if cancelled or not view.synced:
        return HoldSnapshot(view.synced, cancelled)
    seen: list[HeldCanary] = []
    for ref in held:
        live: KubeObject | None = view.workload(ref)
        pods = view.pods_in(ref.namespace) if live is not None else []
        seen.append(HeldCanary(ref, live, pods, view.revision(ref) if live is not None else None))
    return HoldSnapshot(True, False, seen, checks)
