"""The real control plane under the tests (tests/controlplane/): what kubectl sees of it, and `deployer run` on it.

One cluster for the whole session (the ``control_plane`` fixture): etcd, kube-apiserver, kube-controller-manager
and kube-scheduler built from the pinned modules, and the node agent running pods on the Docker engine. Each test
works in a namespace of its own. The images are busybox FROM scratch, pushed to the test registry.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane import ControlPlane
from tests.controlplane.building import KUBE_MODULE, KUBERNETES_MODULE, required_version
from tests.controlplane.fixtures import WebImages
from tests.deploy_scenarios import (
    CRASH_LOG,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Finished,
    Kubectl,
    deployment,
    wait_until,
    write_manifests,
)

pytestmark = [pytest.mark.docker, pytest.mark.kubectl]


def served_versions(docker_client: Any, judge: Kubectl, namespace: str, app: str) -> set[str]:
    """What the Ready pods of ``app`` answer on their port 8080, published on 127.0.0.1 by the node agent."""
    answers = set()
    for pod in judge.get_json(namespace, "pods", "-l", f"app={app}")["items"]:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if pod["metadata"].get("deletionTimestamp") or conditions.get("Ready") != "True":
            continue
        for container in docker_client.containers.list(filters={"label": f"kubesim.pod-uid={pod['metadata']['uid']}"}):
            port = container.ports["8080/tcp"][0]["HostPort"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
                answers.add(response.read().decode().strip())
    return answers


# --- what kubectl sees ----------------------------------------------------------------------------------------


def test_version_is_the_pinned_kubernetes_release(judge: Kubectl) -> None:
    version = judge.run("get", "--raw", "/version").stdout

    assert f'"gitVersion": "{required_version(KUBE_MODULE, KUBERNETES_MODULE)}"' in version


def test_livez_lists_the_api_servers_post_start_hooks(judge: Kubectl) -> None:
    livez = judge.run("get", "--raw", "/livez?verbose").stdout

    assert "[+]poststarthook/start-apiextensions-controllers ok" in livez
    assert "[+]poststarthook/rbac/bootstrap-roles ok" in livez
    assert "livez check passed" in livez


def test_nodes_registered_by_the_agent_are_ready(judge: Kubectl) -> None:
    nodes = judge.run("get", "nodes", "--no-headers").stdout.splitlines()

    assert nodes and all(line.split()[1] == "Ready" for line in nodes), nodes


def test_kubectl_creates_a_namespace_and_a_deployment_whose_pods_run_and_log(
    judge: Kubectl, web_images: WebImages
) -> None:
    name = f"cp-kubectl-{uuid.uuid4().hex[:6]}"
    assert f"namespace/{name} created" in judge.run("create", "namespace", name).stdout
    try:
        judge.run("-n", name, "create", "deployment", "web", f"--image={web_images.tag('v1')}", "--replicas=2")

        status = judge.run("-n", name, "rollout", "status", "deployment/web", "--timeout=90s", timeout=120).stdout

        assert 'deployment "web" successfully rolled out' in status
        logs = wait_until(lambda: judge.run("-n", name, "logs", "deployment/web", check=False).stdout, 30, "logs")
        assert "web v1 starting" in logs
    finally:
        judge.run("delete", "namespace", name, "--wait=false", check=False)


# --- bearer tokens (TokenRequest) and their revocation ---------------------------------------------------------


def test_an_issued_token_works_for_kubectl_until_it_is_revoked(
    control_plane: ControlPlane, kubectl: str, tmp_path: Path
) -> None:
    token = control_plane.issue_token(600)
    kubeconfig = control_plane.write_token_kubeconfig(tmp_path / "token.kubeconfig", token)
    judge = Kubectl.under(tmp_path, kubectl, kubeconfig)
    other = control_plane.issue_token(600)

    listed = judge.run("get", "namespaces", "-o", "name").stdout
    assert "namespace/kube-system" in listed
    assert judge.run("auth", "can-i", "create", "deployments", "--all-namespaces").stdout.strip() == "yes"
    assert token in kubeconfig.read_text() and stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600

    control_plane.revoke_token(token)

    # The API server caches a successful token review for 10 s: the refusal comes within that, not at once.
    wait_until(lambda: control_plane.token_refused(token), 30, "the revoked token to be refused")
    refused = judge.run("get", "namespaces", check=False)
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr or "provide credentials" in refused.stderr, refused.stderr
    assert not control_plane.token_refused(other), "revoking one token left the others working"


# --- deployer run on the real cluster -----------------------------------------------------------------------


@dataclass(frozen=True)
class CrashStory:
    """A new app deployed (v1), then a crashing image deployed over it: both runs, in their namespace."""

    namespace: str
    first: Finished
    crashed: Finished


@pytest.fixture(scope="module")
def crash_story(
    control_plane: ControlPlane, kubectl: str, web_images: WebImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrashStory]:
    root = tmp_path_factory.mktemp("crash-story")
    setup = Kubectl.under(root, kubectl, control_plane.kubeconfig_path)
    namespace = f"cp-{uuid.uuid4().hex[:8]}"
    setup.run("create", "namespace", namespace)
    deployer = Deployer.under(root, control_plane.kubeconfig_path)
    deployer.repository = web_images.repository
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web", replicas=2, http_port=8080))
    try:
        first = deployer.run("v1", manifests, namespace, "--timeout", "90s", timeout=150)
        crashed = deployer.run("crash", manifests, namespace, "--timeout", "90s", timeout=150)
        yield CrashStory(namespace, first, crashed)
    finally:
        setup.run("delete", "namespace", namespace, "--wait=false", check=False)


def test_deployer_deploys_a_new_app_and_the_real_controller_makes_its_replicaset(
    crash_story: CrashStory, judge: Kubectl, web_images: WebImages
) -> None:
    assert crash_story.first.code == EXIT_OK, crash_story.first.explain()
    replica_sets = judge.get_json(crash_story.namespace, "replicasets", "-l", "app=web")["items"]
    v1 = [rs for rs in replica_sets if rs["spec"]["template"]["spec"]["containers"][0]["image"] == web_images.tag("v1")]
    assert len(v1) == 1, replica_sets
    owner = v1[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Deployment", "web", True)
    assert v1[0]["metadata"]["labels"]["pod-template-hash"] in v1[0]["metadata"]["name"]


def test_deployer_rolls_back_a_crashing_image_and_the_previous_one_serves_again(
    crash_story: CrashStory, judge: Kubectl, docker_client: Any, web_images: WebImages
) -> None:
    crashed = crash_story.crashed

    assert crashed.code == EXIT_ROLLED_BACK, crashed.explain()
    assert "CrashLoopBackOff" in crashed.stderr, crashed.explain()
    assert "rollout timed out" not in crashed.stderr, crashed.explain()
    assert judge.image(crash_story.namespace) == web_images.tag("v1")
    serving = wait_until(
        lambda: served_versions(docker_client, judge, crash_story.namespace, "web") == {"v1"}, 30, "v1 serving"
    )
    assert serving


def test_deployer_diagnosis_of_the_crash_quotes_the_containers_real_log(crash_story: CrashStory) -> None:
    assert f"| {CRASH_LOG}" in crash_story.crashed.stderr, crash_story.crashed.explain()


# --- python -m tests.controlplane serve -------------------------------------------------------------------------


def test_serve_writes_the_kubeconfig_once_usable_and_sigterm_leaves_nothing_behind(
    control_plane: ControlPlane, kubectl: str, busybox_base_image: str, docker_client: Any, tmp_path: Path
) -> None:
    # control_plane: the binaries are built (and the session's cluster shows that Go and Docker are there).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    kubeconfig = tmp_path / "kubeconfig"
    serve = subprocess.Popen(
        [sys.executable, "-m", "tests.controlplane", "serve", "--kubeconfig", str(kubeconfig), "--nodes", "2"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: kubeconfig.exists() or serve.poll() is not None, 180, "the kubeconfig")
        assert serve.poll() is None, serve.communicate()[0]
        judge = Kubectl.under(tmp_path, kubectl, kubeconfig)
        nodes = judge.run("get", "nodes", "--no-headers").stdout.splitlines()
        assert [line.split()[1] for line in nodes] == ["Ready", "Ready"]
        assert judge.exists("default", "serviceaccount/default")
        judge.run(
            "run",
            "sleeper",
            f"--image={busybox_base_image}",
            "--image-pull-policy=IfNotPresent",
            "--command",
            "--",
            "sleep",
            "600",
        )
        judge.run("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s", timeout=90)

        serve.send_signal(signal.SIGTERM)

        # A bound for a hang only: the sleeper ignores SIGTERM (PID 1) and gets its 30 s grace, then each
        # component may take its own grace to stop; on a loaded machine that added up past 60 s once.
        output = serve.communicate(timeout=180)[0]
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()  # also closes the pipe
    assert serve.returncode == 0, output
    assert list(scratch.iterdir()) == [], "temporary files left behind"
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(scratch) in _cmdline(pid)]
    assert docker_client.containers.list(all=True, filters={"label": "kubesim.pod=sleeper"}) == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""
