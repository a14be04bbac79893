"""managed_fields: FieldsV1 unions and the client-side apply upgrade kubectl apply --server-side performs.

Pure: tables of managedFields in and out. Whether the simulator and the real kubectl agree with this is in
tests/test_deploy_migration_e2e.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from deployer.managed_fields import (
    client_side_apply_managers,
    union_fields,
    upgrade_client_side_apply,
    upgrade_patch,
)

Entry = dict[str, Any]
LAST_APPLIED = {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}}
CSA_FIELDS = {**LAST_APPLIED, "f:data": {".": {}, "f:x": {}, "f:y": {}}}


def entry(manager: str, operation: str, fields: dict[str, Any], api_version: str = "v1", **extra: Any) -> Entry:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": extra.pop("time", "2026-01-01T00:00:00Z"),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


@pytest.mark.parametrize(
    ("sets", "union"),
    [
        pytest.param([{"f:a": {}}, {"f:b": {}}], {"f:a": {}, "f:b": {}}, id="disjoint leaves"),
        pytest.param([{"f:a": {}}, {"f:a": {}}], {"f:a": {}}, id="same leaf"),
        pytest.param(
            [{"f:a": {}}, {"f:a": {"f:b": {}}}],
            {"f:a": {".": {}, "f:b": {}}},
            id="a leaf and a child of it: the node stays owned itself",
        ),
        pytest.param(
            [{"f:a": {"f:b": {}}}, {"f:a": {"f:c": {}}}],
            {"f:a": {"f:b": {}, "f:c": {}}},
            id="children only: the node is not owned itself",
        ),
        pytest.param(
            [{"f:a": {".": {}, "f:b": {}}}, {"f:a": {"f:c": {}}}],
            {"f:a": {".": {}, "f:b": {}, "f:c": {}}},
            id="dot kept",
        ),
        pytest.param([{"f:a": {".": {}}}], {"f:a": {}}, id="a lone dot is written as an empty node"),
        pytest.param(
            [
                {"f:spec": {"f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}}}}},
                {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:env": {'k:{"name":"B"}': {".": {}}}}}}},
            ],
            {
                "f:spec": {
                    "f:containers": {'k:{"name":"web"}': {".": {}, "f:env": {'k:{"name":"B"}': {}}, "f:image": {}}}
                }
            },
            id="keyed list items merge",
        ),
        pytest.param([{}, {"f:a": {}}], {"f:a": {}}, id="an empty set adds nothing"),
    ],
)
def test_union_of_fields_v1_sets(sets: list[dict[str, Any]], union: dict[str, Any]) -> None:
    assert union_fields(*sets) == union


@pytest.mark.parametrize(
    ("managed", "found"),
    [
        pytest.param(
            [entry("kubectl-client-side-apply", "Update", CSA_FIELDS)], ["kubectl-client-side-apply"], id="kubectl"
        ),
        pytest.param([entry("my-pipeline", "Update", CSA_FIELDS)], ["my-pipeline"], id="a custom --field-manager"),
        pytest.param(
            [entry("before-first-apply", "Update", CSA_FIELDS)], ["before-first-apply"], id="before-first-apply"
        ),
        pytest.param(
            [entry("kubectl-edit", "Update", {"f:data": {"f:x": {}}})], [], id="an edit without the annotation"
        ),
        pytest.param([entry("kubectl", "Apply", CSA_FIELDS)], [], id="an Apply entry is no client-side apply"),
        pytest.param(
            [entry("kubectl-client-side-apply", "Update", {"f:metadata": {"f:annotations": {"f:other": {}}}})],
            [],
            id="another annotation",
        ),
        pytest.param(
            [
                entry("a", "Update", CSA_FIELDS),
                entry("b", "Update", CSA_FIELDS),
                entry("a", "Update", CSA_FIELDS, "v2"),
            ],
            ["a", "b"],
            id="each name once, in order",
        ),
    ],
)
def test_client_side_apply_managers_are_update_entries_owning_the_last_applied_annotation(
    managed: list[Entry], found: list[str]
) -> None:
    assert client_side_apply_managers(managed) == found


EDIT = entry("kubectl-edit", "Update", {"f:data": {"f:z": {}}}, time="2026-01-03T00:00:00Z")
CONTROLLER_STATUS = entry("controller", "Update", {"f:status": {"f:ready": {}}}, subresource="status")


@pytest.mark.parametrize(
    ("managed", "csa", "upgraded"),
    [
        pytest.param(
            [entry("kubectl-client-side-apply", "Update", CSA_FIELDS, time="2026-01-02T00:00:00Z"), EDIT],
            ["kubectl-client-side-apply"],
            [entry("deployer", "Apply", CSA_FIELDS, time="2026-01-02T00:00:00Z"), EDIT],
            id="no Apply entry yet: the client-side entry becomes it, keeping its apiVersion and time",
        ),
        pytest.param(
            [
                entry("deployer", "Apply", {"f:data": {"f:x": {}, "f:w": {}}}, time="2026-01-05T00:00:00Z"),
                entry("kubectl-client-side-apply", "Update", CSA_FIELDS),
                EDIT,
            ],
            ["kubectl-client-side-apply"],
            [
                entry(
                    "deployer",
                    "Apply",
                    {**LAST_APPLIED, "f:data": {".": {}, "f:w": {}, "f:x": {}, "f:y": {}}},
                    time="2026-01-05T00:00:00Z",
                ),
                EDIT,
            ],
            id="an Apply entry already: the client-side fields join it",
        ),
        pytest.param(
            [
                entry("deployer", "Apply", {"f:data": {"f:w": {}}}, "apps/v2"),
                entry("kubectl-client-side-apply", "Update", CSA_FIELDS, "apps/v1"),
            ],
            ["kubectl-client-side-apply"],
            [entry("deployer", "Apply", {"f:data": {"f:w": {}}}, "apps/v2")],
            id="another apiVersion: the client-side entry is dropped, not merged",
        ),
        pytest.param(
            [
                entry("kubectl-client-side-apply", "Update", CSA_FIELDS),
                entry("before-first-apply", "Update", {**LAST_APPLIED, "f:data": {"f:old": {}}}),
            ],
            ["kubectl-client-side-apply", "before-first-apply"],
            [entry("deployer", "Apply", {**LAST_APPLIED, "f:data": {".": {}, "f:old": {}, "f:x": {}, "f:y": {}}})],
            id="two client-side managers: both into one Apply entry",
        ),
        pytest.param(
            [
                entry("kubectl-client-side-apply", "Update", CSA_FIELDS),
                entry("kubectl-client-side-apply", "Update", {"f:status": {"f:x": {}}}, subresource="status"),
                CONTROLLER_STATUS,
            ],
            ["kubectl-client-side-apply"],
            [
                entry("deployer", "Apply", CSA_FIELDS),
                entry("kubectl-client-side-apply", "Update", {"f:status": {"f:x": {}}}, subresource="status"),
                CONTROLLER_STATUS,
            ],
            id="subresource entries stay",
        ),
        pytest.param([EDIT], [], None, id="no client-side manager: nothing to do"),
        pytest.param([EDIT], ["kubectl-client-side-apply"], None, id="a manager without an entry: nothing to do"),
    ],
)
def test_client_side_apply_upgrade_moves_fields_into_the_apply_entry(
    managed: list[Entry], csa: list[str], upgraded: list[Entry] | None
) -> None:
    assert upgrade_client_side_apply(managed, csa, "deployer") == upgraded


def test_upgrade_patch_replaces_managed_fields_guarded_by_the_resource_version() -> None:
    obj = {
        "metadata": {
            "resourceVersion": "42",
            "managedFields": [entry("kubectl-client-side-apply", "Update", CSA_FIELDS)],
        }
    }

    assert upgrade_patch(obj, "deployer") == [
        {"op": "replace", "path": "/metadata/managedFields", "value": [entry("deployer", "Apply", CSA_FIELDS)]},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"},
    ]


def test_upgrade_patch_is_none_for_objects_without_client_side_apply() -> None:
    obj = {"metadata": {"resourceVersion": "7", "managedFields": [entry("deployer", "Apply", {"f:data": {}})]}}

    assert upgrade_patch(obj, "deployer") is None
    assert upgrade_patch({"metadata": {"resourceVersion": "7"}}, "deployer") is None
