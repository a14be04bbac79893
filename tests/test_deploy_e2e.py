"""`deployer run` end to end, as a user runs it, with the real kubectl as the judge.

Each test starts deployer as a child process (``python -m deployer run --no-build ...``) from a directory of
its own with an environment it controls, then reads the exit code and what deployer printed, and asks kubectl
what is live. Where the real control plane (tests/controlplane/) can play the story, the test runs there, in a
namespace of its own, with real images FROM scratch pulled from the test registry: a tag the registry lacks, an
image that exits 1, a missing ConfigMap, `kubectl apply` before deployer, real containers serving. The rest runs
on the Kubernetes simulator, because it needs what only the simulator does: the scripted kubelet (image
behaviours chosen by tag words: ``crash``, ``never-ready``, ``ready-after-<N>s``, pods held unready until the
test releases them) on a clock 50 times faster than real time, or an API answer scripted once.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    deployed,
    deployment,
    github_run,
    render_with_image,
    run_url,
    wait_until,
    write_manifests,
)
from tests.kubesim import Behaviour, KubeSim

pytestmark = pytest.mark.kubectl

REPO = "registry.example/acme/web"


@pytest.fixture
def sim(kubesim: KubeSim) -> KubeSim:
    # Crashes at start-up, before its readiness would come: what a missing setting does behind a probe.
    kubesim.kubelet.set_behaviour(
        "*:crash*", Behaviour(crash=True, crash_after=0.5, ready_after=30, logs=f"starting\n{CRASH_LOG}\n")
    )
    return kubesim


@pytest.fixture
def deployer(sim: KubeSim, tmp_path: Path) -> Deployer:
    return Deployer.under(tmp_path, sim.kubeconfig_path)


@pytest.fixture
def judge(kubectl: str, sim: KubeSim, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, sim.kubeconfig_path)


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", deployment("web"))


# The real control plane (tests/controlplane/), shared by the session: a namespace per test, images that exist.
WEB_PORT = 8080  # where web_images' v1 and v2 serve


@pytest.fixture
def real_judge(kubectl: str, control_plane: ControlPlane, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, control_plane.kubeconfig_path)


@pytest.fixture
def real_deployer(control_plane: ControlPlane, web_images: WebImages, tmp_path: Path) -> Deployer:
    deployer = Deployer.under(tmp_path, control_plane.kubeconfig_path)
    deployer.repository = web_images.repository
    return deployer


@pytest.fixture
def real_manifests(real_deployer: Deployer) -> Path:
    # With a readiness probe: without one, a real pod whose container exits at start counts as available for
    # the moment it runs, and a rollout of it can complete before the crash shows (kubectl would agree).
    return write_manifests(real_deployer.workdir / "k8s", deployment("web", http_port=WEB_PORT))


@pytest.fixture
def namespace(real_judge: Kubectl) -> Iterator[str]:
    """A namespace name of the test's own (deployer creates it); deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    yield name
    real_judge.run("delete", "namespace", name, "--wait=false", check=False)


def git_commit(workdir: Path) -> str:
    """Make the work directory a clean checkout: everything in it committed; returns the commit's SHA."""
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=e2e", "-c", "user.email=e2e@example.com", "commit", "-q", "-m", "the app"],
    ):
        subprocess.run(["git", *args], cwd=workdir, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=workdir, check=True, capture_output=True, text=True).stdout


# --- success ------------------------------------------------------------------------------------------------


def test_deploy_puts_the_commits_image_live_and_kubectl_history_shows_the_change_cause(
    deployer: Deployer, judge: Kubectl, manifests: Path
) -> None:
    deployed(deployer, "v1", manifests, "shop")
    sha = git_commit(deployer.workdir).strip()

    done = deployer.run(None, manifests, "shop", env=github_run(7))

    assert done.code == EXIT_OK, done.explain()
    assert judge.image("shop") == f"{REPO}:{sha[:7]}"
    assert judge.serving_images("shop", "web") == {f"{REPO}:{sha[:7]}"}
    status = judge.run("-n", "shop", "rollout", "status", "deployment/web", "--timeout=5s").stdout
    assert 'deployment "web" successfully rolled out' in status
    history = judge.run("-n", "shop", "rollout", "history", "deployment/web").stdout
    assert f"deployer: {REPO}:{sha[:7]} from commit {sha[:12]} ({run_url(7)})" in history
    assert f"deployer: {REPO}:v1 by e2e-tester" in history
    assert "web: 2/2 updated, 2/2 available" in done.stderr


