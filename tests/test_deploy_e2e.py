"""`deployer run` end to end, as a user runs it, with the real kubectl as the judge.

Each test starts deployer as a child process (``python -m deployer run --no-build ...``) from a directory of
its own with an environment it controls, then reads the exit code and what deployer printed, and asks kubectl
what is live. The tests run on the real control plane (tests/controlplane/), each in a namespace of its own,
with real images FROM scratch pulled from the test registry: a tag the registry lacks, an image that exits 1,
one that never answers its readiness probe (until a test writes its page into the container), a missing
ConfigMap, `kubectl apply` before deployer, real containers serving. Where a story needs a time machine, the
manifest's progressDeadlineSeconds or a short --timeout is the clock.

Two tests stay on the Kubernetes simulator: they need an API answer no API server sends, scripted once.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestRegistry
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
from tests.kubesim import KubeSim

pytestmark = pytest.mark.kubectl

# The real control plane (tests/controlplane/), shared by the session: a namespace per test, images that exist.
WEB_PORT = 8080  # where web_images' tags serve, and where deployment()'s readiness probe asks


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    # With a readiness probe: without one, a real pod whose container exits at start counts as available for
    # the moment it runs, and a rollout of it can complete before the crash shows (kubectl would agree).
    return write_manifests(deployer.workdir / "k8s", deployment("web", http_port=WEB_PORT))


def pod_containers(docker_client: Any, judge: Kubectl, namespace: str, image: str) -> list[Any]:
    """The running containers of the pods of web that run ``image`` and are not being deleted."""
    pods = judge.get_json(namespace, "pods", "-l", "app=web")["items"]
    uids = [
        pod["metadata"]["uid"]
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp") and pod["spec"]["containers"][0]["image"] == image
    ]
    return [
        container
        for uid in uids
        for container in docker_client.containers.list(filters={"label": f"kubesim.pod-uid={uid}"})
    ]


def in_every_container(containers: list[Any], script: str) -> None:
    for container in containers:
        code, output = container.exec_run(["/bin/sh", "-c", script])
        assert code == 0, f"{script!r} in {container.name} exited {code}: {output!r}"


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


def push_as(docker_client: Any, registry: TestRegistry, image: str, repository: str, tag: str) -> None:
    """Push the local ``image`` as ``repository:tag`` too. The same manifest as ``image``: the session's
    clean-up of web_images deletes it, and the tag with it."""
    docker_client.images.get(image).tag(repository, tag)
    auth = {"username": registry.username, "password": registry.password}
    try:
        for line in docker_client.images.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
            assert "error" not in line, f"pushing {repository}:{tag} failed: {line}"
    finally:
        docker_client.images.remove(f"{repository}:{tag}")  # the local tag only; the image stays


@pytest.mark.docker
def test_deploy_puts_the_commits_image_live_and_kubectl_history_shows_the_change_cause(
    deployer: Deployer,
    judge: Kubectl,
    manifests: Path,
    namespace: str,
    web_images: WebImages,
    docker_client: Any,
    registry: TestRegistry,
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    sha = git_commit(deployer.workdir).strip()
    # The commit's tag is what CI would have built and pushed: v2's image under it.
    push_as(docker_client, registry, web_images.tag("v2"), repo, sha[:7])

    done = deployer.run(None, manifests, namespace, env=github_run(7))

    assert done.code == EXIT_OK, done.explain()
    assert judge.image(namespace) == f"{repo}:{sha[:7]}"
    assert judge.serving_images(namespace, "web") == {f"{repo}:{sha[:7]}"}
    status = judge.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=5s").stdout
    assert 'deployment "web" successfully rolled out' in status
    history = judge.run("-n", namespace, "rollout", "history", "deployment/web").stdout
    assert f"deployer: {repo}:{sha[:7]} from commit {sha[:12]} ({run_url(7)})" in history
    assert f"deployer: {repo}:v1 by e2e-tester" in history
    assert "web: 2/2 updated, 2/2 available" in done.stderr


# --- failures that are detected and rolled back ---------------------------------------------------------------


@dataclass(frozen=True)
class BadRollout:
    tag: str
    extra: tuple[str, ...]
    names: tuple[str, ...]  # what the diagnosis must say ({repo}: the image repository)
    config_map: str | None = None


# A tag the registry does not have, an image that exits 1, a missing ConfigMap, an image never ready.
BAD_ROLLOUTS = {
    "bad image": BadRollout("pull-error", (), ("ErrImagePull", "{repo}:pull-error")),
    "crash loop": BadRollout("crash", (), ("CrashLoopBackOff", f"| {CRASH_LOG}", "(previous container)")),
    "missing ConfigMap": BadRollout(
        "v2", (), ("CreateContainerConfigError", 'configmap "app-settings" not found'), config_map="app-settings"
    ),
    # Nothing in a pod's status says it failed: the --timeout ends the wait. Long enough for the new pod to
    # start and miss its probe on a loaded machine.
    "never ready": BadRollout(
        "never-ready",
        ("--timeout", "20s"),
        (
            "rollout timed out: timed out after 20s",
            "1 out of 2 new replicas have been updated",
            "Readiness probe failed: HTTP probe failed with statuscode: 404",
        ),
    ),
}


def deadline_reported(stderr: str) -> bool:
    """deployer names the Deployment's condition reason, or says it as kubectl does ("exceeded its progress
    deadline"), depending on where it sees the condition first."""
    return "ProgressDeadlineExceeded" in stderr or "exceeded its progress deadline" in stderr


