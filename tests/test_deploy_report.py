"""The deploy report's pure renderings: the status for an exit code, the step outputs, the Markdown step
summary and the --format json result document."""

from __future__ import annotations

import json
import re

import pytest

from deployer import deploy_report
from deployer.deploy_report import CanaryPhase, DeployReport, PruneResult, WorkloadResult
from deployer.errors import WorkloadOutcome

# --- the deploy report -------------------------------------------------------------------------------

IMAGE = "ghcr.io/acme/hello-app:0123456"
DIGEST = "sha256:" + "ab" * 32


def web(**changes: object) -> WorkloadResult:
    fields: dict[str, object] = {
        "kind": "Deployment",
        "name": "web",
        "namespace": "default",
        "result": "ready",
        "seconds": 12.5,
        "revision": "3",
        "previous_revision": "2",
    }
    fields.update(changes)
    return WorkloadResult(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exit_code", "dry_run", "status"),
    [
        (0, False, "success"),
        (0, True, "planned"),
        (1, False, "failed"),
        (2, False, "failed"),
        (3, False, "rolled-back"),
        (4, False, "rollback-failed"),
    ],
)
def test_status_follows_the_exit_code(exit_code: int, dry_run: bool, status: str) -> None:
    assert deploy_report.status_for_exit_code(exit_code, dry_run=dry_run) == status


@pytest.mark.parametrize(
    ("status", "rolled_back"),
    [("success", "false"), ("rolled-back", "true"), ("rollback-failed", "false"), ("failed", "false")],
)
def test_outputs_of_a_report(status: str, rolled_back: str) -> None:
    report = DeployReport(
        status=status,
        image=IMAGE,
        tag="0123456",
        digest=DIGEST,  # type: ignore[arg-type]
        workloads=[web(), web(kind="StatefulSet", name="db", revision=None, previous_revision=None)],
    )

    outputs = deploy_report.report_outputs(report)

    assert outputs["image"] == IMAGE and outputs["digest"] == DIGEST and outputs["tag"] == "0123456"
    assert outputs["status"] == status and outputs["rolled-back"] == rolled_back
    assert json.loads(outputs["revisions"]) == {
        "deployment/web": {"namespace": "default", "revision": "3", "previous_revision": "2", "result": "ready"},
        "statefulset/db": {"namespace": "default", "revision": None, "previous_revision": None, "result": "ready"},
    }


def test_summary_of_a_success_lists_image_digest_environment_and_each_workload() -> None:
    report = DeployReport(
        status="success",
        image=IMAGE,
        tag="0123456",
        digest=DIGEST,
        environment="production",
        environment_url="https://hello.example.com",
        namespace="default",
        workloads=[web()],
        seconds=75,
    )

    markdown = deploy_report.summary_markdown(report)

    assert markdown.startswith(f"## ✅ Deployed `{IMAGE}`\n")
    assert f"| **Digest** | `{DIGEST}` |" in markdown
    assert "| **Environment** | [production](https://hello.example.com) |" in markdown
    assert "| **Duration** | 1m15s |" in markdown
    assert "| deployment/web | default | ready | 12.5s | 3 (was 2) |" in markdown
    assert "What went wrong" not in markdown and "Rollback" not in markdown


def test_summary_of_a_rollback_explains_the_failure_and_what_was_restored() -> None:
    report = DeployReport(
        status="rolled-back",
        image=IMAGE,
        tag="0123456",
        workloads=[web(result="failed", detail="ImagePullBackOff")],
        error="deployment/web did not become ready: ImagePullBackOff",
        diagnosis='pod web-7d9f: Back-off pulling image "ghcr.io/acme/hello-app:0123456"',
        rollback=[WorkloadOutcome("Deployment", "web", "rolled back", "to revision 2")],
    )

    markdown = deploy_report.summary_markdown(report)

    assert markdown.startswith("## ↩️ Rolled back:")
    assert "| deployment/web | default | failed: ImagePullBackOff | 12.5s | 3 (was 2) |" in markdown
    assert "> deployment/web did not become ready: ImagePullBackOff" in markdown
    assert '```text\npod web-7d9f: Back-off pulling image "ghcr.io/acme/hello-app:0123456"\n```' in markdown
    assert "| deployment/web | rolled back | to revision 2 |" in markdown


