"""What is live before an apply: each object's content and each workload's current revision (the rollback's
starting point, see rollbacks.LiveRecord)."""

from __future__ import annotations

from collections.abc import Sequence

from deployer import rollbacks
from deployer.kinds import REVISIONED_KINDS, KubeDict, KubeObject
from deployer.kube.api import KubeAPI
from deployer.kube.discovery import Discovery
from deployer.kube.resources import CONTROLLER_REVISIONS, REPLICA_SETS
from deployer.plans import apply_rank
from deployer.rollbacks import LiveRecord, ObjectRecord


def record(api: KubeAPI, discovery: Discovery, objects: Sequence[KubeObject]) -> LiveRecord:
    """What is live for each object before apply, in apply order, with each workload's current revision.

    One GET per object, and one LIST of ReplicaSets / ControllerRevisions per namespace that has
    Deployments / StatefulSets or DaemonSets.
    """
    records: list[ObjectRecord] = []
    replica_sets: dict[str, list[KubeDict]] = {}
    revisions: dict[str, list[KubeDict]] = {}
    for obj in sorted(objects, key=lambda o: apply_rank(str(o.get("kind")))):
        ref = discovery.ref_of(obj)
        live = api.get(discovery.resource_of(ref), ref.namespace, ref.name)
        revision = None
        if live is not None and ref.kind in REVISIONED_KINDS and ref.namespace:
            if ref.kind == "Deployment":
                if ref.namespace not in replica_sets:
                    replica_sets[ref.namespace] = api.list(REPLICA_SETS, ref.namespace).get("items") or []
                revision = rollbacks.record_revision(live, replica_sets=replica_sets[ref.namespace])
            else:
                if ref.namespace not in revisions:
                    revisions[ref.namespace] = api.list(CONTROLLER_REVISIONS, ref.namespace).get("items") or []
                revision = rollbacks.record_revision(live, controller_revisions=revisions[ref.namespace])
        records.append(ObjectRecord(ref, live is not None, live, revision))
    return LiveRecord(records)
