"""The one home of facts about Kubernetes kinds and objects that several modules share.

Which kinds are workloads (waited on like ``kubectl rollout status``), which of them keep revisions that a
rollback can return to, which metadata the API server writes (and a comparison or a restore must drop), and
the one name for an object as the API's JSON. Pure data: no I/O, no imports of deployer's other modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

# An object as the API's JSON (a decoded body): the one place where the shape is "any".
KubeObject: TypeAlias = Mapping[str, Any]
# The same, when the code builds or changes it.
KubeDict: TypeAlias = dict[str, Any]

# Kinds with a rollout status, in the order kubectl's messages list them; a Job's "rollout" is its completion.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Workloads that keep their past pod templates (ReplicaSets, ControllerRevisions): what a rollback returns to,
# and what records the change-cause annotation.
REVISIONED_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Workloads whose revisions are ControllerRevisions (a Deployment's are ReplicaSets).
CONTROLLER_REVISION_KINDS = ("StatefulSet", "DaemonSet")

# Metadata the API server writes: never part of what deployer compares, restores or sends back.
SERVER_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")
