"""The image a run deploys: built and pushed (with its extra tags), reused from the registry, promoted by
digest from an earlier run (checked through the registry's API, no engine needed), or, in a dry run, built
locally only. Also ``deployer build``, which stops there and prints the reference and digest.

Decides what to build and with which credentials; the Docker engine (deployer.docker_engine, imported
lazily: it is slow to import) does it. Must not render manifests or touch the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from deployer import github_actions, images
from deployer.cancelling import cancelled_on_signals
from deployer.console import Console
from deployer.errors import DockerError, ExitCode, OptionError, RegistryError
from deployer.preparing import check_build_files, resolve_target
from deployer.settings import ImageSettings, ImageTarget, RunSettings, check_image_settings

if TYPE_CHECKING:
    from deployer.docker_engine import BuildRequest, RegistryLogin


@dataclass(frozen=True)
class PublishedImage:
    """The image a deploy uses: the reference put into the manifests and, when known, its digest."""

    reference: str
    digest: str | None


def publish_image(
    image: ImageSettings, target: ImageTarget, console: Console, env: Mapping[str, str]
) -> PublishedImage:
    """Build and push the target (and its extra tags), or reuse what the registry has; returns the digest."""
    reference = str(target.reference)
    if image.digest:
        return _promoted_image(image, target, console)
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


def _promoted_image(image: ImageSettings, target: ImageTarget, console: Console) -> PublishedImage:
    """--digest: the bytes an earlier run pushed (and a staging deploy verified), deployed only once the
    registry's API confirms the repository holds them. No Docker engine is involved."""
    from deployer import registry_api

    digest = target.reference.digest
    assert digest is not None, "resolve_image_target pins the reference under --digest"
    with console.phase(f"Check {target.reference} in the registry"):
        with registry_api.RegistryAPI(
            target.reference, _registry_credentials(image), on_lost=console.warn, on_regained=console.info
        ) as registry:
            registry.check_manifest(digest)
    console.info(f"{target.reference.repository} holds {digest}: deploying it as it is, nothing built")
    return PublishedImage(str(target.reference), digest)


def build_locally(settings: RunSettings, target: ImageTarget, console: Console, env: Mapping[str, str]) -> str:
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


def _build_request(image: ImageSettings, target: ImageTarget, env: Mapping[str, str]) -> BuildRequest:
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


def _registry_login(image: ImageSettings, target: ImageTarget) -> RegistryLogin | None:
    """Explicit credentials, or None to let the engine use the docker config of this machine."""
    from deployer import docker_engine

    credentials = _registry_credentials(image)
    if credentials is None:
        return None
    registry = target.reference.registry or images.DOCKER_HUB
    return docker_engine.RegistryLogin(registry, *credentials)


def _registry_credentials(image: ImageSettings) -> tuple[str, str] | None:
    """(username, password) from the flags, or None when neither is given; one alone is an error."""
    if not image.registry_username and not image.registry_password:
        return None
    if not (image.registry_username and image.registry_password):
        missing = "--registry-password" if image.registry_username else "--registry-username"
        raise OptionError(missing, "give both --registry-username and --registry-password, or neither")
    return image.registry_username, image.registry_password


def build(image: ImageSettings, output_format: str, console: Console, env: Mapping[str, str]) -> int:
    """``deployer build``: build and push, then print the reference and digest."""
    console.add_secret(image.registry_password)
    if not image.build:
        raise OptionError("--no-build", "deployer build always builds; drop --no-build")
    check_image_settings(image)
    check_build_files(image)
    target = resolve_target(image, env)
    with cancelled_on_signals(console):
        published = publish_image(image, target, console, env)
    outputs = {"image": published.reference, "digest": published.digest or "", "tag": target.reference.tag or ""}
    if output_format == "json":
        console.result(json.dumps(outputs, indent=2) + "\n")
    else:
        console.result(
            f"{published.reference}@{published.digest}\n" if published.digest else published.reference + "\n"
        )
    github_actions.write_outputs(env, outputs)
    return ExitCode.OK
