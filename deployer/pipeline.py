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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deployer import actions, manifests, plans, workspace
from deployer.console import Console
from deployer.errors import DockerError, ManifestError
from deployer.manifests import ManifestObject, RenderOptions
from deployer.settings import ImageTarget, RunSettings, change_cause, resolve_image_target
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


def _build_locally(settings: RunSettings, target: ImageTarget, console: Console) -> str:
    """A dry run's build: local only, never pushed; skipped with a note where no engine answers."""
    if not settings.image.build:
        return "skipped (--no-build)"
    from deployer import docker_engine

    try:
        engine = docker_engine.DockerEngine.connect(settings.image.docker_cli)
    except DockerError as e:
        console.warn(f"not building: {e}")
        return "skipped (no Docker engine)"
    request = docker_engine.build_request(settings.image, target)
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
    build_note = _build_locally(settings, target, console)
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


def build(image: Any, output_format: str, console: Console, env: Mapping[str, str]) -> int:
    raise NotImplementedError


def save_kubeconfig(cluster: Any, output_file: str | None, console: Console, env: Mapping[str, str]) -> int:
    raise NotImplementedError


__all__ = ["Rendered", "build", "deploy", "dry_run", "render", "replace", "run", "save_kubeconfig"]