# --- failures that are detected and rolled back ---------------------------------------------------------------


@dataclass(frozen=True)
class BadRollout:
    tag: str
    extra: tuple[str, ...]
    names: tuple[str, ...]  # what the diagnosis must say ({repo}: the image repository)
    config_map: str | None = None


# On the real control plane: a tag the registry does not have, an image that exits 1, a missing ConfigMap.
BAD_ROLLOUTS = {
    "bad image": BadRollout("pull-error", (), ("ErrImagePull", "{repo}:pull-error")),
    "crash loop": BadRollout("crash", (), ("CrashLoopBackOff", f"| {CRASH_LOG}", "(previous container)")),
    "missing ConfigMap": BadRollout(
        "v2", (), ("CreateContainerConfigError", 'configmap "app-settings" not found'), config_map="app-settings"
    ),
}
# On kubesim: an image that is never ready is a scripted behaviour of its kubelet.
SCRIPTED_BAD_ROLLOUTS = {
    "never ready": BadRollout(
        "never-ready",
        ("--timeout", "3s"),
        (
            "rollout timed out: timed out after 3s",
            "1 out of 2 new replicas have been updated",
            "Readiness probe failed",
        ),
    ),
}


@pytest.mark.docker
@pytest.mark.parametrize("case", BAD_ROLLOUTS.values(), ids=BAD_ROLLOUTS.keys())
def test_failed_rollout_is_detected_and_the_previous_image_serves_again(
    real_deployer: Deployer, real_judge: Kubectl, real_manifests: Path, namespace: str, case: BadRollout
) -> None:
    assert_failed_rollout_rolled_back(real_deployer, real_judge, real_manifests, namespace, case, WEB_PORT)


@pytest.mark.parametrize("case", SCRIPTED_BAD_ROLLOUTS.values(), ids=SCRIPTED_BAD_ROLLOUTS.keys())
def test_failed_rollout_of_a_scripted_image_is_detected_and_the_previous_image_serves_again(
    deployer: Deployer, judge: Kubectl, manifests: Path, case: BadRollout
) -> None:
    assert_failed_rollout_rolled_back(deployer, judge, manifests, "shop", case, http_port=None)


def assert_failed_rollout_rolled_back(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, case: BadRollout, http_port: int | None
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    if case.config_map:
        write_manifests(manifests, deployment("web", config_map=case.config_map, http_port=http_port))

    done = deployer.run(case.tag, manifests, namespace, *case.extra)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    for text in (name.format(repo=repo) for name in case.names):
        assert text in done.stderr, f"{text!r} not in the output:\n{done.stderr}"
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    # Back before exit: the previous image is in the template and it is what the ready pods run.
    assert judge.image(namespace) == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}
    assert judge.jsonpath(namespace, "deployment/web", "{.status.availableReplicas}") == "2"
    # Failures are caught from the pod's status, not from the progress deadline (600 s by default).
    # Said by what deployer reports, not by its wall time: a loaded CI machine is slow, not wrong.
    assert "exceeded its progress deadline" not in done.stderr, done.explain()


@pytest.mark.docker
def test_two_workloads_one_failing_both_go_back_to_their_previous_revisions(
    real_deployer: Deployer, real_judge: Kubectl, namespace: str
) -> None:
    deployer, judge, repo = real_deployer, real_judge, real_deployer.repository  # worker: the same image
    manifests = write_manifests(
        deployer.workdir / "k8s", deployment("web"), deployment("worker", image="<IMAGE:worker>", replicas=1)
    )
    deployed(deployer, "v1", manifests, namespace, "--image-ref", f"worker={repo}:v1")

    done = deployer.run("v2", manifests, namespace, "--image-ref", f"worker={repo}:pull-error")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    last = done.stderr.splitlines()[-1]
    assert "deployment/worker" in last and "ErrImagePull" in done.stderr
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in last
    assert f"rolled back deployment/worker to revision 1 (image {repo}:v1)" in last
    assert judge.image(namespace, "deployment/web") == f"{repo}:v1"
    assert judge.image(namespace, "deployment/worker") == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}
    assert judge.serving_images(namespace, "worker") == {f"{repo}:v1"}

    again = deployer.run("v2", manifests, namespace, "--image-ref", f"worker={repo}:v2")

    assert again.code == EXIT_OK, again.explain()
    # The rollback wrote under a manager of its own, which the next deploy names when it takes the fields back.
    took = [line for line in again.stderr.splitlines() if "; took " in line]
    assert len(took) == 2 and all(line.endswith("from deployer-rollback") for line in took), again.stderr
    assert judge.image(namespace, "deployment/worker") == f"{repo}:v2"


