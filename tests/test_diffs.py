"""The diff of a live object against the server's dry-run answer: what it leaves out, how it masks a Secret, how
it reads as text, JSON and Markdown (deployer.diffs, deploy_report's Markdown)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deployer import deploy_report, diffs
from deployer.deploy_report import DeployReport
from deployer.diffs import ObjectDiff

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "labels": {"app": "web"},
        "annotations": {"kubernetes.io/change-cause": "image web:v1", "deployment.kubernetes.io/revision": "3"},
        "resourceVersion": "812",
        "uid": "0b5c",
        "generation": 3,
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "managedFields": [{"manager": "deployer", "operation": "Apply"}],
    },
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "web:v1"}]}}},
    "status": {"readyReplicas": 2, "observedGeneration": 3},
}


def _changed(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``obj`` with the value at a dotted ``path`` (``metadata.uid``) set, or removed when None."""
    changed = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target = changed
    for key in parents:
        target = target.setdefault(key, {})
    if value is None:
        target.pop(last, None)
    else:
        target[last] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.managedFields", [{"manager": "kubectl-edit", "operation": "Update"}]),
        ("metadata.resourceVersion", "913"),
        ("metadata.generation", 4),
        ("metadata.uid", "ffff"),
        ("metadata.creationTimestamp", "2026-02-03T04:05:06Z"),
        ("metadata.selfLink", "/apis/apps/v1/namespaces/shop/deployments/web"),
        ("status", {"readyReplicas": 0}),
        ("status", None),
        (
            "metadata.annotations",
            {"kubernetes.io/change-cause": "image web:v1", "deployment.kubernetes.io/revision": "4"},
        ),
        ("metadata.annotations", {"kubernetes.io/change-cause": "image web:v1"}),
        (
            "metadata.annotations",
            {
                "kubernetes.io/change-cause": "image web:v1",
                "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Deployment"}',
            },
        ),
    ],
)
def test_what_the_server_writes_on_its_own_is_no_change(path: str, value: Any) -> None:
    assert diffs.diff_object(DEPLOYMENT, _changed(DEPLOYMENT, path, value)) == ObjectDiff(
        "Deployment", "web", "shop", "unchanged"
    )


@pytest.mark.parametrize(
    ("path", "value", "removed", "added"),
    [
        ("spec.replicas", 3, ["  replicas: 2"], ["  replicas: 3"]),
        ("metadata.labels", {"app": "web", "tier": "front"}, [], ["    tier: front"]),
        (
            "metadata.annotations",
            {"kubernetes.io/change-cause": "image web:v2"},
            ["    kubernetes.io/change-cause: image web:v1"],
            ["    kubernetes.io/change-cause: image web:v2"],
        ),
    ],
)
def test_what_the_manifests_change_is_the_diff(path: str, value: Any, removed: list[str], added: list[str]) -> None:
    diff = diffs.diff_object(DEPLOYMENT, _changed(DEPLOYMENT, path, value))

    assert diff.change == "update"
    assert diff.lines[:2] == ("--- live/shop/deployment/web", "+++ dry-run/shop/deployment/web")
    assert [line[1:] for line in diff.lines[2:] if line.startswith("-")] == removed
    assert [line[1:] for line in diff.lines[2:] if line.startswith("+")] == added


def test_an_absent_object_is_created_without_a_diff() -> None:
    assert diffs.diff_object(None, DEPLOYMENT) == ObjectDiff("Deployment", "web", "shop", "create")


def test_a_long_or_multi_line_value_stays_one_value_per_line() -> None:
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "x" * 300}}
    after = copy.deepcopy(live)
    after["data"]["conf"] = "first line\nsecond line\n"

    diff = diffs.diff_object(live, after)

    added = [line for line in diff.lines[2:] if line.startswith("+")]
    assert added == ["+  conf: |", "+    first line", "+    second line"]


SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "shop"},
    "type": "Opaque",
    "data": {"same": "c2FtZQ==", "changes": "b2xk", "dropped": "Z29uZQ=="},
}


def test_secret_values_are_masked_as_kubectl_diff_masks_them() -> None:
    after = copy.deepcopy(SECRET)
    after["data"] = {"same": "c2FtZQ==", "changes": "bmV3", "added": "YWRkZWQ="}

    before, answer = diffs.masked(SECRET, after)

    assert before is not None
    assert before["data"] == {"same": "***", "changes": "*** (before)", "dropped": "***"}
    assert answer["data"] == {"same": "***", "changes": "*** (after)", "added": "***"}
    assert SECRET["data"]["same"] == "c2FtZQ=="  # the inputs are left alone


