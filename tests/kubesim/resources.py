"""The kinds the simulator serves, and the discovery documents that describe them.

It owns the table of resource types (group, version, kind, plural, scope, subresources) and builds
/api, /apis and group-version resource lists from it. It must not hold objects: that is the store's job.
A kind missing here is missing from discovery, as a CRD that is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True, eq=False)
class ResourceType:
    """One served resource; instances are singletons, so identity is equality (cheap dict keys)."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(ALL_VERBS)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified_kind(self) -> str:
        """How Status messages name the kind: "Deployment.apps", "Pod"."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def qualified_plural(self) -> str:
        """How NotFound messages name the resource: 'deployments.apps "web" not found'."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        ("status",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceType("", "v1", "Node", "nodes", False, ("no",), ("status",)),
    ResourceType("", "v1", "Pod", "pods", True, ("po",), ("status", "log"), ("all",)),
    ResourceType(
        "",
        "v1",
        "Service",
        "services",
        True,
        ("svc",),
        ("status",),
        ("all",),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    ResourceType("", "v1", "Event", "events", True, ("ev",)),
    ResourceType("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ("all",)),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ("all",)),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"), ("all",)),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), ("all",)),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    ResourceType("batch", "v1", "Job", "jobs", True, (), ("status",), ("all",)),
    ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), ("status",)),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
)

_BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCE_TYPES}
_BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCE_TYPES}


def resource_for_path(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def resource_for_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def resource_of(obj: dict[str, Any]) -> ResourceType | None:
    return resource_for_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


def groups() -> list[tuple[str, list[str]]]:
    """Named groups in a stable order with their versions."""
    seen: dict[str, list[str]] = {}
    for r in RESOURCE_TYPES:
        if r.group and r.version not in seen.setdefault(r.group, []):
            seen[r.group].append(r.version)
    return list(seen.items())


def api_versions_document() -> dict[str, Any]:
    """GET /api."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}],
    }


def api_group_list_document() -> dict[str, Any]:
    """GET /apis."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [api_group_document(name) for name, _ in groups()],
    }


def api_group_document(group: str) -> dict[str, Any]:
    """GET /apis/GROUP."""
    versions = dict(groups()).get(group, [])
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0] if entries else {},
    }


def has_group(group: str) -> bool:
    return group in dict(groups())


def has_group_version(group: str, version: str) -> bool:
    return any(r.group == group and r.version == version for r in RESOURCE_TYPES)


def api_resource_list_document(group: str, version: str) -> dict[str, Any]:
    """GET /api/v1 or /apis/GROUP/VERSION."""
    resources: list[dict[str, Any]] = []
    for r in RESOURCE_TYPES:
        if r.group != group or r.version != version:
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        for sub in r.subresources:
            resources.append(_subresource_entry(r, sub))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _subresource_entry(r: ResourceType, sub: str) -> dict[str, Any]:
    if sub == "scale":
        return {
            "name": f"{r.plural}/scale",
            "singularName": "",
            "namespaced": r.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }
    if sub == "log":
        return {
            "name": f"{r.plural}/log",
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": "Pod",
            "verbs": ["get"],
        }
    return {
        "name": f"{r.plural}/{sub}",
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": ["get", "patch", "update"],
    }
