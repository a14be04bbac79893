"""``--strategy canary``: prove the new pod template on a few pods before any Deployment changes.

Wires the canary phase of ``deployer run`` (deployer.deploying calls ``proven``): delete the canaries an
earlier run left, find the Deployments whose pod template would change (a server-side dry run), apply the
objects that are not workloads (the canary may read a new ConfigMap), create ``<name>-canary`` for each
(canaries.canary_of), judge them as a rollout is judged (Cluster.wait), hold them (Cluster.hold, with the
``--canary-check`` URLs GETted by canary_checks), and delete them once the caller's rollout is over, however
it ends. Decides nothing itself: canaries.py and rollout_wait.py do; the caller turns a failed trial into the
run's outcome (rollback of what was applied, exit 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deployer import canaries, diagnoses
from deployer.canary_checks import CanaryChecks
from deployer.console import Console
from deployer.deploy_report import CanaryPhase
from deployer.errors import ApplyError, KubernetesError
from deployer.kinds import WORKLOAD_KINDS, KubeObject
from deployer.objects import name_of
from deployer.outcomes import describe_unexpected
from deployer.rollbacks import LiveRecord, ObjectRef
from deployer.rollout_wait import WaitOutcome
from deployer.settings import RolloutSettings, format_duration

if TYPE_CHECKING:
    from deployer.connecting import Cluster, WaitResult


@dataclass
class CanaryTrial:
    """How the canary phase went. Not ``passed``: ``failure_reason`` says why, ``diagnoses`` explain the
    canary pods; ``stopped_apply`` is the refusal that stopped an apply (of the other objects or of a
    canary), ``unexpected`` an error deployer has none of its own for. ``phase`` is the report's record."""

    phase: CanaryPhase
    passed: bool = True
    failure_reason: str = ""
    stopped_apply: BaseException | None = None
    unexpected: BaseException | None = None
    diagnoses: list[diagnoses.Diagnosis] = field(default_factory=list)

    def fail(
        self,
        reason: str,
        *,
        result: str = "failed",
        stopped_apply: BaseException | None = None,
        unexpected: BaseException | None = None,
    ) -> None:
        self.passed, self.failure_reason, self.phase.result = False, reason, result
        self.stopped_apply, self.unexpected = stopped_apply, unexpected


@contextmanager
def proven(
    kube: Cluster,
    bodies: Sequence[KubeObject],
    record: LiveRecord,
    rollout: RolloutSettings,
    console: Console,
    cancel: threading.Event,
    origins: Mapping[ObjectRef, str],
    on_phase: Callable[[str], None],
) -> Iterator[CanaryTrial]:
    """The canary phase; the caller rolls out inside the block when the trial passed. The canaries are
    deleted when the block ends, however it ends, and a failure to delete them is only warned about (the
    next deploy finds and deletes them)."""
    trial = CanaryTrial(CanaryPhase("none", rollout.canary_replicas, rollout.canary_hold))
    created: list[ObjectRef] = []
    try:
        with console.phase("Canary"):
            _prove(kube, bodies, record, rollout, console, cancel, origins, on_phase, trial, created)
        yield trial
    finally:
        if created:
            names = ", ".join(str(ref) for ref in created)
            with console.phase(f"Delete {names}"):
                try:
                    kube.delete_canaries(created)
                    console.info(f"deleted {names}")
                except Exception as e:  # noqa: BLE001 - the deploy's own result stands; the next deploy cleans up
                    console.warn(f"could not delete {names} ({describe_unexpected(e)}); the next deploy deletes it")


def _prove(
    kube: Cluster,
    bodies: Sequence[KubeObject],
    record: LiveRecord,
    rollout: RolloutSettings,
    console: Console,
    cancel: threading.Event,
    origins: Mapping[ObjectRef, str],
    on_phase: Callable[[str], None],
    trial: CanaryTrial,
    created: list[ObjectRef],
) -> None:
    deployments = [body for body in bodies if body.get("kind") == "Deployment"]
    try:
        left = kube.find_canaries([kube.ref_of(body) for body in deployments])
        if left:
            console.info(f"deleting {', '.join(str(ref) for ref in left)}, left by an earlier run")
            kube.delete_canaries(left)
        changing = _changing(kube, deployments, record, rollout)
        if not changing:
            trial.phase.detail = "no Deployment changes its pod template: no canary, rolled out as usual"
            console.info(trial.phase.detail)
            return
        wanted = [canaries.canary_of(body, rollout.canary_replicas) for body in changing]
        refs = [kube.ref_of(body) for body in wanted]
        _check_names_free(kube, bodies, changing, refs)
        _apply_others(kube, bodies, record, rollout, console, origins)
    except KubernetesError as e:
        trial.fail(f"apply failed: {e}", stopped_apply=e)
        return
    except Exception as e:  # noqa: BLE001 - put back like a failed rollout, then re-raised as the cause
        trial.fail(f"apply failed on an unexpected error: {describe_unexpected(e)}", stopped_apply=e, unexpected=e)
        return
    if cancel.is_set():
        # A signal during the dry run or the apply above: no canary to create, what was applied goes back.
        trial.fail("canary cancelled before any canary was created", result="cancelled")
        return
    trial.phase.canaries = [(canaries.canary_name(name_of(body)), name_of(body)) for body in changing]
    created.extend(refs)
    _trial_canaries(kube, wanted, refs, rollout, console, cancel, on_phase, trial)


