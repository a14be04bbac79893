"""Where a kind lives (kube/resources.py, else asked of the API once per group version) and an object's address.

Discovery answers are cached for the connection; a miss asks again (a CRD may have been applied since).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from deployer.errors import APINotFoundError, UnknownKindError
from deployer.kinds import KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.resources import KNOWN_RESOURCES, Resource, group_version_path
from deployer.rollbacks import ObjectRef


class Discovery:
    """The resources of one cluster: those known without asking, and those its API said it serves."""

    def __init__(self, api: KubeAPI, default_namespace: str) -> None:
        self._api = api
        self.default_namespace = default_namespace
        self._resources: dict[tuple[str, str], Resource] = dict(KNOWN_RESOURCES)
        self._lock = threading.Lock()

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """Where a kind lives; asks the API (once per group version) for kinds it does not know."""
        with self._lock:
            known = self._resources.get((api_version, kind))
            if known is not None:
                return known
            # A miss asks again even for a group version seen before: a CRD may have been applied since.
            self._discover(api_version)
            known = self._resources.get((api_version, kind))
        if known is None:
            raise UnknownKindError(
                f'resource mapping not found: no matches for kind "{kind}" in version "{api_version}"; '
                "ensure CRDs are installed first"
            )
        return known

    def resource_for_group_kind(self, group: str, kind: str) -> Resource | None:
        """Where a kind of an API group lives, in the group's preferred version (for an ApplySet's
        group-kinds, which name no version); None when the cluster serves no such kind (a CRD removed)."""
        with self._lock:
            for (api_version, known_kind), resource in self._resources.items():
                if known_kind == kind and _group_of(api_version) == group:
                    return resource
        if not group:
            api_version = "v1"
        else:
            try:
                _, body = self._api.request("GET", f"/apis/{group}")
            except APINotFoundError:
                return None
            preferred = body.get("preferredVersion") if isinstance(body, Mapping) else None
            if not isinstance(preferred, Mapping) or not preferred.get("groupVersion"):
                return None
            api_version = str(preferred["groupVersion"])
        try:
            return self.resource_for(api_version, kind)
        except UnknownKindError:
            return None

    def _discover(self, api_version: str) -> None:
        try:
            _, body = self._api.request("GET", group_version_path(api_version))
        except APINotFoundError:
            return
        if not isinstance(body, Mapping):
            return
        for entry in body.get("resources") or ():
            if "/" in str(entry.get("name", "")):
                continue  # subresources such as deployments/status
            resource = Resource(api_version, str(entry["kind"]), str(entry["name"]), bool(entry.get("namespaced")))
            self._resources.setdefault((api_version, resource.kind), resource)

    def ref_of(self, obj: KubeObject) -> ObjectRef:
        """The object's address, with the default namespace filled in for namespaced kinds."""
        resource = self.resource_for(str(obj.get("apiVersion")), str(obj.get("kind")))
        ref = ObjectRef.of(obj)
        if resource.namespaced and not ref.namespace:
            return ObjectRef(ref.api_version, ref.kind, self.default_namespace, ref.name)
        if not resource.namespaced and ref.namespace:
            return ObjectRef(ref.api_version, ref.kind, None, ref.name)
        return ref

    def resource_of(self, ref: ObjectRef) -> Resource:
        return self.resource_for(ref.api_version, ref.kind)


def _group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""
