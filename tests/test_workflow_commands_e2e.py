"""`deployer run` in GitHub Actions (GITHUB_ACTIONS=true) with a hostile workload and a hostile Dockerfile: what
they print reaches the log, and the runner's parsing rules (tests/runner_commands.py) find in deployer's whole
output (stdout and stderr in the order written) only deployer's own commands.

The workload injects through an exec readiness probe's output (the Unhealthy event), its logs and its
termination message; the Dockerfile through a RUN step, on BuildKit and on the classic builder.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_real_part
from tests.deploy_scenarios import (
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Finished,
    Kubectl,
    deployed,
    deployment,
    write_manifests,
)
from tests.kubesim import Behaviour, KubeSim
from tests.runner_commands import Command, Runner

REPO = "registry.example/acme/web"
# A registry password is a secret deployer masks at the start of every run: its mask must still work.
PASSWORD = "hostile-test-password-" + secrets.token_hex(4)

# Each line is a command the runner would obey if printed raw; each data part starts with INJECTED.
INJECTIONS = [
    "::error::INJECTED-x",
    "::add-mask::INJECTED-y",
    "::stop-commands::INJECTED-z",
    "##[error]INJECTED-w",
    "  ::warning::INJECTED-v",
    "::stop-commands::",
]
HOSTILE = "all is fine\n" + "\n".join(INJECTIONS) + "\r::error::INJECTED-cr\n"
DEPLOYERS_COMMANDS = {"group", "endgroup", "warning", "error", "add-mask"}


def judge_output(output: str) -> Runner:
    """The runner fed with ``output``; fails on any command that did not come from deployer."""
    runner = Runner().feed_output(output)
    hostile: list[Command] = [c for c in runner.executed if c.data.startswith("INJECTED") or c.form != "::"]
    assert hostile == [], output
    assert {c.name.lower() for c in runner.executed} <= DEPLOYERS_COMMANDS, output
    assert not runner.stopped, f"commands are left stopped for the rest of the job:\n{output}"
    # The run's own mask was obeyed, outside every fence.
    assert ("add-mask", PASSWORD) in [(c.name, c.data) for c in runner.executed], output
    return runner


def run_in_actions(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> Finished:
    """``deployer`` with stdout and stderr on one pipe, so the output is read in the order it was written."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=cwd,
        env={**env, "GITHUB_ACTIONS": "true", "DEPLOYER_REGISTRY_PASSWORD": PASSWORD},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return Finished(args, done.returncode, done.stdout, done.stdout, time.monotonic() - started)


# --- a hostile workload ---------------------------------------------------------------------------------------


@pytest.fixture
def deployer(kubesim: KubeSim, tmp_path: Path) -> Deployer:
    kubesim.kubelet.set_behaviour("*:probe-hostile", Behaviour(never_ready=True, probe_output=HOSTILE))
    kubesim.kubelet.set_behaviour(
        "*:crash-hostile",
        Behaviour(crash=True, crash_after=0.5, ready_after=30, logs=HOSTILE, termination_message=HOSTILE),
    )
    return Deployer.under(tmp_path, kubesim.kubeconfig_path)


@pytest.fixture
def judge(kubectl: str, kubesim: KubeSim, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, kubesim.kubeconfig_path)


def exec_probed(name: str = "web") -> dict[str, Any]:
    manifest = deployment(name)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"] = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
    return manifest