def test_summary_cannot_be_broken_by_text_from_the_cluster() -> None:
    hostile = "a | b <script>x</script>\n```\n# heading"
    report = DeployReport(
        status="failed", image=IMAGE, workloads=[web(detail=hostile)], diagnosis=hostile, error=hostile
    )

    markdown = deploy_report.summary_markdown(report)

    fenced = "````text\n" + hostile + "\n````"
    assert fenced in markdown, "in a code block longer fences keep the text literal"
    assert "<script>" not in markdown.replace(fenced, "")
    row = next(line for line in markdown.splitlines() if line.startswith("| deployment/web"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 6, "a pipe in the text must not add a column"


def test_summary_of_a_dry_run_shows_the_plan_unfolded() -> None:
    report = DeployReport(status="planned", image=IMAGE, plan="create deployment/web\ncreate service/web")

    markdown = deploy_report.summary_markdown(report)

    assert markdown.startswith(f"## 📝 Dry run of `{IMAGE}`")
    plan = "```text\ncreate deployment/web\ncreate service/web\n```"
    assert f"<details open><summary>Plan</summary>\n\n{plan}" in markdown


# --- the result document of --format json -----------------------------------------------------------------

RESULT_FIELDS = {
    "schema_version",
    "status",
    "exit_code",
    "error",
    "image",
    "tag",
    "digest",
    "cluster",
    "namespace",
    "namespace_source",
    "environment",
    "environment_url",
    "run_url",
    "seconds",
    "workloads",
    "diagnosis",
    "rolled_back",
    "canary",
    "rollback",
    "prune",
}


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            DeployReport(
                status="success",
                image=IMAGE,
                tag="0123456",
                digest=DIGEST,
                namespace="shop",
                namespace_source="option",
                cluster="kubeconfig ~/.kube/config, context prod",
                workloads=[web(seconds=12.34567)],
                seconds=20.0004,
                exit_code=0,
            ),
            {
                "status": "success",
                "exit_code": 0,
                "error": None,
                "image": IMAGE,
                "digest": DIGEST,
                "seconds": 20.0,
                "rolled_back": False,
                "rollback": [],
                "diagnosis": None,
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "web",
                        "namespace": "default",
                        "result": "ready",
                        "revision": "3",
                        "previous_revision": "2",
                        "seconds": 12.346,
                        "detail": None,
                    }
                ],
            },
        ),
        (
            DeployReport(
                status="rolled-back",
                image=IMAGE,
                tag="0123456",
                exit_code=3,
                error="rollout failed: x",
                diagnosis="deployment/web failed: x",
                workloads=[web(result="rolled back")],
                rollback=[WorkloadOutcome("Deployment", "web", "rolled back", "to revision 2")],
            ),
            {
                "status": "rolled-back",
                "exit_code": 3,
                "error": "rollout failed: x",
                "rolled_back": True,
                "diagnosis": "deployment/web failed: x",
                "rollback": [{"kind": "Deployment", "name": "web", "state": "rolled back", "detail": "to revision 2"}],
            },
        ),
        (
            DeployReport(
                status="rollback-failed",
                image=IMAGE,
                exit_code=4,
                error="rollout failed: x; rollback failed",
                rollback=[WorkloadOutcome("Deployment", "web", "failed")],
            ),
            {
                "status": "rollback-failed",
                "exit_code": 4,
                "rolled_back": False,
                "rollback": [{"kind": "Deployment", "name": "web", "state": "failed", "detail": None}],
            },
        ),
        (
            # Refused before the image could even be computed: every field is still there, empty.
            DeployReport(status="failed", image="", exit_code=2, error="--timeout: '10x' is not a duration"),
            {
                "status": "failed",
                "exit_code": 2,
                "error": "--timeout: '10x' is not a duration",
                "image": None,
                "tag": None,
                "digest": None,
                "namespace": None,
                "workloads": [],
                "rollback": [],
                "seconds": None,
            },
        ),
    ],
    ids=["success", "rolled back", "rollback failed", "bad input"],
)
def test_result_document_has_every_field_for_every_outcome(report: DeployReport, expected: dict[str, object]) -> None:
    document = deploy_report.result_document(report)

    assert set(document) == RESULT_FIELDS
    assert {key: document[key] for key in expected} == expected
    assert json.loads(json.dumps(document)) == document


