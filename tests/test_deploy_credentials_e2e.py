"""DigitalOcean credentials end to end through the CLI: `deployer run --cluster NAME` and `deployer kubeconfig`.

`deployer` runs as a user runs it (a subprocess with a controlled environment, HOME and TMPDIR in a scratch
directory) against the DigitalOcean fake (--digitalocean-api-url), which resolves the cluster name and issues
kubeconfigs whose tokens the Kubernetes simulator accepts until they expire on its clock. The simulator runs
at clock_speed=1 with the scripted kubelet, so its clock is the wall clock deployer reads expiry from
(deployer.cluster maps a 401 to "expired" with KubeCredentials.has_expired() on the wall clock).

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

from tests.fakes.digitalocean_api import FakeCluster, FakeDigitalOceanAPI, openapi_problems
from tests.kubesim import KubeSim

ROOT = Path(__file__).resolve().parents[1]
HELLO_K8S = ROOT / "workflows-examples" / "hello-app" / "k8s"
TOKEN = "dop_v1_credentials-e2e-00112233445566778899aabbccddeeff"
IMAGE = "registry.example/acme/hello-app"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def sim() -> Iterator[KubeSim]:
    simulator = KubeSim.start(kubelet="scripted", clock_speed=1.0)
    try:
        yield simulator
    finally:
        errors = list(simulator.loop.errors)
        simulator.stop()
        assert not errors, errors[:3]


@pytest.fixture(scope="module")
def digitalocean(sim: KubeSim) -> Iterator[FakeDigitalOceanAPI]:
    api = FakeDigitalOceanAPI(
        token=TOKEN,
        server_url=sim.server_url,
        ca_pem=sim.ca_pem,
        mint_token=sim.issue_token,
        clusters=[FakeCluster("web", region="ams3"), FakeCluster("db", region="fra1")],
    )
    with api:
        yield api
    problems = {f"{e.status} {e.path}": openapi_problems(e) for e in api.exchanges}
    assert not any(problems.values()), problems


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "tmp").mkdir()
    return tmp_path


def deployer(*args: str, scratch: Path, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """`deployer ARGS` in ``scratch``, which is also its HOME and (scratch/tmp) its TMPDIR."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "TMPDIR": str(scratch / "tmp"),
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=scratch, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_args(digitalocean: FakeDigitalOceanAPI, namespace: str, tag: str, *more: str) -> list[str]:
    return [
        "run", "-f", str(HELLO_K8S), "-n", namespace, "--no-build", "--image", IMAGE, "--tag", tag,
        "--cluster", "web", "--digitalocean-api-url", digitalocean.url, *more,
    ]


def assert_no_token_leaked(digitalocean: FakeDigitalOceanAPI, result: Result, scratch: Path,
                           allowed: tuple[Path, ...] = ()) -> None:
    """Neither the API token nor any token DigitalOcean minted is in the output or a file under ``scratch``."""
    seen = {"stdout": result.stdout, "stderr": result.stderr}
    for path in scratch.rglob("*"):
        if path.is_file() and path not in allowed:
            seen[str(path)] = path.read_text(errors="replace")
    secrets = [TOKEN, *digitalocean.minted]
    leaks = [(where, secret[:12]) for secret in secrets for where, text in seen.items() if secret in text]
    assert leaks == []


def live_image(sim: KubeSim, namespace: str) -> str:
    found = sim.store.find("apps/v1", "Deployment", namespace, "hello-app")
    assert found is not None
    image: str = found["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_cluster_name_gets_a_kubeconfig_and_the_deploy_succeeds(
    sim: KubeSim, digitalocean: FakeDigitalOceanAPI, scratch: Path
) -> None:
    issued_before = len(digitalocean.requests_for("kubeconfig"))

    result = deployer(*run_args(digitalocean, "creds-ok", "v1", "--timeout", "30s"),
                      scratch=scratch, env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN})

    assert result.code == 0, result
    assert "DigitalOcean cluster web" in result.stderr + result.stdout
    assert live_image(sim, "creds-ok") == f"{IMAGE}:v1"
    issued = digitalocean.requests_for("kubeconfig")[issued_before:]
    assert [e.status for e in issued] == [200]
    assert int(issued[0].query["expiry_seconds"]) >= 300
    assert issued[0].request_headers["authorization"] == f"Bearer {TOKEN}"
    assert_no_token_leaked(digitalocean, result, scratch)
    assert list((scratch / "tmp").iterdir()) == []