@pytest.mark.kubectl
@pytest.mark.parametrize(
    ("tag", "extra", "through"),
    [
        ("probe-hostile", ("--timeout", "3s"), "Readiness probe failed: all is fine"),
        ("crash-hostile", (), "terminated: Error, exit code 1: all is fine"),
    ],
    ids=["exec readiness probe output", "crash: logs and termination message"],
)
def test_a_hostile_workloads_output_reaches_the_log_and_commands_nothing(
    deployer: Deployer, judge: Kubectl, tag: str, extra: tuple[str, ...], through: str
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", exec_probed())
    deployed(deployer, "v1", manifests, "shop")

    done = run_in_actions(deployer.args(tag, manifests, "shop", *extra), deployer.workdir, deployer.env)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    # The hostile text is there for a person to read, each of its lines on a line of its own ...
    assert through in done.stdout
    for injection in INJECTIONS:
        assert injection.strip() in done.stdout, injection
    # ... and the runner obeys none of it, while deployer's own groups, error and mask work.
    runner = judge_output(done.stdout)
    names = [c.name for c in runner.executed]
    assert names.count("group") == names.count("endgroup") >= 3
    assert names[-1] == "error"
    assert PASSWORD not in done.stdout.replace(f"::add-mask::{PASSWORD}\n", "")
    # Rolled back whole, as kubectl sees it.
    assert judge.image("shop") == f"{REPO}:v1"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v1"}


@pytest.mark.kubectl
def test_the_kubernetes_clients_own_warnings_are_workflow_warnings_said_once(deployer: Deployer) -> None:
    # An unverified certificate makes urllib3 warn on every request, through python's warnings and logging.
    kubeconfig = yaml.safe_load(deployer.kubeconfig.read_text())
    for cluster in kubeconfig["clusters"]:
        cluster["cluster"].pop("certificate-authority-data")
        cluster["cluster"]["insecure-skip-tls-verify"] = True
    insecure = deployer.workdir / "insecure-kubeconfig"
    insecure.write_text(yaml.safe_dump(kubeconfig))
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web"))
    args = deployer.args("v1", manifests, "shop")
    args[args.index(str(deployer.kubeconfig))] = str(insecure)

    done = run_in_actions(args, deployer.workdir, deployer.env)

    assert done.code == EXIT_OK, done.explain()
    runner = judge_output(done.stdout)
    warnings = [c.data for c in runner.executed if c.name == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("InsecureRequestWarning: Unverified HTTPS request"), warnings
    assert "connectionpool.py" not in done.stdout, done.stdout


# --- a hostile Dockerfile -------------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, busybox_base_image: str, docker_client: Any) -> Iterator[dict[str, Any]]:
    """A build context whose RUN prints the injections (unique per test, so no cache hides the output)."""
    context = tmp_path / "app"
    context.mkdir()
    nonce = secrets.token_hex(6)
    printed = HOSTILE.replace("\r", "\\r").replace("\n", "\\n").replace("%", "%%")
    (context / "Dockerfile").write_text(
        f"FROM {busybox_base_image}\nRUN echo {nonce} && printf '{printed}'\n"
        "ARG FAIL=no\nRUN test \"$FAIL\" = no || { printf '::error::INJECTED-f\\n##[error]INJECTED-g\\n'; exit 3; }\n"
    )
    write_manifests(context / "k8s", deployment("web"))
    repository = f"127.0.0.1:5055/deployer-test-inject/app-{nonce}"
    yield {"context": context, "repository": repository}
    for image in docker_client.images.list(name=repository):
        docker_client.images.remove(image.id, force=True)


@pytest.fixture(params=["buildkit", "classic"])
def builder_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "classic":
        # A docker CLI 24 without buildx: it cannot build with BuildKit, so deployer uses the SDK's classic builder.
        cli = tmp_path / "bin" / "docker"
        cli.parent.mkdir()
        cli.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = --version ]; then echo "Docker version 24.0.7, build afdd53b"; exit 0; fi\n'
            "echo \"docker: '$1' is not a docker command.\" >&2\nexit 1\n"
        )
        cli.chmod(0o755)
        return {"DEPLOYER_DOCKER_CLI": str(cli)}
    from deployer.docker_engine import DockerEngine

    with DockerEngine.connect() as engine:
        require_real_part(engine.buildkit_cli() is not None, "no docker CLI here builds with BuildKit")
    return {}


@pytest.mark.docker
@pytest.mark.parametrize("fails", [False, True], ids=["build succeeds", "RUN fails"])
def test_a_hostile_build_step_reaches_the_log_and_commands_nothing(
    app: dict[str, Any], builder_env: dict[str, str], tmp_path: Path, fails: bool
) -> None:
    from tests.deploy_scenarios import clean_environment

    home = tmp_path / "home"
    home.mkdir()
    env = clean_environment(home, builder_env)
    args = ["run", "--dry-run", "-f", "k8s", "--image", app["repository"], "--tag", "t1"]
    if fails:
        args += ["--build-arg", "FAIL=yes"]

    done = run_in_actions(args, app["context"], env, timeout=600)

    assert done.code == (1 if fails else EXIT_OK), done.explain()
    for injection in INJECTIONS:
        assert injection.strip() in done.stdout, injection
    runner = judge_output(done.stdout)
    if fails:
        assert "INJECTED-g" in done.stdout
        assert [c.name for c in runner.executed][-1] == "error"