@pytest.mark.docker
@pytest.mark.parametrize("case", BAD_ROLLOUTS.values(), ids=BAD_ROLLOUTS.keys())
def test_failed_rollout_is_detected_and_the_previous_image_serves_again(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, case: BadRollout
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    if case.config_map:
        write_manifests(manifests, deployment("web", config_map=case.config_map, http_port=WEB_PORT))

    done = deployer.run(case.tag, manifests, namespace, *case.extra)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    for text in (name.format(repo=repo) for name in case.names):
        assert text in done.stderr, f"{text!r} not in the output:\n{done.stderr}"
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    # Back before exit: the previous image is in the template and it is what the ready pods run.
    assert judge.image(namespace) == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}
    assert judge.jsonpath(namespace, "deployment/web", "{.status.availableReplicas}") == "2"
    # Failures are caught from the pod's status or at --timeout, not from the progress deadline (600 s by
    # default). Said by what deployer reports, not by its wall time: a loaded CI machine is slow, not wrong.
    assert not deadline_reported(done.stderr), done.explain()


@pytest.mark.docker
def test_a_rollout_stuck_past_its_progress_deadline_is_rolled_back(
    deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    # The Deployment controller, not deployer, decides here: no progress for 10 s marks it failed.
    manifests = write_manifests(
        deployer.workdir / "k8s", deployment("web", http_port=WEB_PORT, progress_deadline_seconds=10)
    )
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)

    done = deployer.run("never-ready", manifests, namespace, "--timeout", "5m")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert 'deployment/web: ProgressDeadlineExceeded: ReplicaSet "web-' in done.stderr, done.explain()
    assert "rollout timed out" not in done.stderr, done.explain()
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert judge.image(namespace) == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}


@pytest.mark.docker
def test_two_workloads_one_failing_both_go_back_to_their_previous_revisions(
    deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    repo = deployer.repository  # worker: the same image
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
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, delete_created: bool
) -> None:
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


