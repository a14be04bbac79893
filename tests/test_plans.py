"""The plan: apply order, duplicate objects, and the plan as text and as JSON."""

from __future__ import annotations

import json

import pytest

from deployer.diffs import ObjectDiff
from deployer.manifests import ManifestObject
from deployer.plans import (
    apply_rank,
    duplicate_objects,
    make_plan,
    order_for_apply,
    plan_as_json,
    plan_as_text,
)


def obj(
    kind: str, name: str, namespace: str | None = None, api_version: str = "v1", document: int = 1
) -> ManifestObject:
    metadata: dict[str, str] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return ManifestObject("k8s/app.yaml", document, {"apiVersion": api_version, "kind": kind, "metadata": metadata})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            ["Ingress", "Deployment", "Service", "ConfigMap", "Namespace"],
            ["Namespace", "ConfigMap", "Service", "Deployment", "Ingress"],
        ),
        (
            ["Widget", "Deployment", "CustomResourceDefinition", "Secret", "ServiceAccount"],
            ["CustomResourceDefinition", "ServiceAccount", "Secret", "Deployment", "Widget"],
        ),
        (
            ["HorizontalPodAutoscaler", "PersistentVolumeClaim", "StatefulSet", "NetworkPolicy", "ClusterRole"],
            ["ClusterRole", "PersistentVolumeClaim", "StatefulSet", "HorizontalPodAutoscaler", "NetworkPolicy"],
        ),
        (["CronJob", "Job", "Role", "RoleBinding"], ["Role", "RoleBinding", "CronJob", "Job"]),
    ],
)
def test_order_for_apply_puts_dependencies_first(given: list[str], expected: list[str]) -> None:
    ordered = order_for_apply([obj(kind, kind.lower()) for kind in given])
    assert [o.kind for o in ordered] == expected


def test_order_for_apply_keeps_file_order_within_a_rank() -> None:
    given = [
        obj("Deployment", "b", document=1),
        obj("Service", "z", document=2),
        obj("StatefulSet", "a", document=3),
        obj("Deployment", "c", document=4),
        obj("Service", "y", document=5),
        obj("Gadget", "2", document=6),
        obj("Widget", "1", document=7),
    ]
    assert [o.name for o in order_for_apply(given)] == ["z", "y", "b", "a", "c", "2", "1"]


@pytest.mark.parametrize(("kind", "rank_is_last"), [("Widget", True), ("Deployment", False), ("Certificate", True)])
def test_custom_resources_rank_last(kind: str, rank_is_last: bool) -> None:
    assert (apply_rank(kind) > apply_rank("Ingress")) is rank_is_last


@pytest.mark.parametrize(
    ("objects", "duplicate_pairs"),
    [
        ([obj("Service", "web"), obj("Deployment", "web", api_version="apps/v1")], []),
        ([obj("Service", "web"), obj("Service", "web", namespace="other")], []),
        ([obj("Service", "web", document=1), obj("Service", "web", document=2)], [(1, 2)]),
        # Same group, another version: still the same object on the server.
        (
            [
                obj("HorizontalPodAutoscaler", "web", api_version="autoscaling/v1", document=1),
                obj("HorizontalPodAutoscaler", "web", api_version="autoscaling/v2", document=2),
            ],
            [(1, 2)],
        ),
        (
            [
                obj("Widget", "w", api_version="a.example.com/v1", document=1),
                obj("Widget", "w", api_version="b.example.com/v1", document=2),
            ],
            [],
        ),
        (
            [
                obj("ConfigMap", "c", document=1),
                obj("ConfigMap", "c", document=2),
                obj("ConfigMap", "c", document=3),
            ],
            [(1, 2), (1, 3)],
        ),
    ],
)
def test_duplicate_objects_finds_documents_naming_the_same_object(
    objects: list[ManifestObject], duplicate_pairs: list[tuple[int, int]]
) -> None:
    assert [(a.document, b.document) for a, b in duplicate_objects(objects)] == duplicate_pairs


def sample_plan_objects() -> list[ManifestObject]:
    return [
        obj("Deployment", "hello-app", namespace="web", api_version="apps/v1", document=1),
        obj("Namespace", "web", document=2),
        obj("Service", "hello-app", namespace="web", document=3),
        obj("ConfigMap", "settings", document=4),
    ]


def test_plan_as_text_lists_image_build_and_objects_in_apply_order() -> None:
    plan = make_plan(
        "ghcr.io/acme/hello-app:abc1234",
        "skipped (--no-build)",
        sample_plan_objects(),
        changes={
            ("Deployment", "web", "hello-app"): ObjectDiff("Deployment", "hello-app", "web", "update", ("-a", "+b")),
            ("Namespace", None, "web"): ObjectDiff("Namespace", "web", None, "unchanged"),
        },
        namespace="web",
    )
    assert plan_as_text(plan) == "\n".join(
        [
            "image:     ghcr.io/acme/hello-app:abc1234",
            "build:     skipped (--no-build)",
            "cluster:   none (rendering only)",
            "namespace: web",
            "objects (4, in apply order):",
            "  unchanged Namespace/web         cluster-wide  (k8s/app.yaml (document 2))",
            "  apply     ConfigMap/settings    the context's namespace  (k8s/app.yaml (document 4))",
            "  apply     Service/hello-app     namespace web  (k8s/app.yaml (document 3))",
            "  update    Deployment/hello-app  namespace web  (k8s/app.yaml (document 1))",
        ]
    )


def test_plan_as_text_without_objects_or_namespace() -> None:
    plan = make_plan("ghcr.io/acme/x:1", "build and push", [])
    assert plan_as_text(plan).splitlines() == [
        "image:     ghcr.io/acme/x:1",
        "build:     build and push",
        "cluster:   none (rendering only)",
        "objects (0, in apply order):",
    ]


def test_plan_as_json_is_the_same_plan_machine_readable() -> None:
    plan = make_plan(
        "ghcr.io/acme/hello-app:abc1234",
        "skipped (--no-build)",
        sample_plan_objects(),
        cluster="do-ams3-prod",
        namespace="web",
    )
    data = json.loads(json.dumps(plan_as_json(plan)))
    assert data["image"] == "ghcr.io/acme/hello-app:abc1234"
    assert data["build"] == "skipped (--no-build)"
    assert data["cluster"] == "do-ams3-prod"
    assert data["namespace"] == "web"
    assert data["objects"][0] == {
        "kind": "Namespace",
        "name": "web",
        "namespace": None,
        "api_version": "v1",
        "source": "k8s/app.yaml (document 2)",
        "change": "apply",
        "diff": [],
    }
    assert [(o["kind"], o["name"]) for o in data["objects"]] == [
        ("Namespace", "web"),
        ("ConfigMap", "settings"),
        ("Service", "hello-app"),
        ("Deployment", "hello-app"),
    ]


def test_plan_workloads_are_the_objects_deployer_waits_on() -> None:
    objects = [*sample_plan_objects(), obj("Job", "migrate"), obj("CronJob", "nightly"), obj("DaemonSet", "agent")]
    plan = make_plan("x:1", "none", objects)
    assert [(o.kind, o.name) for o in plan.workloads] == [
        ("Deployment", "hello-app"),
        ("Job", "migrate"),
        ("DaemonSet", "agent"),
    ]
