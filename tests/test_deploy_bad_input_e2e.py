"""Bad names, references, flags and files end to end: `deployer run` refuses them before anything remote.

Each run builds for real (a Dockerfile on the busybox base) and pushes through a recording proxy in front of
the test registry, to a simulated cluster where a first version is live. A bad input must end the run with
exit 2 and one error line naming the flag, or the file, document and field, while nothing was built (the
engine holds no image of the run's repository), nothing pushed (the proxy saw no request), and the cluster
was not even asked (the simulator counted no request; kubectl sees what it saw before, resourceVersions
included). That nothing remote happened, rather than a time bound, is what shows the check comes first.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestRegistry
from tests.deploy_scenarios import (
    Deployer,
    Finished,
    Kubectl,
    clean_environment,
    deployed,
    deployment,
    write_manifests,
)
from tests.fakes.registry_proxy import RegistryProxy
from tests.kubesim import KubeSim
from tests.kubesim.fixtures import FAST_CLOCK

pytestmark = pytest.mark.kubectl

EXIT_BAD_INPUT = 2
LIVE_IMAGE = "registry.example/acme/web"


def config_map(name: str = "web-config") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"greeting": "hello"}}


def service(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


GOOD_DOCUMENTS = (config_map(), deployment("web", config_map="web-config"), service())


@dataclass
class Live:
    """A cluster with version 1 of the app live in namespace shop, a proxy to the registry, kubectl."""

    sim: KubeSim
    kubectl: Kubectl
    proxy: RegistryProxy
    before: str

    def state(self) -> str:
        """Every namespace, and every object of the app with its resourceVersion, as kubectl lists them."""
        namespaces = self.kubectl.run("get", "namespaces", "-o", "name").stdout
        path = "{range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion} {end}"
        objects = self.kubectl.run("-n", "shop", "get", "deployments,configmaps,services", "-o", f"jsonpath={path}")
        return namespaces + objects.stdout


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, kubectl: str, registry: TestRegistry, busybox_base_image: str
) -> Iterator[Live]:
    sim = KubeSim.start(kubelet="scripted", clock_speed=FAST_CLOCK)
    proxy = RegistryProxy(registry.host)
    proxy.start()
    try:
        scratch = tmp_path_factory.mktemp("live")
        first = Deployer.under(scratch, sim.kubeconfig_path)
        deployed(first, "v1", write_manifests(first.workdir / "k8s", *GOOD_DOCUMENTS), "shop")
        judge = Kubectl.under(scratch, kubectl, sim.kubeconfig_path)
        state = Live(sim, judge, proxy, before="")
        state.before = state.state()
        assert "Deployment/web@" in state.before, state.before
        yield state
    finally:
        proxy.stop()
        errors = list(sim.loop.errors)
        sim.stop()
        assert not errors, errors[:3]


@dataclass(frozen=True)
class BadInput:
    says: str  # in the one error line
    documents: tuple[Mapping[str, Any], ...] = GOOD_DOCUMENTS
    namespace: str = "shop"
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    kubeconfig: str | None = "the cluster's"  # "missing": a path where no file is; None: no --kubeconfig


def named(name: str) -> dict[str, Any]:
    return deployment(name, config_map="web-config")


def labelled(**labels: Any) -> dict[str, Any]:
    document = named("web")
    document["metadata"]["labels"] = labels
    return document


def with_database(image: str) -> dict[str, Any]:
    return deployment("db", image=image, replicas=1)


BAD_INPUTS = {
    # The object before the bad one would have been applied: the API refuses only the bad one, then.
    "uppercase name": BadInput(
        "app.yaml (document 2): metadata.name: 'Web' has uppercase letters", (config_map(), named("Web"), service())
    ),
    "300-character name": BadInput(
        "app.yaml (document 1): metadata.name: 'cccccccccc", (config_map("c" * 300), named("web"), service())
    ),
    "unicode name": BadInput(
        "app.yaml (document 2): metadata.name: 'wéb' has characters outside ASCII",
        (config_map(), named("wéb"), service()),
    ),
    "Service name not a DNS-1035 label": BadInput(
        "app.yaml (document 3): metadata.name: '1web' is not a DNS-1035 label",
        (config_map(), named("web"), service("1web")),
    ),
    "label value that is a number": BadInput(
        "app.yaml (document 2): metadata.labels.version: 2 is not a string; quote it",
        (config_map(), labelled(version=2), service()),
    ),
    "namespace not a DNS label": BadInput("--namespace: 'Shop' has uppercase letters", namespace="Shop"),
    "registry port out of range": BadInput(
        "--registry: '127.0.0.1:99999': registry '127.0.0.1:99999' has port 99999, outside 1-65535",
        args=("--registry", "127.0.0.1:99999"),
    ),
    "image reference with a space": BadInput(
        "--image-ref: db='NOT VALID'",
        (*GOOD_DOCUMENTS, with_database("<IMAGE:db>")),
        args=("--image-ref", "db=NOT VALID"),
    ),
    "repository of three parts": BadInput(
        "GITHUB_REPOSITORY='a/b/c' is not of the form owner/name", env={"GITHUB_REPOSITORY": "a/b/c"}
    ),
    "missing kubeconfig file": BadInput("--kubeconfig: ", kubeconfig="missing"),
    # DigitalOcean is asked only after the push (the token's lifetime counts from then); its flags are not.
    "DigitalOcean cluster without a token": BadInput(
        "--cluster: needs a DigitalOcean API token", args=("--cluster", "web"), kubeconfig=None
    ),
    "empty placeholder": BadInput("--placeholder: must not be empty", args=("--placeholder", "")),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_fails_with_exit_2_before_anything_is_built_pushed_or_asked_of_the_cluster(
    live: Live, tmp_path: Path, busybox_base_image: str, docker_client: Any, registry: TestRegistry, case: BadInput
) -> None:
    deployer = Deployer.under(tmp_path, live.sim.kubeconfig_path)
    (deployer.workdir / "Dockerfile").write_text(f"FROM {busybox_base_image}\nRUN echo built > /built\n")
    manifests = write_manifests(deployer.workdir / "k8s", *case.documents)
    args = ["run", "-f", str(manifests), "-n", case.namespace, "--tag", "v2"]
    if case.kubeconfig == "missing":
        args += ["--kubeconfig", str(tmp_path / "no-such-kubeconfig")]
    elif case.kubeconfig:
        args += ["--kubeconfig", str(live.sim.kubeconfig_path)]
    args += ["--registry", live.proxy.host, "--build-context", str(deployer.workdir), *case.args]
    environment = {
        **clean_environment(tmp_path / "home"),
        "GITHUB_REPOSITORY": "acme/web",
        "DEPLOYER_REGISTRY_USERNAME": registry.username,
        "DEPLOYER_REGISTRY_PASSWORD": registry.password,
        **case.env,
    }
    live.sim.reset_request_counts()

    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=deployer.workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    done = Finished(args, child.returncode, child.stdout, child.stderr, time.monotonic() - started)

    assert done.code == EXIT_BAD_INPUT, done.explain()
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and case.says in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert live.proxy.requests == []
    assert live.sim.request_counts == {}
    # One listing, no per-image inspect (images.list() does both): other sessions on this engine remove their
    # images at any moment, and an image gone between the two failed this test with ImageNotFound.
    tags = [tag for image in docker_client.api.images() for tag in image.get("RepoTags") or []]
    built = [tag for tag in tags if tag.startswith(live.proxy.host)]
    assert built == []
    assert live.state() == live.before
    assert LIVE_IMAGE + ":v1" == live.kubectl.image("shop")


def test_a_kind_the_cluster_does_not_serve_names_its_file_and_document_before_the_namespace_is_created(
    kubesim: KubeSim, kubectl: str, tmp_path: Path
) -> None:
    deployer = Deployer.under(tmp_path, kubesim.kubeconfig_path)
    judge = Kubectl.under(tmp_path, kubectl, kubesim.kubeconfig_path)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "gadget"}, "spec": {}}
    manifests = write_manifests(deployer.workdir / "k8s", config_map(), deployment("web"), widget)

    done = deployer.run("v1", manifests, "fresh")

    assert done.code == EXIT_BAD_INPUT, done.explain()
    assert done.stderr.splitlines()[-1] == (
        f"error: {manifests / 'app.yaml'} (document 3): kind: resource mapping not found: no matches for kind "
        '"Widget" in version "example.com/v1"; ensure CRDs are installed first'
    )
    # Only questions were asked: nothing was created, applied or locked.
    assert {verb for verb, _ in kubesim.request_counts} <= {"get", "list"}, kubesim.request_counts
    assert "NotFound" in judge.run("get", "namespace", "fresh", check=False).stderr
