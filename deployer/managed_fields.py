"""Field ownership as the API server records it (metadata.managedFields), and upgrading client-side apply.

Pure: plain dicts in, plain dicts out, no I/O. kube/applying.py sends what this computes. It must not talk to the
API nor decide when to send anything.

Upgrading client-side apply follows kubectl (``kubectl apply --server-side`` since 1.26, client-go's
``util/csaupgrade``): the client-side apply managers are the ``Update`` entries that own the
``kubectl.kubernetes.io/last-applied-configuration`` annotation (kubectl finds them that way rather than by
name, so ``kubectl-client-side-apply``, a custom ``--field-manager`` and ``before-first-apply`` -- the
server's stand-in owner of an object that had no managedFields when it was first applied -- are all
upgraded exactly when they hold the annotation). Their fields move into the server-side applier's ``Apply``
entry and their entries go away; every other entry (``kubectl-edit``, controllers...) stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from deployer.kinds import KubeDict, KubeObject

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
_LAST_APPLIED_PATH = ("f:metadata", "f:annotations", f"f:{LAST_APPLIED_ANNOTATION}")


def union_fields(*sets: KubeObject) -> KubeDict:
    """The union of FieldsV1 sets, in the canonical form the API server writes.

    A node is "owned itself" when it is ``{}`` or carries ``"."``; it may also have owned children. The union
    owns a node when any input does and has every input's children; a node owned itself that has children
    gets ``"."`` (``{}`` alone would drop the ownership of the node, ``{".": {}}`` alone is written ``{}``).
    """
    # At the top an empty set owns nothing; below it, an empty node is a field owned itself.
    return _union(sets, owned_here=any("." in fields for fields in sets))


def _union(nodes: Sequence[KubeObject], owned_here: bool) -> KubeDict:
    children: dict[str, list[KubeObject]] = {}
    for fields in nodes:
        for key, sub in fields.items():
            if key != ".":
                children.setdefault(key, []).append(sub if isinstance(sub, Mapping) else {})
    return _node(
        owned_here, {key: _union(subs, any(_owned_itself(sub) for sub in subs)) for key, subs in children.items()}
    )


def _owned_itself(fields: KubeObject) -> bool:
    return not fields or "." in fields


def _node(owned_here: bool, children: KubeDict) -> KubeDict:
    ordered = {key: children[key] for key in sorted(children)}
    return {".": {}, **ordered} if owned_here and ordered else ordered


def owns(fields: KubeObject, path: Sequence[str]) -> bool:
    """Whether the FieldsV1 set owns the node at ``path`` (keys such as ``f:spec``) itself."""
    node: object = fields
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return isinstance(node, Mapping) and _owned_itself(node)


def client_side_apply_managers(managed_fields: Sequence[KubeObject]) -> list[str]:
    """The managers that wrote with client-side apply: ``Update`` entries owning the last-applied annotation,
    in the order they first appear (kubectl keeps them in a set; the order changes nothing but which entry's
    apiVersion and time the new ``Apply`` entry keeps when there was none)."""
    found: list[str] = []
    for entry in managed_fields:
        name = str(entry.get("manager", ""))
        if entry.get("operation") == "Update" and owns(entry.get("fieldsV1") or {}, _LAST_APPLIED_PATH):
            if name not in found:
                found.append(name)
    return found


def upgrade_client_side_apply(
    managed_fields: Sequence[KubeObject], csa_managers: Sequence[str], ssa_manager: str
) -> list[KubeDict] | None:
    """managedFields with the ``csa_managers``' fields moved into ``ssa_manager``'s ``Apply`` entry; None when
    that changes nothing.

    Per client-side manager, as csaupgrade does: the target is ``ssa_manager``'s ``Apply`` entry (not of a
    subresource); when there is none, the first ``Update`` entry of the client-side manager becomes it (keeping
    its apiVersion and time). The target takes the union with the client-side manager's ``Update`` entry of
    the same apiVersion only (an entry written through another apiVersion names other paths and is dropped, not
    merged), and every ``Update`` entry of that manager on the main resource is removed.
    """
    entries = [dict(entry) for entry in managed_fields]
    for csa_manager in csa_managers:
        entries = _upgrade_one(entries, csa_manager, ssa_manager)
    if entries == [dict(entry) for entry in managed_fields]:
        return None
    return entries


def _is_update_of(entry: KubeObject, manager: str) -> bool:
    return entry.get("manager") == manager and entry.get("operation") == "Update" and not entry.get("subresource")


def _upgrade_one(entries: list[KubeDict], csa_manager: str, ssa_manager: str) -> list[KubeDict]:
    target = next(
        (
            i
            for i, e in enumerate(entries)
            if e.get("manager") == ssa_manager and e.get("operation") == "Apply" and not e.get("subresource")
        ),
        None,
    )
    if target is None:
        target = next((i for i, e in enumerate(entries) if _is_update_of(e, csa_manager)), None)
        if target is None:
            return entries
        entries[target] = {**entries[target], "manager": ssa_manager, "operation": "Apply"}
    ssa_entry = entries[target]
    same_version = next(
        (e for e in entries if _is_update_of(e, csa_manager) and e.get("apiVersion") == ssa_entry.get("apiVersion")),
        None,
    )
    sets = [ssa_entry.get("fieldsV1") or {}]
    if same_version is not None:
        sets.append(same_version.get("fieldsV1") or {})
    entries[target] = {**ssa_entry, "fieldsType": "FieldsV1", "fieldsV1": union_fields(*sets)}
    return [e for e in entries if not _is_update_of(e, csa_manager)]


def upgrade_patch(obj: KubeObject, ssa_manager: str) -> list[KubeDict] | None:
    """The JSON patch kubectl sends to upgrade ``obj``'s client-side apply ownership to ``ssa_manager``, or None.

    It replaces metadata.managedFields whole (the API server takes a non-empty, decodable list from a write as
    the new ownership) and "replaces" metadata.resourceVersion with the version read: a stale read then fails
    with 409 Conflict from storage instead of overwriting ownership that changed in between.
    """
    metadata = obj.get("metadata") or {}
    managed = list(metadata.get("managedFields") or ())
    upgraded = upgrade_client_side_apply(managed, client_side_apply_managers(managed), ssa_manager)
    if upgraded is None:
        return None
    return [
        {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": str(metadata.get("resourceVersion", ""))},
    ]
