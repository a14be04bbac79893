"""``deployer run``: the deploy as a sequence of steps: render, build and push, connect, lock, record, apply,
wait, and on failure roll back.

Decides the order of the steps and carries out what deployer.outcomes decides when a rollout fails; holds no
logic of the modules it wires (preparing, publishing, connecting, the Kubernetes adapter, reporting). Bad
input is found before anything remote happens (see deployer.preparing), and every kind is looked up in the
cluster before the namespace is created. The report is finished by reporting.reported_run however the run
ends; each step returns what it found and only ``deploy``, ``_deploy_in`` and ``_finish_success`` write it into
the report.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from deployer import applysets, canarying, connecting, deploy_report, diagnoses, github_actions, outcomes, pruning
from deployer.applysets import ApplySet
from deployer.cancelling import Cancellation, cancelled_on_signals
from deployer.console import Console
from deployer.errors import (
    ExitCode,
    KubernetesError,
    LockLostError,
    LockTimeoutError,
    PruneFailedError,
    RolloutFailure,
)
from deployer.kinds import WORKLOAD_KINDS, KubeDict, KubeObject
from deployer.outcomes import Ending, FailedRollout, decide_outcome, describe_unexpected
from deployer.planning import dry_run
from deployer.preparing import Rendered, render, render_only, resolve_and_render, write_rendered_outputs
from deployer.publishing import publish_image
from deployer.reporting import ReportedRun, reported_run, start_github_deployment
from deployer.rollbacks import LiveRecord, ObjectRecord, ObjectRef, RollbackStep
from deployer.settings import RolloutSettings, RunSettings, check_api_url, format_duration

if TYPE_CHECKING:
    from deployer.connecting import ApplyResult, Cluster, KubeCredentials, Lock, RollbackResult, WaitResult


class HeldLock(Protocol):
    """The deploy lock as the rollout sees it: ``verify`` raises LockLostError once another run holds it."""

    def verify(self) -> None: ...


def run(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    """``deployer run``; returns the exit code of a run that raised nothing."""
    for secret in (settings.image.registry_password, settings.cluster.digitalocean_token, settings.github.token):
        console.add_secret(secret)
    with cancelled_on_signals(console) as cancellation:
        if settings.render_only:
            return render_only(settings, console, env)
        if settings.dry_run:
            return dry_run(settings, console, env)
        return deploy(settings, console, env, cancellation)


def deploy(settings: RunSettings, console: Console, env: Mapping[str, str], cancellation: Cancellation) -> int:
    """The whole job: render, build and push, connect, lock, record, apply, wait, and roll back on failure.

    Whatever happens, bad input included, the run's report is published at the end (reporting.reported_run),
    and the GitHub Deployment, once started, is finished.
    """
    with reported_run(settings, console, env) as run:
        target, rendered = resolve_and_render(settings, env, run.resolved)
        applyset_name = pruning.prepare(settings.prune, rendered.objects, env)
        connecting.expiry_seconds(settings.cluster, settings.rollout)  # refuses a too short one before the build
        if settings.github.token:
            check_api_url(settings.github.api_url, flag="--github-api-url", secret="the GitHub token")
        credentials = connecting.local_credentials(settings, console, env)
        write_rendered_outputs(settings, rendered, console)
        published = publish_image(settings.image, target, console, env)
        run.report.digest = published.digest
        if settings.image.pin_digest and published.digest:
            pinned = str(target.reference.with_digest(published.digest))
            rendered = render(settings, target, env, image=pinned, sources=rendered.sources)
            run.report.image = pinned
            # Written again now, so that the files hold what is applied: the digest, not the tag.
            write_rendered_outputs(settings, rendered, console)
        run.deployment = start_github_deployment(settings, target, published.reference, published.digest, console, env)
        if credentials is None:
            credentials = connecting.resolve(settings.cluster, settings.rollout, console, env)
        run.report.cluster = credentials.description
        with connecting.connect(credentials, console) as kube:
            cancellation.protect_changes()
            _deploy_in(kube, credentials, settings, rendered, console, env, run, cancellation, applyset_name)
    return ExitCode.OK


def _deploy_in(
    kube: Cluster,
    credentials: KubeCredentials,
    settings: RunSettings,
    rendered: Rendered,
    console: Console,
    env: Mapping[str, str],
    run: ReportedRun,
    cancellation: Cancellation,
    applyset_name: str | None = None,
) -> None:
    """The deploy's steps in the cluster: namespace, lock, record, apply, wait, and what a failure leads to."""
    namespace, source = connecting.chosen_namespace(settings.namespace, kube, credentials)
    run.report.namespace, run.report.namespace_source = namespace, source
    console.info(f"namespace: {namespace} ({deploy_report.NAMESPACE_SOURCES[source]})")
    connecting.check_kinds_known(kube, rendered)
    declared = any(obj.kind == "Namespace" and obj.name == namespace for obj in rendered.objects)
    with console.phase(f"Lock namespace {namespace}"):
        created_namespace = kube.ensure_namespace(namespace, create=settings.rollout.create_namespace or declared)
        if created_namespace:
            console.info(f"created namespace {namespace}")
        lock = _acquire_lock(kube, namespace, settings.rollout, console, env, cancellation)
    try:
        bodies = [obj.body for obj in rendered.objects]
        record = kube.record(bodies)
        if created_namespace and settings.rollout.delete_created_on_failure:
            created = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            record = _with_created_namespace(record, kube.ref_of(created))
        if cancellation.event.is_set():
            if cancellation.signal is None:
                lock.verify()  # the only other reason to stop: the lock was lost
            raise cancellation.error("before the apply")
        tracking, bodies = _track(kube, applyset_name, namespace, bodies, console)
        origins = {kube.ref_of(obj.body): obj.origin for obj in rendered.objects}
        if settings.rollout.strategy == "canary":
            attempt = _canary_then_apply_and_wait(
                kube, bodies, record, settings.rollout, console, cancellation, origins, run
            )
        else:
            attempt = apply_and_wait(kube, bodies, record, settings.rollout, console, cancellation.event, origins)
        run.report.workloads = outcomes.pending_workloads(attempt.workloads, record)
        if attempt.waited is not None:
            run.report.workloads = outcomes.waited_workloads(run.report.workloads, attempt.waited)
        if attempt.succeeded:
            _finish_success(attempt, lock, run, console)
            _prune(kube, tracking, settings, console, run)
            return
        run.report.diagnosis = console.redact(attempt.diagnosis)
        settled = settle_failed_rollout(kube, attempt, settings.rollout, console, lock)
        if settled.restored is not None:
            run.report.rollback = settled.restored.outcomes
            run.report.workloads = outcomes.rolled_back_workloads(run.report.workloads, settled.restored.outcomes)
        raise settled.ending.error from settled.ending.cause
    finally:
        try:
            lock.release()
        except KubernetesError as e:
            # The deploy's result stands; a lease left behind expires on its own.
            console.warn(f"could not release the deploy lock in {namespace} ({e}); it expires on its own")