@pytest.mark.docker
@pytest.mark.parametrize("delete_created", [False, True], ids=["left in place", "deleted"])
def test_failing_first_deploy_says_there_is_no_previous_revision(
    real_deployer: Deployer, real_judge: Kubectl, real_manifests: Path, namespace: str, delete_created: bool
) -> None:
    deployer, judge, manifests = real_deployer, real_judge, real_manifests
    extra = ("--delete-created-on-failure",) if delete_created else ()

    done = deployer.run("pull-error", manifests, namespace, *extra)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "first deploy" in done.stderr and "no previous revision" in done.stderr
    assert "ErrImagePull" in done.stderr
    if delete_created:
        assert "deleted deployment/web" in done.stderr.splitlines()[-1]
        assert not judge.exists(namespace, "deployment/web")
        # The namespace this run created goes too, after what was in it.
        assert f"deleted namespace/{namespace}" in done.stderr.splitlines()[-1]
        # The real namespace controller empties it first (pods stopping gracefully): a bound for a hang only.
        wait_until(lambda: not judge.exists("", f"namespace/{namespace}"), 90, "the namespace to be deleted")
    else:
        assert "--delete-created-on-failure removes it" in done.stderr
        assert judge.image(namespace) == f"{deployer.repository}:pull-error"


def test_slow_rollout_times_out_at_the_timeout_and_is_rolled_back(
    deployer: Deployer, judge: Kubectl, manifests: Path
) -> None:
    deployed(deployer, "v1", manifests, "shop")

    # Ready after 1000 simulated seconds (20 s here): healthy, only slower than --timeout allows.
    done = deployer.run("ready-after-1000s", manifests, "shop", "--timeout", "2s")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "rollout timed out: timed out after 2s" in done.stderr
    # Not before the timeout; had it waited on, the first new pod would have become ready at 20 s and the
    # progress deadline (12 s) would have been what it reported.
    assert done.seconds >= 2, done.explain()
    assert "exceeded its progress deadline" not in done.stderr, done.explain()
    assert judge.image("shop") == f"{REPO}:v1"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v1"}


def test_sigterm_during_the_wait_rolls_back_before_exit(deployer: Deployer, judge: Kubectl, manifests: Path) -> None:
    deployed(deployer, "v1", manifests, "shop")
    running = deployer.start("never-ready", manifests, "shop", "--timeout", "5m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 30, "the wait phase")
        running.wait_for_line(lambda line: line.startswith("web: "), 30, "a progress line")
        running.send(signal.SIGTERM)
        done = running.finish(timeout=30)
    finally:
        running.kill()

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "received SIGTERM: stopping the wait and rolling back" in done.stderr
    assert "cancelled" in done.stderr
    assert f"rolled back deployment/web to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert judge.image("shop") == f"{REPO}:v1"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v1"}


@pytest.mark.docker
def test_delete_created_on_failure_leaves_a_namespace_that_existed_before(
    real_deployer: Deployer, real_judge: Kubectl, real_manifests: Path, namespace: str
) -> None:
    deployer, judge, manifests = real_deployer, real_judge, real_manifests
    deployed(deployer, "v1", manifests, namespace)  # the namespace is created by this earlier run

    done = deployer.run("pull-error", manifests, namespace, "--delete-created-on-failure")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "rolled back deployment/web" in done.stderr.splitlines()[-1]
    assert f"namespace/{namespace}" not in done.stderr
    assert judge.exists("", f"namespace/{namespace}")
    assert judge.image(namespace) == f"{deployer.repository}:v1"


