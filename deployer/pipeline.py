"""The run, phase by phase: resolve the image, render, build and push, connect, apply, wait, roll back.

Wires the pure modules (settings, manifests, plans, rollouts, rollbacks) to the modules that talk to
outside systems (workspace, docker_engine, credentials, cluster, github). It decides the order of
phases and what happens on failure; it holds no logic of those modules' own. Bad input is found
before anything remote happens: flags, names and image references are checked, manifests rendered and
checked (names by Kubernetes' rules), build files and a kubeconfig read before the image is built, and
every kind is looked up in the cluster before the namespace is created.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployer import github_actions, manifests, names, plans, workspace
from deployer.console import Console
from deployer.errors import (
    DeployerError,
    DockerError,
    ExitCode,
    KubernetesError,
    LockLostError,
    LockTimeoutError,
    ManifestError,
    ManifestFieldError,
    OptionError,
    RegistryError,
    RollbackFailedError,
    RolloutFailedError,
    RolloutFailure,
    RunCancelledError,
    UnknownKindError,
)
from deployer.manifest_yaml import ManifestSource
from deployer.manifests import ManifestObject, RenderOptions
from deployer.rollbacks import LiveRecord, ObjectRecord, ObjectRef
from deployer.settings import (
    MAX_DURATION_SECONDS,
    ClusterSettings,
    ImageSettings,
    ImageTarget,
    RolloutSettings,
    RunSettings,
    change_cause,
    check_api_url,
    check_image_settings,
    check_run_settings,
    format_duration,
    resolve_image_target,
)


@dataclass
class Rendered:
    """The run's manifests: the sources as read, the options they were rendered with, the objects."""

    sources: list[ManifestSource]
    options: RenderOptions
    objects: list[ManifestObject]


def resolve_target(image: ImageSettings, env: Mapping[str, str]) -> ImageTarget:
    event = workspace.read_event_payload(env)
    git = workspace.read_git_state(Path.cwd())
    return resolve_image_target(image, env, event, git)


def render(
    settings: RunSettings,
    target: ImageTarget,
    env: Mapping[str, str],
    image: str | None = None,
    sources: list[ManifestSource] | None = None,
) -> Rendered:
    """Render every manifest with ``image`` (default: the target's tag reference) in the main placeholder.

    ``sources`` are manifests already read (rendering again with a digest); else they are read now.
    """
    if sources is None:
        sources = _read_sources(settings)
    options = RenderOptions(
        images={"": image or str(target.reference), **settings.image_refs},
        placeholder=settings.placeholder,
        namespace=settings.namespace,
        change_cause=change_cause(target, env, github_actions.run_url(env)),
    )
    objects = manifests.render_objects(sources, options)
    for obj in objects:
        # The API server would refuse these only once their turn to be applied came, after others were.
        problems = names.object_problems(obj.body)
        if problems:
            field_path, problem = problems[0]
            raise ManifestFieldError(problem, path=obj.path, document=obj.document, field_path=field_path)
    duplicates = plans.duplicate_objects(objects)
    if duplicates:
        first, second = duplicates[0]
        raise ManifestError(
            f"{second.kind} {second.name!r} is also defined in {first.origin}; each object may appear once",
            path=second.path,
            document=second.document,
        )
    return Rendered(sources, options, objects)


def _read_sources(settings: RunSettings) -> list[ManifestSource]:
    if not settings.kustomize:
        return workspace.read_manifests(settings.manifests)
    if settings.manifests:
        # As kubectl apply: a kustomization is the whole input, or the two would disagree on what to apply.
        raise OptionError("--kustomize", "give either -k DIRECTORY or -f PATH, not both")
    return [workspace.render_kustomization(settings.kustomize)]


def rendered_files(rendered: Rendered) -> dict[str, str]:
    """Each source rendered for a person, comments kept."""
    return {source.path: manifests.render_text(source, rendered.options) for source in rendered.sources}


def _write_rendered_outputs(settings: RunSettings, rendered: Rendered, console: Console) -> None:
    if settings.output_dir:
        written = workspace.write_rendered(Path(settings.output_dir), rendered_files(rendered))
        console.info(f"wrote {len(written)} rendered manifest file(s) to {settings.output_dir}")