@pytest.mark.kubectl
def test_kubeconfig_command_writes_an_owner_only_file_that_kubectl_uses(
    kubectl: str, digitalocean: FakeDigitalOceanAPI, scratch: Path
) -> None:
    target = scratch / "kube" / "config"
    target.parent.mkdir()

    result = deployer("kubeconfig", "--cluster", "web", "--digitalocean-api-url", digitalocean.url,
                      "--kubeconfig-expiry", "10m", "-o", str(target),
                      scratch=scratch, env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN})

    assert result.code == 0, result
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert digitalocean.requests_for("kubeconfig")[-1].query["expiry_seconds"] == "600"
    listed = subprocess.run([kubectl, "--kubeconfig", str(target), "get", "namespaces", "-o", "name"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "namespace/default" in listed.stdout
    # The file holds the minted token, as asked; nothing else does.
    assert digitalocean.minted[-1] in target.read_text()
    assert_no_token_leaked(digitalocean, result, scratch, allowed=(target,))


def test_credentials_that_expire_during_the_wait_fail_the_rollback_with_exit_4(
    sim: KubeSim, digitalocean: FakeDigitalOceanAPI, scratch: Path
) -> None:
    namespace = "creds-expire"
    first = deployer(*run_args(digitalocean, namespace, "v1", "--timeout", "30s"),
                     scratch=scratch, env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN})
    assert first.code == 0, first
    outputs, summary = scratch / "github-output", scratch / "step-summary.md"

    # The token lives 4 s (applying takes well under that); the never-ready rollout keeps deployer waiting
    # until its 8 s timeout (one watch window, no new request), after which every request is refused.
    result = deployer(
        *run_args(digitalocean, namespace, "never-ready", "--kubeconfig-expiry", "4s",
                  "--timeout", "8s", "--rollback-timeout", "10s"),
        scratch=scratch,
        env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)},
    )

    assert result.code == 4, result
    assert "Traceback" not in result.stderr
    final = result.stderr.splitlines()[-1]
    assert final == result.error_lines[-1], "the run ends with its one-line error"
    assert final.startswith("error: rollout timed out")
    assert "rollback failed: the cluster refused the credentials from DigitalOcean cluster web" in final
    assert "they expired at" in final
    assert digitalocean.requests_for("kubeconfig")[-1].query["expiry_seconds"] == "4"
    # Nothing could be put back: the failed revision is what is live.
    assert live_image(sim, namespace) == f"{IMAGE}:never-ready"
    assert "status<<" in outputs.read_text() and "rollback-failed" in outputs.read_text()
    assert summary.read_text().startswith("## 🚨 Rollback failed:")
    assert "they expired at" in summary.read_text()
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
        "dop_v1_revoked-0000000000000000000000000000000000000", "web", 1,
        ("DigitalOcean rejected the token", "DIGITALOCEAN_ACCESS_TOKEN", "HTTP 401", "request id"),
    ),
    "missing token": CredentialsError(None, "web", 2, ("--cluster", "DIGITALOCEAN_ACCESS_TOKEN")),
}


@pytest.mark.parametrize("command", ["run", "kubeconfig"])
@pytest.mark.parametrize("case", list(CREDENTIAL_ERRORS.values()), ids=list(CREDENTIAL_ERRORS))
def test_credential_errors_are_one_line_with_their_exit_code(
    sim: KubeSim, digitalocean: FakeDigitalOceanAPI, scratch: Path, case: CredentialsError, command: str
) -> None:
    env = {"DIGITALOCEAN_ACCESS_TOKEN": case.token} if case.token else {}
    if command == "run":
        args = run_args(digitalocean, "creds-errors", "v1")
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
    assert sim.store.find("v1", "Namespace", None, "creds-errors") is None, "nothing reached the cluster"
    assert case.token is None or case.token not in result.stderr
    assert_no_token_leaked(digitalocean, result, scratch)

