"""Kubernetes' naming rules as tables: what the API server accepts and refuses, per kind, found before any request."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.names import (
    dns1035_label_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    label_value_problem,
    name_rule,
    object_problems,
    path_segment_problem,
    qualified_name_problem,
)


@pytest.mark.parametrize("name", ["a", "web", "web-1", "1web", "a" * 63, "0"])
def test_dns1123_label_accepts(name: str) -> None:
    assert dns1123_label_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "is empty"),
        ("Shop", "has uppercase letters"),
        ("a" * 64, "is 64 characters long"),
        ("wéb", "has characters outside ASCII"),
        ("web.shop", "is not a DNS-1123 label"),
        ("-web", "is not a DNS-1123 label"),
        ("web-", "is not a DNS-1123 label"),
        ("web_1", "is not a DNS-1123 label"),
    ],
)
def test_dns1123_label_refuses_saying_why(name: str, why: str) -> None:
    problem = dns1123_label_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize("name", ["web", "web.shop.example", "1-2.3", "a" * 253, "a." * 126 + "b"])
def test_dns1123_subdomain_accepts(name: str) -> None:
    assert dns1123_subdomain_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Web", "has uppercase letters"),
        ("a" * 300, "is 300 characters long"),
        ("网站", "has characters outside ASCII"),
        ("web..shop", "is not a DNS-1123 subdomain"),
        (".web", "is not a DNS-1123 subdomain"),
        ("web shop", "is not a DNS-1123 subdomain"),
        ("system:web", "is not a DNS-1123 subdomain"),
    ],
)
def test_dns1123_subdomain_refuses_saying_why(name: str, why: str) -> None:
    problem = dns1123_subdomain_problem(name)
    assert problem is not None and why in problem


def test_a_long_name_is_quoted_by_its_start_and_length() -> None:
    problem = dns1123_subdomain_problem("x" * 300)
    assert problem is not None
    assert "'" + "x" * 40 + "'... (300 characters)" in problem and "x" * 41 not in problem


@pytest.mark.parametrize(("name", "ok"), [("web", True), ("web-2", True), ("2web", False), ("web.x", False)])
def test_dns1035_label_starts_with_a_letter(name: str, ok: bool) -> None:
    assert (dns1035_label_problem(name) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"), [("system:controller:web", True), ("Web_Admin", True), (".", False), ("a/b", False), ("50%", False)]
)
def test_path_segment_names_refuse_only_what_a_url_cannot_hold(name: str, ok: bool) -> None:
    assert (path_segment_problem(name) is None) is ok


# Names checked against the rule the API server applies to each kind (pkg/apis/*/validation: the NameFn that
# ValidateObjectMeta is given per kind; custom resources get the DNS-1123 subdomain).
NAMES_BY_KIND = [
    ("v1", "ConfigMap", "web.config", True),
    ("v1", "ConfigMap", "Web", False),
    ("apps/v1", "Deployment", "web.v2", True),
    ("apps/v1", "Deployment", "a" * 253, True),
    ("apps/v1", "Deployment", "a" * 254, False),
    ("v1", "Service", "web", True),
    ("v1", "Service", "web.v2", False),
    ("v1", "Service", "2web", False),
    ("v1", "Namespace", "shop", True),
    ("v1", "Namespace", "shop.eu", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "system:web:Reader", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "a/b", False),
    ("batch/v1", "Job", "a" * 63, True),
    ("batch/v1", "Job", "a" * 64, False),
    ("batch/v1", "CronJob", "a" * 52, True),
    ("batch/v1", "CronJob", "a" * 53, False),
    ("example.com/v1", "Widget", "my.widget", True),
    ("example.com/v1", "Widget", "My_Widget", False),
    # Service is a DNS-1035 label in the core group only: another group's Service is a custom resource.
    ("serving.knative.dev/v1", "Service", "web.v2", True),
]


@pytest.mark.parametrize(("api_version", "kind", "name", "ok"), NAMES_BY_KIND)
def test_name_rule_is_the_one_the_api_server_applies_to_the_kind(
    api_version: str, kind: str, name: str, ok: bool
) -> None:
    assert (name_rule(api_version, kind).check(name) is None) is ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("example.com/Some_Key.1", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("/app", False),
        ("Example.com/app", False),
        ("app/", False),
        ("-app", False),
        ("a/b/c", False),
    ],
)
def test_qualified_names_for_label_and_annotation_keys(key: str, ok: bool) -> None:
    assert (qualified_name_problem(key) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("v1.2_rc-3", True), ("A" * 63, True), ("A" * 64, False), ("a b", False)]
)
def test_label_values(value: str, ok: bool) -> None:
    assert (label_value_problem(value) is None) is ok


def deployment(**metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", **metadata},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}},
    }


def test_a_valid_object_has_no_problems() -> None:
    body = deployment(namespace="shop", labels={"app": "web"}, annotations={"Example.com/Note": "any text at all"})
    assert object_problems(body) == []


@pytest.mark.parametrize(
    ("body", "field_path", "says"),
    [
        (deployment(name="Web"), "metadata.name", "(the rule for Deployment names)"),
        (deployment(namespace="Shop"), "metadata.namespace", "has uppercase letters"),
        (deployment(labels={"app": "web shop"}), "metadata.labels.app", "not a valid label value"),
        (deployment(labels={"bad key!": "web"}), "metadata.labels.bad key!", "is not a valid key"),
        (deployment(labels={"version": 2}), "metadata.labels.version", "2 is not a string; quote it"),
        (deployment(annotations={"enabled": True}), "metadata.annotations.enabled", "True is not a string"),
        (deployment(annotations={"big": "x" * (256 * 1024)}), "metadata.annotations", "the API server takes at most"),
        (
            {**deployment(), "spec": {"template": {"metadata": {"labels": {"app": "-web"}}}}},
            "spec.template.metadata.labels.app",
            "not a valid label value",
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "nightly"},
                "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"a/b/c": "x"}}}}}},
            },
            "spec.jobTemplate.spec.template.metadata.labels.a/b/c",
            "has an invalid prefix",
        ),
    ],
)
def test_object_problems_name_the_field(body: dict[str, Any], field_path: str, says: str) -> None:
    problems = object_problems(body)
    assert [where for where, _ in problems] == [field_path]
    assert says in problems[0][1]


def test_a_custom_resources_template_is_left_to_its_crds_schema() -> None:
    rollout = {**deployment(), "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout"}
    rollout["spec"]["template"]["metadata"]["labels"] = {"app": "not a label value"}
    assert object_problems(rollout) == []
