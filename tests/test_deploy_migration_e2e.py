"""Migrating from the origin pipeline (`kubectl apply`, client-side) to `deployer run`, end to end.

The user's story on the real control plane, with the real kubectl as the origin pipeline and as the judge:
objects that `kubectl apply` wrote are taken over, and fields the manifests later drop disappear from the
cluster, because deployer upgrades the client-side apply field ownership as `kubectl apply --server-side` does.
The last test holds our model to the real kubectl: its `apply --server-side` after `kubectl apply` must leave
the same managedFields as deployer. The cluster is shared by the session: each test works in namespaces of its
own.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_scenarios import (
    EXIT_OK,
    Deployer,
    Kubectl,
    deployed,
    deployment,
    render_with_image,
    write_manifests,
)

pytestmark = [pytest.mark.docker, pytest.mark.kubectl]

CSA = "kubectl-client-side-apply"


@pytest.fixture
def new_namespace(judge: Kubectl) -> Iterator[Callable[[str], str]]:
    """Names for namespaces of this test's own (the origin pipeline creates them); deleted afterwards."""
    names: list[str] = []

    def name(purpose: str) -> str:
        names.append(f"{purpose}-{uuid.uuid4().hex[:6]}")
        return names[-1]

    yield name
    for namespace in names:
        judge.run("delete", "namespace", namespace, "--wait=false", check=False)


def app(env: Sequence[str], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The user's manifests: a Deployment with env vars ``env`` and a ConfigMap with keys ``keys`` (each key
    KEY is written ``KEY.conf``: a bare ``y`` would be the boolean true to kubectl's YAML reader)."""
    web = deployment("web")
    web["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": name, "value": f"{name}-1"} for name in env]
    data = {f"{key}.conf": "1" for key in keys}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": data}
    return [web, config]


def applied_client_side(deployer: Deployer, judge: Kubectl, namespace: str) -> None:
    """The origin pipeline: the image filled in as its sed did, then `kubectl apply` (client-side), which also
    creates the namespace."""
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    documents = render_with_image(app("AB", "xy"), f"{deployer.repository}:v1")
    rendered = write_manifests(deployer.workdir / f"origin-{namespace}", namespace_doc, *documents)
    judge.apply_client_side(namespace, rendered / "app.yaml")
    judge.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s", timeout=120)


def managers(judge: Kubectl, namespace: str, resource: str) -> list[dict[str, Any]]:
    """The managedFields of the object itself. The entries of its status subresource are left out: the real
    kube-controller-manager records its status writes there (an Update with subresource "status"), they come
    and go with the rollout, and they are none of deployer's business (it never applies status)."""
    obj = judge.get_json(namespace, resource, "--show-managed-fields")
    return [m for m in obj["metadata"].get("managedFields") or [] if m.get("subresource", "") != "status"]


def manager_names(judge: Kubectl, namespace: str, resource: str) -> set[tuple[str, str]]:
    return {(m["manager"], m["operation"]) for m in managers(judge, namespace, resource)}


def env_names(judge: Kubectl, namespace: str) -> list[str]:
    return judge.jsonpath(namespace, "deployment/web", "{.spec.template.spec.containers[0].env[*].name}").split()


def config_keys(judge: Kubectl, namespace: str) -> list[str]:
    data = judge.get_json(namespace, "configmap/web-config").get("data") or {}
    return sorted(key.removesuffix(".conf") for key in data)


