"""deployer.docker_cli: which docker CLI is asked about BuildKit, and which versions build with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.docker_cli import builds_with_docker_buildkit_env, docker_cli_candidates


@pytest.mark.parametrize(
    ("version_output", "builds"),
    [
        ("Docker version 20.10.24+dfsg1, build 297e128", True),
        ("Docker version 18.09.1, build 4c52b90", True),
        ("Docker version 18.06.3-ce, build d7080c1", False),
        ("Docker version 23.0.0, build e92dd87", False),
        ("Docker version 28.2.2, build e6534b4", False),
        ("podman version 4.3.1", False),
        ("", False),
    ],
)
def test_only_clis_from_18_09_to_22_build_with_buildkit_on_docker_buildkit_1(version_output: str, builds: bool) -> None:
    assert builds_with_docker_buildkit_env(version_output) == builds


def test_docker_cli_candidates_prefer_the_argument_then_the_environment_then_path(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    for cli in (first / "docker", second / "docker"):
        cli.write_text("#!/bin/sh\nexit 1\n")
        cli.chmod(0o755)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "docker").symlink_to(first / "docker")  # the same CLI twice: probe it once
    path = f"{first}:{tmp_path / 'c'}:{second}:{tmp_path / 'missing'}"
    assert docker_cli_candidates("/opt/docker", {"DEPLOYER_DOCKER_CLI": "/env/docker"}, path) == ["/opt/docker"]
    assert docker_cli_candidates(None, {"DEPLOYER_DOCKER_CLI": "/env/docker"}, path) == ["/env/docker"]
    assert docker_cli_candidates(None, {}, path) == [str(first / "docker"), str(second / "docker")]