def _acquire_lock(
    kube: Cluster,
    namespace: str,
    rollout: RolloutSettings,
    console: Console,
    env: Mapping[str, str],
    cancellation: Cancellation,
) -> Lock:
    holder = github_actions.run_url(env) or f"{env.get('USER', 'someone')}@{socket.gethostname()}"
    try:
        return kube.acquire_lock(
            namespace,
            holder,
            rollout.lock_timeout,
            lease_seconds=round(rollout.lock_lease),
            cancel=cancellation.event,
            cancelled=cancellation.error,
            on_progress=console.info,
            on_lost=cancellation.event.set,
        )
    except LockTimeoutError as e:
        # The lock wait's deadline and a signal at the same moment: the signal is what ended the run.
        if cancellation.signal is not None:
            raise cancellation.error("while waiting for the deploy lock") from e
        raise


def _canary_then_apply_and_wait(
    kube: Cluster,
    bodies: Sequence[KubeObject],
    record: LiveRecord,
    rollout: RolloutSettings,
    console: Console,
    cancellation: Cancellation,
    origins: Mapping[ObjectRef, str],
    run: ReportedRun,
) -> Attempt:
    """--strategy canary: the rollout as apply_and_wait does it, once the canaries passed (deployer.canarying);
    a failed canary is a failed attempt that applied no workload."""

    def tell_github(description: str) -> None:
        if run.deployment is not None:
            run.deployment.progress(description=description, log_url=run.report.run_url)

    with canarying.proven(kube, bodies, record, rollout, console, cancellation.event, origins, tell_github) as trial:
        run.report.canary = trial.phase
        if trial.passed:
            return apply_and_wait(kube, bodies, record, rollout, console, cancellation.event, origins)
    workloads = [ref for ref in (kube.ref_of(body) for body in bodies) if ref.kind in WORKLOAD_KINDS]
    return Attempt(
        record,
        workloads,
        failure_reason=trial.failure_reason,
        stopped_apply=trial.stopped_apply,
        unexpected=trial.unexpected,
        diagnoses=trial.diagnoses,
    )