def test_fields_dropped_after_migrating_from_kubectl_apply_disappear(
    deployer: Deployer, judge: Kubectl, new_namespace: Callable[[str], str]
) -> None:
    namespace = new_namespace("migrate")
    applied_client_side(deployer, judge, namespace)
    assert (CSA, "Update") in manager_names(judge, namespace, "deployment/web")
    manifests = write_manifests(deployer.workdir / "k8s", *app("AB", "xy"))

    migrated = deployed(deployer, "v1", manifests, namespace)

    assert "deployment/web configured; took " in migrated.stderr
    took = next(line for line in migrated.stderr.splitlines() if line.startswith("deployment/web configured"))
    assert '.spec.template.spec.containers[name="web"].env[name="B"]' in took and took.endswith(f"from {CSA}"), took
    for resource in ("deployment/web", "configmap/web-config"):
        assert manager_names(judge, namespace, resource) == {("deployer", "Apply")}, resource
    assert env_names(judge, namespace) == ["A", "B"] and config_keys(judge, namespace) == ["x", "y"]

    write_manifests(deployer.workdir / "k8s", *app("A", "x"))
    dropped = deployed(deployer, "v1", manifests, namespace)

    assert "deployment/web configured" in dropped.stderr and "configmap/web-config configured" in dropped.stderr
    assert env_names(judge, namespace) == ["A"]
    assert config_keys(judge, namespace) == ["x"]
    for resource in ("deployment/web", "configmap/web-config"):
        assert CSA not in {name for name, _ in manager_names(judge, namespace, resource)}
    annotations = judge.get_json(namespace, "configmap/web-config")["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations

    again = deployed(deployer, "v1", manifests, namespace)

    assert "deployment/web unchanged" in again.stderr and "configmap/web-config unchanged" in again.stderr
    assert "; took " not in again.stderr
    assert env_names(judge, namespace) == ["A"] and config_keys(judge, namespace) == ["x"]


def editor_adding_label(directory: Path, key: str, value: str) -> Path:
    """An EDITOR for `kubectl edit`: a script that adds one label to the object it is given."""
    script = directory / "add-label"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, yaml\n"
        "path = sys.argv[-1]\n"
        "doc = yaml.safe_load(open(path))\n"
        f"doc['metadata'].setdefault('labels', {{}})[{key!r}] = {value!r}\n"
        "open(path, 'w').write(yaml.safe_dump(doc))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_migration_leaves_other_update_managers_alone(
    deployer: Deployer, judge: Kubectl, tmp_path: Path, new_namespace: Callable[[str], str]
) -> None:
    namespace = new_namespace("migrate-others")
    applied_client_side(deployer, judge, namespace)
    editor = editor_adding_label(tmp_path, "team", "payments")
    edited = subprocess.run(
        [judge.binary, "--kubeconfig", str(judge.kubeconfig), "-n", namespace, "edit", "deployment/web"],
        env={**os.environ, "HOME": str(judge.home), "KUBE_EDITOR": str(editor)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert edited.returncode == 0, edited.stderr
    judge.run("-n", namespace, "label", "deployment/web", "tier=front")
    before = {(m["manager"], m["operation"]): m for m in managers(judge, namespace, "deployment/web")}
    assert {("kubectl-edit", "Update"), ("kubectl-label", "Update"), (CSA, "Update")} <= set(before)
    manifests = write_manifests(deployer.workdir / "k8s", *app("A", "x"))

    done = deployed(deployer, "v1", manifests, namespace)

    after = {(m["manager"], m["operation"]): m for m in managers(judge, namespace, "deployment/web")}
    assert set(after) == {("deployer", "Apply"), ("kubectl-edit", "Update"), ("kubectl-label", "Update")}
    for other in (("kubectl-edit", "Update"), ("kubectl-label", "Update")):
        assert after[other]["fieldsV1"] == before[other]["fieldsV1"], other
    labels = judge.get_json(namespace, "deployment/web")["metadata"]["labels"]
    assert labels == {"team": "payments", "tier": "front"}
    assert env_names(judge, namespace) == ["A"]
    assert "from kubectl-edit" not in done.stderr and "from kubectl-label" not in done.stderr


def ownership(judge: Kubectl, namespace: str, resource: str) -> list[tuple[str, str, str, str, Any]]:
    """The managedFields without their times, in a stable order."""
    entries = managers(judge, namespace, resource)
    shape = [(m["manager"], m["operation"], m["apiVersion"], m.get("subresource", ""), m["fieldsV1"]) for m in entries]
    return sorted(shape, key=repr)


def test_deployer_leaves_the_ownership_kubectl_apply_server_side_leaves(
    deployer: Deployer, judge: Kubectl, new_namespace: Callable[[str], str]
) -> None:
    by_kubectl, by_deployer = new_namespace("by-kubectl"), new_namespace("by-deployer")
    for namespace in (by_kubectl, by_deployer):
        applied_client_side(deployer, judge, namespace)
    for step, (env, keys) in enumerate((("AB", "xy"), ("A", "x"))):
        manifests = write_manifests(deployer.workdir / "k8s", *app(env, keys))
        # Exactly what deployer applies (image, namespace, change-cause), for the real kubectl to apply.
        rendered = deployer.run("v1", manifests, by_kubectl, "--render-only")
        assert rendered.code == EXIT_OK, rendered.explain()
        documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
        kubectl_manifests = write_manifests(deployer.workdir / f"by-kubectl-{step}", *documents)
        judge.run(
            "-n",
            by_kubectl,
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=deployer",
            "-f",
            str(kubectl_manifests / "app.yaml"),
        )
        deployed(deployer, "v1", manifests, by_deployer)

        for resource in ("deployment/web", "configmap/web-config"):
            expected = ownership(judge, by_kubectl, resource)
            assert CSA not in {entry[0] for entry in expected}
            assert ownership(judge, by_deployer, resource) == expected, (step, resource)
        assert env_names(judge, by_deployer) == env_names(judge, by_kubectl) == list(env)
        assert config_keys(judge, by_deployer) == config_keys(judge, by_kubectl) == list(keys)
