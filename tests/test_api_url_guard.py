"""No token goes over plain http to another host: the GitHub and DigitalOcean API URLs are checked alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.errors import OptionError
from deployer.settings import check_api_url
from tests.deploy_scenarios import clean_environment, deployment, write_manifests

GITHUB_TOKEN = "ghp_guard-test-000000000000000000000000000000"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.github.com/", "https://api.github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),  # a local fake or proxy
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_https_anywhere_and_plain_http_on_this_host_are_accepted(url: str, expected: str) -> None:
    assert check_api_url(url, flag="--github-api-url", secret="the GitHub token") == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.github.com", "refusing to send the GitHub token over plain http to api.github.com; use https"),
        ("http://10.0.0.7:8080", "refusing to send the GitHub token over plain http to 10.0.0.7; use https"),
        ("ftp://api.github.com", "'ftp://api.github.com' is not an http(s) URL"),
        ("api.github.com", "'api.github.com' is not an http(s) URL"),
    ],
)
def test_plain_http_to_another_host_is_refused_naming_the_flag(url: str, problem: str) -> None:
    with pytest.raises(OptionError) as refused:
        check_api_url(url, flag="--github-api-url", secret="the GitHub token")

    assert str(refused.value) == f"--github-api-url: {problem}"


def test_deployer_run_refuses_a_plain_http_github_api_url_before_anything_remote(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "k8s", deployment("web"))
    # Nothing listens there: had deployer gone on, it would have failed on the cluster, not the URL.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "kube-token-not-used"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    home = tmp_path / "home"
    home.mkdir()

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployer",
            "run",
            "--no-build",
            "--image",
            "registry.example/acme/web",
            "--tag",
            "v1",
            "-f",
            str(manifests),
            "-n",
            "shop",
            "--kubeconfig",
            str(kubeconfig),
            "--environment",
            "production",
            "--github-api-url",
            "http://github.example.com/api/v3",
        ],
        env=clean_environment(home, {"DEPLOYER_GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_REPOSITORY": "acme/web"}),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )

    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --github-api-url: refusing to send the GitHub token over plain http to github.example.com; use https"
    ], done.stderr
    assert "cluster:" not in done.stderr, "the cluster was never asked"
    assert GITHUB_TOKEN not in done.stderr + done.stdout