@pytest.mark.docker
def test_slow_rollout_times_out_at_the_timeout_and_is_rolled_back(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    # Healthy, only slower than --timeout allows: its readiness is first probed an hour after it starts.
    slow = deployment("web", http_port=WEB_PORT)
    slow["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = 3600
    write_manifests(manifests, slow)

    done = deployer.run("v2", manifests, namespace, "--timeout", "2s")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "rollout timed out: timed out after 2s" in done.stderr
    # Not before the timeout, and not the progress deadline (600 s): the timeout is what ended the wait.
    assert done.seconds >= 2, done.explain()
    assert not deadline_reported(done.stderr), done.explain()
    assert judge.image(namespace) == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}


@pytest.mark.docker
def test_sigterm_during_the_wait_rolls_back_before_exit(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)
    running = deployer.start("never-ready", manifests, namespace, "--timeout", "5m")
    try:
        running.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the wait phase")
        running.wait_for_line(lambda line: line.startswith("web: "), 60, "a progress line")
        running.send(signal.SIGTERM)
        done = running.finish(timeout=120)
    finally:
        running.kill()

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "received SIGTERM: stopping the wait and rolling back" in done.stderr
    assert "cancelled" in done.stderr
    assert f"rolled back deployment/web to revision 1 (image {repo}:v1)" in done.stderr.splitlines()[-1]
    assert judge.image(namespace) == f"{repo}:v1"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v1"}


@pytest.mark.docker
def test_delete_created_on_failure_leaves_a_namespace_that_existed_before(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
    deployed(deployer, "v1", manifests, namespace)  # the namespace is created by this earlier run

    done = deployer.run("pull-error", manifests, namespace, "--delete-created-on-failure")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "rolled back deployment/web" in done.stderr.splitlines()[-1]
    assert f"namespace/{namespace}" not in done.stderr
    assert judge.exists("", f"namespace/{namespace}")
    assert judge.image(namespace) == f"{deployer.repository}:v1"


# --- whatever stops a run once it has applied something, what it applied goes back ------------------------------

# On kubesim: what breaks these runs is an API answer no API server sends (a broken proxy's), scripted once.
SIM_REPO = "registry.example/acme/web"


@pytest.fixture
def sim_deployer(kubesim: KubeSim, tmp_path: Path) -> Deployer:
    return Deployer.under(tmp_path, kubesim.kubeconfig_path)


@pytest.fixture
def sim_judge(kubectl: str, kubesim: KubeSim, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, kubesim.kubeconfig_path)


@pytest.fixture
def configured_manifests(sim_deployer: Deployer) -> Path:
    """A ConfigMap and the Deployment reading it: the ConfigMap is applied first."""
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"greeting": "v1"}}
    return write_manifests(sim_deployer.workdir / "k8s-configured", config, deployment("web", config_map="web-config"))