def test_a_secret_diff_names_the_changed_keys_and_holds_no_value() -> None:
    after = copy.deepcopy(SECRET)
    after["data"] = {"same": "c2FtZQ==", "changes": "bmV3", "dropped": "Z29uZQ=="}
    after["stringData"] = {"token": "plain-text-value"}

    diff = diffs.diff_object(SECRET, after)

    text = "\n".join(diff.lines)
    assert "-  changes: '*** (before)'" in diff.lines and "+  changes: '*** (after)'" in diff.lines
    for value in ("c2FtZQ==", "b2xk", "bmV3", "Z29uZQ==", "plain-text-value"):
        assert value not in text


def test_a_secret_with_the_same_values_is_unchanged() -> None:
    assert diffs.diff_object(SECRET, copy.deepcopy(SECRET)).change == "unchanged"


def test_other_kinds_are_not_masked() -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    assert diffs.masked(config, config)[1]["data"] == {"k": "v"}


UPDATE = ObjectDiff("Deployment", "web", "shop", "update", ("--- live/x", "+++ dry-run/x", "@@ -1 +1 @@", "-a", "+b"))
CREATE = ObjectDiff("Service", "web", "shop", "create")
SAME = ObjectDiff("ConfigMap", "c", "shop", "unchanged")


def test_the_text_is_plain_unless_coloured() -> None:
    plain = diffs.diff_text([CREATE, UPDATE, SAME])
    assert plain.splitlines() == [
        "service/web (namespace shop): create",
        "deployment/web (namespace shop): update",
        *UPDATE.lines,
        "configmap/c (namespace shop): unchanged",
    ]
    assert "\x1b[" not in plain

    coloured = diffs.diff_text([UPDATE], colour=True).splitlines()
    assert coloured[3] == "\x1b[36m@@ -1 +1 @@\x1b[0m"
    assert coloured[4] == "\x1b[31m-a\x1b[0m" and coloured[5] == "\x1b[32m+b\x1b[0m"


def test_the_json_is_one_record_per_object() -> None:
    assert diffs.diff_json(UPDATE) == {
        "kind": "Deployment",
        "name": "web",
        "namespace": "shop",
        "change": "update",
        "diff": list(UPDATE.lines),
    }
    assert diffs.changed([SAME]) is False and diffs.changed([SAME, CREATE]) is True


def test_the_summary_has_a_collapsible_section_per_updated_object_with_its_diff_fenced() -> None:
    hostile = ObjectDiff(
        "ConfigMap", "c", "shop", "update", ("--- a", "+++ b", "@@ -1 +1 @@", "-x", "+```", "+</details><img src=x>")
    )
    report = DeployReport(status="planned", image="web:v2", changes=[CREATE, hostile, SAME])

    summary = deploy_report.summary_markdown(report)

    assert "### Changes (2 of 3 objects)" in summary
    assert "<p>create <code>service/web</code> in namespace <code>shop</code></p>" in summary
    section = summary[summary.index("<details><summary>update <code>configmap/c</code>") :]
    fence = "````"  # longer than the longest backtick run in the diff, so the diff cannot close it
    assert section.splitlines()[2] == fence + "diff"
    assert section.splitlines()[2 + len(hostile.lines) + 1] == fence
    assert section.splitlines()[2 + len(hostile.lines) + 3] == "</details>"


def test_a_namespace_with_markup_is_escaped_in_a_section_title() -> None:
    odd = ObjectDiff("ConfigMap", "c", "<b>x</b>", "update", ("-a", "+b"))
    lines = deploy_report.changes_markdown([odd])
    assert "in namespace <code>&lt;b&gt;x&lt;/b&gt;</code>" in lines[2]


def test_the_pull_request_comment_starts_with_its_marker_and_fits_githubs_limit() -> None:
    big = [
        ObjectDiff("ConfigMap", f"c{i}", "shop", "update", tuple(f"+{'y' * 100}" for _ in range(100)))
        for i in range(20)
    ]
    report = DeployReport(status="planned", image="web:v2", namespace="shop", changes=big)

    comment = deploy_report.pull_request_comment(report)

    assert comment.startswith("<!-- deployer diff namespace=shop -->\n")
    assert len(comment) <= deploy_report.COMMENT_LIMIT
    assert "more changed objects: the job summary has every diff" in comment
    assert comment.count("<details>") < len(big)


def test_a_comment_marker_cannot_end_the_html_comment_early() -> None:
    marker = deploy_report.comment_marker("a--><script>b")
    assert marker.startswith("<!-- ") and marker.endswith(" -->") and marker.count(">") == 1
