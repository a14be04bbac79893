"""The local workspace: environment variables, the GitHub event payload, git, and manifest files.

The only module that reads the work tree and runs ``git``. It gathers facts and hands them to the pure
modules (revisions, manifests) which decide; it decides nothing itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import InputError, ManifestError, OptionError
from deployer.revisions import GitState

MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ManifestSource:
    """One manifest file as read: its path as the user would name it, and its text."""

    path: str
    text: str


def read_event_payload(env: Mapping[str, str]) -> dict[str, Any] | None:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"GITHUB_EVENT_PATH {path}: cannot read the event payload: {e}") from e
    return payload if isinstance(payload, dict) else None


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read_git_state(cwd: Path) -> GitState:
    head = _git(["rev-parse", "HEAD"], cwd)
    if head is None:
        return GitState()
    # Untracked files count too: they can change what `docker build` copies into the image.
    status = _git(["status", "--porcelain"], cwd)
    origin = _git(["remote", "get-url", "origin"], cwd)
    return GitState(head=head, dirty=bool(status), origin_url=origin)


def find_manifest_files(paths: Sequence[str]) -> list[Path]:
    """Files named by the user, and ``*.yaml``/``*.yml`` below named directories, sorted, deduplicated."""
    if not paths:
        raise OptionError("--manifests", "no manifests given: pass -f FILE or -f DIRECTORY")
    found: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
            if not candidates:
                raise OptionError("--manifests", f"{given}: no *.yaml or *.yml files in this directory")
        elif path.is_file():
            candidates = [path]
        else:
            raise OptionError("--manifests", f"{given}: no such file or directory")
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(candidate)
    return found


def read_manifests(paths: Sequence[str]) -> list[ManifestSource]:
    sources = []
    for path in find_manifest_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ManifestError(f"cannot read: {e}", path=str(path)) from e
        sources.append(ManifestSource(str(path), text))
    return sources


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before anything remote happens, a file that could not be written: its directory is missing,
    not a directory or not writable, or the path is a directory."""
    directory = path.parent
    if path.is_dir():
        raise OptionError(flag, f"{path} is a directory; name a file")
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise OptionError(flag, f"cannot write {path}: {directory} {problem}")
    if not os.access(directory, os.W_OK):
        raise OptionError(flag, f"cannot write {path}: {directory} is not writable")


def write_rendered(output_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Write rendered manifests under ``output_dir``, keeping each file's name; returns the paths written.

    A directory that cannot be made or written (under a file, in /proc) is an error naming --output.
    """
    try:
        return _write_files(output_dir, files)
    except OSError as e:
        raise OptionError("--output", f"cannot write the rendered manifests to {output_dir}: {e.strerror or e}") from e


def _write_files(output_dir: Path, files: Mapping[str, str]) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    used: set[str] = set()
    for source_path, text in files.items():
        name = Path(source_path).name
        # Two inputs may share a base name (k8s/a/app.yaml, k8s/b/app.yaml): number the later ones.
        stem, suffix, n = Path(name).stem, Path(name).suffix, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name)
        target = output_dir / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
