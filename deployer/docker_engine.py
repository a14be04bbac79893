"""The Docker engine and the image registry as deployer sees them: build an image, push it, read a digest.

This module owns every conversation with the Docker engine: the docker SDK (the only module that imports
``docker``) and the BuildKit build through the docker CLI that deployer/docker_cli.py finds, because the
SDK's builder is the classic one. What the engine and the registry say is read by the pure
deployer/docker_output.py into log lines, digests and the errors of ``deployer.errors``.

It must not decide what to build or where to push (deployer/publishing.py does), print anything (output goes to the
``log`` callback it is given), or let a registry password reach a log line, an exception, the argv of a
child process or a file left behind: passwords travel only in the SDK's ``X-Registry-Auth`` header.

``DockerEngine`` is the imperative shell around the pure parsing, which is tested with tables.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import tenacity

from deployer.docker_cli import DOCKER_CLI_ENV, BuildKitCLI, docker_cli_candidates, is_docker_cli, probe_buildkit
from deployer.docker_output import (
    VERTEX_DIGEST,
    BuildKitOutput,
    ClassicBuildOutput,
    PushProgress,
    buildkit_only_features,
    chunk_error,
    registry_error,
)
from deployer.errors import (
    BuildError,
    BuildKitUnavailableError,
    DockerError,
    ExternalError,
    OptionError,
    RegistryError,
)
from deployer.images import repository_and_tag
from deployer.redaction import redact, secret_pieces
from deployer.settings import format_duration

Log = Callable[[str], None]
T = TypeVar("T")

# --- plain data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildRequest:
    """What to build. ``tags`` are full references (``registry/owner/name:tag``); the first is the main one."""

    context: Path
    tags: Sequence[str]
    dockerfile: Path | None = None  # default: <context>/Dockerfile
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None

    @property
    def dockerfile_path(self) -> Path:
        return self.dockerfile if self.dockerfile is not None else self.context / "Dockerfile"


@dataclass(frozen=True)
class RegistryLogin:
    """Credentials for one registry; the password never shows in ``repr`` (and so in no traceback)."""

    registry: str  # host[:port], e.g. ghcr.io
    username: str
    password: str = field(repr=False)

    def auth_config(self) -> dict[str, str]:
        """The SDK's ``auth_config``: sent to the engine in a header, never on a command line."""
        return {"username": self.username, "password": self.password, "serveraddress": self.registry}


