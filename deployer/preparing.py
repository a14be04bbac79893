"""What every run does before anything remote: check the inputs, resolve the image, render the manifests.

Wires the pure modules (settings, manifests, names, plans) to the workspace (files, env, git). Bad input
is found here, before a build or a cluster is touched: flags, names and image references are checked,
manifests rendered and checked (names by Kubernetes' rules, each object once), and the build's files looked
for. Also writes the rendered files (--output) and prints them (--render-only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deployer import applysets, github_actions, manifests, names, plans, workspace
from deployer.console import Console
from deployer.errors import ManifestError, ManifestFieldError, OptionError
from deployer.manifest_yaml import ManifestSource
from deployer.manifests import ManifestObject, RenderOptions
from deployer.settings import (
    ImageSettings,
    ImageTarget,
    RunSettings,
    change_cause,
    check_run_settings,
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


def check_inputs(settings: RunSettings) -> None:
    """The flags' names and references, and the build's files: what would fail only after remote work."""
    check_run_settings(settings)
    applysets.check_settings(settings.prune)
    check_build_files(settings.image)


def check_build_files(image: ImageSettings) -> None:
    """The build context and Dockerfile exist, when there is a build: checked before anything remote."""
    if not image.build:
        return
    context = Path(image.build_context)
    if not context.is_dir():
        raise OptionError("--build-context", f"{image.build_context}: no such directory")
    dockerfile = Path(image.dockerfile) if image.dockerfile else context / "Dockerfile"
    if not dockerfile.is_file():
        raise OptionError("--dockerfile", f"{dockerfile}: no such file")


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


def write_rendered_outputs(settings: RunSettings, rendered: Rendered, console: Console) -> None:
    """The rendered files to --output, when given."""
    if settings.output_dir:
        written = workspace.write_rendered(Path(settings.output_dir), rendered_files(rendered))
        console.info(f"wrote {len(written)} rendered manifest file(s) to {settings.output_dir}")


def render_only(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    """``deployer run --render-only``: the rendered manifests on stdout, one stream of YAML documents."""
    check_run_settings(settings)
    target = resolve_target(settings.image, env)
    texts = [text.rstrip("\n") for text in rendered_files(render(settings, target, env)).values()]
    console.result("\n---\n".join(texts) + "\n")
    return 0


def resolve_and_render(
    settings: RunSettings, env: Mapping[str, str], resolved: Callable[[ImageTarget], None]
) -> tuple[ImageTarget, Rendered]:
    """The start that a deploy and a dry run share: the inputs checked, the image resolved (handed to
    ``resolved`` at once, so that a manifest error is still reported with the image), the manifests rendered."""
    check_inputs(settings)
    target = resolve_target(settings.image, env)
    resolved(target)
    return target, render(settings, target, env)
