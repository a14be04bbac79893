"""The lock the action installs from: uv.lock matches pyproject.toml, the pip fallback's file is that lock exported,
and the action sets up the uv that wrote it. Every check runs offline, with an empty cache: no index is asked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
EXPORT_FOR_PIP = ["export", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt"]


def uv(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    # No user or system uv.toml, no cached index pages, no network: only the files in cwd decide.
    env = {**os.environ, "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(cache), "UV_OFFLINE": "1"}
    command = [str(UV), *args, "--python", sys.executable]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    return copy


def test_the_committed_lock_matches_pyproject(tmp_path: Path) -> None:
    result = uv("lock", "--check", cwd=project_copy(tmp_path), cache=tmp_path / "cache")

    assert result.returncode == 0, result.stderr


def test_a_floor_changed_without_updating_the_lock_is_caught(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"tenacity>=8.2"' in text
    pyproject.write_text(text.replace('"tenacity>=8.2"', '"tenacity>=9.9"'))

    result = uv("lock", "--check", cwd=project, cache=tmp_path / "cache")

    # Offline, uv's message is that it cannot resolve anew (the clear one is .ci/run's); the unchanged copy
    # passes the same offline check (test_the_committed_lock_matches_pyproject), so the change is what failed.
    assert result.returncode != 0, "uv lock --check accepted a lock that no longer satisfies pyproject.toml"


def test_a_dependency_added_without_updating_the_lock_is_caught(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "tenacity>=8.2",\n', '    "tenacity>=8.2",\n    "six",\n'))

    result = uv("lock", "--check", cwd=project, cache=tmp_path / "cache")

    assert result.returncode != 0, "uv lock --check accepted a lock without a declared dependency"


def test_the_pip_fallback_installs_the_lock_exported(tmp_path: Path) -> None:
    exported = uv(*EXPORT_FOR_PIP, cwd=project_copy(tmp_path), cache=tmp_path / "cache")

    assert exported.returncode == 0, exported.stderr
    committed = (ROOT / "action-requirements.txt").read_text()
    # The header names the command with its -o; the pins and hashes below it must be the same.
    assert committed.split("\n", 2)[2] == exported.stdout.split("\n", 2)[2], (
        "action-requirements.txt is stale: run `uv export --frozen --no-dev --no-emit-project "
        "--format requirements-txt -o action-requirements.txt`"
    )


def test_every_locked_wheel_has_a_hash() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    registry = [package for package in lock["package"] if "registry" in package["source"]]

    assert registry
    unhashed = [
        package["name"]
        for package in registry
        for artifact in [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", artifact.get("hash", ""))
    ]
    assert unhashed == []


def test_the_action_sets_up_the_uv_that_the_dev_extra_pins() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    [pinned] = [requirement.split("==")[1] for requirement in dev if requirement.startswith("uv==")]
    steps = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    [setup_uv] = [step for step in steps if str(step.get("uses", "")).startswith("astral-sh/setup-uv@")]

    assert setup_uv["with"]["version"] == pinned
    assert subprocess.run([UV, "--version"], capture_output=True, text=True).stdout.split()[1] == pinned