@dataclass(frozen=True)
class PushResult:
    reference: str  # what was pushed, registry/name:tag
    digest: str  # sha256:... of the manifest, as the registry names it
    attempts: int = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How pushes and registry look-ups retry transient failures: exponential backoff with full jitter.

    ``sleep`` is injectable so tests run without waiting.
    """

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    sleep: Callable[[float], None] = time.sleep


# --- pure: labels ----------------------------------------------------------------------------------


def oci_labels(source_url: str | None, revision: str, created: datetime) -> dict[str, str]:
    """The OCI annotations deployer puts on every image; ``created`` must carry a time zone."""
    if created.tzinfo is None:
        raise ValueError("created must be timezone-aware")
    labels = {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if source_url:
        labels["org.opencontainers.image.source"] = source_url
    return labels


# --- the engine -------------------------------------------------------------------------------------


class DockerEngine:
    """A connection to the Docker engine: builds (BuildKit through the CLI when possible, else the SDK's
    classic builder), pushes through the SDK, and reads digests from the registry."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        docker_cli: str | None = None,
        named_cli: tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        progress_interval: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        self._docker_cli = docker_cli
        self._retry = retry or RetryPolicy()
        self._progress_interval = progress_interval
        self._environ = dict(os.environ if environ is None else environ)
        self._buildkit: BuildKitCLI | None = None
        self._probed = False
        self._named_cli = named_cli  # (flag or variable, path) when the user named the CLI to build with
        self._probe_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        docker_cli: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        progress_interval: float = 10.0,
    ) -> DockerEngine:
        """Connects to the engine named by DOCKER_HOST (default: the local socket); DockerError if none answers.

        ``docker_cli`` (else $DEPLOYER_DOCKER_CLI) names the CLI to build with; by default every ``docker``
        on PATH is tried."""
        named_by, named = (
            ("--docker-cli", docker_cli) if docker_cli else (DOCKER_CLI_ENV, os.environ.get(DOCKER_CLI_ENV))
        )
        if named and shutil.which(named) is None:
            # Named on purpose: building with another builder than the one asked for would surprise.
            raise OptionError(named_by, f"{named} is not an executable docker CLI")
        try:
            client = docker.from_env(timeout=300)
        except docker.errors.DockerException as e:
            raise DockerError(f"no Docker engine: {e}") from e
        engine = cls(
            client,
            docker_cli=docker_cli,
            named_cli=(named_by, named) if named else None,
            retry=retry,
            progress_interval=progress_interval,
        )
        # Probing the CLIs costs a few process starts; do it while the engine answers the ping and while the
        # caller does whatever comes before the build.
        threading.Thread(target=engine._probe, name="buildkit-probe", daemon=True).start()
        try:
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise DockerError(f"no Docker engine answers at {host}: {e}") from e
        return engine

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- build ----------------------------------------------------------------------------------

    def buildkit_cli(self) -> BuildKitCLI | None:
        """The CLI that builds with BuildKit here, or None; probed once.

        A CLI the user named that does not even run as a docker CLI (``/bin/false``, a typo'd script) is an
        OptionError naming the flag: silently building with another builder would hide the mistake. A real
        docker CLI without BuildKit only means the classic builder, which ``build`` says."""
        found = self._probe()
        if found is None and self._named_cli is not None:
            flag, named = self._named_cli
            if not is_docker_cli(named, self._environ):
                raise OptionError(flag, f"{named} is not a working docker CLI (`{named} --version` names no version)")
        return found

    def _probe(self) -> BuildKitCLI | None:
        with self._probe_lock:
            return self._probe_once()

    def _probe_once(self) -> BuildKitCLI | None:
        if not self._probed:
            candidates = docker_cli_candidates(self._docker_cli, self._environ, self._environ.get("PATH"))
            self._buildkit = probe_buildkit(candidates, self._environ)
            self._probed = True
        return self._buildkit

    def builder_name(self) -> str:
        """``buildkit (docker buildx, /path)``, ``buildkit (DOCKER_BUILDKIT=1 docker build, /path)`` or
        ``classic (docker SDK)``."""
        buildkit = self.buildkit_cli()
        return buildkit.describe() if buildkit is not None else "classic (docker SDK)"

    def build(self, request: BuildRequest, log: Log) -> str:
        """Builds ``request`` and tags it with every tag; returns the image id (sha256:...).

        Output streams to ``log`` line by line. BuildError names the failed step and its last lines;
        BuildKitUnavailableError when the Dockerfile needs BuildKit and this engine has none."""
        if not request.tags:
            raise ValueError("BuildRequest.tags is empty")
        for tag in request.tags:
            repository_and_tag(tag)
        if not request.context.is_dir():
            raise OptionError("--build-context", f"{request.context} is not a directory")
        dockerfile = request.dockerfile_path
        try:
            dockerfile_text = dockerfile.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise OptionError("--dockerfile", f"cannot read {dockerfile}: {e.strerror}") from e

        buildkit = self.buildkit_cli()
        if buildkit is not None:
            log(f"Building with {buildkit.describe()}")
            return self._build_with_cli(buildkit, request, log)

        needs = buildkit_only_features(dockerfile_text)
        if needs:
            tried = docker_cli_candidates(self._docker_cli, self._environ, self._environ.get("PATH"))
            raise BuildKitUnavailableError(
                f"{dockerfile} needs BuildKit ({', '.join(needs)}) but no docker CLI here builds with it "
                f"(tried: {', '.join(tried) or 'no docker on PATH'}); "
                f"install docker buildx, or point {DOCKER_CLI_ENV} at a docker CLI that has it"
            )
        if self._named_cli is not None:
            flag, named = self._named_cli
            log(
                f"{flag} {named} cannot build with BuildKit (no buildx, and not a CLI from 18.09 to 22 that "
                "takes DOCKER_BUILDKIT=1); building with the engine's classic builder"
            )
        else:
            log(
                "BuildKit is not available here (no docker CLI with buildx or DOCKER_BUILDKIT support); "
                "building with the docker SDK's classic builder"
            )
        return self._build_classic(request, log)

    def _build_with_cli(self, cli: BuildKitCLI, request: BuildRequest, log: Log) -> str:
        with tempfile.TemporaryDirectory(prefix="deployer-build-") as scratch:
            iidfile = Path(scratch) / "image-id"
            argv = [cli.path, *(["buildx", "build", "--load"] if cli.mode == "buildx" else ["build"])]
            argv += ["--progress=plain", "--iidfile", str(iidfile), "--file", str(request.dockerfile_path)]
            for tag in request.tags:
                argv += ["--tag", tag]
            for name, value in request.build_args.items():
                argv += ["--build-arg", f"{name}={value}"]
            for name, value in request.labels.items():
                argv += ["--label", f"{name}={value}"]
            if request.target:
                argv += ["--target", request.target]
            if request.platform:
                argv += ["--platform", request.platform]
            argv.append(str(request.context))
            env = {**self._environ, "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain"}

            output = BuildKitOutput()
            try:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
                )
            except OSError as e:
                raise DockerError(f"cannot run {cli.path}: {e.strerror}") from e
            assert process.stdout is not None
            with process.stdout:  # the pipe is closed however the build ends
                try:
                    for raw in process.stdout:
                        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                        output.feed(line)
                        if line.strip() and not VERTEX_DIGEST.match(line):  # vertex digests mean nothing to users
                            log(line)
                    code = process.wait()
                finally:
                    if process.poll() is None:  # the caller's log raised, or we were interrupted
                        process.kill()
                        process.wait()
            if code != 0:
                failure = output.failure()
                raise BuildError(
                    f"docker build failed: {failure.message}", step=failure.step, last_lines=failure.last_lines
                )
            try:
                return iidfile.read_text().strip()
            except OSError as e:
                raise DockerError(f"{cli.path} built the image but wrote no image id") from e

    def _build_classic(self, request: BuildRequest, log: Log) -> str:
        repository, tag = repository_and_tag(request.tags[0])
        output = ClassicBuildOutput()
        try:
            stream = self._client.api.build(
                path=str(request.context),
                dockerfile=str(request.dockerfile_path.absolute()),
                tag=f"{repository}:{tag}",
                buildargs=dict(request.build_args),
                labels=dict(request.labels),
                target=request.target,
                platform=request.platform,
                rm=True,
                forcerm=True,
                decode=True,
                timeout=None,  # a quiet RUN step may take longer than any read timeout
            )
            for chunk in stream:
                for line in output.feed(chunk):
                    log(line)
                if output.error is not None:
                    collections.deque(stream, maxlen=0)  # read to the end: the SDK never closes a half-read reply
                    break
            for line in output.flush():
                log(line)
        except docker.errors.APIError as e:
            raise BuildError(
                f"docker build failed: {e.explanation or e}", step=output.step, last_lines=output.step_lines
            ) from e
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise DockerError(f"the Docker engine failed during the build: {e}") from e
        if output.error is not None:
            raise BuildError(f"docker build failed: {output.error}", step=output.step, last_lines=output.step_lines)
        if output.image_id is None:
            raise DockerError("the classic builder finished without an image id")
        try:
            for extra in request.tags[1:]:
                extra_repository, extra_tag = repository_and_tag(extra)
                self._client.api.tag(output.image_id, extra_repository, extra_tag)
        except docker.errors.APIError as e:
            raise DockerError(f"cannot tag {output.image_id}: {e.explanation or e}") from e
        return output.image_id

    # --- push -----------------------------------------------------------------------------------

    def push(self, reference: str, login: RegistryLogin | None, log: Log) -> PushResult:
        """Pushes the local image ``reference`` and returns the manifest digest the registry stored.

        Transient failures are retried per the RetryPolicy; RegistryAuthError (never retried) says what to
        fix; other refusals are RegistryError with the registry's message. With ``login`` None, the engine
        uses the credentials in the docker config on this machine."""
        repository, tag = repository_and_tag(reference)
        hidden = secret_pieces([login.password if login is not None else None])
        attempts = 0

        def once() -> str:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                log(f"Pushing {reference} again (attempt {attempts} of {self._retry.attempts})")
            return self._push_once(reference, repository, tag, login, log)

        digest = self._retrying(once, reference, "push", hidden, log)
        return PushResult(reference, digest, attempts)

    def _push_once(self, reference: str, repository: str, tag: str, login: RegistryLogin | None, log: Log) -> str:
        progress = PushProgress(self._progress_interval)
        hidden = secret_pieces([login.password if login is not None else None])
        try:
            stream: Iterator[Mapping[str, Any]] = self._client.api.push(
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=login.auth_config() if login is not None else None,
            )
            for chunk in stream:
                # The SDK does not raise when the registry refuses: the refusal is a chunk of the stream.
                if "error" in chunk or "errorDetail" in chunk:
                    collections.deque(stream, maxlen=0)  # read to the end: the SDK never closes a half-read reply
                    message = redact(chunk_error(chunk), hidden)
                    if "does not exist locally" in message:
                        raise DockerError(f"cannot push {reference}: no such local image ({message})")
                    error = registry_error(reference, message)
                    if error.retryable and progress.engine_retried:
                        # The engine already retried the layer upload with its own backoff (5 attempts):
                        # retrying the whole push on top would multiply the wait, not the odds.
                        raise RegistryError(f"{error} (the Docker engine already retried the upload)")
                    raise error
                for line in progress.feed(chunk, time.monotonic()):
                    log(redact(line, hidden))
        except docker.errors.NotFound as e:
            raise DockerError(f"cannot push {reference}: no such local image ({e.explanation})") from e
        except docker.errors.APIError as e:
            message = redact(str(e.explanation or e), hidden)
            if e.status_code is not None and e.status_code >= 500:
                raise RegistryError(f"the Docker engine failed to push {reference}: {message}", retryable=True) from e
            raise registry_error(reference, message) from e
        except requests.exceptions.RequestException as e:
            # The engine's connection dropped or a read timed out: the push may well succeed again.
            raise RegistryError(f"the push of {reference} was interrupted: {type(e).__name__}", retryable=True) from e
        if progress.digest is not None:
            return progress.digest
        return self._repo_digest(reference, repository)

    def _repo_digest(self, reference: str, repository: str) -> str:
        """The digest from the image's RepoDigests: the last resort when the stream did not name it."""
        try:
            attrs = self._client.api.inspect_image(reference)
        except docker.errors.APIError as e:
            raise DockerError(f"cannot inspect {reference} after the push: {e.explanation or e}") from e
        for repo_digest in attrs.get("RepoDigests") or []:
            name, _, digest = str(repo_digest).partition("@")
            if name == repository and digest.startswith("sha256:"):
                return digest
        raise RegistryError(f"the push of {reference} reported no digest")

    # --- registry look-up -----------------------------------------------------------------------

    def remote_digest(self, reference: str, login: RegistryLogin | None) -> str | None:
        """The registry's manifest digest for ``reference``, or None when the tag is not there.

        Asks through the engine (its distribution endpoint), so the engine's registry settings and the
        docker config apply exactly as for a push."""
        repository_and_tag(reference)
        hidden = secret_pieces([login.password if login is not None else None])

        def once() -> str | None:
            try:
                data = self._client.images.get_registry_data(
                    reference, auth_config=login.auth_config() if login is not None else None
                )
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as e:
                message = redact(str(e.explanation or e), hidden)
                if "manifest unknown" in message.lower() or "name unknown" in message.lower():
                    return None
                raise registry_error(reference, message, action="look-up") from e
            except requests.exceptions.RequestException as e:
                raise RegistryError(
                    f"the look-up of {reference} was interrupted: {type(e).__name__}", retryable=True
                ) from e
            digest = data.id
            return str(digest) if digest else None

        return self._retrying(once, reference, "look-up", hidden, lambda _: None)

    # --- retries --------------------------------------------------------------------------------

    def _retrying(self, call: Callable[[], T], reference: str, action: str, hidden: Sequence[str], log: Log) -> T:
        policy = self._retry

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            log(redact(f"{action} of {reference} failed ({error}); retrying in {format_duration(wait)}", hidden))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.attempts),
            wait=tenacity.wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ExternalError) and e.retryable),
            sleep=policy.sleep,
            before_sleep=before_sleep,
            reraise=False,
        )
        try:
            return retrying(call)
        except tenacity.RetryError as e:
            last = e.last_attempt.exception()
            raise RegistryError(f"{last} (gave up after {policy.attempts} attempts)", retryable=True) from last
