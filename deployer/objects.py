"""Small readers over Kubernetes objects as the API's JSON: pure, forgiving of absent or mistyped fields.

Shared by the judges (rollouts.py, revision_pods.py, rollbacks.py): a field the API omits reads as the Go zero
value kubectl would decode it to. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from deployer.kinds import KubeObject


def int_field(value: object) -> int:
    """Status integers the API omits when zero count as 0, as in the Go structs kubectl decodes into."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def metadata_of(obj: KubeObject) -> KubeObject:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def section_of(obj: KubeObject, key: str) -> KubeObject:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def name_of(obj: KubeObject) -> str:
    return str(metadata_of(obj).get("name", ""))


def condition(obj: KubeObject, condition_type: str) -> KubeObject | None:
    """The status condition of that type, or None."""
    for cond in section_of(obj, "status").get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == condition_type:
            return cond
    return None


def condition_true(obj: KubeObject, condition_type: str) -> bool:
    cond = condition(obj, condition_type)
    return cond is not None and cond.get("status") == "True"


def controller_uid(obj: KubeObject) -> str | None:
    """The uid of the object's controlling owner (the ownerReference with controller: true)."""
    for ref in metadata_of(obj).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller"):
            uid = ref.get("uid")
            return str(uid) if uid else None
    return None


def labels_of(obj: KubeObject) -> KubeObject:
    labels = metadata_of(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def generation_observed(obj: KubeObject) -> bool:
    return int_field(metadata_of(obj).get("generation")) <= int_field(
        section_of(obj, "status").get("observedGeneration")
    )