def _finish_success(attempt: Attempt, lock: HeldLock, run: ReportedRun, console: Console) -> None:
    # Success only while the lock is still this run's: one paused past its lease may have seen another run's
    # rollout finish.
    lock.verify()
    run.report.workloads = outcomes.ready_workloads(run.report.workloads)
    elapsed = attempt.waited.elapsed if attempt.waited is not None else 0.0
    console.info(f"rolled out {len(attempt.workloads)} workload(s) in {format_duration(elapsed)}")


def _track(
    kube: Cluster, applyset_name: str | None, namespace: str, bodies: list[KubeDict], console: Console
) -> tuple[pruning.Tracking | None, list[KubeDict]]:
    """With --prune (``applyset_name``): the set tracked before the apply, and the bodies labelled its members."""
    if not applyset_name:
        return None, bodies
    tracking = pruning.track(kube, ApplySet(applyset_name, namespace), [kube.ref_of(b) for b in bodies], console)
    return tracking, [applysets.as_member(body, tracking.applyset) for body in bodies]


def _prune(
    kube: Cluster, tracking: pruning.Tracking | None, settings: RunSettings, console: Console, run: ReportedRun
) -> None:
    """With --prune, after a verified rollout: what the manifests no longer hold goes (see deployer.pruning)."""
    if tracking is None:
        return
    pruned = pruning.prune(kube, tracking, settings.prune.allow, console)
    run.report.prune = pruned.results
    if pruned.left:
        raise PruneFailedError(pruned.left)


def _with_created_namespace(record: LiveRecord, namespace: ObjectRef) -> LiveRecord:
    """The record as if the namespace this run created had been missing before the apply, which it was: with
    --delete-created-on-failure the rollback then deletes it, after everything else."""
    others = [entry for entry in record.objects if entry.ref != namespace]
    return LiveRecord([ObjectRecord(namespace, existed=False), *others])


# --- apply, wait, roll back ---------------------------------------------------------------------------------


@dataclass
class Attempt:
    """What the apply and the wait did. ``applied`` is None when the apply stopped part-way (``stopped_apply``
    says why); ``waited`` None when the apply stopped or the wait raised; ``unexpected`` is an error deployer
    has none of its own for (a bug, an answer it cannot read) that stopped either."""

    record: LiveRecord
    workloads: list[ObjectRef]
    applied: list[ApplyResult] | None = None
    waited: WaitResult | None = None
    failure_reason: str = ""
    stopped_apply: BaseException | None = None
    unexpected: BaseException | None = None
    diagnoses: list[diagnoses.Diagnosis] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.waited is not None and self.waited.ok

    @property
    def diagnosis(self) -> str:
        return diagnoses.render_text(self.diagnoses)


def apply_and_wait(
    kube: Cluster,
    bodies: Sequence[KubeObject],
    record: LiveRecord,
    rollout: RolloutSettings,
    console: Console,
    cancel: threading.Event | None = None,
    origins: Mapping[ObjectRef, str] | None = None,
) -> Attempt:
    """Apply the objects (after ``record`` was taken), wait for their workloads, and diagnose a failed wait.

    Anything that stops the apply or the wait, a bug included, is caught: what was applied goes back all the
    same (settle_failed_rollout), and the error is reported with the rollback's outcome.
    """
    refs = [kube.ref_of(body) for body in bodies]
    attempt = Attempt(record, [ref for ref in refs if ref.kind in WORKLOAD_KINDS])
    with console.phase(f"Apply {len(bodies)} object(s)"):
        try:
            attempt.applied = kube.apply(bodies, force=rollout.force_conflicts, record=record, origins=origins)
            for result in attempt.applied:
                console.info(result.describe())
        except KubernetesError as e:
            # Objects before the refused one are applied: they are put back like a failed rollout.
            attempt.failure_reason, attempt.stopped_apply = f"apply failed: {e}", e
            return attempt
        except BaseException as e:  # noqa: BLE001 - re-raised after the rollback, as the failure's cause
            attempt.failure_reason = f"apply failed on an unexpected error: {describe_unexpected(e)}"
            attempt.stopped_apply = attempt.unexpected = e
            return attempt
    _wait(kube, attempt, rollout, console, cancel)
    if attempt.waited is not None and not attempt.waited.ok:
        attempt.failure_reason = f"rollout {attempt.waited.outcome}: {attempt.waited.reason}"
        attempt.diagnoses = _diagnose(kube, attempt.waited, console)
        console.info(attempt.failure_reason)
        if attempt.diagnosis:
            console.info(attempt.diagnosis)
    return attempt