# --- whatever stops a run once it has applied something, what it applied goes back ------------------------------


@pytest.fixture
def configured_manifests(deployer: Deployer) -> Path:
    """A ConfigMap and the Deployment reading it: the ConfigMap is applied first."""
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"greeting": "v1"}}
    return write_manifests(deployer.workdir / "k8s-configured", config, deployment("web", config_map="web-config"))


def test_an_unexpected_error_applying_a_later_object_rolls_back_the_objects_applied_before(
    sim: KubeSim, deployer: Deployer, judge: Kubectl, configured_manifests: Path
) -> None:
    deployed(deployer, "v1", configured_manifests, "shop")
    app = configured_manifests / "app.yaml"
    app.write_text(app.read_text().replace("greeting: v1", "greeting: v2"))
    # The Deployment's apply is answered with something no API server sends (a broken proxy would): deployer
    # has no error of its own for what follows, after the ConfigMap was changed.
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "unreadable"}
    sim.answer_once("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", 200, broken)

    done = deployer.run("v2", configured_manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "Traceback" not in done.stderr
    assert "apply failed on an unexpected error: AttributeError" in done.stderr
    assert "==> Roll back" in done.stderr
    assert judge.jsonpath("shop", "configmap/web-config", "{.data.greeting}") == "v1"
    assert judge.image("shop") == f"{REPO}:v1"


def test_an_unexpected_error_during_the_wait_rolls_back(deployer: Deployer, judge: Kubectl, sim: KubeSim) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web"))
    deployed(deployer, "v1", manifests, "shop")
    # The wait's first list of Deployments holds one without a name, which deployer does not expect.
    nameless = {
        "kind": "DeploymentList",
        "apiVersion": "apps/v1",
        "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {}}],
    }
    sim.answer_once("GET", "/apis/apps/v1/namespaces/shop/deployments", 200, nameless)

    done = deployer.run("v2", manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "Traceback" not in done.stderr
    assert "watching the rollout failed on an unexpected error: KeyError" in done.stderr
    assert f"rolled back deployment/web to revision 1 (image {REPO}:v1)" in done.stderr.splitlines()[-1]
    assert judge.image("shop") == f"{REPO}:v1"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v1"}


@pytest.mark.docker
def test_no_rollback_leaves_the_failed_rollout_in_place(
    real_deployer: Deployer, real_judge: Kubectl, real_manifests: Path, namespace: str
) -> None:
    deployer, judge, manifests = real_deployer, real_judge, real_manifests
    deployed(deployer, "v1", manifests, namespace)

    done = deployer.run("pull-error", manifests, namespace, "--no-rollback")

    assert done.code == EXIT_FAILURE, done.explain()
    assert "--no-rollback: the failed rollout is left in place" in done.stderr
    assert "ErrImagePull" in done.stderr
    assert "==> Roll back" not in done.stderr
    assert judge.image(namespace) == f"{deployer.repository}:pull-error"


# --- migrating from `kubectl apply` ----------------------------------------------------------------------------


IMAGE_FIELD = '.spec.template.spec.containers[name="web"].image'


@pytest.fixture
def applied_by_kubectl(real_deployer: Deployer, real_judge: Kubectl, namespace: str) -> Path:
    """The origin pipeline's way: the manifest with the image filled in, `kubectl apply` (client-side)."""
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    documents = [namespace_doc, *render_with_image([deployment("web")], f"{real_deployer.repository}:v1")]
    rendered = write_manifests(real_deployer.workdir / "rendered", *documents)
    real_judge.apply_client_side(namespace, rendered / "app.yaml")
    real_judge.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
    return rendered


@pytest.mark.docker
def test_objects_from_client_side_kubectl_apply_are_taken_over_and_the_fields_named(
    real_deployer: Deployer, real_judge: Kubectl, real_manifests: Path, namespace: str, applied_by_kubectl: Path
) -> None:
    done = real_deployer.run("v2", real_manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    assert "deployment/web configured; took " in done.stderr
    took = next(line for line in done.stderr.splitlines() if "; took " in line)
    assert IMAGE_FIELD in took and took.endswith("from kubectl-client-side-apply"), took
    assert real_judge.image(namespace) == f"{real_deployer.repository}:v2"
    managers = real_judge.get_json(namespace, "deployment/web", "--show-managed-fields")["metadata"]["managedFields"]
    owner = next(m for m in managers if "f:image" in str(m["fieldsV1"]) and m["operation"] == "Apply")
    assert owner["manager"] == "deployer"


@pytest.mark.docker
def test_no_force_conflicts_refuses_and_names_the_fields_and_their_manager(
    real_deployer: Deployer, real_judge: Kubectl, real_manifests: Path, namespace: str, applied_by_kubectl: Path
) -> None:
    done = real_deployer.run("v2", real_manifests, namespace, "--no-force-conflicts")

    assert done.code == EXIT_FAILURE, done.explain()
    assert f"{IMAGE_FIELD} owned by kubectl-client-side-apply" in done.stderr
    assert real_judge.image(namespace) == f"{real_deployer.repository}:v1"


# --- the deploy lock --------------------------------------------------------------------------------------------

# The first run holds the lock until the test lets its rollout finish, however slowly the second run starts on a
# loaded machine: its pods are never ready until ``release_held_rollout``. The progress deadline is out of reach
# meanwhile (3600 simulated s, 72 s here).
HELD = "held-until-released"


@pytest.fixture
def held_manifests(sim: KubeSim, deployer: Deployer) -> Path:
    sim.kubelet.set_behaviour(f"*:{HELD}", Behaviour(never_ready=True))
    return write_manifests(deployer.workdir / "k8s-held", deployment("web", progress_deadline_seconds=3600))


def release_held_rollout(sim: KubeSim, judge: Kubectl, namespace: str) -> None:
    """Pods of the held image start ready from now on; the ones already waiting are replaced by such pods."""
    sim.kubelet.set_behaviour(f"*:{HELD}", Behaviour())

    def held_pods() -> list[str]:
        pods = judge.get_json(namespace, "pods", "-l", "app=web")["items"]
        return [p["metadata"]["name"] for p in pods if p["spec"]["containers"][0]["image"] == f"{REPO}:{HELD}"]

    # Listed after the change, so every pod that could have started never-ready is among them.
    judge.run(
        "-n",
        namespace,
        "delete",
        "pod",
        *wait_until(held_pods, 30, "a pod of the held rollout"),
        "--wait=false",
        "--ignore-not-found",
    )


def test_second_concurrent_run_waits_for_the_lock_then_succeeds(
    sim: KubeSim, deployer: Deployer, judge: Kubectl, held_manifests: Path
) -> None:
    deployed(deployer, "v1", held_manifests, "shop")
    first = deployer.start(HELD, held_manifests, "shop", env=github_run(101))
    second = None
    try:
        first.wait_for_line(lambda line: line.startswith("==> Wait"), 30, "the first run's wait phase")
        second = deployer.start("v3", held_manifests, "shop", env=github_run(102))
        waiting = second.wait_for_line(lambda line: "waiting for the deploy lock" in line, 30, "the lock wait")
        release_held_rollout(sim, judge, "shop")
        first_done = first.finish(timeout=30)
        second_done = second.finish(timeout=30)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    assert f"held by {run_url(101)}" in waiting
    assert first_done.code == EXIT_OK, first_done.explain()
    assert second_done.code == EXIT_OK, second_done.explain()
    assert second_done.stderr.index("waiting for the deploy lock") < second_done.stderr.index("==> Apply")
    assert judge.image("shop") == f"{REPO}:v3"
    assert not judge.exists("shop", "lease/deployer-lock")


def test_run_that_cannot_get_the_lock_in_time_fails_naming_the_holder(
    sim: KubeSim, deployer: Deployer, judge: Kubectl, held_manifests: Path
) -> None:
    deployed(deployer, "v1", held_manifests, "shop")
    first = deployer.start(HELD, held_manifests, "shop", env=github_run(201))
    try:
        first.wait_for_line(lambda line: line.startswith("==> Wait"), 30, "the first run's wait phase")
        second = deployer.run("v3", held_manifests, "shop", "--lock-timeout", "1s", env=github_run(202))
        release_held_rollout(sim, judge, "shop")
        first_done = first.finish(timeout=30)
    finally:
        first.kill()

    assert second.code == EXIT_FAILURE, second.explain()
    assert f"the deploy lock in namespace shop is held by {run_url(201)}" in second.stderr
    assert "--lock-timeout" in second.stderr
    assert first_done.code == EXIT_OK, first_done.explain()
    assert judge.image("shop") == f"{REPO}:{HELD}"


def test_a_run_paused_past_its_lease_loses_the_lock_and_leaves_the_next_runs_deploy_alone(
    sim: KubeSim, deployer: Deployer, judge: Kubectl, held_manifests: Path
) -> None:
    # A short lease (3 s instead of 60 s), so that the second run takes the lock from the paused one soon.
    lease = ("--lock-lease", "3s")
    deployed(deployer, "v1", held_manifests, "shop")
    paused = deployer.start(HELD, held_manifests, "shop", *lease, env=github_run(301))
    try:
        paused.wait_for_line(lambda line: line.startswith("==> Wait"), 30, "the first run's wait phase")
        paused.wait_for_line(lambda line: line.startswith("web: "), 30, "a progress line of the first run")
        paused.send(signal.SIGSTOP)
        try:
            second = deployer.run("v3", held_manifests, "shop", *lease, env=github_run(302), timeout=120)
        finally:
            paused.send(signal.SIGCONT)
        resumed = paused.finish(timeout=60)
    finally:
        paused.kill()

    assert second.code == EXIT_OK, second.explain()
    assert f"waiting for the deploy lock in shop, held by {run_url(301)}" in second.stderr
    # The paused run must neither claim the other run's rollout as its own nor roll it back.
    assert resumed.code == EXIT_FAILURE, resumed.explain()
    assert "lost the deploy lock in namespace shop" in resumed.stderr
    assert "not rolling back" in resumed.stderr
    assert "==> Roll back" not in resumed.stderr
    assert judge.image("shop") == f"{REPO}:v3"
    assert judge.serving_images("shop", "web") == {f"{REPO}:v3"}
    assert not judge.exists("shop", "lease/deployer-lock")


# --- real containers serving ----------------------------------------------------------------------------------


def served_versions(docker_client: Any, judge: Kubectl, namespace: str) -> set[str]:
    """What the Ready pods of web answer on their published port 8080 (127.0.0.1 only)."""
    pods = judge.get_json(namespace, "pods", "-l", "app=web")["items"]
    answers = set()
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if pod["metadata"].get("deletionTimestamp") or conditions.get("Ready") != "True":
            continue
        containers = docker_client.containers.list(filters={"label": f"kubesim.pod-uid={pod['metadata']['uid']}"})
        for container in containers:
            port = container.ports["8080/tcp"][0]["HostPort"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
                answers.add(response.read().decode().strip())
    return answers


@pytest.mark.docker
def test_real_containers_new_version_serves_then_a_missing_tag_brings_the_previous_one_back(
    real_deployer: Deployer, real_judge: Kubectl, namespace: str, web_images: WebImages, docker_client: Any
) -> None:
    deployer, judge = real_deployer, real_judge
    manifests = write_manifests(deployer.workdir / "k8s", deployment("web", replicas=1, http_port=WEB_PORT))
    deployed(deployer, "v1", manifests, namespace, "--timeout", "90s")

    done = deployer.run("v2", manifests, namespace, "--timeout", "90s")

    assert done.code == EXIT_OK, done.explain()
    assert wait_until(lambda: served_versions(docker_client, judge, namespace) == {"v2"}, 30, "v2 serving")

    missing = deployer.run("no-such-tag", manifests, namespace, "--timeout", "90s")

    assert missing.code == EXIT_ROLLED_BACK, missing.explain()
    assert "ErrImagePull" in missing.stderr
    assert f"rolled back deployment/web to revision 2 (image {web_images.tag('v2')})" in missing.stderr
    # Caught from the pod's status, not by waiting out --timeout (said by the output, not the wall time).
    assert "rollout timed out" not in missing.stderr, missing.explain()
    assert judge.image(namespace) == web_images.tag("v2")
    assert served_versions(docker_client, judge, namespace) == {"v2"}