def test_summary_and_result_name_each_pruned_and_kept_object() -> None:
    report = DeployReport(
        status="failed",
        image="ghcr.io/acme/web:abc1234",
        exit_code=1,
        prune=[
            PruneResult("CronJob", "nightly", "web", "pruned"),
            PruneResult("ConfigMap", "old", "web", "left", "HTTP 403"),
            PruneResult("PersistentVolumeClaim", "data", "web", "kept", "holds data; --prune-allow prunes it"),
        ],
    )

    markdown = deploy_report.summary_markdown(report)
    document = deploy_report.result_document(report)

    assert (
        "### Prune\n\n| Object | Namespace | Result |\n|---|---|---|\n| cronjob/nightly | web | pruned |\n" in markdown
    )
    assert "| configmap/old | web | left: HTTP 403 |" in markdown
    assert "| persistentvolumeclaim/data | web | kept: holds data; --prune-allow prunes it |" in markdown
    assert document["prune"][0] == {
        "kind": "CronJob",
        "name": "nightly",
        "namespace": "web",
        "result": "pruned",
        "detail": None,
    }
    assert [p["result"] for p in document["prune"]] == ["pruned", "left", "kept"]


def test_outputs_carry_the_error_of_a_failed_run() -> None:
    report = DeployReport(status="failed", image="", error="k8s/app.yaml:3: kind: required", exit_code=2)

    outputs = deploy_report.report_outputs(report)

    assert (outputs["status"], outputs["error"], outputs["image"]) == ("failed", "k8s/app.yaml:3: kind: required", "")


def test_summary_of_a_run_refused_before_the_image_was_known_names_no_image() -> None:
    report = DeployReport(status="failed", image="", error="--timeout: '10x' is not a duration", exit_code=2)

    markdown = deploy_report.summary_markdown(report)

    assert markdown.startswith("## ❌ Deploy failed:\n")
    assert "**Image**" not in markdown and "``" not in markdown
    assert "> --timeout: '10x' is not a duration" in markdown


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("option", "| **Namespace** | shop |"),
        ("kubeconfig-context", "| **Namespace** | shop (from the kubeconfig context, as no --namespace was given) |"),
        ("default", "| **Namespace** | shop (Kubernetes' default: neither --namespace nor the kubeconfig context"),
    ],
)
def test_summary_says_where_a_namespace_not_asked_for_came_from(source: str, shown: str) -> None:
    report = DeployReport(status="success", image=IMAGE, namespace="shop", namespace_source=source)

    assert shown in deploy_report.summary_markdown(report)


def test_result_json_cannot_be_read_as_a_workflow_command_and_reads_back_unchanged() -> None:
    hostile = "| ##[error]from the container\n::error::injected\n::stop-commands::x"
    report = DeployReport(
        status="failed", image=IMAGE, exit_code=1, error=hostile, diagnosis=hostile, workloads=[web(detail=hostile)]
    )

    text = deploy_report.result_json(report)

    assert "##[" not in text
    assert not any(line.strip().startswith("::") for line in text.splitlines())
    assert json.loads(text) == deploy_report.result_document(report)


# --- the canary phase (--strategy canary) ---------------------------------------------------------------------


def test_summary_and_result_show_the_canary_phase_with_its_timings() -> None:
    canary = CanaryPhase("failed", 1, 60.0, [("web-canary", "web")], ready_seconds=4.25, held_seconds=12.5)
    canary.detail = "deployment/web-canary: pod web-canary-x: NotReady: lost its readiness during the hold"
    report = DeployReport(status="rolled-back", image="ghcr.io/acme/web:2", canary=canary, exit_code=3)

    summary = deploy_report.summary_markdown(report)
    document = deploy_report.result_document(report)

    assert "### Canary" in summary
    assert "| deployment/web-canary | deployment/web | 1 | failed | 4.2s | 12.5s of 1m |" in summary
    assert "> deployment/web-canary: pod web-canary-x: NotReady: lost its readiness during the hold" in summary
    assert document["canary"] == {
        "result": "failed",
        "replicas": 1,
        "hold_seconds": 60.0,
        "canaries": [{"name": "web-canary", "deployment": "web"}],
        "ready_seconds": 4.25,
        "held_seconds": 12.5,
        "detail": canary.detail,
    }


def test_a_rolling_run_has_no_canary_section_and_a_canary_run_without_changes_says_why() -> None:
    rolling = DeployReport(status="success", image="web:2")
    quiet = DeployReport(status="success", image="web:2", canary=CanaryPhase("none", 1, 60.0, detail="no canary"))

    assert "### Canary" not in deploy_report.summary_markdown(rolling)
    assert deploy_report.result_document(rolling)["canary"] is None
    assert "### Canary\n\nno canary\n" in deploy_report.summary_markdown(quiet)
    assert deploy_report.result_document(quiet)["canary"]["result"] == "none"
