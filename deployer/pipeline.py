"""The run, phase by phase: resolve the image, render, build and push, connect, apply, wait, roll back.

Wires the pure modules (settings, manifests, plans, rollouts, rollbacks) to the modules that talk to
outside systems (workspace, docker_engine, credentials, cluster, github). It decides the order of
phases and what happens on failure; it holds no logic of those modules' own. Bad input is found
before anything remote happens: manifests are rendered and checked before the image is built.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployer import actions, manifests, plans, workspace
from deployer.console import Console
from deployer.errors import DockerError, ExitCode, ManifestError, OptionError, RegistryError
from deployer.manifests import ManifestObject, RenderOptions
from deployer.settings import (
    ClusterSettings,
    ImageSettings,
    ImageTarget,
    RolloutSettings,
    RunSettings,
    change_cause,
    resolve_image_target,
)
from deployer.workspace import ManifestSource


@dataclass
class Rendered:
    """The run's manifests: the sources as read, the options they were rendered with, the objects."""

    sources: list[ManifestSource]
    options: RenderOptions
    objects: list[ManifestObject]


def resolve_target(settings: RunSettings, env: Mapping[str, str]) -> ImageTarget:
    event = workspace.read_event_payload(env)
    git = workspace.read_git_state(Path.cwd())
    return resolve_image_target(settings.image, env, event, git)


def render(settings: RunSettings, target: ImageTarget, env: Mapping[str, str], image: str | None = None) -> Rendered:
    """Render every manifest with ``image`` (default: the target's tag reference) in the main placeholder."""
    sources = workspace.read_manifests(settings.manifests)
    options = RenderOptions(
        images={"": image or str(target.reference), **settings.image_refs},
        placeholder=settings.placeholder,
        namespace=settings.namespace,
        change_cause=change_cause(target, env, actions.run_url(env)),
    )
    objects = manifests.render_objects(sources, options)
    duplicates = plans.duplicate_objects(objects)
    if duplicates:
        first, second = duplicates[0]
        raise ManifestError(
            f"{second.kind} {second.name!r} is also defined in {first.origin}; each object may appear once",
            path=second.path,
            document=second.document,
        )
    return Rendered(sources, options, objects)


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
    note: str


def _build_request(image: ImageSettings, target: ImageTarget, env: Mapping[str, str]) -> Any:
    from deployer import docker_engine

    context = Path(image.build_context)
    if not context.is_dir():
        raise OptionError("--build-context", f"{image.build_context}: no such directory")
    dockerfile = Path(image.dockerfile) if image.dockerfile else None
    if not (dockerfile or context / "Dockerfile").is_file():
        raise OptionError("--dockerfile", f"{dockerfile or context / 'Dockerfile'}: no such file")
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
        return PublishedImage(reference, None, "not built (--no-build)")
    from deployer import docker_engine

    login = _registry_login(image, target)
    with docker_engine.DockerEngine.connect(image.docker_cli) as engine:
        if image.reuse_existing or not image.build:
            digest = engine.remote_digest(reference, login)
            if digest:
                console.info(f"{reference} is already in the registry ({digest}): not building it again")
                return PublishedImage(reference, digest, "reused from the registry")
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
    return PublishedImage(reference, pushed.digest, "built and pushed")


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
    request = _build_request(settings.image, target, env)
    with console.phase(f"Build {target.reference} (local only, dry run)"):
        engine.build(request, console.detail)
    return f"built locally with {engine.builder_name()}, not pushed (dry run)"


def _emit_plan(plan: plans.Plan, output_format: str) -> None:
    if output_format == "json":
        sys.stdout.write(json.dumps(plans.plan_as_json(plan), indent=2) + "\n")
    else:
        sys.stdout.write(plans.plan_as_text(plan) + "\n")
    sys.stdout.flush()


def dry_run(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    target = resolve_target(settings, env)
    rendered = render(settings, target, env)
    _write_rendered_outputs(settings, rendered, console)
    build_note = _build_locally(settings, target, console, env)
    plan = plans.make_plan(
        str(target.reference),
        build_note,
        rendered.objects,
        namespace=settings.namespace,
    )
    _emit_plan(plan, settings.output_format)
    actions.write_outputs(env, {"image": str(target.reference), "tag": target.reference.tag or "", "status": "planned"})
    return 0


def run(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    """``deployer run``; returns the exit code of a run that raised nothing."""
    _register_secrets(settings, console)
    if settings.render_only:
        target = resolve_target(settings, env)
        _print_render_only(render(settings, target, env))
        return 0
    if settings.dry_run:
        return dry_run(settings, console, env)
    return deploy(settings, console, env)


def _register_secrets(settings: RunSettings, console: Console) -> None:
    console.add_secret(settings.image.registry_password)
    console.add_secret(settings.cluster.digitalocean_token)
    console.add_secret(settings.github.token)


def deploy(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    raise NotImplementedError


def build(image: ImageSettings, output_format: str, console: Console, env: Mapping[str, str]) -> int:
    """``deployer build``: build and push, then print the reference and digest."""
    console.add_secret(image.registry_password)
    if not image.build:
        raise OptionError("--no-build", "deployer build always builds; drop --no-build")
    target = resolve_image_target(image, env, workspace.read_event_payload(env), workspace.read_git_state(Path.cwd()))
    published = publish_image(image, target, console, env)
    outputs = {"image": published.reference, "digest": published.digest or "", "tag": target.reference.tag or ""}
    if output_format == "json":
        sys.stdout.write(json.dumps(outputs, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{published.reference}@{published.digest}\n" if published.digest else published.reference + "\n"
        )
    actions.write_outputs(env, outputs)
    return ExitCode.OK


def _credentials(cluster: ClusterSettings, rollout: RolloutSettings, console: Console, env: Mapping[str, str]) -> Any:
    from deployer import credentials

    expiry = cluster.kubeconfig_expiry or credentials.needed_expiry_seconds(rollout.timeout, rollout.rollback_timeout)
    resolved = credentials.resolve_credentials(
        cluster=cluster.cluster,
        kubeconfig_path=cluster.kubeconfig or env.get("DEPLOYER_KUBECONFIG"),
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
    resolved = _credentials(cluster, RolloutSettings(), console, env)
    if output_file:
        credentials.write_kubeconfig(resolved, Path(output_file))
        console.info(f"wrote the kubeconfig to {output_file} (mode 0600)")
    else:
        sys.stdout.write(credentials.kubeconfig_yaml(resolved))
        sys.stdout.flush()
    return ExitCode.OK
