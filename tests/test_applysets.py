"""The ApplySet of --prune: the spec's id, the parent's labels and annotations, and what a prune deletes, in which
order, and what it keeps."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.applysets import (
    ApplySet,
    GroupKind,
    Tracked,
    applyset_id,
    as_member,
    check_settings,
    check_unlabelled,
    default_name,
    parent_body,
    plan_prune,
    read_parent,
)
from deployer.errors import ManifestFieldError, OptionError
from deployer.manifests import ManifestObject
from deployer.rollbacks import ObjectRef
from deployer.settings import PruneSettings

SET = ApplySet("deployer.acme.web", "web")


def live(api_version: str, kind: str, name: str, namespace: str | None = "web", part_of: str | None = SET.id) -> Any:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": "web"}}
    if namespace:
        metadata["namespace"] = namespace
    if part_of is not None:
        metadata["labels"]["applyset.kubernetes.io/part-of"] = part_of
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def ref(api_version: str, kind: str, name: str, namespace: str | None = "web") -> ObjectRef:
    return ObjectRef(api_version, kind, namespace, name)


def test_the_id_is_the_one_kubectl_computes_for_the_same_parent() -> None:
    # kubectl's own test data (pkg/cmd/apply/testdata/prune/cross_namespace): secret cross_namespace in
    # namespace applyset-namespace.
    assert applyset_id("cross_namespace", "applyset-namespace") == (
        "applyset-maUyxm9hLztJjNIswOCgA-VT6EJxr1_CcWA5kSzuMYE-v1"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Deployment.apps", GroupKind("apps", "Deployment")),
        ("ConfigMap", GroupKind("", "ConfigMap")),
        ("Certificate.cert-manager.io", GroupKind("cert-manager.io", "Certificate")),
    ],
)
def test_group_kinds_read_and_write_as_the_spec_writes_them(text: str, expected: GroupKind) -> None:
    assert GroupKind.parse(text) == expected
    assert str(expected) == text


def test_the_parent_names_its_id_tooling_and_sorted_group_kinds_and_other_namespaces() -> None:
    tracked = Tracked.of(
        [ref("v1", "Service", "web"), ref("apps/v1", "Deployment", "web"), ref("v1", "ConfigMap", "s", "jobs")]
    )

    body = parent_body(SET, tracked | Tracked(namespaces=frozenset({"web"})))

    assert body["kind"] == "Secret" and body["metadata"]["namespace"] == "web"
    assert body["metadata"]["labels"] == {"applyset.kubernetes.io/id": SET.id}
    annotations = body["metadata"]["annotations"]
    assert annotations["applyset.kubernetes.io/contains-group-kinds"] == "ConfigMap,Deployment.apps,Service"
    assert annotations["applyset.kubernetes.io/additional-namespaces"] == "jobs"
    assert annotations["applyset.kubernetes.io/tooling"].startswith("deployer/v")


def test_a_parent_read_back_gives_where_its_members_are() -> None:
    tracked = Tracked.of([ref("apps/v1", "Deployment", "web"), ref("v1", "ConfigMap", "s", "jobs")])

    assert read_parent(parent_body(SET, tracked), SET) == tracked | Tracked(namespaces=frozenset({"web"}))
    assert read_parent(None, SET) == Tracked()


@pytest.mark.parametrize(
    ("labels", "annotations", "problem"),
    [
        ({"applyset.kubernetes.io/id": SET.id}, {"applyset.kubernetes.io/tooling": "kubectl/v1.31.0"}, "'kubectl'"),
        (
            {"applyset.kubernetes.io/id": "applyset-other-v1"},
            {"applyset.kubernetes.io/tooling": "deployer/v0"},
            "other",
        ),
        ({}, {}, "is not an ApplySet parent"),
    ],
    ids=["another tool's", "another id", "not a parent"],
)
def test_a_parent_that_is_not_this_sets_is_refused(labels: Any, annotations: Any, problem: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"labels": labels, "annotations": annotations}}

    with pytest.raises(OptionError, match=problem) as refused:
        read_parent(secret, SET)
    assert str(refused.value).startswith("--applyset: secret/deployer.acme.web in namespace web")


def test_a_member_is_labelled_with_the_id_and_keeps_its_labels() -> None:
    body = live("v1", "ConfigMap", "s", part_of=None)

    labelled = as_member(body, SET)

    assert labelled["metadata"]["labels"] == {"app": "web", "applyset.kubernetes.io/part-of": SET.id}
    assert "applyset.kubernetes.io/part-of" not in body["metadata"]["labels"]


def test_a_manifest_that_sets_the_part_of_label_itself_is_refused_naming_its_document() -> None:
    obj = ManifestObject("k8s/app.yaml", 2, live("v1", "ConfigMap", "s", part_of="applyset-x-v1"))

    with pytest.raises(ManifestFieldError) as refused:
        check_unlabelled([obj])
    assert str(refused.value).startswith("k8s/app.yaml (document 2): metadata.labels.applyset.kubernetes.io/part-of")


def test_prune_deletes_what_the_manifests_no_longer_hold_dependents_first() -> None:
    listed = [
        live("v1", "ConfigMap", "settings"),
        live("v1", "Service", "web"),
        live("apps/v1", "Deployment", "web"),
        live("networking.k8s.io/v1", "Ingress", "web"),
        live("apps/v1", "Deployment", "worker"),
        live("v1", "ConfigMap", "kept-in-manifests"),
    ]
    # The manifests may name an object in another API version than the list answered in.
    wanted = [ref("v1", "ConfigMap", "kept-in-manifests"), ref("apps/v1beta2", "Deployment", "web")]

    plan = plan_prune(SET, listed, wanted)

    assert [str(r) for r in plan.delete] == ["ingress/web", "deployment/worker", "service/web", "configmap/settings"]
    assert plan.kept == []


def test_prune_never_deletes_an_object_without_this_sets_label() -> None:
    listed = [
        live("v1", "ConfigMap", "unlabelled", part_of=None),
        live("v1", "ConfigMap", "another-set", part_of="applyset-other-v1"),
    ]

    assert plan_prune(SET, listed, []).delete == []


@pytest.mark.parametrize(
    ("allowed", "deleted", "kept"),
    [
        ((), [], ["persistentvolumeclaim/data", "namespace/extra"]),
        (("PersistentVolumeClaim",), ["persistentvolumeclaim/data"], ["namespace/extra"]),
        (("persistentvolumeclaim", "namespace"), ["persistentvolumeclaim/data", "namespace/extra"], []),
    ],
)
def test_claims_and_namespaces_are_kept_unless_prune_allow_names_their_kind(
    allowed: tuple[str, ...], deleted: list[str], kept: list[str]
) -> None:
    listed = [live("v1", "Namespace", "extra", namespace=None), live("v1", "PersistentVolumeClaim", "data")]

    plan = plan_prune(SET, listed, [], allowed)

    assert [str(r) for r in plan.delete] == deleted
    assert [str(k.ref) for k in plan.kept] == kept
    assert all("--prune-allow" in k.reason for k in plan.kept)


def test_the_namespace_that_holds_the_parent_is_never_pruned() -> None:
    plan = plan_prune(SET, [live("v1", "Namespace", "web", namespace=None)], [], ("Namespace",))

    assert plan.delete == [] and [str(k.ref) for k in plan.kept] == ["namespace/web"]


@pytest.mark.parametrize(
    ("owner", "repository", "expected"),
    [("acme", "web", "deployer.acme.web"), ("Acme_Corp", "My_App.", "deployer.acme-corp.my-app")],
)
def test_the_default_set_is_named_after_the_repository(owner: str, repository: str, expected: str) -> None:
    assert default_name(owner, repository) == expected


@pytest.mark.parametrize(
    ("prune", "message"),
    [
        (PruneSettings(allow=frozenset({"Namespace"})), "--prune-allow: has no effect without --prune"),
        (PruneSettings(applyset="web"), "--applyset: has no effect without --prune"),
        (PruneSettings(True, frozenset({"Deployment"})), "--prune-allow: 'Deployment': only the kinds prune keeps"),
        (PruneSettings(True, applyset="Web_Set"), "--applyset: 'Web_Set' is not a valid Secret name"),
    ],
)
def test_prune_flags_that_would_do_nothing_or_be_refused_are_bad_input(prune: PruneSettings, message: str) -> None:
    with pytest.raises(OptionError) as refused:
        check_settings(prune)
    assert str(refused.value).startswith(message)
