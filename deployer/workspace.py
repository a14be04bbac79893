"""The local workspace: environment variables, the GitHub event payload, git, and manifest files.

The only module that reads the work tree, standard input (``-f -``), and runs ``git`` and ``kubectl
kustomize`` (``-k``). It gathers facts and hands them to the pure
modules (commits, manifests) which decide; it decides nothing itself.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from deployer.commits import GitState
from deployer.errors import InputError, ManifestError, OptionError
from deployer.manifest_yaml import ManifestSource

MANIFEST_SUFFIXES = (".yaml", ".yml")
STDIN = "-"  # -f -: read standard input, as kubectl does
# How errors name manifests that are no file: standard input, and what `kubectl kustomize DIR` printed.
STDIN_PATH = "<stdin>"
KUSTOMIZE_PATH_PREFIX = "<kubectl kustomize "
RENDERED_STREAM_NAME = "manifests.yaml"  # their file name under -o DIR
KUSTOMIZE_TIMEOUT_SECONDS = 120


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
    """Files named by the user, and ``*.yaml``/``*.yml`` below named directories, sorted, deduplicated.

    ``-`` (standard input) is not a file: read_manifests reads it.
    """
    if not paths:
        raise OptionError("--manifests", "no manifests given: pass -f FILE, -f DIRECTORY, -f - or -k DIRECTORY")
    found: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        if given == STDIN:
            continue
        path = Path(given)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and _is_manifest_file(p))
            if not candidates:
                raise OptionError("--manifests", f"{given}: no *.yaml or *.yml files in this directory")
        elif path.is_file():
            candidates = [path]
        else:
            _is_manifest_file(path)  # a broken or looping link says so
            raise OptionError("--manifests", f"{given}: no such file or directory")
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(candidate)
    return found


def _is_manifest_file(path: Path) -> bool:
    """Whether a ``*.yaml`` found in a directory is a file to read; a symbolic link that leads nowhere (broken,
    or a loop) is an error, as ``kubectl apply -f DIR`` fails on it, not a file to skip in silence."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as e:
            loop = e.errno == errno.ELOOP
            reason = "a symbolic link loop" if loop else f"a broken symbolic link to {os.readlink(path)}"
            raise OptionError("--manifests", f"{path}: cannot open: {reason}") from e
    return path.is_file()


def read_manifests(paths: Sequence[str], stdin: BinaryIO | None = None) -> list[ManifestSource]:
    """The manifests of ``-f`` paths; ``-`` reads ``stdin`` (default: this process's), once, first."""
    sources = []
    if STDIN in paths:
        data = (stdin or sys.stdin.buffer).read()
        try:
            sources.append(ManifestSource(STDIN_PATH, data.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise ManifestError(f"cannot read: not UTF-8 text ({e.reason} at byte {e.start})", path=STDIN_PATH) from e
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


def is_file_source(path: str) -> bool:
    """Whether a manifest's path names a file (not standard input or a kustomization's output)."""
    return path != STDIN_PATH and not path.startswith(KUSTOMIZE_PATH_PREFIX)


def render_kustomization(directory: str) -> ManifestSource:
    """The manifests ``kubectl kustomize DIRECTORY`` builds, with the kustomize built into kubectl.

    Its error output is the kustomization's problem, told on one line; it is not deployer's text, so
    control characters are dropped and it is cut short.
    """
    if not Path(directory).is_dir():
        raise OptionError("--kustomize", f"{directory}: no such directory")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise OptionError(
            "--kustomize",
            "kubectl is not installed, and deployer renders a kustomization with `kubectl kustomize`: install "
            "kubectl, or pipe `kustomize build DIR | deployer run -f -`",
        )
    try:
        done = subprocess.run(
            [kubectl, "kustomize", directory], capture_output=True, timeout=KUSTOMIZE_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OptionError("--kustomize", f"kubectl kustomize {directory} did not finish: {e}") from e
    path = f"{KUSTOMIZE_PATH_PREFIX}{directory}>"
    if done.returncode != 0:
        said = _one_line(done.stderr.decode("utf-8", errors="replace")) or f"exit code {done.returncode}"
        raise ManifestError(f"kubectl kustomize failed: {said}", path=path)
    try:
        return ManifestSource(path, done.stdout.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError("kubectl kustomize wrote something that is not UTF-8 text", path=path) from e


def _without_klog_header(line: str) -> str:
    match = _KLOG_FAILURE.match(line)
    if match is None:
        return line
    err = match.group("err")
    return err.replace('\\"', '"') if err is not None else line[match.end() :]


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_ONE_LINE_LIMIT = 400


# kubectl logs its failure through klog: 'E1201 12:10:08.549851  1897 run.go:72] "command failed" err="..."'.
_KLOG_FAILURE = re.compile(r'^[EFWI]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] (?:"command failed" err="(?P<err>.*)"$)?')


def _one_line(text: str) -> str:
    """Another program's error output as one short line: lines joined, control characters dropped."""
    lines = [_CONTROL_CHARACTERS.sub(" ", _without_klog_header(line)).strip() for line in text.splitlines()]
    joined = " | ".join(line for line in lines if line).removeprefix("error: ").removeprefix("Error: ")
    return joined if len(joined) <= _ONE_LINE_LIMIT else joined[: _ONE_LINE_LIMIT - 3] + "..."


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
        name = Path(source_path).name if is_file_source(source_path) else RENDERED_STREAM_NAME
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
