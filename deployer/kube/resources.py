"""Where each kind lives in the API: its group version, plural and scope, and the paths built from them.

Pure data: the kinds deployer touches most are known here without a discovery request (kube/discovery.py asks
the API about the others). No I/O.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from deployer.kinds import WORKLOAD_KINDS


@dataclass(frozen=True)
class Resource:
    """How the API addresses one kind: ``/apis/apps/v1/namespaces/NS/deployments``."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = group_version_path(self.api_version)
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is needed")
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{urllib.parse.quote(name)}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


def group_version_path(api_version: str) -> str:
    """``/api/v1`` for the core group, ``/apis/GROUP/VERSION`` for the others."""
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


# The kinds deployer touches most: known without a discovery request (saves requests per deploy).
KNOWN_RESOURCES = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "Namespace", "namespaces", False),
        Resource("v1", "ConfigMap", "configmaps", True),
        Resource("v1", "Secret", "secrets", True),
        Resource("v1", "Service", "services", True),
        Resource("v1", "ServiceAccount", "serviceaccounts", True),
        Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
        Resource("v1", "Pod", "pods", True),
        Resource("v1", "Event", "events", True),
        Resource("apps/v1", "Deployment", "deployments", True),
        Resource("apps/v1", "StatefulSet", "statefulsets", True),
        Resource("apps/v1", "DaemonSet", "daemonsets", True),
        Resource("apps/v1", "ReplicaSet", "replicasets", True),
        Resource("apps/v1", "ControllerRevision", "controllerrevisions", True),
        Resource("batch/v1", "Job", "jobs", True),
        Resource("batch/v1", "CronJob", "cronjobs", True),
        Resource("networking.k8s.io/v1", "Ingress", "ingresses", True),
        Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
        Resource("rbac.authorization.k8s.io/v1", "Role", "roles", True),
        Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
        Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
        Resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
        Resource("coordination.k8s.io/v1", "Lease", "leases", True),
        Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
        Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    )
}
NAMESPACES = KNOWN_RESOURCES[("v1", "Namespace")]
PODS = KNOWN_RESOURCES[("v1", "Pod")]
EVENTS = KNOWN_RESOURCES[("v1", "Event")]
REPLICA_SETS = KNOWN_RESOURCES[("apps/v1", "ReplicaSet")]
CONTROLLER_REVISIONS = KNOWN_RESOURCES[("apps/v1", "ControllerRevision")]
LEASES = KNOWN_RESOURCES[("coordination.k8s.io/v1", "Lease")]
WORKLOAD_RESOURCES = {r.kind: r for r in KNOWN_RESOURCES.values() if r.kind in WORKLOAD_KINDS}
