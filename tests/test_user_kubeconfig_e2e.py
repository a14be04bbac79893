"""A user's own kubeconfig end to end through `deployer run`, on the real control plane (tests/controlplane/):
a client certificate and key given inline authenticate (the API server checks them against its CA) and the key
never reaches a file; `exec:` credential plugins, failing or handing out a token or a certificate; a
ServiceAccount's token with rights in one namespace only (RBAC, which the simulator does not have). The real
kubectl judges what reached the cluster."""

from __future__ import annotations

import base64
import json
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane import ControlPlane
from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import (
    CRASH_LOG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Kubectl,
    deployment,
    write_manifests,
)

pytestmark = [pytest.mark.docker, pytest.mark.kubectl]

PLUGIN_SECRET = "plugin-stderr-secret-0123456789abcdefghij"
WEB_PORT = 8080  # where web_images' v1 and v2 serve


def user_kubeconfig(plane: ControlPlane, path: Path, user: dict[str, object]) -> Path:
    """The plane's kubeconfig (its server and CA) with ``user`` as the credentials."""
    config: dict[str, Any] = json.loads(plane.write_kubeconfig(path).read_text())
    config["users"] = [{"name": "controlplane-admin", "user": user}]
    path.write_text(json.dumps(config))
    return path


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def web(readiness_path: str = "/index.html") -> dict[str, Any]:
    document = deployment("web", replicas=1, http_port=WEB_PORT)
    document["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = readiness_path
    return document


@pytest.fixture
def judge(kubectl: str, control_plane: ControlPlane, tmp_path: Path) -> Kubectl:
    (tmp_path / "judge").mkdir()
    return Kubectl.under(tmp_path / "judge", kubectl, control_plane.kubeconfig_path)


@pytest.fixture
def deployer(control_plane: ControlPlane, web_images: WebImages, tmp_path: Path) -> Deployer:
    made = Deployer.under(tmp_path, tmp_path / "kubeconfig")
    made.repository = web_images.repository
    (tmp_path / "tmp").mkdir()
    made.env["TMPDIR"] = str(tmp_path / "tmp")
    return made


def inline_client_certificate(plane: ControlPlane) -> dict[str, object]:
    """The plane's admin client certificate and key, inline: the API server authenticates them (no token)."""
    return {
        "client-certificate-data": base64.b64encode(plane.pki.admin_cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(plane.pki.admin_key.read_bytes()).decode(),
    }


def test_a_client_key_never_reaches_a_file_even_when_deployer_is_killed(
    control_plane: ControlPlane, deployer: Deployer, namespace: str, tmp_path: Path
) -> None:
    user_kubeconfig(control_plane, deployer.kubeconfig, inline_client_certificate(control_plane))
    key_pem = control_plane.pki.admin_key.read_bytes()
    # Pods that run and never become ready: the wait goes on until the kill.
    manifests = write_manifests(deployer.workdir / "k8s", web(readiness_path="/never-ready"))

    running = deployer.start("v1", manifests, namespace, "--timeout", "5m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 120, "the wait phase")
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


def test_the_client_certificate_from_memory_is_usable(
    control_plane: ControlPlane, deployer: Deployer, judge: Kubectl, namespace: str, web_images: WebImages
) -> None:
    user_kubeconfig(control_plane, deployer.kubeconfig, inline_client_certificate(control_plane))
    manifests = write_manifests(deployer.workdir / "k8s", web())

    done = deployer.run("v1", manifests, namespace, "--timeout", "90s")

    assert done.code == EXIT_OK, done.explain()
    assert judge.image(namespace) == web_images.tag("v1")
    assert list(Path(deployer.env["TMPDIR"]).iterdir()) == []


def test_a_failing_exec_plugin_is_reported_with_its_command_and_exit_code_not_as_401(
    control_plane: ControlPlane, deployer: Deployer, judge: Kubectl, namespace: str, tmp_path: Path
) -> None:
    script = f"#!/bin/sh\necho 'error: not logged in; token {PLUGIN_SECRET}' >&2\nexit 3\n"
    plugin = executable(tmp_path / "get-token", script)
    user_kubeconfig(
        control_plane,
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
    manifests = write_manifests(deployer.workdir / "k8s", web())

    done = deployer.run("v1", manifests, namespace)

    assert done.code == EXIT_FAILURE, done.explain()
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"the exec credential plugin '{plugin}'" in errors[0]
    assert "failed: exited with code 3: error: not logged in; token [redacted]" in errors[0]
    assert "401" not in done.stderr
    assert PLUGIN_SECRET not in done.stderr + done.stdout
    assert "arg-secret-value" not in done.stderr + done.stdout
    assert not judge.exists("default", f"namespace/{namespace}"), "nothing reached the cluster"


def test_a_working_exec_plugin_still_gets_its_token_to_the_cluster(
    control_plane: ControlPlane,
    deployer: Deployer,
    judge: Kubectl,
    namespace: str,
    web_images: WebImages,
    tmp_path: Path,
) -> None:
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": control_plane.issue_token(600)},
    }
    plugin = executable(tmp_path / "get-token", f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    user_kubeconfig(
        control_plane,
        deployer.kubeconfig,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": str(plugin),
                "interactiveMode": "Never",
            },
        },
    )
    manifests = write_manifests(deployer.workdir / "k8s", web())

    done = deployer.run("v1", manifests, namespace, "--timeout", "90s")

    assert done.code == EXIT_OK, done.explain()
    assert judge.image(namespace) == web_images.tag("v1")


def test_a_client_key_from_an_exec_plugin_never_reaches_a_file_even_when_deployer_is_killed(
    control_plane: ControlPlane, deployer: Deployer, judge: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """A plugin may hand out a client certificate and key instead of a token (the API server authenticates them
    against its CA); the key must stay in memory as the inline one does."""
    key_pem = control_plane.pki.admin_key.read_bytes()
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": control_plane.pki.admin_cert.read_text(),
            "clientKeyData": key_pem.decode(),
        },
    }
    plugin = executable(tmp_path / "get-certificate", f"#!/bin/sh\ncat <<'END'\n{json.dumps(credential)}\nEND\n")
    user_kubeconfig(
        control_plane,
        deployer.kubeconfig,
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never"}},
    )
    manifests = write_manifests(deployer.workdir / "k8s", web(readiness_path="/never-ready"))

    running = deployer.start("v1", manifests, namespace, "--timeout", "5m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 120, "the wait phase")
        running.process.send_signal(signal.SIGKILL)  # no atexit, no finally: what is on disk stays
        running.process.wait(timeout=30)
    finally:
        running.kill()

    assert judge.exists(namespace, "deployment/web"), "the plugin's certificate authenticated the apply"
    key_body = b"".join(line for line in key_pem.splitlines() if not line.startswith(b"-----"))
    holding_the_key = [
        str(path)
        for root in (tmp_path / "tmp", deployer.workdir, Path(deployer.env["HOME"]))
        for path in root.rglob("*")
        if path.is_file() and (key_body[:40] in path.read_bytes() or key_pem in path.read_bytes())
    ]
    assert holding_the_key == []


def namespace_account_kubeconfig(
    control_plane: ControlPlane, judge: Kubectl, namespace: str, path: Path, cluster_role: str | None
) -> Path:
    """A token kubeconfig for a ServiceAccount of ``namespace`` with ``cluster_role`` bound in that namespace
    only (none: no rights at all), as a CI pipeline is given; the namespace exists beforehand."""
    judge.run("create", "namespace", namespace)
    judge.run("-n", namespace, "create", "serviceaccount", "ci")
    if cluster_role:
        judge.run(
            "-n",
            namespace,
            "create",
            "rolebinding",
            "ci",
            f"--clusterrole={cluster_role}",
            f"--serviceaccount={namespace}:ci",
        )
    token = judge.run("-n", namespace, "create", "token", "ci", "--duration=1h").stdout.strip()
    return control_plane.write_token_kubeconfig(path, token)


def test_rights_in_one_namespace_are_enough_to_deploy_diagnose_and_roll_back(
    control_plane: ControlPlane, deployer: Deployer, judge: Kubectl, namespace: str, web_images: WebImages
) -> None:
    namespace_account_kubeconfig(control_plane, judge, namespace, deployer.kubeconfig, "edit")
    manifests = write_manifests(deployer.workdir / "k8s", web())

    good = deployer.run("v1", manifests, namespace, "--timeout", "90s")
    crashed = deployer.run("crash", manifests, namespace, "--timeout", "90s")

    assert good.code == EXIT_OK, good.explain()
    assert crashed.code == EXIT_ROLLED_BACK, crashed.explain()
    assert "CrashLoopBackOff" in crashed.stderr, crashed.explain()
    assert f"| {CRASH_LOG}" in crashed.stderr, "the diagnosis read the pod's log with the namespace's rights"
    assert "403" not in crashed.stderr, crashed.explain()
    assert judge.image(namespace) == web_images.tag("v1")


def test_a_token_without_rights_is_one_line_naming_the_403_and_nothing_is_applied(
    control_plane: ControlPlane, deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    namespace_account_kubeconfig(control_plane, judge, namespace, deployer.kubeconfig, None)
    manifests = write_manifests(deployer.workdir / "k8s", web())

    done = deployer.run("v1", manifests, namespace)

    assert done.code == EXIT_FAILURE, done.explain()
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f'User "system:serviceaccount:{namespace}:ci" cannot' in errors[0]
    assert "HTTP 403" in errors[0]
    assert not judge.exists(namespace, "deployment/web")
