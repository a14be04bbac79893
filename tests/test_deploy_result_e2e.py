"""What `deployer run` reports, end to end on the real control plane (tests/controlplane/): the ``--format json``
result for every outcome, the step outputs, summary and GitHub Deployment when reporting itself fails, the
namespace chosen when none is given, and each message printed once.

Like tests/test_deploy_e2e.py, deployer runs as a child process (``python -m deployer run --no-build ...``) and
kubectl judges what is live; each test has a namespace of its own, and the images are web_images' (a tag the
registry lacks fails to pull).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controlplane import ControlPlane
from tests.deploy_scenarios import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    Deployer,
    Finished,
    Kubectl,
    deployed,
    deployment,
    render_with_image,
    wait_until,
    write_manifests,
)
from tests.fakes.github_api import FakeGitHubAPI

pytestmark = [pytest.mark.kubectl, pytest.mark.docker]

EXIT_ROLLBACK_FAILED = 4
IMAGE_FIELD = '.spec.template.spec.containers[name="web"].image'
WEB_PORT = 8080  # where web_images' tags serve, and where deployment()'s readiness probe asks


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", deployment("web", http_port=WEB_PORT))


def result_of(done: Finished) -> dict[str, Any]:
    """The one JSON document on stdout: json.loads refuses anything before or after it."""
    document = json.loads(done.stdout)
    assert isinstance(document, dict), done.stdout
    return document


def step_outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it (every value in the heredoc form deployer writes)."""
    values: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        name, delimiter = line.split("<<", 1)
        value: list[str] = []
        for following in lines:
            if following == delimiter:
                break
            value.append(following)
        values[name] = "\n".join(value)
    return values


# --- the JSON result, one outcome after another ---------------------------------------------------------------


def test_json_result_of_a_successful_deploy_names_image_workloads_revisions_and_namespace(
    deployer: Deployer, manifests: Path, namespace: str
) -> None:
    repo = deployer.repository
    deployed(deployer, "v1", manifests, namespace)

    done = deployer.run("v2", manifests, namespace, "--format", "json")

    assert done.code == EXIT_OK, done.explain()
    result = result_of(done)
    assert result["schema_version"] == 1
    assert (result["status"], result["exit_code"], result["error"]) == ("success", 0, None)
    assert (result["image"], result["tag"], result["digest"]) == (f"{repo}:v2", "v2", None)
    assert (result["namespace"], result["namespace_source"]) == (namespace, "option")
    assert str(deployer.kubeconfig) in result["cluster"]
    assert result["seconds"] > 0
    (web,) = result["workloads"]
    assert {key: web[key] for key in ("kind", "name", "namespace", "result", "revision", "previous_revision")} == {
        "kind": "Deployment",
        "name": "web",
        "namespace": namespace,
        "result": "ready",
        "revision": "2",
        "previous_revision": "1",
    }
    assert web["seconds"] > 0
    assert (result["diagnosis"], result["rolled_back"], result["rollback"]) == (None, False, [])
    assert "==> Apply 1 object(s)" in done.stderr, "the log goes to stderr"


def test_json_result_of_a_rolled_back_deploy_and_its_summary_show_the_diagnosis_as_text(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, tmp_path: Path
) -> None:
    deployed(deployer, "v1", manifests, namespace)
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)}

    done = deployer.run("pull-error", manifests, namespace, "--format", "json", env=env)

    assert done.code == EXIT_ROLLED_BACK, done.explain()
    result = result_of(done)
    assert (result["status"], result["exit_code"], result["rolled_back"]) == ("rolled-back", 3, True)
    assert result["error"].startswith("rollout failed: ") and "ErrImagePull" in result["error"]
    assert result["diagnosis"].startswith("deployment/web failed: ")
    assert "ErrImagePull" in result["diagnosis"]
    (restored,) = result["rollback"]
    assert (restored["kind"], restored["name"], restored["state"]) == ("Deployment", "web", "rolled back")
    assert "revision 1" in restored["detail"]
    assert result["workloads"][0]["previous_revision"] == "1"
    assert judge.image(namespace) == f"{deployer.repository}:v1"
    # The step summary shows the same text in a code block, not Markdown markup quoted inside one.
    text = summary.read_text()
    assert "```text\ndeployment/web failed: " in text
    assert "**Reason:**" not in text and "### deployment/web" not in text
    assert step_outputs(outputs)["error"] == result["error"]


def test_json_result_of_a_failed_rollout_left_in_place(deployer: Deployer, manifests: Path, namespace: str) -> None:
    deployed(deployer, "v1", manifests, namespace)

    done = deployer.run("pull-error", manifests, namespace, "--no-rollback", "--format", "json")

    assert done.code == EXIT_FAILURE, done.explain()
    result = result_of(done)
    assert (result["status"], result["exit_code"], result["rolled_back"], result["rollback"]) == (
        "failed",
        1,
        False,
        [],
    )
    assert "--no-rollback: the failed rollout is left in place" in result["error"]
    assert "ErrImagePull" in result["diagnosis"]


