"""Every duration flag of `deployer run` has an upper bound checked while the flags are read: a typo such as
``99999999999999h`` is one error line and exit 2 before anything is built or applied, never an overflow once
the rollout has begun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MANIFEST = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\ndata:\n  image: <IMAGE>\n"


def deployer_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "k8s").mkdir(exist_ok=True)
    (tmp_path / "k8s" / "app.yaml").write_text(MANIFEST)
    # A real run (not a dry run) whose kubeconfig does not exist: had the flags been accepted, the error would
    # name the kubeconfig instead.
    argv = ["run", "-f", "k8s", "--no-build", "--image", "ghcr.io/acme/web", "--tag", "v1"]
    argv += ["--kubeconfig", str(tmp_path / "no-such-kubeconfig"), *args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOYER_", "GITHUB_", "KUBECONFIG"))}
    return subprocess.run(
        [sys.executable, "-m", "deployer", *argv],
        cwd=tmp_path,
        env={**clean, "HOME": str(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flag", "value", "limit"),
    [
        ("--tolerate-failures-for", "99999999999999h", "24h"),
        ("--timeout", "99999999999999h", "24h"),
        ("--rollback-timeout", "25h", "24h"),
        ("--lock-timeout", "86401", "24h"),
        ("--kubeconfig-expiry", "99999999999999h", "168h"),
        ("--canary-hold", "25h", "24h"),
    ],
)
def test_a_duration_beyond_its_maximum_is_one_error_line_naming_the_flag_and_exit_2(
    tmp_path: Path, flag: str, value: str, limit: str
) -> None:
    done = deployer_run(tmp_path, flag, value)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert f"'{flag}'" in line and f"{value!r} is longer than the maximum of {limit}" in line, line


def test_a_duration_from_its_variable_is_bounded_like_the_flag(tmp_path: Path) -> None:
    done = deployer_run(tmp_path, env={"DEPLOYER_TOLERATE_FAILURES_FOR": "99999999999999h"})

    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert "DEPLOYER_TOLERATE_FAILURES_FOR" in line and "longer than the maximum of 24h" in line, line


@pytest.mark.parametrize("flag", ["--timeout", "--rollback-timeout", "--lock-timeout", "--kubeconfig-expiry"])
def test_zero_and_the_maximum_are_accepted(tmp_path: Path, flag: str) -> None:
    for value in ("0", "24h"):
        done = deployer_run(tmp_path, flag, value)

        # Past the flags: the run stops at the missing kubeconfig, which proves the value was taken.
        assert "no-such-kubeconfig" in done.stderr, done.stderr
        assert "is longer than" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--strategy", "canary", "--canary-check", "ftp://example.com/x"],
            "'ftp://example.com/x' is not an http(s) URL",
        ),
        (["--canary-check", "http://127.0.0.1:8080/healthz"], "it needs --strategy canary"),
        (["--strategy", "canary", "--canary-replicas", "0"], "--canary-replicas"),
        (["--strategy", "blue-green"], "--strategy"),
    ],
    ids=["not http", "without canary", "no replicas", "unknown strategy"],
)
def test_a_bad_canary_option_is_one_error_line_naming_the_flag_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = deployer_run(tmp_path, *args)

    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert message in line, line