def test_an_unexpected_error_applying_a_later_object_rolls_back_the_objects_applied_before(
    kubesim: KubeSim, sim_deployer: Deployer, sim_judge: Kubectl, configured_manifests: Path
) -> None:
    deployed(sim_deployer, "v1", configured_manifests, "shop")
    app = configured_manifests / "app.yaml"
    app.write_text(app.read_text().replace("greeting: v1", "greeting: v2"))
    # The Deployment's apply is answered with something no API server sends (a broken proxy would): deployer
    # has no error of its own for what follows, after the ConfigMap was changed.
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "unreadable"}
    kubesim.answer_once("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", 200, broken)

    done = sim_deployer.run("v2", configured_manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "Traceback" not in done.stderr
    assert "apply failed on an unexpected error: AttributeError" in done.stderr
    assert "==> Roll back" in done.stderr
    assert sim_judge.jsonpath("shop", "configmap/web-config", "{.data.greeting}") == "v1"
    assert sim_judge.image("shop") == f"{SIM_REPO}:v1"


def test_an_unexpected_error_during_the_wait_rolls_back(
    kubesim: KubeSim, sim_deployer: Deployer, sim_judge: Kubectl
) -> None:
    manifests = write_manifests(sim_deployer.workdir / "k8s", deployment("web"))
    deployed(sim_deployer, "v1", manifests, "shop")
    # The wait's first list of Deployments holds one without a name, which deployer does not expect.
    nameless = {
        "kind": "DeploymentList",
        "apiVersion": "apps/v1",
        "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {}}],
    }
    kubesim.answer_once("GET", "/apis/apps/v1/namespaces/shop/deployments", 200, nameless)

    done = sim_deployer.run("v2", manifests, "shop")

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    assert "Traceback" not in done.stderr
    assert "watching the rollout failed on an unexpected error: KeyError" in done.stderr
    assert f"rolled back deployment/web to revision 1 (image {SIM_REPO}:v1)" in done.stderr.splitlines()[-1]
    assert sim_judge.image("shop") == f"{SIM_REPO}:v1"
    assert sim_judge.serving_images("shop", "web") == {f"{SIM_REPO}:v1"}


@pytest.mark.docker
def test_no_rollback_leaves_the_failed_rollout_in_place(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str
) -> None:
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
def applied_by_kubectl(deployer: Deployer, judge: Kubectl, namespace: str) -> Path:
    """The origin pipeline's way: the manifest with the image filled in, `kubectl apply` (client-side)."""
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    documents = [namespace_doc, *render_with_image([deployment("web")], f"{deployer.repository}:v1")]
    rendered = write_manifests(deployer.workdir / "rendered", *documents)
    judge.apply_client_side(namespace, rendered / "app.yaml")
    judge.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
    return rendered


@pytest.mark.docker
def test_objects_from_client_side_kubectl_apply_are_taken_over_and_the_fields_named(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, applied_by_kubectl: Path
) -> None:
    done = deployer.run("v2", manifests, namespace)

    assert done.code == EXIT_OK, done.explain()
    assert "deployment/web configured; took " in done.stderr
    took = next(line for line in done.stderr.splitlines() if "; took " in line)
    assert IMAGE_FIELD in took and took.endswith("from kubectl-client-side-apply"), took
    assert judge.image(namespace) == f"{deployer.repository}:v2"
    managers = judge.get_json(namespace, "deployment/web", "--show-managed-fields")["metadata"]["managedFields"]
    owner = next(m for m in managers if "f:image" in str(m["fieldsV1"]) and m["operation"] == "Apply")
    assert owner["manager"] == "deployer"


@pytest.mark.docker
def test_no_force_conflicts_refuses_and_names_the_fields_and_their_manager(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, applied_by_kubectl: Path
) -> None:
    done = deployer.run("v2", manifests, namespace, "--no-force-conflicts")

    assert done.code == EXIT_FAILURE, done.explain()
    assert f"{IMAGE_FIELD} owned by kubectl-client-side-apply" in done.stderr
    assert judge.image(namespace) == f"{deployer.repository}:v1"


# --- the deploy lock --------------------------------------------------------------------------------------------

# The first run holds the lock until the test lets its rollout finish, however slowly the second run starts on a
# loaded machine: its one pod (never-ready) fails its readiness probe until ``release_held_rollout`` writes the
# page the probe asks for into its container. The progress deadline is out of reach meanwhile.
HELD = "never-ready"


@pytest.fixture
def held_manifests(deployer: Deployer) -> Path:
    held = deployment("web", replicas=1, http_port=WEB_PORT, progress_deadline_seconds=3600)
    return write_manifests(deployer.workdir / "k8s-held", held)


def release_held_rollout(docker_client: Any, deployer: Deployer, judge: Kubectl, namespace: str) -> None:
    """The held rollout's pod becomes ready: the one new pod of a one-replica rollout is all there is to it."""
    image = f"{deployer.repository}:{HELD}"
    held = wait_until(
        lambda: pod_containers(docker_client, judge, namespace, image), 60, "the held pod's running container"
    )
    in_every_container(held, "echo released > /www/index.html")


@pytest.mark.docker
def test_second_concurrent_run_waits_for_the_lock_then_succeeds(
    deployer: Deployer, judge: Kubectl, held_manifests: Path, namespace: str, docker_client: Any
) -> None:
    deployed(deployer, "v1", held_manifests, namespace)
    first = deployer.start(HELD, held_manifests, namespace, env=github_run(101))
    second = None
    try:
        first.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the first run's wait phase")
        second = deployer.start("v2", held_manifests, namespace, env=github_run(102))
        waiting = second.wait_for_line(lambda line: "waiting for the deploy lock" in line, 60, "the lock wait")
        release_held_rollout(docker_client, deployer, judge, namespace)
        first_done = first.finish(timeout=120)
        second_done = second.finish(timeout=120)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    assert f"held by {run_url(101)}" in waiting
    assert first_done.code == EXIT_OK, first_done.explain()
    assert second_done.code == EXIT_OK, second_done.explain()
    assert second_done.stderr.index("waiting for the deploy lock") < second_done.stderr.index("==> Apply")
    assert judge.image(namespace) == f"{deployer.repository}:v2"
    assert not judge.exists(namespace, "lease/deployer-lock")


@pytest.mark.docker
def test_run_that_cannot_get_the_lock_in_time_fails_naming_the_holder(
    deployer: Deployer, judge: Kubectl, held_manifests: Path, namespace: str, docker_client: Any
) -> None:
    deployed(deployer, "v1", held_manifests, namespace)
    first = deployer.start(HELD, held_manifests, namespace, env=github_run(201))
    try:
        first.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the first run's wait phase")
        second = deployer.run("v2", held_manifests, namespace, "--lock-timeout", "1s", env=github_run(202))
        release_held_rollout(docker_client, deployer, judge, namespace)
        first_done = first.finish(timeout=120)
    finally:
        first.kill()

    assert second.code == EXIT_FAILURE, second.explain()
    assert f"the deploy lock in namespace {namespace} is held by {run_url(201)}" in second.stderr
    assert "--lock-timeout" in second.stderr
    assert first_done.code == EXIT_OK, first_done.explain()
    assert judge.image(namespace) == f"{deployer.repository}:{HELD}"


@pytest.mark.docker
def test_a_signal_while_waiting_for_the_lock_cancels_the_run_by_that_signal(
    deployer: Deployer, judge: Kubectl, held_manifests: Path, namespace: str, docker_client: Any
) -> None:
    deployed(deployer, "v1", held_manifests, namespace)
    first = deployer.start(HELD, held_manifests, namespace, env=github_run(111))
    second = None
    try:
        first.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the first run's wait phase")
        second = deployer.start("v2", held_manifests, namespace, env=github_run(112))
        second.wait_for_line(lambda line: "waiting for the deploy lock" in line, 60, "the lock wait")
        second.send(signal.SIGINT)
        second_done = second.finish(timeout=60)
        release_held_rollout(docker_client, deployer, judge, namespace)
        first_done = first.finish(timeout=120)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    assert second_done.code == 130, second_done.explain()
    assert second_done.stderr.splitlines()[-1] == (
        "error: cancelled by SIGINT while waiting for the deploy lock; nothing was applied to the cluster"
    )
    assert first_done.code == EXIT_OK, first_done.explain()
    assert judge.image(namespace) == f"{deployer.repository}:{HELD}"


@pytest.mark.docker
def test_a_run_paused_past_its_lease_loses_the_lock_and_leaves_the_next_runs_deploy_alone(
    deployer: Deployer, judge: Kubectl, held_manifests: Path, namespace: str
) -> None:
    # A short lease (3 s instead of 60 s), so that the second run takes the lock from the paused one soon.
    lease = ("--lock-lease", "3s")
    repo = deployer.repository
    deployed(deployer, "v1", held_manifests, namespace)
    paused = deployer.start(HELD, held_manifests, namespace, *lease, env=github_run(301))
    second = None
    try:
        paused.wait_for_line(lambda line: line.startswith("==> Wait"), 60, "the first run's wait phase")
        second = deployer.start("v2", held_manifests, namespace, *lease, env=github_run(302))
        # Paused only once the second run has found the lock held: however slowly it started, it waited.
        second.wait_for_line(lambda line: "waiting for the deploy lock" in line, 60, "the lock wait")
        paused.send(signal.SIGSTOP)
        try:
            second_done = second.finish(timeout=180)
        finally:
            paused.send(signal.SIGCONT)
        resumed = paused.finish(timeout=120)
    finally:
        paused.kill()
        if second is not None:
            second.kill()

    assert second_done.code == EXIT_OK, second_done.explain()
    assert f"waiting for the deploy lock in {namespace}, held by {run_url(301)}" in second_done.stderr
    # The paused run must neither claim the other run's rollout as its own nor roll it back.
    assert resumed.code == EXIT_FAILURE, resumed.explain()
    assert f"lost the deploy lock in namespace {namespace}" in resumed.stderr
    assert "not rolling back" in resumed.stderr
    assert "==> Roll back" not in resumed.stderr
    assert judge.image(namespace) == f"{repo}:v2"
    assert judge.serving_images(namespace, "web") == {f"{repo}:v2"}
    assert not judge.exists(namespace, "lease/deployer-lock")


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
    deployer: Deployer, judge: Kubectl, namespace: str, web_images: WebImages, docker_client: Any
) -> None:
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