def _check_names_free(
    kube: Cluster, bodies: Sequence[KubeObject], changing: Sequence[KubeObject], refs: Sequence[ObjectRef]
) -> None:
    """Refuse (ApplyError, before anything is applied) a canary name a Deployment of the user's has: applying
    the canary would take that Deployment over, and deleting the canary would delete it."""
    deployed = [kube.ref_of(body) for body in bodies]
    for body, ref in zip(changing, refs, strict=True):
        taken = canaries.name_taken(name_of(body), kube.get(ref), deployed, ref)
        if taken:
            raise ApplyError(f"{taken}; rename it or deploy with --strategy rolling")


def _changing(
    kube: Cluster, deployments: Sequence[KubeObject], record: LiveRecord, rollout: RolloutSettings
) -> list[KubeObject]:
    """The Deployments (as rendered) whose pod template applying would change: asked of the server with a
    dry run, so that both templates are defaulted alike. A new Deployment gets no canary (nothing to protect)."""
    changing = []
    for body in deployments:
        before = record.find(kube.ref_of(body))
        live = before.content if before is not None else None
        if live is None:
            continue
        (planned,) = kube.apply([body], force=rollout.force_conflicts, dry_run=True)
        if canaries.template_changes(live, planned.live):
            changing.append(body)
    return changing


def _apply_others(
    kube: Cluster,
    bodies: Sequence[KubeObject],
    record: LiveRecord,
    rollout: RolloutSettings,
    console: Console,
    origins: Mapping[ObjectRef, str],
) -> None:
    """Apply what is not a workload before the canaries: they may read a ConfigMap or Secret the manifests
    add or change. The rollout applies them again (unchanged then); a failed canary puts them back."""
    others = [body for body in bodies if body.get("kind") not in WORKLOAD_KINDS]
    if others:
        for result in kube.apply(others, force=rollout.force_conflicts, record=record, origins=origins):
            console.info(result.describe())


def _trial_canaries(
    kube: Cluster,
    wanted: Sequence[KubeObject],
    refs: Sequence[ObjectRef],
    rollout: RolloutSettings,
    console: Console,
    cancel: threading.Event,
    on_phase: Callable[[str], None],
    trial: CanaryTrial,
) -> None:
    names = ", ".join(str(ref) for ref in refs)
    phase = trial.phase
    try:
        applied = kube.apply(wanted, force=True)
    except KubernetesError as e:
        trial.fail(f"creating the canary failed: {e}", stopped_apply=e)
        return
    for result in applied:
        console.info(result.describe())
    on_phase(f"canary: {names} ({phase.replicas} pod(s) each) before the rollout")
    try:
        waited = kube.wait(
            refs,
            timeout=rollout.timeout,
            tolerate_failures_for=rollout.tolerate_failures_for,
            on_progress=lambda line: console.progress(line.split(":", 1)[0], line),
            cancel=cancel,
            applied=applied,
        )
        phase.ready_seconds = waited.elapsed
        if not waited.ok:
            _failed(kube, waited, refs, console, trial)
            return
        console.info(
            f"canary ready in {format_duration(waited.elapsed)}; holding it {format_duration(phase.hold_seconds)}"
        )
        for url in rollout.canary_checks:
            console.info(
                f"checking {canaries.shown_url(url)} during the hold: a GET every "
                f"{format_duration(canaries.CHECK_INTERVAL_SECONDS)}, each with a timeout of "
                f"{format_duration(canaries.CHECK_TIMEOUT_SECONDS)}; {canaries.CHECK_ATTEMPTS} failures in a row "
                "fail the canary"
            )
        on_phase(f"canary: holding {names} for {format_duration(phase.hold_seconds)}")
        with CanaryChecks(rollout.canary_checks) as checks:
            held = kube.hold(refs, seconds=phase.hold_seconds, checks=checks.readings, cancel=cancel)
        phase.held_seconds = held.elapsed
        if not held.ok:
            _failed(kube, held, refs, console, trial)
            return
    except KubernetesError as e:
        trial.fail(f"watching the canary failed: {e}")
        return
    except Exception as e:  # noqa: BLE001 - the canaries go and what was applied goes back; then re-raised
        trial.fail(f"the canary stopped on an unexpected error: {describe_unexpected(e)}", unexpected=e)
        return
    phase.result = "passed"
    console.info(f"canary passed: held {format_duration(held.elapsed)}; rolling out")


def _failed(kube: Cluster, result: WaitResult, refs: Sequence[ObjectRef], console: Console, trial: CanaryTrial) -> None:
    cancelled = result.outcome is WaitOutcome.CANCELLED
    trial.fail(f"canary {result.outcome}: {result.reason}", result="cancelled" if cancelled else "failed")
    trial.phase.detail = result.reason
    console.info(trial.failure_reason)
    try:
        trial.diagnoses = kube.diagnose(result, refs=refs)
    except Exception as e:  # noqa: BLE001 - deleting the canaries matters more than the explanation
        console.warn(f"could not diagnose the canary: {describe_unexpected(e)}")
    if trial.diagnoses:
        console.info(diagnoses.render_text(trial.diagnoses))