def _wait(
    kube: Cluster, attempt: Attempt, rollout: RolloutSettings, console: Console, cancel: threading.Event | None
) -> None:
    limit = f"at most {format_duration(rollout.timeout)}" if rollout.timeout else "no time limit (--timeout 0)"
    with console.phase(f"Wait for {len(attempt.workloads)} workload(s), {limit}"):
        try:
            attempt.waited = kube.wait(
                attempt.workloads,
                timeout=rollout.timeout,
                tolerate_failures_for=rollout.tolerate_failures_for,
                on_progress=lambda line: console.progress(line.split(":", 1)[0], line),
                cancel=cancel,
                applied=attempt.applied or (),
            )
        except KubernetesError as e:
            attempt.failure_reason = f"watching the rollout failed: {e}"
        except BaseException as e:  # noqa: BLE001 - re-raised after the rollback, as the failure's cause
            attempt.unexpected = e
            attempt.failure_reason = f"watching the rollout failed on an unexpected error: {describe_unexpected(e)}"


def _diagnose(kube: Cluster, waited: WaitResult, console: Console) -> list[diagnoses.Diagnosis]:
    """The diagnosis of a failed wait; one that fails is warned about, never in the way of the rollback."""
    try:
        return kube.diagnose(waited)
    except Exception as e:  # noqa: BLE001 - the rollback matters more than the explanation
        console.warn(f"could not diagnose the failure: {describe_unexpected(e)}")
        return []


@dataclass
class Settled:
    """How a failed rollout ended (``ending``, see outcomes.decide_outcome), the rollback's steps as planned
    (none when it was not planned) and what it did (None when it did not run to its end)."""

    ending: Ending
    steps: list[RollbackStep] = field(default_factory=list)
    restored: RollbackResult | None = None


def settle_failed_rollout(
    kube: Cluster, attempt: Attempt, rollout: RolloutSettings, console: Console, lock: HeldLock
) -> Settled:
    """Roll back what a failed attempt changed, unless outcomes.decide_outcome ends the run first (the lock
    lost, nothing changed, --no-rollback); returns how the run ends, for the caller to raise."""
    facts = FailedRollout(
        RolloutFailure(reason=attempt.failure_reason, diagnosis=attempt.diagnosis),
        rollback_enabled=rollout.rollback,
        lock_lost=_lock_lost(lock),
        stopped_apply=attempt.stopped_apply,
        unexpected=attempt.unexpected,
    )
    steps: list[RollbackStep] | None = None
    if facts.lock_lost is None and attempt.stopped_apply is not None:
        steps = kube.plan_rollback(attempt.record, delete_created_on_failure=rollout.delete_created_on_failure)
        facts = replace(facts, undoes_a_change=any(step.undoes_a_change for step in steps))
        if facts.undoes_a_change:
            # Said here rather than as the apply failed: a refusal that ends the run is printed once, by the
            # error line.
            console.info(attempt.failure_reason)
    decision = decide_outcome(facts)
    if isinstance(decision, Ending):
        return Settled(decision, steps or [])
    with console.phase("Roll back"):
        try:
            if steps is None:
                steps = kube.plan_rollback(attempt.record, delete_created_on_failure=rollout.delete_created_on_failure)
            # The rollback gets no cancel event: a second SIGTERM must not leave things half restored.
            restored = kube.rollback(steps, timeout=rollout.rollback_timeout, on_progress=console.info)
        except Exception as e:  # noqa: BLE001 - any failure of the rollback is exit 4, with the rollout's reason
            return Settled(_ending(replace(facts, rollback_error=e)), steps or [])
    facts = replace(facts, rollback_outcomes=restored.outcomes, rollback_problems=restored.problems)
    return Settled(_ending(facts), steps, restored)


def _ending(facts: FailedRollout) -> Ending:
    decision = decide_outcome(facts)
    if not isinstance(decision, Ending):
        raise AssertionError(f"a rollback that ran must end the run: {facts}")
    return decision


def _lock_lost(lock: HeldLock) -> LockLostError | None:
    try:
        lock.verify()
    except LockLostError as e:
        return e
    return None
