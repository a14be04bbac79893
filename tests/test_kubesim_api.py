"""The Kubernetes API simulator's machinery: patch types, server-side apply, selectors, watch, errors, auth.

Pure parts are tested with tables; the HTTP behaviour against a running simulator (the ``kubesim`` fixture)
through ``requests`` and the official Python client, as deployer talks to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.kubesim import KubeSim
from tests.kubesim.applying import ApplyConflictError, server_side_apply
from tests.kubesim.patches import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from tests.kubesim.selectors import labels_match, parse_label_selector

Obj = dict[str, Any]


def deployment(
    name: str = "web", image: str = "registry.local/web:1", replicas: int = 2, labels: dict[str, str] | None = None
) -> Obj:
    app = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(app)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(app)},
            "template": {
                "metadata": {"labels": dict(app)},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------- patches (pure)

POD_SPEC: Obj = {
    "containers": [
        {
            "name": "app",
            "image": "a:1",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80}, {"containerPort": 81}],
        },
        {"name": "sidecar", "image": "s:1"},
    ],
    "volumes": [{"name": "v1", "emptyDir": {}}],
}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param(
            {"containers": [{"name": "app", "image": "a:2"}]},
            {**POD_SPEC, "containers": [{**POD_SPEC["containers"][0], "image": "a:2"}, POD_SPEC["containers"][1]]},
            id="containers-merge-by-name",
        ),
        pytest.param(
            {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]},
            {
                **POD_SPEC,
                "containers": [
                    {
                        **POD_SPEC["containers"][0],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    },
                    POD_SPEC["containers"][1],
                ],
            },
            id="env-merge-by-name",
        ),
        pytest.param(
            {"containers": [{"name": "app", "ports": [{"containerPort": 81, "name": "metrics"}]}]},
            {
                **POD_SPEC,
                "containers": [
                    {
                        **POD_SPEC["containers"][0],
                        "ports": [{"containerPort": 80}, {"containerPort": 81, "name": "metrics"}],
                    },
                    POD_SPEC["containers"][1],
                ],
            },
            id="ports-merge-by-containerPort",
        ),
        pytest.param(
            {"containers": [{"name": "sidecar", "$patch": "delete"}]},
            {**POD_SPEC, "containers": [POD_SPEC["containers"][0]]},
            id="patch-delete-list-item",
        ),
        pytest.param(
            {"volumes": [{"name": "v2", "emptyDir": {}}]},
            {**POD_SPEC, "volumes": [{"name": "v1", "emptyDir": {}}, {"name": "v2", "emptyDir": {}}]},
            id="volumes-merge-by-name",
        ),
        pytest.param(
            {"$patch": "replace", "containers": [{"name": "only", "image": "o:1"}]},
            {"containers": [{"name": "only", "image": "o:1"}]},
            id="patch-replace-map",
        ),
        pytest.param(
            {"volumes": None},
            {"containers": POD_SPEC["containers"]},
            id="null-deletes-field",
        ),
    ],
)
def test_strategic_merge_patch_merges_lists_by_their_keys(patch: Obj, expected: Obj) -> None:
    assert apply_strategic_merge_patch(POD_SPEC, patch) == expected


def test_strategic_merge_patch_replace_directive_on_template_as_rollout_undo_sends_it() -> None:
    statefulset = {
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "db", "extra": "x"}},
                "spec": {"containers": [{"name": "db", "image": "db:2"}]},
            },
        }
    }
    revision_data = {
        "spec": {
            "template": {
                "$patch": "replace",
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            }
        }
    }
    patched = apply_strategic_merge_patch(statefulset, revision_data)
    assert patched == {
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            },
        }
    }


def test_strategic_merge_patch_service_ports_merge_by_port() -> None:
    service = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    patched = apply_strategic_merge_patch(service, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}})
    assert patched["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]


def test_strategic_merge_patch_finalizers_are_a_set() -> None:
    patched = apply_strategic_merge_patch({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": ["b", "a"]}})
    assert patched["metadata"]["finalizers"] == ["a", "b"]


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([{"op": "replace", "path": "/spec/replicas", "value": 5}], {"spec": {"replicas": 5, "list": [1, 2]}}),
        ([{"op": "add", "path": "/spec/list/-", "value": 3}], {"spec": {"replicas": 1, "list": [1, 2, 3]}}),
        ([{"op": "add", "path": "/spec/list/0", "value": 0}], {"spec": {"replicas": 1, "list": [0, 1, 2]}}),
        ([{"op": "remove", "path": "/spec/list/1"}], {"spec": {"replicas": 1, "list": [1]}}),
        ([{"op": "move", "from": "/spec/replicas", "path": "/spec/count"}], {"spec": {"count": 1, "list": [1, 2]}}),
        (
            [{"op": "copy", "from": "/spec/replicas", "path": "/spec/count"}],
            {"spec": {"replicas": 1, "count": 1, "list": [1, 2]}},
        ),
        (
            [
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 2},
            ],
            {"spec": {"replicas": 2, "list": [1, 2]}},
        ),
        (
            [{"op": "add", "path": "/metadata~1x", "value": {"a~b": 1}}],
            {"spec": {"replicas": 1, "list": [1, 2]}, "metadata/x": {"a~b": 1}},
        ),
    ],
)
def test_json_patch_operations(operations: list[Obj], expected: Obj) -> None:
    assert apply_json_patch({"spec": {"replicas": 1, "list": [1, 2]}}, operations) == expected


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "test", "path": "/spec/replicas", "value": 9}],
        [{"op": "replace", "path": "/spec/missing", "value": 1}],
        [{"op": "remove", "path": "/nope"}],
        [{"op": "explode", "path": "/spec"}],
    ],
)
def test_json_patch_refuses_failed_tests_and_missing_paths(operations: list[Obj]) -> None:
    with pytest.raises(PatchError):
        apply_json_patch({"spec": {"replicas": 1}}, operations)


def test_merge_patch_deletes_with_null_and_replaces_lists() -> None:
    doc = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert apply_merge_patch(doc, {"a": {"b": None, "d": 3}, "l": [3]}) == {"a": {"c": 2, "d": 3}, "l": [3]}


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("tier in (front, back)", {"tier": "back"}, True),
        ("tier notin (front)", {"tier": "front"}, False),
        ("tier notin (front)", {}, True),
        ("app", {"app": ""}, True),
        ("!legacy", {"legacy": "1"}, False),
        ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "a"}, True),
    ],
)
def test_label_selectors_equality_and_set_based(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is matches


# ---------------------------------------------------------------- server-side apply (pure)


def _managers(obj: Obj) -> dict[str, Obj]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields") or []}


def test_apply_conflict_names_the_field_and_the_other_manager() -> None:
    live = server_side_apply(None, deployment(replicas=2), "deployer", False, "apps/v1", "t0")
    with pytest.raises(ApplyConflictError) as caught:
        server_side_apply(live, deployment(replicas=5), "someone-else", False, "apps/v1", "t1")
    assert str(caught.value) == 'Apply failed with 1 conflict: conflict with "deployer" using apps/v1: .spec.replicas'


def test_apply_with_force_takes_the_field_over() -> None:
    live = server_side_apply(None, deployment(replicas=2), "deployer", False, "apps/v1", "t0")
    forced = server_side_apply(live, deployment(replicas=5), "hpa", True, "apps/v1", "t1")
    assert forced["spec"]["replicas"] == 5
    managers = _managers(forced)
    assert "f:replicas" in managers["hpa"]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in managers["deployer"]["fieldsV1"]["f:spec"]


def test_apply_of_the_same_value_shares_ownership_without_conflict() -> None:
    live = server_side_apply(None, deployment(replicas=2), "deployer", False, "apps/v1", "t0")
    shared = server_side_apply(live, deployment(replicas=2), "other", False, "apps/v1", "t1")
    assert set(_managers(shared)) == {"deployer", "other"}


def test_apply_removes_fields_the_manager_no_longer_applies() -> None:
    with_label = deployment(labels={"app": "web"})
    with_label["metadata"]["labels"]["team"] = "a"
    live = server_side_apply(None, with_label, "deployer", False, "apps/v1", "t0")
    live = server_side_apply(live, deployment(), "deployer", False, "apps/v1", "t1")
    assert live["metadata"]["labels"] == {"app": "web"}


def test_apply_keeps_containers_another_manager_added() -> None:
    live = server_side_apply(None, deployment(), "deployer", False, "apps/v1", "t0")
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "proxy:1"}]}}},
    }
    live = server_side_apply(live, sidecar, "mesh", False, "apps/v1", "t1")
    live = server_side_apply(live, deployment(image="registry.local/web:2"), "deployer", False, "apps/v1", "t2")
    containers = live["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "registry.local/web:2"), ("proxy", "proxy:1")]


# ---------------------------------------------------------------- over HTTP


class Api:
    """A thin authenticated HTTP client for the simulator."""

    def __init__(self, sim: KubeSim, ca_file: Path, token: str | None = None) -> None:
        self.base = sim.server_url
        self.session = requests.Session()
        # Per request, because REQUESTS_CA_BUNDLE in the environment would override a session-wide verify.
        self.ca = str(ca_file)
        self.session.headers["Authorization"] = f"Bearer {token or sim.admin_token}"

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **params: str
    ) -> requests.Response:
        data = None if body is None else json.dumps(body)
        return self.session.request(
            method,
            self.base + path,
            data=data,
            params=params,
            verify=self.ca,
            headers={"Content-Type": content_type},
            timeout=10,
        )

    def apply(self, path: str, body: Obj, manager: str = "deployer", force: bool = False) -> requests.Response:
        params = {"fieldManager": manager}
        if force:
            params["force"] = "true"
        return self.request("PATCH", path, body, "application/apply-patch+yaml", **params)

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def ca_file(kubesim: KubeSim, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(kubesim.ca_pem)
    return path


@pytest.fixture
def api(kubesim: KubeSim, ca_file: Path) -> Iterator[Api]:
    client = Api(kubesim, ca_file)
    yield client
    client.close()


DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def test_version_reports_kubernetes_1_32(api: Api) -> None:
    version = api.request("GET", "/version").json()
    assert (version["major"], version["minor"]) == ("1", "32")
    assert version["gitVersion"].startswith("v1.32.")


def test_discovery_lists_served_kinds_and_not_unknown_ones(api: Api) -> None:
    groups = {g["name"] for g in api.request("GET", "/apis").json()["groups"]}
    assert {"apps", "batch", "networking.k8s.io", "coordination.k8s.io"} <= groups
    assert "cert-manager.io" not in groups
    apps = {r["name"] for r in api.request("GET", "/apis/apps/v1").json()["resources"]}
    assert {
        "deployments",
        "deployments/status",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "controllerrevisions",
    } <= apps
    core = {r["name"] for r in api.request("GET", "/api/v1").json()["resources"]}
    assert {"pods", "pods/log", "services", "configmaps", "secrets", "events", "namespaces", "nodes"} <= core
    assert api.request("GET", "/apis/cert-manager.io/v1").status_code == 404


def test_requests_without_a_valid_token_get_401_status(kubesim: KubeSim, ca_file: Path) -> None:
    anonymous = requests.get(kubesim.server_url + "/api/v1/namespaces", verify=str(ca_file), timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["reason"] == "Unauthorized"
    forged = Api(kubesim, ca_file, token="not-a-token")
    assert forged.request("GET", "/api/v1/namespaces").status_code == 401
    forged.close()


def test_token_expires_on_the_simulated_clock(kubesim: KubeSim, ca_file: Path) -> None:
    client = Api(kubesim, ca_file, token=kubesim.issue_token(expiry_seconds=300))
    assert client.request("GET", "/api/v1/namespaces/default").status_code == 200
    kubesim.clock.advance(301)
    expired = client.request("GET", "/api/v1/namespaces/default")
    assert expired.status_code == 401
    assert expired.json()["code"] == 401
    client.close()


def test_errors_are_status_objects_with_real_reasons(api: Api) -> None:
    missing = api.request("GET", DEPLOYMENTS + "/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
    }
    no_namespace = api.request("POST", "/apis/apps/v1/namespaces/absent/deployments", deployment())
    assert (no_namespace.status_code, no_namespace.json()["message"]) == (404, 'namespaces "absent" not found')
    assert api.request("POST", DEPLOYMENTS, deployment()).status_code == 201
    duplicate = api.request("POST", DEPLOYMENTS, deployment())
    assert (duplicate.status_code, duplicate.json()["reason"]) == (409, "AlreadyExists")


def test_selector_not_matching_template_labels_is_invalid(api: Api) -> None:
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    refused = api.request("POST", DEPLOYMENTS, body)
    assert refused.status_code == 422
    status = refused.json()
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('Deployment.apps "web" is invalid: spec.template.metadata.labels: ')
    assert status["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    nameless = deployment()
    del nameless["metadata"]["name"]
    assert api.request("POST", DEPLOYMENTS, nameless).status_code == 422


def test_update_with_a_stale_resource_version_conflicts(api: Api) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    created = api.request("POST", path, {"metadata": {"name": "cm"}, "data": {"k": "0"}}).json()
    assert api.request("PUT", path + "/cm", {**created, "data": {"k": "1"}}).status_code == 200
    conflict = api.request("PUT", path + "/cm", {**created, "data": {"k": "2"}})
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "Conflict"
    assert conflict.json()["message"] == (
        'Operation cannot be fulfilled on configmaps "cm": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )


def test_workloads_get_the_api_servers_defaults(api: Api) -> None:
    created = api.request("POST", DEPLOYMENTS, {**deployment(), "spec": {**deployment()["spec"]}}).json()
    spec = created["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    container = spec["template"]["spec"]["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"].endswith("Z")


def test_generation_moves_only_with_spec_changes(api: Api) -> None:
    api.request("POST", DEPLOYMENTS, deployment())
    labelled = api.request(
        "PATCH", DEPLOYMENTS + "/web", {"metadata": {"labels": {"extra": "1"}}}, "application/merge-patch+json"
    ).json()
    assert labelled["metadata"]["generation"] == 1
    status_write = api.request(
        "PATCH",
        DEPLOYMENTS + "/web/status",
        {"spec": {"replicas": 9}, "status": {"replicas": 7}},
        "application/merge-patch+json",
    ).json()
    assert status_write["metadata"]["generation"] == 1
    assert status_write["spec"]["replicas"] == 2, "a status write must not change spec"
    scaled = api.request(
        "PATCH", DEPLOYMENTS + "/web", {"spec": {"replicas": 3}}, "application/strategic-merge-patch+json"
    ).json()
    assert scaled["metadata"]["generation"] == 2
    assert int(scaled["metadata"]["resourceVersion"]) > int(labelled["metadata"]["resourceVersion"])


def test_server_side_apply_over_http_conflicts_then_forces(api: Api) -> None:
    assert api.apply(DEPLOYMENTS + "/web", deployment(replicas=2)).status_code == 201
    again = api.apply(DEPLOYMENTS + "/web", deployment(replicas=2))
    assert again.status_code == 200
    refused = api.apply(DEPLOYMENTS + "/web", deployment(replicas=4), manager="other")
    assert refused.status_code == 409
    assert refused.json()["message"] == (
        'Apply failed with 1 conflict: conflict with "deployer" using apps/v1: .spec.replicas'
    )
    assert refused.json()["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "deployer" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    forced = api.apply(DEPLOYMENTS + "/web", deployment(replicas=4), manager="other", force=True)
    assert forced.status_code == 200
    assert forced.json()["spec"]["replicas"] == 4


def test_identical_apply_does_not_bump_the_resource_version(api: Api) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}
    first = api.apply("/api/v1/namespaces/default/configmaps/cm", config_map).json()
    second = api.apply("/api/v1/namespaces/default/configmaps/cm", config_map).json()
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_dry_run_all_stores_nothing(api: Api) -> None:
    answer = api.request("POST", DEPLOYMENTS, deployment(), dryRun="All")
    assert answer.status_code == 201
    assert answer.json()["spec"]["revisionHistoryLimit"] == 10
    assert api.request("GET", DEPLOYMENTS + "/web").status_code == 404
    assert api.apply(DEPLOYMENTS + "/web", deployment()).status_code == 201
    api.request("PATCH", DEPLOYMENTS + "/web?dryRun=All", {"spec": {"replicas": 9}}, "application/merge-patch+json")
    api.request("DELETE", DEPLOYMENTS + "/web", dryRun="All")
    assert api.request("GET", DEPLOYMENTS + "/web").json()["spec"]["replicas"] == 2


def test_list_filters_by_label_and_field_selectors(api: Api) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "db")):
        api.request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"metadata": {"name": name, "labels": {"tier": tier}}, "data": {}},
        )

    def names(**params: str) -> list[str]:
        listing = api.request("GET", "/api/v1/namespaces/default/configmaps", **params).json()
        assert listing["kind"] == "ConfigMapList"
        return [i["metadata"]["name"] for i in listing["items"]]

    assert names(labelSelector="tier in (front,back)") == ["a", "b"]
    assert names(labelSelector="tier!=db,tier") == ["a", "b"]
    assert names(fieldSelector="metadata.name=c") == ["c"]
    assert names(fieldSelector="metadata.name!=c", labelSelector="tier notin (back)") == ["a"]
    assert api.request("GET", "/api/v1/namespaces/default/configmaps", labelSelector="tier in (").status_code == 400


def _watch_lines(api: Api, path: str, **params: str) -> Generator[Obj, None, None]:
    with api.session.get(
        api.base + path, params={"watch": "true", **params}, stream=True, timeout=10, verify=api.ca
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                yield json.loads(line)


def test_watch_resumes_from_a_resource_version(api: Api) -> None:
    created = api.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w"}}).json()
    start = created["metadata"]["resourceVersion"]
    api.request(
        "PATCH", "/api/v1/namespaces/default/configmaps/w", {"data": {"k": "1"}}, "application/merge-patch+json"
    )
    api.request("DELETE", "/api/v1/namespaces/default/configmaps/w")
    events = _watch_lines(api, "/api/v1/namespaces/default/configmaps", resourceVersion=start, timeoutSeconds="5")
    seen = [next(events), next(events)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in seen] == [("MODIFIED", "w"), ("DELETED", "w")]
    assert seen[0]["object"]["data"] == {"k": "1"}
    assert int(seen[1]["object"]["metadata"]["resourceVersion"]) > int(seen[0]["object"]["metadata"]["resourceVersion"])
    events.close()


def test_watch_without_a_version_starts_with_current_objects_and_streams_changes(api: Api) -> None:
    api.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "before"}})
    events = _watch_lines(
        api, "/api/v1/namespaces/default/configmaps", fieldSelector="metadata.name!=ignored", timeoutSeconds="5"
    )
    first = next(events)
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "before")
    api.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "ignored"}})
    api.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "after"}})
    second = next(events)
    assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "after")
    events.close()


def test_watch_from_a_compacted_version_reports_410_gone(kubesim: KubeSim, api: Api) -> None:
    created = api.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "old"}}).json()
    api.request(
        "PATCH", "/api/v1/namespaces/default/configmaps/old", {"data": {"k": "1"}}, "application/merge-patch+json"
    )
    kubesim.store.compact()
    events = _watch_lines(
        api,
        "/api/v1/namespaces/default/configmaps",
        resourceVersion=created["metadata"]["resourceVersion"],
        timeoutSeconds="5",
    )
    error = next(events)
    assert error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
    assert error["object"]["message"].startswith("too old resource version")
    events.close()


def test_python_client_watch_raises_410_on_a_compacted_version(kubesim: KubeSim) -> None:
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config_dict(kubesim.kubeconfig_dict())  # type: ignore[no-untyped-call]
    try:
        core = client.CoreV1Api(api_client)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
        created = core.create_namespaced_config_map("default", body)
        core.patch_namespaced_config_map("x", "default", {"data": {"a": "b"}})
        kubesim.store.compact()
        assert created.metadata is not None
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_config_map,
            "default",
            resource_version=created.metadata.resource_version,
            timeout_seconds=5,
        )
        with pytest.raises(client.ApiException) as caught:
            next(stream)
        assert caught.value.status == 410
    finally:
        api_client.close()


def test_python_dynamic_client_server_side_apply(kubesim: KubeSim) -> None:
    from kubernetes import config, dynamic
    from kubernetes.dynamic.exceptions import ConflictError

    api_client = config.new_client_from_config_dict(kubesim.kubeconfig_dict())  # type: ignore[no-untyped-call]
    try:
        client = dynamic.DynamicClient(api_client)  # type: ignore[no-untyped-call]
        deployments = client.resources.get(api_version="apps/v1", kind="Deployment")
        applied = deployments.server_side_apply(body=deployment(), namespace="default", field_manager="deployer")
        assert applied.metadata.generation == 1
        with pytest.raises(ConflictError):
            deployments.server_side_apply(body=deployment(replicas=7), namespace="default", field_manager="other")
        forced = deployments.server_side_apply(
            body=deployment(replicas=7), namespace="default", field_manager="other", force_conflicts=True
        )
        assert forced.spec.replicas == 7
        with pytest.raises(Exception, match="ResourceNotFoundError|No matches found"):
            client.resources.get(api_version="cert-manager.io/v1", kind="Certificate")
    finally:
        api_client.close()


def test_delete_cascades_through_owner_references_or_orphans(kubesim: KubeSim, api: Api) -> None:
    api.apply(DEPLOYMENTS + "/web", deployment(replicas=2))
    pods_path = "/api/v1/namespaces/default/pods"

    def pods() -> list[Obj]:
        items: list[Obj] = api.request("GET", pods_path, labelSelector="app=web").json()["items"]
        return items

    wait_until(lambda: len(pods()) == 2, what="two pods")
    deleted = api.request("DELETE", DEPLOYMENTS + "/web", {"propagationPolicy": "Background"})
    assert deleted.json()["status"] == "Success"
    assert api.request("GET", "/apis/apps/v1/namespaces/default/replicasets").json()["items"] == []
    assert pods() == []

    api.apply(DEPLOYMENTS + "/kept", deployment("kept", replicas=1))
    wait_until(
        lambda: api.request("GET", "/apis/apps/v1/namespaces/default/replicasets").json()["items"], what="a replica set"
    )
    api.request("DELETE", DEPLOYMENTS + "/kept", {"propagationPolicy": "Orphan"})
    orphans = api.request("GET", "/apis/apps/v1/namespaces/default/replicasets").json()["items"]
    assert len(orphans) == 1 and "ownerReferences" not in orphans[0]["metadata"]


def test_requests_are_counted_by_verb_and_resource(kubesim: KubeSim, api: Api) -> None:
    kubesim.reset_request_counts()
    api.apply(DEPLOYMENTS + "/web", deployment())
    api.request("GET", DEPLOYMENTS + "/web")
    api.request("GET", DEPLOYMENTS)
    api.request("GET", DEPLOYMENTS + "/web/status")
    counts = kubesim.request_counts
    assert counts[("patch", "deployments")] == 1
    assert counts[("get", "deployments")] == 1
    assert counts[("list", "deployments")] == 1
    assert counts[("get", "deployments/status")] == 1


def test_pod_logs_come_from_the_kubelet(kubesim: KubeSim, api: Api) -> None:
    from tests.kubesim import Behaviour

    kubesim.kubelet.set_behaviour("*/chatty:*", Behaviour(logs="hello from the pod\n"))
    api.request(
        "POST",
        "/api/v1/namespaces/default/pods",
        {"metadata": {"name": "talker"}, "spec": {"containers": [{"name": "c", "image": "r/chatty:1"}]}},
    )
    wait_until(
        lambda: api.request("GET", "/api/v1/namespaces/default/pods/talker").json()["status"].get("phase") == "Running",
        what="the pod to run",
    )
    logs = wait_until(lambda: api.request("GET", "/api/v1/namespaces/default/pods/talker/log").text, what="logs")
    assert "hello from the pod" in logs
    # As a real API server negotiates: a bare text/plain names none of its serializers and is refused.
    plain = api.session.get(
        api.base + "/api/v1/namespaces/default/pods/talker/log",
        verify=api.ca,
        headers={"Accept": "text/plain"},
        timeout=10,
    )
    assert plain.status_code == 406 and plain.json()["reason"] == "NotAcceptable"


def test_fifty_deployments_of_ten_replicas_roll_out(tmp_path: Path) -> None:
    # How fast is bench/'s question; the bound on the wait below only catches a simulator that stalls.
    sim = KubeSim.start(kubelet="scripted", clock_speed=100.0, nodes=5)
    try:
        (tmp_path / "ca.pem").write_bytes(sim.ca_pem)
        http = Api(sim, tmp_path / "ca.pem")
        for index in range(50):
            name = f"app-{index}"
            assert http.apply(f"{DEPLOYMENTS}/{name}", deployment(name, replicas=10)).status_code == 201

        def rolled_out() -> bool:
            items = http.request("GET", DEPLOYMENTS).json()["items"]
            return len(items) == 50 and all(
                (d.get("status") or {}).get("availableReplicas") == 10
                and d["status"].get("updatedReplicas") == 10
                and d["status"].get("observedGeneration") == d["metadata"]["generation"]
                for d in items
            )

        wait_until(rolled_out, timeout=120.0, what="50 deployments of 10 ready replicas")
        http.close()
        assert len(sim.store.list("v1", "Pod", "default")) == 500
        assert not sim.loop.errors
    finally:
        sim.stop()


def test_protobuf_request_bodies_are_refused_with_415(api: Api) -> None:
    refused = api.session.post(
        api.base + DEPLOYMENTS,
        data=b"k8s\x00\x0a\x0b",
        verify=api.ca,
        timeout=10,
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    assert refused.status_code == 415
    assert refused.json()["reason"] == "UnsupportedMediaType"


def test_scale_subresource_reads_and_writes_replicas(api: Api) -> None:
    api.apply(DEPLOYMENTS + "/web", deployment(replicas=2))
    scale = api.request("GET", DEPLOYMENTS + "/web/scale").json()
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]) == ("Scale", 2, "app=web")
    api.request("PATCH", DEPLOYMENTS + "/web/scale", {"spec": {"replicas": 4}}, "application/merge-patch+json")
    assert api.request("GET", DEPLOYMENTS + "/web").json()["spec"]["replicas"] == 4


# ---------------------------------------------------------------- managedFields a client writes

CONFIG_MAPS = "/api/v1/namespaces/default/configmaps"


def test_apply_that_drops_a_keyed_list_item_removes_it_whole() -> None:
    two = deployment()
    two["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    live = server_side_apply(None, two, "deployer", False, "apps/v1", "t0")
    one = deployment()
    one["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    live = server_side_apply(live, one, "deployer", False, "apps/v1", "t1")
    assert live["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def _client_side_config_map(api: Api) -> Obj:
    """A ConfigMap as `kubectl apply` leaves it: written by the Update manager kubectl-client-side-apply."""
    body = {
        "metadata": {"name": "cm", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "data": {"x": "1", "y": "2"},
    }
    created = api.request("POST", CONFIG_MAPS, body, fieldManager="kubectl-client-side-apply")
    assert created.status_code == 201, created.text
    return dict(created.json())


def _as_applier(entries: list[Obj], manager: str = "deployer") -> list[Obj]:
    return [{**e, "manager": manager, "operation": "Apply"} for e in entries]


@pytest.mark.parametrize("patch_type", ["application/json-patch+json", "application/merge-patch+json"])
def test_managed_fields_set_by_a_patch_replace_the_stored_ones(api: Api, patch_type: str) -> None:
    live = _client_side_config_map(api)
    upgraded = _as_applier(live["metadata"]["managedFields"])
    if patch_type == "application/json-patch+json":
        version = live["metadata"]["resourceVersion"]
        body: Any = [
            {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
        ]
    else:
        body = {"metadata": {"managedFields": upgraded}}

    patched = api.request("PATCH", CONFIG_MAPS + "/cm", body, patch_type)

    assert patched.status_code == 200, patched.text
    assert [(e["manager"], e["operation"]) for e in patched.json()["metadata"]["managedFields"]] == [
        ("deployer", "Apply")
    ]
    assert patched.json()["metadata"]["managedFields"][0]["fieldsV1"] == upgraded[0]["fieldsV1"]
    assert int(patched.json()["metadata"]["resourceVersion"]) > int(live["metadata"]["resourceVersion"])
    # The next apply computes from them: what deployer owned alone and no longer applies goes.
    applied = api.apply(
        CONFIG_MAPS + "/cm", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"x": "1"}}
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["data"] == {"x": "1"}
    assert "annotations" not in applied.json()["metadata"]


def test_managed_fields_patch_with_a_stale_resource_version_conflicts(api: Api) -> None:
    live = _client_side_config_map(api)
    api.request("PATCH", CONFIG_MAPS + "/cm", {"data": {"z": "3"}}, "application/merge-patch+json")
    upgraded = _as_applier(live["metadata"]["managedFields"])
    body = [
        {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
    ]

    stale = api.request("PATCH", CONFIG_MAPS + "/cm", body, "application/json-patch+json")

    assert stale.status_code == 409
    assert stale.json()["reason"] == "Conflict"
    managers = {e["manager"] for e in api.request("GET", CONFIG_MAPS + "/cm").json()["metadata"]["managedFields"]}
    assert "deployer" not in managers


@pytest.mark.parametrize("reset", [[], [{}]], ids=["empty list", "one empty entry"])
def test_managed_fields_reset_leaves_none_and_the_write_untracked(api: Api, reset: list[Obj]) -> None:
    _client_side_config_map(api)

    patched = api.request(
        "PATCH",
        CONFIG_MAPS + "/cm",
        {"metadata": {"managedFields": reset}, "data": {"z": "3"}},
        "application/merge-patch+json",
    )

    assert patched.status_code == 200, patched.text
    assert "managedFields" not in patched.json()["metadata"]
    assert patched.json()["data"] == {"x": "1", "y": "2", "z": "3"}


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"fieldsType": ""}, id="no fieldsType"),
        pytest.param({"fieldsType": "FieldsV2"}, id="another fieldsType"),
        pytest.param({"operation": "Replace"}, id="an unknown operation"),
        pytest.param({"apiVersion": ""}, id="no apiVersion"),
    ],
)
def test_managed_fields_the_server_cannot_decode_are_ignored(api: Api, entry: Obj) -> None:
    live = _client_side_config_map(api)
    written = [{**e, **entry, "manager": "someone"} for e in live["metadata"]["managedFields"]]

    patched = api.request(
        "PATCH", CONFIG_MAPS + "/cm", {"metadata": {"managedFields": written}}, "application/merge-patch+json"
    )

    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_managed_fields_with_a_manager_name_too_long_are_invalid(api: Api) -> None:
    live = _client_side_config_map(api)
    written = [{**e, "manager": "m" * 129} for e in live["metadata"]["managedFields"]]

    refused = api.request(
        "PATCH", CONFIG_MAPS + "/cm", {"metadata": {"managedFields": written}}, "application/merge-patch+json"
    )

    assert refused.status_code == 422
    assert "metadata.managedFields[0].manager: Too long" in refused.json()["message"]


def test_apply_that_drops_a_map_it_owned_keeps_the_keys_it_did_not_own() -> None:
    labelled = deployment()
    labelled["metadata"]["annotations"] = {"team": "a"}
    live = server_side_apply(None, labelled, "deployer", False, "apps/v1", "t0")
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"  # a controller's, owned by no one

    live = server_side_apply(live, deployment(), "deployer", False, "apps/v1", "t1")

    assert live["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}


def test_first_apply_to_an_untracked_object_conflicts_with_before_first_apply(api: Api) -> None:
    _client_side_config_map(api)
    api.request("PATCH", CONFIG_MAPS + "/cm", {"metadata": {"managedFields": [{}]}}, "application/merge-patch+json")
    changed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"x": "2"}}

    refused = api.apply(CONFIG_MAPS + "/cm", changed)

    assert refused.status_code == 409
    message = 'Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.x'
    assert refused.json()["message"] == message
    forced = api.apply(CONFIG_MAPS + "/cm", changed, force=True).json()
    owners = {e["manager"]: e for e in forced["metadata"]["managedFields"]}
    assert set(owners) == {"deployer", "before-first-apply"}
    assert "f:y" in owners["before-first-apply"]["fieldsV1"]["f:data"]
    assert "f:x" not in owners["before-first-apply"]["fieldsV1"]["f:data"]
