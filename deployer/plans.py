"""The plan of a run: which image, which objects in which order, and what would change.

Pure: builds and formats plain data. The order is the one in which objects can be applied without
waiting on each other: a namespace before what lives in it, config before the pods that read it,
services before workloads so that their endpoints exist when pods turn ready, ingresses after services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from deployer.diffs import ObjectDiff
from deployer.kinds import WORKLOAD_KINDS, KubeDict
from deployer.manifests import CLUSTER_SCOPED_KINDS, ManifestObject

_APPLY_ORDER: tuple[frozenset[str], ...] = (
    frozenset({"CustomResourceDefinition"}),
    frozenset({"Namespace"}),
    frozenset({"ResourceQuota", "LimitRange", "PriorityClass", "StorageClass", "IngressClass", "RuntimeClass"}),
    frozenset({"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "PodSecurityPolicy"}),
    frozenset({"ConfigMap", "Secret"}),
    frozenset({"PersistentVolume", "PersistentVolumeClaim"}),
    frozenset({"Service"}),
    frozenset({*WORKLOAD_KINDS, "ReplicaSet", "ReplicationController", "Pod", "CronJob"}),
    frozenset({"HorizontalPodAutoscaler", "PodDisruptionBudget"}),
    frozenset({"Ingress", "NetworkPolicy"}),
)


def apply_rank(kind: str) -> int:
    for rank, kinds in enumerate(_APPLY_ORDER):
        if kind in kinds:
            return rank
    return len(_APPLY_ORDER)  # custom resources and the rest come last, once their CRDs exist


def order_for_apply(objects: Sequence[ManifestObject]) -> list[ManifestObject]:
    """Objects in dependency order; within a rank they keep the order of the files (a stable sort)."""
    return sorted(objects, key=lambda obj: apply_rank(obj.kind))


def duplicate_objects(objects: Sequence[ManifestObject]) -> list[tuple[ManifestObject, ManifestObject]]:
    """Pairs of documents that name the same object: applying both would let the last silently win."""
    seen: dict[tuple[str, str, str | None, str], ManifestObject] = {}
    duplicates = []
    for obj in objects:
        group = obj.api_version.split("/")[0] if "/" in obj.api_version else ""
        key = (group, obj.kind, obj.namespace, obj.name)
        if key in seen:
            duplicates.append((seen[key], obj))
        else:
            seen[key] = obj
    return duplicates


@dataclass(frozen=True)
class PlannedObject:
    kind: str
    name: str
    namespace: str | None
    api_version: str
    source: str
    change: str  # "create", "update", "unchanged", or "apply" when no cluster was asked
    diff: tuple[str, ...] = ()  # the unified diff of an update (deployer.diffs)


@dataclass
class Plan:
    """What a run will do; ``build`` says what happens to the image (e.g. "build and push")."""

    image: str
    build: str
    objects: list[PlannedObject] = field(default_factory=list)
    cluster: str = "none (rendering only)"
    namespace: str | None = None
    canaries: list[str] = field(default_factory=list)  # --strategy canary: what the canary phase would create

    @property
    def workloads(self) -> list[PlannedObject]:
        return [obj for obj in self.objects if obj.kind in WORKLOAD_KINDS]


def make_plan(
    image: str,
    build: str,
    objects: Sequence[ManifestObject],
    *,
    changes: Mapping[tuple[str, str | None, str], ObjectDiff] | None = None,
    cluster: str = "none (rendering only)",
    namespace: str | None = None,
) -> Plan:
    """``changes`` maps (kind, namespace, name) to what a server-side dry run said would happen."""
    planned = []
    for obj in order_for_apply(objects):
        diff = (changes or {}).get((obj.kind, obj.namespace, obj.name))
        planned.append(
            PlannedObject(
                kind=obj.kind,
                name=obj.name,
                namespace=obj.namespace,
                api_version=obj.api_version,
                source=obj.origin,
                change=diff.change if diff is not None else "apply",
                diff=diff.lines if diff is not None else (),
            )
        )
    return Plan(image=image, build=build, objects=planned, cluster=cluster, namespace=namespace)


def plan_as_json(plan: Plan) -> KubeDict:
    return asdict(plan)


def plan_as_text(plan: Plan) -> str:
    lines = [
        f"image:     {plan.image}",
        f"build:     {plan.build}",
        f"cluster:   {plan.cluster}",
    ]
    if plan.namespace:
        lines.append(f"namespace: {plan.namespace}")
    lines.append(f"objects ({len(plan.objects)}, in apply order):")
    width = max((len(f"{obj.kind}/{obj.name}") for obj in plan.objects), default=0)
    for obj in plan.objects:
        ident = f"{obj.kind}/{obj.name}".ljust(width)
        if obj.namespace:
            where = f"namespace {obj.namespace}"
        elif obj.kind in CLUSTER_SCOPED_KINDS:
            where = "cluster-wide"
        else:
            where = "the context's namespace"
        lines.append(f"  {obj.change:<9} {ident}  {where}  ({obj.source})")
    if plan.canaries:
        lines.append("canaries (--strategy canary), before the rollout:")
        lines += [f"  {line}" for line in plan.canaries]
    return "\n".join(lines)
