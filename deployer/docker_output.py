"""What Docker says, read as plain data: build output, push progress, registry refusals, Dockerfiles.

Pure: text and decoded stream chunks in, lines to log, digests, verdicts and errors out; tested with
tables. Follows BuildKit's plain progress and the classic builder's JSON stream to name a failed step and
its last lines, turns the push stream into throttled per-layer log lines and picks up the pushed digest,
classifies a registry's refusal (credentials, worth retrying, final) and says what to fix, and finds the
Dockerfile features only BuildKit builds.

Must not: talk to the engine, run the docker CLI or print (deployer/docker_engine.py and
deployer/docker_cli.py do the talking; the caller's log callback prints).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from deployer.errors import RegistryAuthError, RegistryError
from deployer.images import registry_host

#: How many lines of a failed step's output a BuildError carries.
LAST_LINES = 12

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


VERTEX_DIGEST = re.compile(r"^#\d+ sha256:[0-9a-f]{64}$")


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
            self.error = chunk_error(chunk)
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


def chunk_error(chunk: Mapping[str, Any]) -> str:
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
