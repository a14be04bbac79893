"""DigitalOcean credentials end to end through the CLI: `deployer run --cluster NAME` and `deployer kubeconfig`.

`deployer` runs as a user runs it (a subprocess with a controlled environment, HOME and TMPDIR in a scratch
directory) against the DigitalOcean fake (--digitalocean-api-url), which resolves the cluster name and issues
kubeconfigs for the real control plane (tests/controlplane/) carrying bearer tokens from its TokenRequest API.
The pods run web_images' images on the Docker engine; the real kubectl judges what is live. A token that stops
working mid-run is a real revocation (the Secret the token is bound to is deleted), since the API server does
not issue tokens shorter than 10 minutes.

No token (the DigitalOcean API token or a minted cluster token) may appear in deployer's output or in any
file it leaves behind: every test scans both.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.controlplane import ControlPlane
from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import Kubectl, wait_until
from tests.fakes.api_fault_proxy import Fault, running_fault_proxy
from tests.fakes.digitalocean_api import FakeCluster, FakeDigitalOceanAPI, openapi_problems

pytestmark = [pytest.mark.docker, pytest.mark.kubectl]

ROOT = Path(__file__).resolve().parents[1]
HELLO_K8S = ROOT / "workflows-examples" / "hello-app" / "k8s"
TOKEN = "dop_v1_credentials-e2e-00112233445566778899aabbccddeeff"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def digitalocean(control_plane: ControlPlane) -> Iterator[FakeDigitalOceanAPI]:
    api = FakeDigitalOceanAPI(
        token=TOKEN,
        server_url=control_plane.server_url,
        ca_pem=control_plane.ca_pem,
        mint_token=control_plane.issue_token,
        clusters=[FakeCluster("web", region="ams3"), FakeCluster("db", region="fra1")],
    )
    with api:
        yield api
    problems = {f"{e.status} {e.path}": openapi_problems(e) for e in api.exchanges}
    assert not any(problems.values()), problems


@pytest.fixture
def judge(kubectl: str, control_plane: ControlPlane, tmp_path: Path) -> Kubectl:
    (tmp_path / "judge").mkdir()
    return Kubectl.under(tmp_path / "judge", kubectl, control_plane.kubeconfig_path)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "tmp").mkdir()
    return tmp_path


def environment(scratch: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A controlled environment: ``scratch`` is HOME and (scratch/tmp) TMPDIR."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "TMPDIR": str(scratch / "tmp"),
        "LANG": "C.UTF-8",
        **(env or {}),
    }


def deployer(*args: str, scratch: Path, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """`deployer ARGS` in ``scratch``, which is also its HOME and (scratch/tmp) its TMPDIR."""
    done = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=scratch,
        env=environment(scratch, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_args(
    digitalocean: FakeDigitalOceanAPI,
    images: WebImages,
    namespace: str,
    tag: str,
    *more: str,
    manifests: Path = HELLO_K8S,
) -> list[str]:
    return [
        "run",
        "-f",
        str(manifests),
        "-n",
        namespace,
        "--no-build",
        "--image",
        images.repository,
        "--tag",
        tag,
        "--cluster",
        "web",
        "--digitalocean-api-url",
        digitalocean.url,
        *more,
    ]


def assert_no_token_leaked(
    digitalocean: FakeDigitalOceanAPI, result: Result, scratch: Path, allowed: tuple[Path, ...] = ()
) -> None:
    """Neither the API token nor any token DigitalOcean minted is in the output or a file under ``scratch``."""
    seen = {"stdout": result.stdout, "stderr": result.stderr}
    for path in scratch.rglob("*"):
        if path.is_file() and path not in allowed:
            seen[str(path)] = path.read_text(errors="replace")
    secrets = [TOKEN, *digitalocean.minted]
    leaks = [(where, secret[:12]) for secret in secrets for where, text in seen.items() if secret in text]
    assert leaks == []


def live_image(judge: Kubectl, namespace: str) -> str:
    return judge.image(namespace, "deployment/hello-app")


def never_ready_manifests(directory: Path) -> Path:
    """hello-app's manifests with a readiness probe on a path the image does not serve: its pods run and never
    become ready, with nothing that tells a failure apart from a slow start, so the wait goes on to its timeout."""
    directory.mkdir()
    (directory / "service.yaml").write_text((HELLO_K8S / "service.yaml").read_text())
    deployment = yaml.safe_load((HELLO_K8S / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/never-ready"
    (directory / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    return directory


def test_cluster_name_gets_a_kubeconfig_and_the_deploy_succeeds(
    digitalocean: FakeDigitalOceanAPI, web_images: WebImages, judge: Kubectl, namespace: str, scratch: Path
) -> None:
    issued_before = len(digitalocean.requests_for("kubeconfig"))

    result = deployer(
        *run_args(digitalocean, web_images, namespace, "v1", "--timeout", "90s"),
        scratch=scratch,
        env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN},
        timeout=180,
    )

    assert result.code == 0, result
    assert "DigitalOcean cluster web" in result.stderr + result.stdout
    assert live_image(judge, namespace) == web_images.tag("v1")
    issued = digitalocean.requests_for("kubeconfig")[issued_before:]
    assert [e.status for e in issued] == [200]
    assert int(issued[0].query["expiry_seconds"]) >= 300
    assert issued[0].request_headers["authorization"] == f"Bearer {TOKEN}"
    assert_no_token_leaked(digitalocean, result, scratch)
    assert list((scratch / "tmp").iterdir()) == []


def test_kubeconfig_command_writes_an_owner_only_file_that_kubectl_uses(
    kubectl: str, digitalocean: FakeDigitalOceanAPI, scratch: Path
) -> None:
    target = scratch / "kube" / "config"
    target.parent.mkdir()

    result = deployer(
        "kubeconfig",
        "--cluster",
        "web",
        "--digitalocean-api-url",
        digitalocean.url,
        "--kubeconfig-expiry",
        "10m",
        "-o",
        str(target),
        scratch=scratch,
        env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN},
    )

    assert result.code == 0, result
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert digitalocean.requests_for("kubeconfig")[-1].query["expiry_seconds"] == "600"
    listed = subprocess.run(
        [kubectl, "--kubeconfig", str(target), "get", "namespaces", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "namespace/default" in listed.stdout
    # The file holds the minted token, as asked; nothing else does.
    assert digitalocean.minted[-1] in target.read_text()
    assert_no_token_leaked(digitalocean, result, scratch, allowed=(target,))


def test_an_expiry_shorter_than_the_run_needs_is_refused_before_anything_is_issued(
    digitalocean: FakeDigitalOceanAPI, web_images: WebImages, judge: Kubectl, namespace: str, scratch: Path
) -> None:
    issued_before = len(digitalocean.requests_for("kubeconfig"))

    # 8 s of wait and 10 s of rollback need 198 s, and never less than 300 s: a 4 s token would die mid-wait.
    result = deployer(
        *run_args(
            digitalocean,
            web_images,
            namespace,
            "v1",
            "--kubeconfig-expiry",
            "4s",
            "--timeout",
            "8s",
            "--rollback-timeout",
            "10s",
        ),
        scratch=scratch,
        env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN},
    )

    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert result.error_lines[0].startswith("error: --kubeconfig-expiry: 4s is shorter than this run needs: 300s")
    assert len(digitalocean.requests_for("kubeconfig")) == issued_before, "no token was minted"
    assert not judge.exists("default", f"namespace/{namespace}"), "nothing reached the cluster"
    assert_no_token_leaked(digitalocean, result, scratch)


def test_credentials_refused_during_the_wait_stop_it_and_fresh_ones_roll_back(
    control_plane: ControlPlane, web_images: WebImages, judge: Kubectl, namespace: str, scratch: Path
) -> None:
    """A token that stops working before its time (revoked, or cut short by the issuer): the wait ends at the
    first 401 instead of running on blind to its timeout, and the rollback gets a new kubeconfig."""
    with (
        running_fault_proxy("127.0.0.1", control_plane.apiserver_port, control_plane.ca_pem) as proxy,
        FakeDigitalOceanAPI(
            token=TOKEN,
            server_url=proxy.url,
            ca_pem=proxy.ca_pem,
            mint_token=control_plane.issue_token,
            clusters=[FakeCluster("web")],
        ) as digitalocean,
    ):
        first = deployer(
            *run_args(digitalocean, web_images, namespace, "v1", "--timeout", "90s"),
            scratch=scratch,
            env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN},
            timeout=180,
        )
        assert first.code == 0, first

        never_ready = never_ready_manifests(scratch / "never-ready")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deployer",
                *run_args(
                    digitalocean,
                    web_images,
                    namespace,
                    "v2",
                    "--timeout",
                    "10m",
                    "--rollback-timeout",
                    "1m",
                    manifests=never_ready,
                ),
            ],
            cwd=scratch,
            env=environment(scratch, {"DIGITALOCEAN_ACCESS_TOKEN": TOKEN}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: live_image(judge, namespace) == web_images.tag("v2"), 60, "the apply")
            control_plane.revoke_token(digitalocean.minted[1])
            wait_until(lambda: control_plane.token_refused(digitalocean.minted[1]), 60, "the revoked token refused")
            # The open watches outlive the token (an API server authenticates a request when it starts): a
            # control-plane hiccup makes them reconnect, and the reconnection is refused.
            proxy.outage(Fault.DROP, 0.5)
            stdout, stderr = process.communicate(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        result = Result(process.returncode, stdout, stderr)

        assert result.code == 3, result
        assert "Traceback" not in result.stderr
        final = result.stderr.splitlines()[-1]
        assert final.startswith(
            "error: watching the rollout failed: the cluster refused the credentials from DigitalOcean cluster web"
        ), final
        assert "timed out" not in final
        assert "rolled back deployment/hello-app" in final
        assert len(digitalocean.requests_for("kubeconfig")) == 3, "the rollback fetched a new kubeconfig"
        assert live_image(judge, namespace) == web_images.tag("v1")
        assert not judge.exists(namespace, "lease/deployer-lock")
        assert_no_token_leaked(digitalocean, result, scratch)
        assert list((scratch / "tmp").iterdir()) == [], "deployer left files in TMPDIR"


@dataclass(frozen=True)
class CredentialsError:
    token: str | None
    cluster: str
    code: int
    fragments: tuple[str, ...]


CREDENTIAL_ERRORS = {
    "unknown cluster lists the visible ones": CredentialsError(TOKEN, "nope", 1, ("nope", "web", "db")),
    "rejected token": CredentialsError(
        "dop_v1_revoked-0000000000000000000000000000000000000",
        "web",
        1,
        ("DigitalOcean rejected the token", "DIGITALOCEAN_ACCESS_TOKEN", "HTTP 401", "request id"),
    ),
    "missing token": CredentialsError(None, "web", 2, ("--cluster", "DIGITALOCEAN_ACCESS_TOKEN")),
}


@pytest.mark.parametrize("command", ["run", "kubeconfig"])
@pytest.mark.parametrize("case", list(CREDENTIAL_ERRORS.values()), ids=list(CREDENTIAL_ERRORS))
def test_credential_errors_are_one_line_with_their_exit_code(
    digitalocean: FakeDigitalOceanAPI,
    web_images: WebImages,
    judge: Kubectl,
    namespace: str,
    scratch: Path,
    case: CredentialsError,
    command: str,
) -> None:
    env = {"DIGITALOCEAN_ACCESS_TOKEN": case.token} if case.token else {}
    if command == "run":
        args = run_args(digitalocean, web_images, namespace, "v1")
        args[args.index("--cluster") + 1] = case.cluster
    else:
        args = ["kubeconfig", "--cluster", case.cluster, "--digitalocean-api-url", digitalocean.url]

    result = deployer(*args, scratch=scratch, env=env)

    assert result.code == case.code, result
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == result.error_lines[0]
    for fragment in case.fragments:
        assert fragment in result.error_lines[0]
    assert result.stdout == ""
    assert not judge.exists("default", f"namespace/{namespace}"), "nothing reached the cluster"
    assert case.token is None or case.token not in result.stderr
    assert_no_token_leaked(digitalocean, result, scratch)