def _print_render_only(rendered: Rendered) -> None:
    texts = [text.rstrip("\n") for text in rendered_files(rendered).values()]
    sys.stdout.write("\n---\n".join(texts) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class PublishedImage:
    """The image a deploy uses: the reference put into the manifests and, when known, its digest."""

    reference: str
    digest: str | None


def _check_inputs(settings: RunSettings) -> None:
    """The flags' names and references, and the build's files: what would fail only after remote work."""
    check_run_settings(settings)
    _check_build_files(settings.image)


def _check_build_files(image: ImageSettings) -> None:
    """The build context and Dockerfile exist, when there is a build: checked before anything remote."""
    if not image.build:
        return
    context = Path(image.build_context)
    if not context.is_dir():
        raise OptionError("--build-context", f"{image.build_context}: no such directory")
    dockerfile = Path(image.dockerfile) if image.dockerfile else context / "Dockerfile"
    if not dockerfile.is_file():
        raise OptionError("--dockerfile", f"{dockerfile}: no such file")


def _build_request(image: ImageSettings, target: ImageTarget, env: Mapping[str, str]) -> Any:
    from deployer import docker_engine

    context = Path(image.build_context)
    dockerfile = Path(image.dockerfile) if image.dockerfile else None
    server, repository = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
    source_url = f"{server.rstrip('/')}/{repository}" if server and repository else None
    revision = target.commit.sha if target.commit else (target.reference.tag or "")
    return docker_engine.BuildRequest(
        context=context,
        tags=[str(target.reference), *(str(extra) for extra in target.extra_references)],
        dockerfile=dockerfile,
        build_args=dict(image.build_args),
        target=image.target,
        labels=docker_engine.oci_labels(source_url, revision, datetime.now(UTC)),
    )


def _registry_login(image: ImageSettings, target: ImageTarget) -> Any:
    """Explicit credentials, or None to let the engine use the docker config of this machine."""
    from deployer import docker_engine

    if not image.registry_username and not image.registry_password:
        return None
    if not (image.registry_username and image.registry_password):
        missing = "--registry-password" if image.registry_username else "--registry-username"
        raise OptionError(missing, "give both --registry-username and --registry-password, or neither")
    registry = target.reference.registry or "docker.io"
    return docker_engine.RegistryLogin(registry, image.registry_username, image.registry_password)


def publish_image(
    image: ImageSettings, target: ImageTarget, console: Console, env: Mapping[str, str]
) -> PublishedImage:
    """Build and push the target (and its extra tags), or reuse what the registry has; returns the digest."""
    reference = str(target.reference)
    if not image.build and not image.pin_digest:
        return PublishedImage(reference, None)
    from deployer import docker_engine

    login = _registry_login(image, target)
    with docker_engine.DockerEngine.connect(image.docker_cli) as engine:
        if image.reuse_existing or not image.build:
            digest = engine.remote_digest(reference, login)
            if digest:
                console.info(f"{reference} is already in the registry ({digest}): not building it again")
                return PublishedImage(reference, digest)
            if not image.build:
                raise RegistryError(f"--pin-digest with --no-build: {reference} is not in the registry")
        request = _build_request(image, target, env)
        with console.phase(f"Build {reference} with {engine.builder_name()}"):
            engine.build(request, console.detail)
        with console.phase(f"Push {reference}"):
            pushed = engine.push(reference, login, console.detail)
            for extra in target.extra_references:
                engine.push(str(extra), login, console.detail)
    console.info(f"pushed {pushed.reference} ({pushed.digest})")
    return PublishedImage(reference, pushed.digest)


def _build_locally(settings: RunSettings, target: ImageTarget, console: Console, env: Mapping[str, str]) -> str:
    """A dry run's build: local only, never pushed; skipped with a note where no engine answers."""
    if not settings.image.build:
        return "skipped (--no-build)"
    from deployer import docker_engine

    try:
        engine = docker_engine.DockerEngine.connect(settings.image.docker_cli)
    except DockerError as e:
        console.warn(f"not building: {e}")
        return "skipped (no Docker engine)"
    with engine:
        request = _build_request(settings.image, target, env)
        with console.phase(f"Build {target.reference} with {engine.builder_name()} (local only, dry run)"):
            engine.build(request, console.detail)
        return f"built locally with {engine.builder_name()}, not pushed (dry run)"


def _emit_plan(plan: plans.Plan, output_format: str) -> None:
    if output_format == "json":
        sys.stdout.write(json.dumps(plans.plan_as_json(plan), indent=2) + "\n")
    else:
        sys.stdout.write(plans.plan_as_text(plan) + "\n")
    sys.stdout.flush()


def dry_run(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    report = github_actions.DeployReport(
        status="planned",
        image="",
        namespace=settings.namespace or None,
        namespace_source="option" if settings.namespace else None,
        run_url=github_actions.run_url(env),
    )
    try:
        _check_inputs(settings)
        target = resolve_target(settings.image, env)
        report.image, report.tag = str(target.reference), target.reference.tag or ""
        rendered = render(settings, target, env)
        _write_rendered_outputs(settings, rendered, console)
        build_note = _build_locally(settings, target, console, env)
        changes, cluster_note = _server_side_changes(settings, rendered, console, env)
        plan = plans.make_plan(
            str(target.reference),
            build_note,
            rendered.objects,
            changes=changes,
            cluster=cluster_note,
            namespace=settings.namespace,
        )
        _emit_plan(plan, settings.output_format)
        report.cluster, report.plan = cluster_note, plans.plan_as_text(plan)
        report.exit_code = ExitCode.OK
        return ExitCode.OK
    except DeployerError as e:
        report.exit_code = e.exit_code
        report.error = console.redact(str(e))
        raise
    finally:
        report.status = github_actions.status_for_exit_code(report.exit_code, dry_run=True)
        # A dry run that planned has printed its plan as its result; one that failed prints the result document.
        publish_report(report, console, env, result_format=settings.output_format if report.error else "text")


def _server_side_changes(
    settings: RunSettings, rendered: Rendered, console: Console, env: Mapping[str, str]
) -> tuple[dict[tuple[str, str | None, str], str] | None, str]:
    """With cluster credentials, ask the API server what applying would change (dryRun=All); else nothing."""
    if not settings.cluster.given:
        return None, "none (rendering only)"
    from deployer import kube as kubernetes_cluster

    credentials = _credentials(settings.cluster, settings.rollout, console, env)
    bodies = [obj.body for obj in rendered.objects]
    with kubernetes_cluster.Cluster.connect(credentials, warn=console.warn, inform=console.info) as kube:
        namespace = settings.namespace or kube.default_namespace
        _check_kinds_known(kube, rendered)
        record = kube.record(bodies)
        changes: dict[tuple[str, str | None, str], str] = {}
        missing_namespace = (
            kube.get(kube.ref_of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})) is None
        )
        for obj in rendered.objects:
            ref = kube.ref_of(obj.body)
            before = record.find(ref)
            live = before.content if before is not None else None
            if live is None and missing_namespace and ref.namespace == namespace:
                # The server cannot dry-run into a namespace that a real run would create first.
                changes[(obj.kind, obj.namespace, obj.name)] = "create"
                continue
            (result,) = kube.apply([obj.body], force=settings.rollout.force_conflicts, dry_run=True)
            changes[(obj.kind, obj.namespace, obj.name)] = plans.change_of(live, result.live)
    return changes, f"{credentials.description} (server-side dry run)"


