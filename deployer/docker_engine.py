"""The Docker engine and the image registry as deployer sees them: build an image, push it, read a digest.

This module owns every conversation with Docker: the docker SDK (the only module that imports ``docker``)
and the docker CLI, which is the way to BuildKit because the SDK's builder is the classic one. It turns
what the engine and the registry say into plain data (image ids, digests, log lines) and into the errors
of ``deployer.errors``.

It must not decide what to build or where to push (the pipeline does), print anything (output goes to the
``log`` callback it is given), or let a registry password reach a log line, an exception, the argv of a
child process or a file left behind: passwords travel only in the SDK's ``X-Registry-Auth`` header.

The parsing and classification functions at the top are pure and tested with tables; ``DockerEngine`` is
the imperative shell around them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import docker
import docker.errors
import requests.exceptions
import tenacity

from deployer.errors import (
    BuildError,
    BuildKitUnavailableError,
    DockerError,
    ExternalError,
    OptionError,
    RegistryAuthError,
    RegistryError,
)
from deployer.images import registry_host, repository_and_tag
from deployer.redaction import redact, secret_pieces
from deployer.settings import format_duration

Log = Callable[[str], None]
T = TypeVar("T")

#: How many lines of a failed step's output a BuildError carries.
LAST_LINES = 12

DOCKER_CLI_ENV = "DEPLOYER_DOCKER_CLI"

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


@dataclass(frozen=True)
class BuildKitCLI:
    """A docker CLI that builds with BuildKit: ``buildx build --load``, or ``DOCKER_BUILDKIT=1 docker build``."""

    path: str
    mode: Literal["buildx", "legacy"]

    def describe(self) -> str:
        how = "docker buildx" if self.mode == "buildx" else "DOCKER_BUILDKIT=1 docker build"
        return f"buildkit ({how}, {self.path})"


# --- pure: labels, Dockerfiles ----------------------------------------------------------------------


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


_BUILDKIT_ONLY = [
    (re.compile(r"^\s*#\s*syntax\s*=", re.IGNORECASE), "a '# syntax=' frontend directive"),
    (re.compile(r"^\s*RUN\s+(?:--\S+\s+)*--mount[=\s]", re.IGNORECASE), "RUN --mount"),
    (re.compile(r"^\s*RUN\s+(?:--\S+\s+)*--network[=\s]", re.IGNORECASE), "RUN --network"),
    (re.compile(r"^\s*RUN\s+(?:--\S+\s+)*--security[=\s]", re.IGNORECASE), "RUN --security"),
    (
        re.compile(r"^\s*(?:COPY|ADD)\s+(?:--\S+\s+)*--(?:link|chmod|parents|exclude)\b", re.IGNORECASE),
        "COPY/ADD --link/--chmod",
    ),
    (re.compile(r"^\s*(?:RUN|COPY)\s.*<<-?\s*[\"']?[A-Za-z_]\w*[\"']?", re.IGNORECASE), "a heredoc (<<EOF)"),
]


_VERTEX_DIGEST = re.compile(r"^#\d+ sha256:[0-9a-f]{64}$")


def buildkit_only_features(dockerfile_text: str) -> list[str]:
    """Which BuildKit-only constructs a Dockerfile uses, each with its line number; [] when none."""
    found: list[str] = []
    for number, line in enumerate(dockerfile_text.splitlines(), start=1):
        for pattern, name in _BUILDKIT_ONLY:
            if pattern.search(line):
                found.append(f"{name} (line {number})")
    return found


# --- pure: build output -----------------------------------------------------------------------------


@dataclass
class BuildFailure:
    message: str
    step: str | None
    last_lines: list[str]


class BuildKitOutput:
    """Follows BuildKit's ``--progress=plain`` output (``#N name``, ``#N 0.12 output``, ``#N ERROR: ...``)
    to name the step that failed and keep its last lines."""

    _VERTEX = re.compile(r"^#(\d+) (.*)$")
    _TIMED_OUTPUT = re.compile(r"^\d+\.\d+ (.*)$")

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._output: dict[str, list[str]] = {}
        self._failed: tuple[str, str] | None = None  # (vertex, message)
        self._tail: list[str] = []

    def feed(self, line: str) -> None:
        if line.strip():
            self._tail = [*self._tail[-(LAST_LINES * 2) :], line]
        match = self._VERTEX.match(line)
        if match is None:
            return
        vertex, rest = match.groups()
        if vertex not in self._names:
            self._names[vertex] = rest
            self._output[vertex] = []
            return
        output = self._TIMED_OUTPUT.match(rest)
        if output is not None:
            self._output[vertex] = [*self._output[vertex][-LAST_LINES + 1 :], output.group(1)]
        elif rest.startswith("ERROR: ") and self._failed is None:
            self._failed = (vertex, rest[len("ERROR: ") :])

    def failure(self) -> BuildFailure:
        if self._failed is not None:
            vertex, message = self._failed
            return BuildFailure(message, self._names.get(vertex), self._output.get(vertex, []))
        # No step failed (a Dockerfile syntax error, a missing file, the CLI itself): its last words say why.
        plain = [line for line in self._tail if not self._VERTEX.match(line) and line.strip() != "------"]
        message = plain[-1].strip() if plain else "docker build failed without output"
        return BuildFailure(message, None, self._tail[-LAST_LINES:])


class ClassicBuildOutput:
    """Follows the classic builder's JSON stream (``Step 2/3 : RUN ...``, output, ``error``).

    The engine splits lines across chunks and colours stderr with ANSI codes; lines are reassembled and
    the codes dropped before anything is logged."""

    _STEP = re.compile(r"^Step \d+/\d+ : (.*)$")
    _ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
    _BOOKKEEPING = (" ---> ", "Removing intermediate container ")

    def __init__(self) -> None:
        self.step: str | None = None
        self.step_lines: list[str] = []
        self.image_id: str | None = None
        self.error: str | None = None
        self._partial = ""

    def feed(self, chunk: Mapping[str, Any]) -> list[str]:
        """Takes one decoded chunk, returns the complete lines to log."""
        lines: list[str] = []
        if "stream" in chunk:
            text = self._partial + self._ANSI.sub("", str(chunk["stream"]))
            *complete, self._partial = text.split("\n")
            lines += self._take(complete)
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and isinstance(aux.get("ID"), str):
            self.image_id = aux["ID"]
        if "error" in chunk or "errorDetail" in chunk:
            lines += self.flush()
            self.error = _chunk_error(chunk)
            lines.append(f"ERROR: {self.error}")
        return lines

    def flush(self) -> list[str]:
        """The last line when the stream ended without a newline."""
        rest, self._partial = self._partial, ""
        return self._take([rest])

    def _take(self, lines: list[str]) -> list[str]:
        taken = []
        for line in lines:
            line = line.rstrip("\r")
            if not line.strip():
                continue
            taken.append(line)
            step = self._STEP.match(line)
            if step is not None:
                self.step, self.step_lines = step.group(1), []
            elif not line.startswith(self._BOOKKEEPING):
                self.step_lines = [*self.step_lines[-LAST_LINES + 1 :], line]
        return taken


def _chunk_error(chunk: Mapping[str, Any]) -> str:
    detail = chunk.get("errorDetail")
    if isinstance(detail, Mapping) and detail.get("message"):
        return str(detail["message"]).strip()
    return str(chunk.get("error") or "unknown error").strip()


# --- pure: push progress and registry answers -------------------------------------------------------


class PushProgress:
    """Turns the push stream into log lines: one per layer state change, and at most one "Pushing" line
    per layer every ``interval`` seconds (CI logs want no spinner). Also picks up the pushed digest."""

    _DIGEST_STATUS = re.compile(r"digest: (sha256:[0-9a-f]{64})")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.digest: str | None = None
        self.engine_retried = False  # the engine itself retried a layer upload during this push
        self._states: dict[str, str] = {}
        self._logged_at: dict[str, float] = {}

    def feed(self, chunk: Mapping[str, Any], now: float) -> list[str]:
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and isinstance(aux.get("Digest"), str):
            self.digest = aux["Digest"]
            return []
        status = chunk.get("status")
        if not isinstance(status, str):
            return []
        layer = chunk.get("id")
        if not isinstance(layer, str) or not layer:
            found = self._DIGEST_STATUS.search(status)
            if found is not None and self.digest is None:
                self.digest = found.group(1)
            return [status]
        # The engine counts down "Retrying in 5 seconds" every second: one state, not five.
        state = "Retrying" if status.startswith("Retrying in") else status
        if state == "Retrying":
            self.engine_retried = True
        changed = self._states.get(layer) != state
        due = now - self._logged_at.get(layer, float("-inf")) >= self.interval
        if not changed and not due:
            return []
        self._states[layer] = state
        self._logged_at[layer] = now
        return [f"{layer}: {status}{_percent(chunk.get('progressDetail'))}"]


def _percent(detail: object) -> str:
    if not isinstance(detail, Mapping):
        return ""
    current, total = detail.get("current"), detail.get("total")
    if isinstance(current, int) and isinstance(total, int) and total > 0:
        return f" {min(100, current * 100 // total)}% of {_size(total)}"
    return ""


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{size:.1f}GB"  # pragma: no cover - the loop always returns


RegistryVerdict = Literal["auth", "transient", "permanent"]

_AUTH_WORDS = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "denied",
    "permission_denied",
    "forbidden",
    "not allowed to",
    "incorrect username or password",
)
_TRANSIENT_WORDS = (
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "429 too many requests",
    "http 429",
    "toomanyrequests",
    "http status: 5",
    "status code 5",
    "unavailable",
    "connection reset",
    "connection refused",
    "broken pipe",
    "timeout",
    "timed out",
    "unexpected eof",
    ": eof",
    "tls handshake",
    "temporary failure",
    "try again",
)


def classify_registry_message(message: str) -> RegistryVerdict:
    """Whether a registry's refusal is about credentials/permission (never retried), passing (retried),
    or anything else (not retried: the same push would fail the same way)."""
    text = message.lower()
    if any(word in text for word in _AUTH_WORDS):
        return "auth"
    if any(word in text for word in _TRANSIENT_WORDS):
        return "transient"
    return "permanent"


def auth_remedy(registry: str, message: str) -> str:
    """What the user should change when ``registry`` refused with ``message``."""
    text = message.lower()
    if "write_package" in text or "not allowed to write" in text:
        return (
            "the token may not write this package: give the workflow `permissions: packages: write`, "
            "or grant this repository write access in the package's settings (Manage Actions access)"
        )
    if "denied" in text or "forbidden" in text or "permission" in text:
        return f"the account may not push to this repository on {registry}: check the image name and its rights"
    if registry == "ghcr.io":
        return (
            "check --registry-username/--registry-password (in Actions: github.actor and GITHUB_TOKEN) "
            "or the docker config's credentials for ghcr.io"
        )
    return f"check --registry-username/--registry-password or the docker config's credentials for {registry}"


def registry_error(reference: str, message: str, *, action: str = "push") -> RegistryError:
    """The error for a registry refusal, with what to fix when it is about credentials."""
    registry = registry_host(reference)
    verdict = classify_registry_message(message)
    if verdict == "auth":
        return RegistryAuthError(
            f"{registry} refused the {action} of {reference}: {message}; {auth_remedy(registry, message)}"
        )
    return RegistryError(f"{registry} refused the {action} of {reference}: {message}", retryable=verdict == "transient")


# --- the engine -------------------------------------------------------------------------------------


def docker_cli_candidates(explicit: str | None, environ: Mapping[str, str], path: str | None) -> list[str]:
    """The docker CLIs to probe for BuildKit: the one asked for (argument, then $DEPLOYER_DOCKER_CLI),
    else every ``docker`` on PATH, in order, without duplicates."""
    asked = explicit or environ.get(DOCKER_CLI_ENV)
    if asked:
        return [asked]
    seen: set[str] = set()
    found: list[str] = []
    for directory in (path or "").split(os.pathsep):
        candidate = os.path.join(directory or ".", "docker")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            real = os.path.realpath(candidate)
            if real not in seen:
                seen.add(real)
                found.append(candidate)
    return found


_CLI_VERSION = re.compile(r"version (\d+)\.(\d+)")


def builds_with_docker_buildkit_env(version_output: str) -> bool:
    """Whether a docker CLI (``docker --version`` output) builds with BuildKit on ``DOCKER_BUILDKIT=1`` by
    itself: from 18.09, until 23.0 made buildx the only way (a CLI 23+ without buildx refuses)."""
    found = _CLI_VERSION.search(version_output)
    if found is None:
        return False
    version = (int(found.group(1)), int(found.group(2)))
    return (18, 9) <= version < (23, 0)


def is_docker_cli(cli: str, environ: Mapping[str, str]) -> bool:
    """Whether ``cli --version`` runs and names a version, as every docker CLI's does."""
    try:
        done = subprocess.run([cli, "--version"], capture_output=True, timeout=30, env=dict(environ), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and _CLI_VERSION.search(done.stdout.decode(errors="replace")) is not None


def buildx_plugin_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Where the docker CLI looks for its plugins (docker/cli's cli-plugins manager), user's first."""
    config = environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME", "/root"), ".docker")
    system = ["/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec"]
    return [Path(config, "cli-plugins"), *(Path(prefix, "docker", "cli-plugins") for prefix in system)]


def probe_buildkit(candidates: Sequence[str], environ: Mapping[str, str]) -> BuildKitCLI | None:
    """The first of ``candidates`` that builds with BuildKit, answered by the CLIs alone (no build, no engine).

    The probe runs on every deploy, so it spends as little as it can: every candidate's ``--version`` at
    once; a CLI from 18.09 to 22 does BuildKit itself; a later one only through buildx, asked about only when
    a buildx plugin file exists."""
    run_env = dict(environ)
    started: list[tuple[str, subprocess.Popen[bytes] | None]] = []
    for cli in candidates:
        try:
            process = subprocess.Popen(
                [cli, "--version"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=run_env,
            )
        except OSError:
            process = None
        started.append((cli, process))
    versions: dict[str, str] = {}
    for cli, process in started:
        if process is None:
            continue
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            continue
        if process.returncode == 0:
            versions[cli] = out.decode(errors="replace")
    has_buildx_plugin = any((directory / "docker-buildx").exists() for directory in buildx_plugin_dirs(environ))
    for cli in candidates:
        if cli not in versions:
            continue
        if builds_with_docker_buildkit_env(versions[cli]):
            return BuildKitCLI(cli, "legacy")
        if has_buildx_plugin:
            try:
                buildx = subprocess.run([cli, "buildx", "version"], capture_output=True, timeout=30, env=run_env)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if buildx.returncode == 0:
                return BuildKitCLI(cli, "buildx")
    return None


class DockerEngine:
    """A connection to the Docker engine: builds (BuildKit through the CLI when possible, else the SDK's
    classic builder), pushes through the SDK, and reads digests from the registry."""

    def __init__(
        self,
        client: Any,
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
            try:
                assert process.stdout is not None
                for raw in process.stdout:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    output.feed(line)
                    if line.strip() and not _VERTEX_DIGEST.match(line):  # vertex digests mean nothing to users
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
                    message = redact(_chunk_error(chunk), hidden)
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
