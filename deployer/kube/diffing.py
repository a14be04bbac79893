"""What applying would change, as the API server says it: each object's live state and its server-side dry-run
apply answer, for deployer.diffs to compare.

Requests: one read of the live objects per kind and namespace (a GET when the manifests hold one object of that
kind there, else one LIST of the kind in that namespace) and one dry-run apply (``dryRun=All``) per object; the
discovery of kinds deployer does not know is kube/discovery.py's. Stores nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deployer.kinds import KubeDict, KubeObject
from deployer.kube import applying
from deployer.kube.api import KubeAPI
from deployer.kube.applying import ApplyOptions
from deployer.kube.discovery import Discovery
from deployer.kube.resources import Resource
from deployer.rollbacks import ObjectRef


@dataclass(frozen=True)
class DryRunAnswer:
    """One object: what is live (None: absent), and what the server would store (None: it was not asked,
    because the object's namespace does not exist yet and a real run would create it first)."""

    ref: ObjectRef
    live: KubeDict | None
    after: KubeDict | None


def dry_run_answers(
    api: KubeAPI,
    discovery: Discovery,
    objects: Sequence[KubeObject],
    options: ApplyOptions,
    origins: Mapping[ObjectRef, str] | None,
    missing_namespace: str | None,
) -> list[DryRunAnswer]:
    """The live state and the dry-run answer of every object, in the order given. Objects in
    ``missing_namespace`` (which a real run would create first) are not sent: the server cannot dry-run into
    it. ``options.dry_run`` must be set."""
    if not options.dry_run:
        raise ValueError("dry_run_answers sends dry runs only")
    refs = [discovery.ref_of(obj) for obj in objects]
    live = read_live(api, discovery, objects)
    sendable = [
        obj
        for obj, ref in zip(objects, refs, strict=True)
        if not missing_namespace or ref.namespace != missing_namespace
    ]
    answers = {result.ref: result.live for result in applying.apply(api, discovery, sendable, options, None, origins)}
    return [DryRunAnswer(ref, live.get(ref), answers.get(ref)) for ref in refs]


def read_live(api: KubeAPI, discovery: Discovery, objects: Sequence[KubeObject]) -> dict[ObjectRef, KubeDict | None]:
    """Each object's live state (None when absent): one request per kind and namespace."""
    wanted: dict[tuple[Resource, str | None], list[ObjectRef]] = defaultdict(list)
    for obj in objects:
        ref = discovery.ref_of(obj)
        wanted[(discovery.resource_of(ref), ref.namespace)].append(ref)
    live: dict[ObjectRef, KubeDict | None] = {}
    for (resource, namespace), refs in wanted.items():
        if len(refs) == 1:
            live[refs[0]] = api.get(resource, namespace, refs[0].name)
            continue
        items = api.list(resource, namespace).get("items") or []
        by_name = {str((item.get("metadata") or {}).get("name")): item for item in items}
        for ref in refs:
            live[ref] = by_name.get(ref.name)
    return live