def run(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    """``deployer run``; returns the exit code of a run that raised nothing."""
    _register_secrets(settings, console)
    with _cancelled_on_signals(console) as cancellation:
        if settings.render_only:
            check_run_settings(settings)
            target = resolve_target(settings.image, env)
            _print_render_only(render(settings, target, env))
            return 0
        if settings.dry_run:
            return dry_run(settings, console, env)
        return deploy(settings, console, env, cancellation)


def _register_secrets(settings: RunSettings, console: Console) -> None:
    console.add_secret(settings.image.registry_password)
    console.add_secret(settings.cluster.digitalocean_token)
    console.add_secret(settings.github.token)


def deploy(settings: RunSettings, console: Console, env: Mapping[str, str], cancellation: Cancellation) -> int:
    """The whole job: render, build and push, connect, lock, record, apply, wait, and roll back on failure.

    Whatever happens, bad input included, the run's report is published at the end (publish_report), and the
    GitHub Deployment, once started, is finished.
    """
    started = time.monotonic()
    report = github_actions.DeployReport(
        status="failed",
        image="",
        environment=settings.github.environment,
        environment_url=settings.github.environment_url,
        namespace=settings.namespace or None,
        namespace_source="option" if settings.namespace else None,
        run_url=github_actions.run_url(env),
    )
    reporters: list[Any] = []  # the GitHub Deployment, once the image (and its digest) exists
    try:
        _check_inputs(settings)
        target = resolve_target(settings.image, env)
        report.image, report.tag = str(target.reference), target.reference.tag or ""
        rendered = render(settings, target, env)
        _expiry_seconds(settings.cluster, settings.rollout)  # refuses a too short one before the build
        if settings.github.token:
            check_api_url(settings.github.api_url, flag="--github-api-url", secret="the GitHub token")
        credentials = _local_credentials(settings, console, env)
        _write_rendered_outputs(settings, rendered, console)
        report.exit_code = _deploy_phases(
            settings, console, env, target, rendered, credentials, report, reporters, cancellation
        )
        return report.exit_code
    except DeployerError as e:
        report.exit_code = e.exit_code
        report.error = console.redact(str(e))
        raise
    finally:
        report.status = github_actions.status_for_exit_code(report.exit_code)
        report.seconds = time.monotonic() - started
        # The GitHub Deployment first: whatever happens to the files below, it must not stay in progress.
        for reporter in reporters:
            reporter.finish(
                state="success" if report.exit_code == ExitCode.OK else "failure",
                log_url=report.run_url,
                environment_url=settings.github.environment_url,
                description=f"{report.image}: {report.status}",
            )
        publish_report(report, console, env, result_format=settings.output_format)


def publish_report(
    report: github_actions.DeployReport, console: Console, env: Mapping[str, str], result_format: str
) -> None:
    """Hand a finished run's report to its readers: the step outputs and the step summary (in Actions) and,
    with ``result_format`` json, the result document on stdout (github_actions.result_document).

    Reporting comes after the deploy's own result and never changes it: a reader that cannot be written
    to (an unwritable GITHUB_OUTPUT, a closed stdout) is a warning, and the others are still written.
    """
    summary = console.redact(github_actions.summary_markdown(report))
    writers: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("GITHUB_OUTPUT", lambda: github_actions.write_outputs(env, github_actions.report_outputs(report))),
        ("GITHUB_STEP_SUMMARY", lambda: github_actions.append_step_summary(env, summary)),
    )
    for variable, write in writers:
        try:
            write()
        except OSError as e:
            reason = e.strerror or str(e)
            console.warn(f"could not write to {variable} {env.get(variable)}: {reason}; the run's result stands")
    if result_format == "json":
        try:
            sys.stdout.write(github_actions.result_json(report) + "\n")
            sys.stdout.flush()
        except OSError as e:
            console.warn(f"could not print the result to stdout: {e.strerror or e}")