def test_json_result_when_the_rollback_fails_too_and_its_timeout_prints_short(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, docker_client: Any
) -> None:
    deployed(deployer, "v1", manifests, namespace)
    # The previous version can no longer become ready (say, the content it serves is gone): its running
    # containers lose the page their readiness probe asks for, so putting v1 back cannot succeed.
    for pod in judge.get_json(namespace, "pods", "-l", "app=web")["items"]:
        label = f"kubesim.pod-uid={pod['metadata']['uid']}"
        for container in docker_client.containers.list(filters={"label": label}):
            code, output = container.exec_run(["rm", "/www/index.html"])
            assert code == 0, output
    wait_until(lambda: not judge.serving_images(namespace, "web"), 60, "v1's pods to fail their readiness probe")

    done = deployer.run(
        "pull-error", manifests, namespace, "--format", "json", "--timeout", "60s", "--rollback-timeout", "1.94831s"
    )

    assert done.code == EXIT_ROLLBACK_FAILED, done.explain()
    result = result_of(done)
    assert (result["status"], result["exit_code"], result["rolled_back"]) == ("rollback-failed", 4, False)
    assert "rollback failed" in result["error"]
    assert "not ready after 1.9s (--rollback-timeout)" in result["error"]
    assert "1.94831" not in done.stderr


@pytest.fixture
def applied_by_kubectl(deployer: Deployer, judge: Kubectl, namespace: str) -> Path:
    """The image field owned by client-side `kubectl apply`, which --no-force-conflicts must not take."""
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    rendered = write_manifests(
        deployer.workdir / "rendered",
        namespace_doc,
        *render_with_image([deployment("web", http_port=WEB_PORT)], f"{deployer.repository}:v1"),
    )
    judge.apply_client_side(namespace, rendered / "app.yaml")
    judge.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
    return rendered


def test_an_apply_refusal_is_printed_once_and_is_the_json_results_error(
    deployer: Deployer, judge: Kubectl, manifests: Path, namespace: str, applied_by_kubectl: Path
) -> None:
    done = deployer.run("v2", manifests, namespace, "--no-force-conflicts", "--format", "json")

    assert done.code == EXIT_FAILURE, done.explain()
    refusal = f"{IMAGE_FIELD} owned by kubectl-client-side-apply"
    assert done.stderr.count(refusal) == 1, done.stderr
    result = result_of(done)
    assert result["status"] == "failed" and refusal in result["error"]
    assert judge.image(namespace) == f"{deployer.repository}:v1"


# --- reporting that fails after the deploy -----------------------------------------------------------------------


def test_an_unwritable_github_output_after_a_success_warns_keeps_exit_0_and_finishes_the_deployment(
    deployer: Deployer, manifests: Path, namespace: str, tmp_path: Path
) -> None:
    unwritable = tmp_path / "output-is-a-directory"
    unwritable.mkdir()
    summary = tmp_path / "summary.md"
    with FakeGitHubAPI() as github:
        env = {
            "GITHUB_OUTPUT": str(unwritable),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_REPOSITORY": github.repository,
        }
        done = deployer.run(
            "v1",
            manifests,
            namespace,
            "--environment",
            "production",
            "--github-token",
            github.token,
            "--github-api-url",
            github.url,
            env=env,
        )
        (recorded,) = github.deployments()
        states = [status["state"] for status in github.statuses(recorded["id"])]
        assert github.validation_problems == []

    assert done.code == EXIT_OK, done.explain()
    assert f"warning: could not write to GITHUB_OUTPUT {unwritable}: Is a directory" in done.stderr
    assert states[-1] == "success", states
    assert summary.read_text().startswith(f"## ✅ Deployed `{deployer.repository}:v1`"), (
        "the other readers are still written"
    )


# --- the namespace when -n names none -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context_namespace", "source", "said"),
    [
        (False, "default", "Kubernetes' default: neither --namespace nor the kubeconfig context names one"),
        (True, "kubeconfig-context", "from the kubeconfig context, as no --namespace was given"),
    ],
    ids=["no namespace anywhere", "the context's namespace"],
)
def test_an_empty_namespace_says_which_namespace_was_chosen_and_why(
    control_plane: ControlPlane,
    deployer: Deployer,
    judge: Kubectl,
    namespace: str,
    tmp_path: Path,
    context_namespace: bool,
    source: str,
    said: str,
) -> None:
    config = yaml.safe_load(control_plane.kubeconfig_path.read_text())
    if context_namespace:
        config["contexts"][0]["context"]["namespace"] = namespace
    chosen = namespace if context_namespace else "default"
    deployer.kubeconfig = tmp_path / "kubeconfig-with-context"
    deployer.kubeconfig.write_text(json.dumps(config))
    # A name of the test's own: the default namespace is the session's, shared with other tests.
    manifests = write_manifests(deployer.workdir / "k8s", deployment(f"web-{namespace}", http_port=WEB_PORT))
    workload = f"deployment/web-{namespace}"
    try:
        done = deployer.run("v1", manifests, "", "--format", "json")
        image = judge.image(chosen, workload) if done.code == EXIT_OK else None
    finally:
        if not context_namespace:
            judge.run("-n", "default", "delete", workload, "--wait=false", check=False)

    assert done.code == EXIT_OK, done.explain()
    assert f"namespace: {chosen} ({said})" in done.stderr.splitlines()
    result = result_of(done)
    assert (result["namespace"], result["namespace_source"]) == (chosen, source)
    assert image == f"{deployer.repository}:v1"
