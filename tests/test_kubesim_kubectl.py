"""Conformance of the Kubernetes API simulator with the real kubectl.

kubectl (the installed dispatcher, which picks 1.32 from the simulator's /version) runs against a simulated
cluster whose pods are real containers on the Docker engine, pulled from the test registry: apply
--server-side, get, rollout status/undo/history for Deployments, StatefulSets and DaemonSets, the progress
deadline, logs and delete. The StatefulSet/DaemonSet undo flows also run on the scripted kubelet, which is
enough for what kubectl sees of them and much faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubesim import KubeSim

pytestmark = pytest.mark.kubectl

IMAGE_REPOSITORY = "deployer-test-kubesim/web"


@dataclass(frozen=True)
class WebImages:
    v1: str
    v2: str
    missing: str


@pytest.fixture(scope="session")
def web_images(docker_client: Any, registry: Any, busybox_base_image: str) -> Iterator[WebImages]:
    """Two tags of a busybox httpd image in the test registry, and a reference that does not exist there."""
    auth = {"username": registry.username, "password": registry.password}
    references = []
    for version in ("v1", "v2"):
        reference = f"{registry.host}/{IMAGE_REPOSITORY}:{version}"
        with tempfile.TemporaryDirectory(prefix="deployer-test-kubesim-") as context:
            (Path(context) / "Dockerfile").write_text(
                f"FROM {busybox_base_image}\n"
                f"RUN mkdir /www && echo {version} > /www/index.html\n"
                f'CMD ["/bin/sh", "-c", "echo web {version} starting; exec httpd -f -v -p 8080 -h /www"]\n'
            )
            docker_client.images.build(path=context, tag=reference, rm=True, forcerm=True)
        for line in docker_client.images.push(
            f"{registry.host}/{IMAGE_REPOSITORY}", tag=version, auth_config=auth, stream=True, decode=True
        ):
            assert "error" not in line, f"pushing {reference} failed: {line}"
        references.append(reference)
    yield WebImages(references[0], references[1], f"{registry.host}/{IMAGE_REPOSITORY}:does-not-exist")
    for reference in references:
        try:
            docker_client.images.remove(reference, force=True)
        except Exception:
            pass


class Kubectl:
    """Runs the real kubectl against one simulator, with a private HOME so no discovery cache is shared."""

    def __init__(self, binary: str, sim: KubeSim, home: Path) -> None:
        self.binary = binary
        self.sim = sim
        self.env = {**os.environ, "KUBECONFIG": str(sim.kubeconfig_path), "HOME": str(home)}
        self.workdir = home

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def apply(self, *documents: dict[str, Any]) -> str:
        path = self.workdir / f"manifest-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump_all(documents))
        return self.run("apply", "--server-side", "-f", str(path)).stdout

    def get_json(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


def make_kubectl(kubectl: str, sim: KubeSim, tmp_path: Path) -> Kubectl:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Kubectl(kubectl, sim, home)


@pytest.fixture
def docker_kubectl(kubectl: str, kubesim_docker: KubeSim, tmp_path: Path) -> Kubectl:
    return make_kubectl(kubectl, kubesim_docker, tmp_path)


@pytest.fixture
def scripted_kubectl(kubectl: str, kubesim: KubeSim, tmp_path: Path) -> Kubectl:
    return make_kubectl(kubectl, kubesim, tmp_path)


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def web_deployment(image: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                        }
                    ]
                },
            },
        },
    }


WEB_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


def workload(kind: str, name: str, image: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": image}]}},
    }
    if kind == "StatefulSet":
        spec.update(replicas=2, serviceName=name)
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def image_of(k: Kubectl, resource: str) -> str:
    return str(k.get_json(resource)["spec"]["template"]["spec"]["containers"][0]["image"])


# ---------------------------------------------------------------- Deployments on Docker


def test_server_side_apply_then_new_image_makes_a_second_replicaset_and_revision(
    docker_kubectl: Kubectl, web_images: WebImages
) -> None:
    k = docker_kubectl
    output = k.apply(web_deployment(web_images.v1), WEB_SERVICE)
    assert "deployment.apps/web serverside-applied" in output
    assert "service/web serverside-applied" in output
    status = k.run("rollout", "status", "deployment/web", "--timeout=120s")
    assert 'deployment "web" successfully rolled out' in status.stdout

    first = k.get_json("deployment", "web")
    assert first["metadata"]["generation"] == 1
    assert first["status"]["observedGeneration"] == 1
    conditions = {c["type"]: (c["status"], c["reason"]) for c in first["status"]["conditions"]}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

    k.apply(web_deployment(web_images.v2), WEB_SERVICE)
    k.run("rollout", "status", "deployment/web", "--timeout=120s")
    second = k.get_json("deployment", "web")
    assert (second["metadata"]["generation"], second["status"]["observedGeneration"]) == (2, 2)
    assert second["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    replicasets = k.get_json("replicasets", "-l", "app=web")["items"]
    by_revision = {rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs for rs in replicasets}
    assert set(by_revision) == {"1", "2"}
    assert by_revision["2"]["spec"]["replicas"] == 2 and by_revision["1"]["spec"]["replicas"] == 0
    assert by_revision["2"]["spec"]["template"]["spec"]["containers"][0]["image"] == web_images.v2
    pods = k.get_json("pods", "-l", "app=web")["items"]
    assert sorted(p["spec"]["containers"][0]["image"] for p in pods) == [web_images.v2] * 2
    assert k.run("logs", "deployment/web").stdout.startswith("web v2 starting")


def test_rollout_undo_restores_the_old_template_under_a_new_revision(
    docker_kubectl: Kubectl, web_images: WebImages
) -> None:
    k = docker_kubectl
    k.apply(web_deployment(web_images.v1))
    k.run("rollout", "status", "deployment/web", "--timeout=120s")
    k.apply(web_deployment(web_images.v2))
    k.run("rollout", "status", "deployment/web", "--timeout=120s")

    assert k.run("rollout", "undo", "deployment/web").stdout.strip() == "deployment.apps/web rolled back"
    k.run("rollout", "status", "deployment/web", "--timeout=120s")
    assert image_of(k, "deployment/web") == web_images.v1
    history = k.run("rollout", "history", "deployment/web").stdout
    revisions = [line.split()[0] for line in history.splitlines()[2:] if line.strip()]
    assert revisions == ["2", "3"]
    deployment = k.get_json("deployment", "web")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    skipped = k.run("rollout", "undo", "deployment/web", "--to-revision=3")
    assert "skipped rollback (current template already matches revision 3)" in skipped.stdout + skipped.stderr


def test_rollout_status_fails_once_the_progress_deadline_passes_for_a_missing_image(
    docker_kubectl: Kubectl, web_images: WebImages
) -> None:
    k = docker_kubectl
    k.apply(web_deployment(web_images.v1, replicas=1))
    k.run("rollout", "status", "deployment/web", "--timeout=120s")
    k.apply(web_deployment(web_images.missing, replicas=1))
    waiting = k.popen("rollout", "status", "deployment/web", "--timeout=300s")
    try:

        def pull_failed() -> bool:
            pods = k.get_json("pods", "-l", "app=web")["items"]
            reasons = {
                ((s.get("state") or {}).get("waiting") or {}).get("reason")
                for p in pods
                for s in (p.get("status") or {}).get("containerStatuses") or []
            }
            return bool(reasons & {"ErrImagePull", "ImagePullBackOff"})

        wait_until(pull_failed, what="the missing image to fail to pull")
        assert waiting.poll() is None, "rollout status must keep waiting before the deadline"
        docker_kubectl.sim.clock.advance(601)
        _, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 1
    assert 'error: deployment "web" exceeded its progress deadline' in stderr
    progressing = next(c for c in k.get_json("deployment", "web")["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    events = k.run("get", "events", "--field-selector", "reason=Failed").stdout
    assert "does-not-exist" in events


def test_delete_cascades_to_replicasets_pods_and_containers(
    docker_kubectl: Kubectl, web_images: WebImages, docker_client: Any
) -> None:
    k = docker_kubectl
    k.apply(web_deployment(web_images.v1), WEB_SERVICE)
    k.run("rollout", "status", "deployment/web", "--timeout=120s")
    pod_uids = [p["metadata"]["uid"] for p in k.get_json("pods", "-l", "app=web")["items"]]
    assert len(pod_uids) == 2
    running = [docker_client.containers.list(filters={"label": f"kubesim.pod-uid={uid}"}) for uid in pod_uids]
    assert all(len(containers) == 1 for containers in running), "each pod runs one real container"

    deleted = k.run("delete", "deployment/web", "service/web").stdout
    assert 'deployment.apps "web" deleted' in deleted and 'service "web" deleted' in deleted
    assert k.get_json("replicasets")["items"] == []
    assert k.get_json("pods")["items"] == []
    missing = k.run("get", "deployment", "web", check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): deployments.apps "web" not found' in missing.stderr

    def containers_gone() -> bool:
        return not any(
            docker_client.containers.list(all=True, filters={"label": f"kubesim.pod-uid={uid}"}) for uid in pod_uids
        )

    wait_until(containers_gone, what="the pods' containers to be removed")


def test_statefulset_and_daemonset_roll_out_on_docker(docker_kubectl: Kubectl, web_images: WebImages) -> None:
    k = docker_kubectl
    k.apply(workload("StatefulSet", "db", web_images.v1), workload("DaemonSet", "agent", web_images.v1))
    sts = k.run("rollout", "status", "statefulset/db", "--timeout=120s").stdout
    assert "partitioned roll out complete: 2 new pods have been updated..." in sts
    ds = k.run("rollout", "status", "daemonset/agent", "--timeout=120s").stdout
    assert 'daemon set "agent" successfully rolled out' in ds
    assert sorted(p["metadata"]["name"] for p in k.get_json("pods", "-l", "app=db")["items"]) == ["db-0", "db-1"]


# ---------------------------------------------------------------- StatefulSet/DaemonSet history (scripted)


@pytest.mark.parametrize(("kind", "resource"), [("StatefulSet", "statefulset/store"), ("DaemonSet", "daemonset/store")])
def test_rollout_undo_of_controllerrevision_workloads(scripted_kubectl: Kubectl, kind: str, resource: str) -> None:
    k = scripted_kubectl
    k.apply(workload(kind, "store", "registry.local/store:1"))
    k.run("rollout", "status", resource, "--timeout=60s")
    k.apply(workload(kind, "store", "registry.local/store:2"))
    k.run("rollout", "status", resource, "--timeout=60s")
    assert k.run("rollout", "undo", resource).stdout.strip().endswith("rolled back")
    k.run("rollout", "status", resource, "--timeout=60s")
    assert image_of(k, resource) == "registry.local/store:1"
    history = k.run("rollout", "history", resource).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]
    revisions = k.get_json("controllerrevisions", "-l", "app=store")["items"]
    assert sorted(r["revision"] for r in revisions) == [2, 3]


def test_rollout_status_refuses_an_on_delete_daemonset(scripted_kubectl: Kubectl) -> None:
    k = scripted_kubectl
    daemonset = workload("DaemonSet", "agent", "registry.local/agent:1")
    daemonset["spec"]["updateStrategy"] = {"type": "OnDelete"}
    k.apply(daemonset)
    result = k.run("rollout", "status", "daemonset/agent", "--timeout=20s", check=False)
    assert result.returncode == 1
    assert "rollout status is only available for RollingUpdate strategy type" in result.stderr


def test_apply_of_an_unknown_kind_names_the_missing_mapping(scripted_kubectl: Kubectl) -> None:
    k = scripted_kubectl
    path = k.workdir / "crd.yaml"
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "tls"}, "spec": {}}
        )
    )
    result = k.run("apply", "--server-side", "-f", str(path), check=False)
    assert result.returncode == 1
    assert 'resource mapping not found for name: "tls"' in result.stderr
    assert "ensure CRDs are installed first" in result.stderr


def test_get_prints_server_side_tables(scripted_kubectl: Kubectl) -> None:
    k = scripted_kubectl
    k.apply(web_deployment("registry.local/web:1"), WEB_SERVICE)
    k.run("rollout", "status", "deployment/web", "--timeout=60s")
    lines = k.run("get", "deployments").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:4] == ["web", "2/2", "2", "2"]
    pods = k.run("get", "pods").stdout.splitlines()
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert all(line.split()[1:3] == ["1/1", "Running"] for line in pods[1:])


def test_kubectl_is_served_as_version_1_32(scripted_kubectl: Kubectl) -> None:
    version = json.loads(scripted_kubectl.run("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.32.")


def test_kubeconfig_file_is_private_and_removed_on_stop() -> None:
    sim = KubeSim.start()
    try:
        assert oct(sim.kubeconfig_path.stat().st_mode & 0o777) == "0o600"
    finally:
        sim.stop()
    assert not sim.kubeconfig_path.exists()
