"""A user's own kubeconfig end to end through `deployer run`: client keys never reach a file, and a failing
`exec:` credential plugin is reported as what it is, on the Kubernetes simulator."""

from __future__ import annotations

import base64
import json
import signal
import stat
from pathlib import Path

import pytest
import trustme

from tests.deploy_scenarios import EXIT_FAILURE, EXIT_OK, Deployer, deployment, write_manifests
from tests.kubesim import KubeSim

PLUGIN_SECRET = "plugin-stderr-secret-0123456789abcdefghij"


def user_kubeconfig(sim: KubeSim, path: Path, user: dict[str, object]) -> Path:
    config = sim.kubeconfig_dict()
    config["users"] = [{"name": "kubesim-admin", "user": user}]
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def deployer(kubesim: KubeSim, tmp_path: Path) -> Deployer:
    made = Deployer.under(tmp_path, tmp_path / "kubeconfig")
    (tmp_path / "tmp").mkdir()
    made.env["TMPDIR"] = str(tmp_path / "tmp")
    return made


def test_a_client_key_never_reaches_a_file_even_when_deployer_is_killed(
    kubesim: KubeSim, deployer: Deployer, tmp_path: Path
) -> None:
    client = trustme.CA(organization_name="a user's client CA").issue_cert("deployer-user")
    key_pem = client.private_key_pem.bytes()
    user_kubeconfig(
        kubesim,
        deployer.kubeconfig,
        {
            "token": kubesim.admin_token,
            "client-certificate-data": base64.b64encode(client.cert_chain_pems[0].bytes()).decode(),
            "client-key-data": base64.b64encode(key_pem).decode(),
        },
    )
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1))

    running = deployer.start("never-ready", manifests, "shop", "--timeout", "5m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the wait phase")
        running.process.send_signal(signal.SIGKILL)  # no atexit, no finally: what is on disk stays
        running.process.wait(timeout=30)
    finally:
        running.kill()

    key_body = b"".join(line for line in key_pem.splitlines() if not line.startswith(b"-----"))
    holding_the_key = [
        str(path)
        for root in (tmp_path / "tmp", deployer.workdir, Path(deployer.env["HOME"]))
        for path in root.rglob("*")
        if path.is_file() and (key_body[:40] in path.read_bytes() or key_pem in path.read_bytes())
    ]
    assert holding_the_key == []


def test_the_client_certificate_from_memory_is_usable(kubesim: KubeSim, deployer: Deployer) -> None:
    client = trustme.CA(organization_name="a user's client CA").issue_cert("deployer-user")
    user_kubeconfig(
        kubesim,
        deployer.kubeconfig,
        {
            "token": kubesim.admin_token,
            "client-certificate-data": base64.b64encode(client.cert_chain_pems[0].bytes()).decode(),
            "client-key-data": base64.b64encode(client.private_key_pem.bytes()).decode(),
        },
    )
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1))

    done = deployer.run("v1", manifests, "shop")

    assert done.code == EXIT_OK, done.explain()
    assert list(Path(deployer.env["TMPDIR"]).iterdir()) == []


def test_a_failing_exec_plugin_is_reported_with_its_command_and_exit_code_not_as_401(
    kubesim: KubeSim, deployer: Deployer, tmp_path: Path
) -> None:
    script = f"#!/bin/sh\necho 'error: not logged in; token {PLUGIN_SECRET}' >&2\nexit 3\n"
    plugin = executable(tmp_path / "get-token", script)
    user_kubeconfig(
        kubesim,
        deployer.kubeconfig,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": str(plugin),
                "args": ["--secret-arg", "arg-secret-value"],
                "interactiveMode": "Never",
            },
        },
    )
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1))

    done = deployer.run("v1", manifests, "shop")

    assert done.code == EXIT_FAILURE, done.explain()
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"the exec credential plugin '{plugin}'" in errors[0]
    assert "failed: exited with code 3: error: not logged in; token [redacted]" in errors[0]
    assert "401" not in done.stderr
    assert PLUGIN_SECRET not in done.stderr + done.stdout
    assert "arg-secret-value" not in done.stderr + done.stdout
    assert kubesim.store.find("v1", "Namespace", None, "shop") is None, "nothing reached the cluster"


def test_a_working_exec_plugin_still_gets_its_token_to_the_cluster(
    kubesim: KubeSim, deployer: Deployer, tmp_path: Path
) -> None:
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": kubesim.admin_token},
    }
    plugin = executable(tmp_path / "get-token", f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    user_kubeconfig(
        kubesim,
        deployer.kubeconfig,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": str(plugin),
                "interactiveMode": "Never",
            },
        },
    )
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1))

    done = deployer.run("v1", manifests, "shop")

    assert done.code == EXIT_OK, done.explain()
