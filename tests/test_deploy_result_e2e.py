"""What `deployer run` reports, end to end on the Kubernetes simulator: the ``--format json`` result for every
outcome, the step outputs, summary and GitHub Deployment when reporting itself fails, the namespace chosen when
none is given, and each message printed once.

Like tests/test_deploy_e2e.py, deployer runs as a child process (``python -m deployer run --no-build ...``) and
kubectl judges what is live. The scripted kubelet picks image behaviours by tag words (``pull-error``,
``never-ready``); the clock runs 50 times faster than real time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
    write_manifests,
)
from tests.fakes.github_api import FakeGitHubAPI
from tests.kubesim import Behaviour, KubeSim

pytestmark = pytest.mark.kubectl

REPO = "registry.example/acme/web"
EXIT_ROLLBACK_FAILED = 4
IMAGE_FIELD = '.spec.template.spec.containers[name="web"].image'


@pytest.fixture
def deployer(kubesim: KubeSim, tmp_path: Path) -> Deployer:
    return Deployer.under(tmp_path, kubesim.kubeconfig_path)


@pytest.fixture
def judge(kubectl: str, kubesim: KubeSim, tmp_path: Path) -> Kubectl:
    return Kubectl.under(tmp_path, kubectl, kubesim.kubeconfig_path)


@pytest.fixture
def manifests(deployer: Deployer) -> Path:
    return write_manifests(deployer.workdir / "k8s", deployment("web"))


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
    deployer: Deployer, manifests: Path
) -> None:
    deployed(deployer, "v1", manifests, "shop")

    done = deployer.run("v2", manifests, "shop", "--format", "json")

    assert done.code == EXIT_OK, done.explain()
    result = result_of(done)
    assert result["schema_version"] == 1
    assert (result["status"], result["exit_code"], result["error"]) == ("success", 0, None)
    assert (result["image"], result["tag"], result["digest"]) == (f"{REPO}:v2", "v2", None)
    assert (result["namespace"], result["namespace_source"]) == ("shop", "option")
    assert str(deployer.kubeconfig) in result["cluster"]
    assert result["seconds"] > 0
    (web,) = result["workloads"]
    assert {key: web[key] for key in ("kind", "name", "namespace", "result", "revision", "previous_revision")} == {
        "kind": "Deployment",
        "name": "web",
        "namespace": "shop",
        "result": "ready",
        "revision": "2",
        "previous_revision": "1",
    }
    assert web["seconds"] > 0
    assert (result["diagnosis"], result["rolled_back"], result["rollback"]) == (None, False, [])
    assert "==> Apply 1 object(s)" in done.stderr, "the log goes to stderr"


def test_json_result_of_a_rolled_back_deploy_and_its_summary_show_the_diagnosis_as_text(
    deployer: Deployer, judge: Kubectl, manifests: Path, tmp_path: Path
) -> None:
    deployed(deployer, "v1", manifests, "shop")
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)}

    done = deployer.run("pull-error", manifests, "shop", "--format", "json", env=env)

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
    assert judge.image("shop") == f"{REPO}:v1"
    # The step summary shows the same text in a code block, not Markdown markup quoted inside one.
    text = summary.read_text()
    assert "```text\ndeployment/web failed: " in text
    assert "**Reason:**" not in text and "### deployment/web" not in text
    assert step_outputs(outputs)["error"] == result["error"]


def test_json_result_of_a_failed_rollout_left_in_place(deployer: Deployer, manifests: Path) -> None:
    deployed(deployer, "v1", manifests, "shop")

    done = deployer.run("pull-error", manifests, "shop", "--no-rollback", "--format", "json")

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
    kubesim: KubeSim, deployer: Deployer, judge: Kubectl, manifests: Path
) -> None:
    deployed(deployer, "v1", manifests, "shop")
    # The previous version can no longer become ready (say, a database it needs is gone): its pods are
    # recreated never ready, so putting it back cannot succeed.
    kubesim.kubelet.set_behaviour(f"{REPO}:v1", Behaviour(never_ready=True))
    judge.run("-n", "shop", "delete", "pods", "-l", "app=web", "--wait=false")

    done = deployer.run(
        "pull-error", manifests, "shop", "--format", "json", "--timeout", "30s", "--rollback-timeout", "1.94831s"
    )

    assert done.code == EXIT_ROLLBACK_FAILED, done.explain()
    result = result_of(done)
    assert (result["status"], result["exit_code"], result["rolled_back"]) == ("rollback-failed", 4, False)
    assert "rollback failed" in result["error"]
    assert "not ready after 1.9s (--rollback-timeout)" in result["error"]
    assert "1.94831" not in done.stderr


@pytest.fixture
def applied_by_kubectl(deployer: Deployer, judge: Kubectl) -> Path:
    """The image field owned by client-side `kubectl apply`, which --no-force-conflicts must not take."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    rendered = write_manifests(
        deployer.workdir / "rendered", namespace, *render_with_image([deployment("web")], f"{REPO}:v1")
    )
    judge.apply_client_side("shop", rendered / "app.yaml")
    judge.run("-n", "shop", "rollout", "status", "deployment/web", "--timeout=30s")
    return rendered


def test_an_apply_refusal_is_printed_once_and_is_the_json_results_error(
    deployer: Deployer, judge: Kubectl, manifests: Path, applied_by_kubectl: Path
) -> None:
    done = deployer.run("v2", manifests, "shop", "--no-force-conflicts", "--format", "json")

    assert done.code == EXIT_FAILURE, done.explain()
    refusal = f"{IMAGE_FIELD} owned by kubectl-client-side-apply"
    assert done.stderr.count(refusal) == 1, done.stderr
    result = result_of(done)
    assert result["status"] == "failed" and refusal in result["error"]
    assert judge.image("shop") == f"{REPO}:v1"


# --- reporting that fails after the deploy -----------------------------------------------------------------------


def test_an_unwritable_github_output_after_a_success_warns_keeps_exit_0_and_finishes_the_deployment(
    deployer: Deployer, manifests: Path, tmp_path: Path
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
            "shop",
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
    assert summary.read_text().startswith(f"## ✅ Deployed `{REPO}:v1`"), "the other readers are still written"


# --- the namespace when -n names none -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context_namespace", "chosen", "source", "said"),
    [
        (None, "default", "default", "Kubernetes' default: neither --namespace nor the kubeconfig context names one"),
        ("team-a", "team-a", "kubeconfig-context", "from the kubeconfig context, as no --namespace was given"),
    ],
    ids=["no namespace anywhere", "the context's namespace"],
)
def test_an_empty_namespace_says_which_namespace_was_chosen_and_why(
    kubesim: KubeSim,
    deployer: Deployer,
    judge: Kubectl,
    manifests: Path,
    tmp_path: Path,
    context_namespace: str | None,
    chosen: str,
    source: str,
    said: str,
) -> None:
    config = kubesim.kubeconfig_dict()
    if context_namespace:
        config["contexts"][0]["context"]["namespace"] = context_namespace
    deployer.kubeconfig = tmp_path / "kubeconfig-with-context"
    deployer.kubeconfig.write_text(json.dumps(config))

    done = deployer.run("v1", manifests, "", "--format", "json")

    assert done.code == EXIT_OK, done.explain()
    assert f"namespace: {chosen} ({said})" in done.stderr.splitlines()
    result = result_of(done)
    assert (result["namespace"], result["namespace_source"]) == (chosen, source)
    assert judge.image(chosen) == f"{REPO}:v1"
