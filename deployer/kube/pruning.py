"""An ApplySet in the cluster: its parent Secret read and applied, its members listed, pruned members deleted.

Members are found as kubectl finds them: one LIST per group-kind the parent names (per namespace for a
namespaced kind), filtered by the part-of label selector on the server. Deletions propagate in the background,
as kubectl's prune does. What to list, delete or keep is decided by deployer/applysets.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from deployer.applysets import PARENT_FIELD_MANAGER, ApplySet, GroupKind
from deployer.errors import APINotFoundError
from deployer.kinds import KubeDict, KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.discovery import Discovery
from deployer.kube.resources import KNOWN_RESOURCES
from deployer.rollbacks import ObjectRef

SECRETS = KNOWN_RESOURCES[("v1", "Secret")]
# The dependents of a pruned object (a Deployment's ReplicaSets and pods) go after it, by the garbage
# collector, and the deploy does not wait for them.
BACKGROUND_DELETE = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}


def read_parent(api: KubeAPI, applyset: ApplySet) -> KubeDict | None:
    return api.get(SECRETS, applyset.namespace, applyset.name)


def apply_parent(api: KubeAPI, body: KubeObject) -> None:
    """Server-side apply of the parent by its own field manager. Forced: the parent's labels and annotations
    are this manager's to write (kubectl retries with force on a conflict too)."""
    metadata = body.get("metadata") or {}
    api.request(
        "PATCH",
        SECRETS.path(str(metadata.get("namespace")), str(metadata.get("name"))),
        query={"fieldManager": PARENT_FIELD_MANAGER, "force": True},
        body=dict(body),
        content_type="application/apply-patch+yaml",
    )


def list_members(
    api: KubeAPI, discovery: Discovery, applyset: ApplySet, group_kinds: Iterable[GroupKind], namespaces: Iterable[str]
) -> tuple[list[KubeDict], list[GroupKind]]:
    """The objects labelled part of the set, of the given group-kinds, in the given namespaces; and the
    group-kinds the cluster no longer serves (no object of them can be left)."""
    query = {"labelSelector": applyset.member_selector}
    members: list[KubeDict] = []
    unserved = []
    for gk in sorted(group_kinds):
        resource = discovery.resource_for_group_kind(gk.group, gk.kind)
        if resource is None:
            unserved.append(gk)
            continue
        for namespace in sorted(namespaces) if resource.namespaced else [None]:
            members += api.list(resource, namespace, query).get("items") or []
    return members, unserved


def delete(api: KubeAPI, discovery: Discovery, ref: ObjectRef) -> bool:
    """Delete with background propagation; False when it was gone already."""
    resource = discovery.resource_of(ref)
    try:
        api.request("DELETE", resource.path(ref.namespace, ref.name), body=BACKGROUND_DELETE)
    except APINotFoundError:
        return False
    return True
