"""The docker CLI, the way to BuildKit: which ``docker`` on this machine builds with BuildKit, and how.

The docker SDK's builder is the classic one, so a BuildKit build runs the CLI (deployer/docker_engine.py
does). This module finds that CLI, answered by the CLIs alone (``--version``, ``buildx version``): no
build, no engine.

Must not: build, push or talk to the engine (deployer/docker_engine.py), or print.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DOCKER_CLI_ENV = "DEPLOYER_DOCKER_CLI"


@dataclass(frozen=True)
class BuildKitCLI:
    """A docker CLI that builds with BuildKit: ``buildx build --load``, or ``DOCKER_BUILDKIT=1 docker build``."""

    path: str
    mode: Literal["buildx", "legacy"]

    def describe(self) -> str:
        how = "docker buildx" if self.mode == "buildx" else "DOCKER_BUILDKIT=1 docker build"
        return f"buildkit ({how}, {self.path})"


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