def _start_github_deployment(
    settings: RunSettings, target: ImageTarget, published: PublishedImage, console: Console, env: Mapping[str, str]
) -> Any:
    """A GitHub Deployment for --environment, or None; GitHub failures only warn (deployer.github)."""
    if not settings.github.environment:
        return None
    if not settings.github.token or not env.get("GITHUB_REPOSITORY"):
        console.warn("--environment given without --github-token and GITHUB_REPOSITORY: no GitHub Deployment recorded")
        return None
    from deployer import github

    reporter = github.DeploymentReporter(
        token=settings.github.token,
        repository=env["GITHUB_REPOSITORY"],
        api_url=settings.github.api_url,
        warn=console.warn,
    )
    reporter.start(
        environment=settings.github.environment,
        ref=target.commit.sha if target.commit else (target.reference.tag or ""),
        payload={"image": published.reference, "digest": published.digest},
        description=f"deploying {published.reference}",
        log_url=github_actions.run_url(env),
    )
    return reporter


# What ends a run from outside: a cancelled workflow (SIGTERM), Ctrl-C (SIGINT), a closed terminal (SIGHUP).
CANCELLING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Cancellation:
    """How a run learns that it must stop: a signal, or the deploy lock lost to another run (cluster.Lock).

    Until ``protect_changes``, a signal raises RunCancelledError wherever the run is, as Ctrl-C would: a build's
    child process is killed and its temporary directory removed on the way out, and the exit code is the
    shell's for that signal. From then on (the cluster is about to change) a signal only sets ``event``, which
    the lock wait and the rollout wait watch, so that whatever was applied is rolled back to its end.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: signal.Signals | None = None
        self.interrupting = True

    def protect_changes(self) -> None:
        self.interrupting = False

    def error(self, when: str) -> RunCancelledError:
        name = self.signal.name if self.signal is not None else "a signal"
        number = int(self.signal) if self.signal is not None else int(signal.SIGTERM)
        return RunCancelledError(name, number, f"cancelled by {name} {when}; nothing was applied to the cluster")


@contextmanager
def _cancelled_on_signals(console: Console) -> Iterator[Cancellation]:
    """Handle SIGTERM, SIGINT and SIGHUP for the whole run (see Cancellation); the first signal counts, a
    second one does not interrupt the clean-up or the rollback the first one started."""
    cancellation = Cancellation()
    if threading.current_thread() is not threading.main_thread():
        yield cancellation
        return
    leaving = False

    # The handler runs on the main thread between two bytecodes, possibly while that thread holds the
    # console's lock: it must not write. It only records and sets the event (whose lock the main thread
    # never takes: it only reads is_set), or raises; this thread says what happened.
    def handle(signum: int, frame: Any) -> None:
        if cancellation.signal is not None:
            return
        cancellation.signal = signal.Signals(signum)
        if cancellation.interrupting:
            raise cancellation.error("before anything was applied")
        cancellation.event.set()

    def announce() -> None:
        cancellation.event.wait()
        if not leaving and cancellation.signal is not None:
            console.warn(f"received {cancellation.signal.name}: stopping the wait and rolling back")

    herald = threading.Thread(target=announce, name="deployer-signals", daemon=True)
    herald.start()
    previous = {sig: signal.signal(sig, handle) for sig in CANCELLING_SIGNALS}
    try:
        yield cancellation
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        leaving = not cancellation.event.is_set()
        cancellation.event.set()
        herald.join()


def _deploy_phases(
    settings: RunSettings,
    console: Console,
    env: Mapping[str, str],
    target: ImageTarget,
    rendered: Rendered,
    credentials: Any,
    report: github_actions.DeployReport,
    reporters: list[Any],
    cancellation: Cancellation,
) -> int:
    from deployer import kube as kubernetes_cluster

    published = publish_image(settings.image, target, console, env)
    report.digest = published.digest
    if settings.image.pin_digest and published.digest:
        pinned = str(target.reference.with_digest(published.digest))
        rendered = render(settings, target, env, image=pinned, sources=rendered.sources)
        report.image = pinned
        # Written again now, so that the files hold what is applied: the digest, not the tag.
        _write_rendered_outputs(settings, rendered, console)
    reporter = _start_github_deployment(settings, target, published, console, env)
    if reporter is not None:
        reporters.append(reporter)
    if credentials is None:
        credentials = _credentials(settings.cluster, settings.rollout, console, env)
    report.cluster = credentials.description
    connection = kubernetes_cluster.Cluster.connect(credentials, warn=console.warn, inform=console.info)
    with connection as kube:
        cancellation.protect_changes()
        namespace, source = _chosen_namespace(settings.namespace, kube, credentials)
        report.namespace, report.namespace_source = namespace, source
        console.info(f"namespace: {namespace} ({github_actions.NAMESPACE_SOURCES[source]})")
        _check_kinds_known(kube, rendered)
        bodies = [obj.body for obj in rendered.objects]
        declared = any(obj.kind == "Namespace" and obj.name == namespace for obj in rendered.objects)
        with console.phase(f"Lock namespace {namespace}"):
            created_namespace = kube.ensure_namespace(namespace, create=settings.rollout.create_namespace or declared)
            if created_namespace:
                console.info(f"created namespace {namespace}")
            holder = report.run_url or f"{env.get('USER', 'someone')}@{socket.gethostname()}"
            try:
                lock = kube.acquire_lock(
                    namespace,
                    holder,
                    settings.rollout.lock_timeout,
                    lease_seconds=round(settings.rollout.lock_lease),
                    cancel=cancellation.event,
                    on_progress=console.info,
                    on_lost=cancellation.event.set,
                )
            except LockTimeoutError as e:
                if cancellation.signal is not None:
                    raise cancellation.error("while waiting for the deploy lock") from e
                raise
        try:
            return _apply_and_verify(
                settings, console, kube, rendered, bodies, report, cancellation, lock, created_namespace
            )
        finally:
            try:
                lock.release()
            except KubernetesError as e:
                # The deploy's result stands; a lease left behind expires on its own.
                console.warn(f"could not release the deploy lock in {namespace} ({e}); it expires on its own")


def _chosen_namespace(asked: str | None, kube: Any, credentials: Any) -> tuple[str, str]:
    """The namespace for objects that name none, and where it came from (a key of github_actions.NAMESPACE_SOURCES).

    ``-n ""`` (the action's default) means no namespace was asked for, as kubectl reads it.
    """
    if asked:
        return asked, "option"
    contexts = {c.get("name"): c.get("context") or {} for c in credentials.kubeconfig.get("contexts") or ()}
    if contexts.get(credentials.context, {}).get("namespace"):
        return kube.default_namespace, "kubeconfig-context"
    return kube.default_namespace, "default"


def _check_kinds_known(kube: Any, rendered: Rendered) -> None:
    """Every kind is served by the cluster (discovery), before the namespace or anything else is written."""
    for obj in rendered.objects:
        try:
            kube.resource_for(obj.api_version, obj.kind)
        except UnknownKindError as e:
            raise ManifestFieldError(str(e), path=obj.path, document=obj.document, field_path="kind") from e


def _apply_and_verify(
    settings: RunSettings,
    console: Console,
    kube: Any,
    rendered: Rendered,
    bodies: list[dict[str, Any]],
    report: github_actions.DeployReport,
    cancellation: Cancellation,
    lock: Any,
    created_namespace: bool,
) -> int:
    from deployer import diagnoses

    rollout = settings.rollout
    refs = [kube.ref_of(body) for body in bodies]
    workloads = [ref for ref in refs if ref.kind in plans.WORKLOAD_KINDS]
    record = kube.record(bodies)
    if created_namespace and rollout.delete_created_on_failure:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": lock.namespace}}
        record = _with_created_namespace(record, kube.ref_of(namespace))
    if cancellation.event.is_set():
        if cancellation.signal is None:
            lock.verify()  # the only other reason to stop: the lock was lost
        raise cancellation.error("before the apply")
    previous = {ref: record.find(ref) for ref in workloads}
    report.workloads = [
        github_actions.WorkloadResult(
            ref.kind,
            ref.name,
            ref.namespace,
            result="pending",
            previous_revision=_recorded_revision(previous[ref]),
        )
        for ref in workloads
    ]
    failure_reason: str
    diagnosis_text = ""
    refused: KubernetesError | None = None
    # Anything else that stops the apply or the wait (a bug, an answer deployer cannot read): what was applied
    # goes back all the same, and the error is reported with the rollback's outcome.
    unexpected: BaseException | None = None
    with console.phase(f"Apply {len(bodies)} object(s)"):
        try:
            origins = {kube.ref_of(obj.body): obj.origin for obj in rendered.objects}
            results = kube.apply(bodies, force=rollout.force_conflicts, record=record, origins=origins)
            for result in results:
                console.info(result.describe())
            applied = True
        except KubernetesError as e:
            # Objects before the refused one are applied: they are put back like a failed rollout.
            applied, failure_reason, refused = False, f"apply failed: {e}", e
        except BaseException as e:  # noqa: BLE001 - re-raised after the rollback, as the failure's cause
            applied, failure_reason, unexpected = False, f"apply failed on an unexpected error: {_unexpected(e)}", e
    if applied:
        limit = f"at most {format_duration(rollout.timeout)}" if rollout.timeout else "no time limit (--timeout 0)"
        with console.phase(f"Wait for {len(workloads)} workload(s), {limit}"):
            try:
                waited = kube.wait(
                    workloads,
                    timeout=rollout.timeout,
                    tolerate_failures_for=rollout.tolerate_failures_for,
                    on_progress=lambda line: console.progress(line.split(":", 1)[0], line),
                    cancel=cancellation.event,
                    applied=results,
                )
            except KubernetesError as e:
                waited = None
                failure_reason = f"watching the rollout failed: {e}"
            except BaseException as e:  # noqa: BLE001 - re-raised after the rollback, as the failure's cause
                waited, unexpected = None, e
                failure_reason = f"watching the rollout failed on an unexpected error: {_unexpected(e)}"
        if waited is not None:
            _fill_workload_results(report, waited)
            if waited.ok:
                # Success only while the lock is still this run's: one paused past its lease may have seen
                # another run's rollout finish.
                lock.verify()
                for workload in report.workloads:
                    workload.result = "ready"
                console.info(f"rolled out {len(workloads)} workload(s) in {format_duration(waited.elapsed)}")
                return ExitCode.OK
            failure_reason = f"rollout {waited.outcome}: {waited.reason}"
            found = _diagnose(kube, waited, console)
            diagnosis_text = diagnoses.render_text(found)
            report.diagnosis = console.redact(diagnosis_text)
            console.info(failure_reason)
            if diagnosis_text:
                console.info(diagnosis_text)
    failure = RolloutFailure(reason=failure_reason, diagnosis=diagnosis_text)
    _verify_lock_before_rollback(lock, failure_reason)
    steps = None
    stopped_apply = None if applied else (refused or unexpected)
    if stopped_apply is not None:
        steps = kube.plan_rollback(record, delete_created_on_failure=rollout.delete_created_on_failure)
        if not any(step.undoes_a_change for step in steps):
            # The first change was refused (e.g. a conflict under --no-force-conflicts): nothing was rolled out
            # and nothing needs rolling back, so this is the apply's own failure (exit 1), not exit 3.
            raise stopped_apply
        # Said here rather than as the apply failed: a refusal raised above is printed once, by the error line.
        console.info(failure_reason)
    if not rollout.rollback:
        raise KubernetesError(f"{failure_reason}; --no-rollback: the failed rollout is left in place")
    with console.phase("Roll back"):
        try:
            if steps is None:
                steps = kube.plan_rollback(record, delete_created_on_failure=rollout.delete_created_on_failure)
            # The rollback gets no cancel event: a second SIGTERM must not leave things half restored.
            restored = kube.rollback(steps, timeout=rollout.rollback_timeout, on_progress=console.info)
        except KubernetesError as e:
            # E.g. the credentials expired during the wait: the failed rollout is still live, which is exit 4
            # with the rollout's reason, not a bare API error that hides that nothing was put back.
            raise RollbackFailedError(failure, str(e)) from e
        except Exception as e:
            raise RollbackFailedError(failure, f"unexpected error: {_unexpected(e)}") from e
    failure.outcomes = restored.outcomes
    report.rollback = restored.outcomes
    states = {(o.kind, o.name): o.state for o in restored.outcomes}
    for workload in report.workloads:
        workload.result = states.get((workload.kind, workload.name), workload.result)
    if restored.ok:
        raise RolloutFailedError(failure) from unexpected
    raise RollbackFailedError(failure, "; ".join(restored.problems)) from unexpected


def _unexpected(error: BaseException) -> str:
    """An exception deployer has no error of its own for, in one line: its type and message."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _diagnose(kube: Any, waited: Any, console: Console) -> list[Any]:
    """The diagnosis of a failed wait; one that fails is warned about, never in the way of the rollback."""
    try:
        found: list[Any] = kube.diagnose(waited)
    except Exception as e:  # noqa: BLE001 - the rollback matters more than the explanation
        console.warn(f"could not diagnose the failure: {_unexpected(e)}")
        return []
    return found


def _with_created_namespace(record: LiveRecord, namespace: ObjectRef) -> LiveRecord:
    """The record as if the namespace this run created had been missing before the apply, which it was: with
    --delete-created-on-failure the rollback then deletes it, after everything else."""
    others = [entry for entry in record.objects if entry.ref != namespace]
    return LiveRecord([ObjectRecord(namespace, existed=False), *others])


def _verify_lock_before_rollback(lock: Any, failure_reason: str) -> None:
    """A run that lost the deploy lock stops here: the namespace is the other run's now, and a rollback to what
    this run recorded would undo that run's deploy. Nothing is touched; the other run owns the outcome."""
    try:
        lock.verify()
    except LockLostError as e:
        raise LockLostError(
            f"{e}; not rolling back, which would undo that run's deploy: this run's objects stay as it left "
            f"them ({failure_reason})"
        ) from e


def _recorded_revision(record: Any) -> str | None:
    if record is None or record.revision is None:
        return None
    return str(record.revision.number)


def _fill_workload_results(report: github_actions.DeployReport, waited: Any) -> None:
    """Per-workload result, time and revision now live, from the last state the wait saw."""
    by_key = {(ref.kind, ref.namespace, ref.name): ref for ref in waited.verdicts}
    for workload in report.workloads:
        ref = by_key.get((workload.kind, workload.namespace, workload.name))
        if ref is None:
            continue
        verdict = waited.verdicts[ref]
        workload.result = "ready" if verdict.done else ("failed" if waited.failures.get(ref) else "not ready")
        workload.seconds = waited.elapsed
        live = waited.workloads.get(ref) or {}
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        status = live.get("status") or {}
        revision = annotations.get("deployment.kubernetes.io/revision") or status.get("updateRevision")
        workload.revision = str(revision) if revision else None


def build(image: ImageSettings, output_format: str, console: Console, env: Mapping[str, str]) -> int:
    """``deployer build``: build and push, then print the reference and digest."""
    console.add_secret(image.registry_password)
    if not image.build:
        raise OptionError("--no-build", "deployer build always builds; drop --no-build")
    check_image_settings(image)
    _check_build_files(image)
    target = resolve_target(image, env)
    with _cancelled_on_signals(console):
        published = publish_image(image, target, console, env)
    outputs = {"image": published.reference, "digest": published.digest or "", "tag": target.reference.tag or ""}
    if output_format == "json":
        sys.stdout.write(json.dumps(outputs, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{published.reference}@{published.digest}\n" if published.digest else published.reference + "\n"
        )
    github_actions.write_outputs(env, outputs)
    return ExitCode.OK


def _local_credentials(settings: RunSettings, console: Console, env: Mapping[str, str]) -> Any:
    """Credentials read from a kubeconfig, resolved before the build so that a missing file or context fails
    first; None for DigitalOcean's, fetched after the push (their lifetime counts from then), whose flags are
    only checked now."""
    from deployer import credentials

    cluster = settings.cluster
    if cluster.cluster:
        credentials.check_source(
            cluster=cluster.cluster,
            kubeconfig_path=cluster.kubeconfig,
            kubeconfig_data=cluster.kubeconfig_data,
            digitalocean_token=cluster.digitalocean_token,
            env=env,
        )
        return None
    return _credentials(cluster, settings.rollout, console, env)


def _expiry_seconds(cluster: ClusterSettings, rollout: RolloutSettings | None) -> int:
    """The DigitalOcean token's lifetime: for a run, refused below what it needs (before anything remote);
    for ``deployer kubeconfig`` (``rollout`` None), as given, or what a run with the defaults needs."""
    from deployer import credentials

    if rollout is None:
        defaults = RolloutSettings()
        needed = credentials.needed_expiry_seconds(defaults.timeout, defaults.rollback_timeout)
        return cluster.kubeconfig_expiry or needed
    if not cluster.cluster:
        return 0  # not DigitalOcean: nothing is issued, the expiry means nothing
    # A wait without limit (0) may take as long as the longest timeout allowed.
    return credentials.expiry_for_run(
        cluster.kubeconfig_expiry,
        rollout.timeout or MAX_DURATION_SECONDS,
        rollout.rollback_timeout or MAX_DURATION_SECONDS,
    )


def _credentials(
    cluster: ClusterSettings, rollout: RolloutSettings | None, console: Console, env: Mapping[str, str]
) -> Any:
    from deployer import credentials

    expiry = _expiry_seconds(cluster, rollout)
    resolved = credentials.resolve_credentials(
        cluster=cluster.cluster,
        kubeconfig_path=cluster.kubeconfig,
        kubeconfig_data=cluster.kubeconfig_data,
        context=cluster.kube_context,
        digitalocean_token=cluster.digitalocean_token,
        api_url=cluster.digitalocean_api_url,
        expiry_seconds=expiry,
        env=env,
        warn=console.warn,
        mask=console.add_secret,
    )
    console.info(f"cluster: {resolved.description}")
    return resolved


def save_kubeconfig(cluster: ClusterSettings, output_file: str | None, console: Console, env: Mapping[str, str]) -> int:
    """``deployer kubeconfig``: a short-lived DigitalOcean kubeconfig, to a 0600 file or stdout."""
    from deployer import credentials

    if not cluster.cluster:
        raise OptionError("--cluster", "deployer kubeconfig needs --cluster NAME (a DigitalOcean cluster)")
    console.add_secret(cluster.digitalocean_token)
    if output_file:
        # Before DigitalOcean is asked: a kubeconfig minted for nothing would be a credential wasted.
        workspace.check_output_file(Path(output_file), "--output")
    resolved = _credentials(cluster, None, console, env)
    if output_file:
        try:
            credentials.write_kubeconfig(resolved, Path(output_file))
        except OSError as e:
            raise OptionError("--output", f"cannot write the kubeconfig to {output_file}: {e.strerror or e}") from e
        console.info(f"wrote the kubeconfig to {output_file} (mode 0600)")
    else:
        sys.stdout.write(credentials.kubeconfig_yaml(resolved))
        sys.stdout.flush()
    return ExitCode.OK
