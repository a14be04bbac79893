"""Server-side apply: every object in dependency order, the client-side apply ownership upgrade, conflicts.

Also makes sure the namespace exists. What each apply did (created, configured, unchanged; fields taken from
other managers) is judged from the record made before it (kube/recording.py) and the apply's answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deployer import managed_fields
from deployer.errors import (
    APIConflictError,
    APIUnprocessableError,
    ApplyError,
    CredentialsExpiredError,
    KubernetesError,
)
from deployer.kinds import KubeDict, KubeObject
from deployer.kube.answers import conflict_text
from deployer.kube.api import KubeAPI
from deployer.kube.discovery import Discovery
from deployer.kube.resources import NAMESPACES, Resource
from deployer.plans import apply_rank
from deployer.rollbacks import LiveRecord, ObjectRecord, ObjectRef

log = logging.getLogger(__name__)

FIELD_MANAGER = "deployer"
# Attempts at upgrading client-side apply ownership when the object keeps changing under it (kubectl's
# maxPatchRetry): each 409 means a newer version to read and compute the upgrade from again.
UPGRADE_ATTEMPTS = 5


@dataclass(frozen=True)
class ApplyResult:
    """One applied object: ``action`` is created, configured or unchanged; ``taken_over`` maps each other
    field manager to the fields this apply took from it (with force, or by upgrading a client-side apply
    manager, whose every field this run now applies); ``upgraded`` names the client-side apply managers whose
    ownership was moved to deployer's, as kubectl apply --server-side does."""

    ref: ObjectRef
    action: str
    taken_over: dict[str, list[str]] = field(default_factory=dict)
    live: KubeDict = field(default_factory=dict, repr=False)
    upgraded: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.ref} {self.action}"
        for manager, fields in sorted(self.taken_over.items()):
            text += f"; took {', '.join(fields)} from {manager}"
        return text


@dataclass(frozen=True)
class ApplyOptions:
    field_manager: str
    force: bool
    dry_run: bool


def ensure_namespace(api: KubeAPI, name: str, *, create: bool = True) -> bool:
    """Make sure the namespace exists; True when this call created it.

    Raises KubernetesError when it is missing and ``create`` is False (--no-create-namespace).
    """
    if api.get(NAMESPACES, None, name) is not None:
        return False
    if not create:
        raise KubernetesError(f'namespace "{name}" does not exist (--no-create-namespace)')
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    try:
        api.request("POST", NAMESPACES.path(None), body=body)
    except APIConflictError:
        return False  # created meanwhile by someone else
    return True


def apply(
    api: KubeAPI,
    discovery: Discovery,
    objects: Sequence[KubeObject],
    options: ApplyOptions,
    record: LiveRecord | None,
    origins: Mapping[ObjectRef, str] | None,
) -> list[ApplyResult]:
    """Server-side apply of every object, in dependency order (see Cluster.apply)."""
    results = []
    for obj in sorted(objects, key=lambda o: apply_rank(str(o.get("kind")))):
        ref = discovery.ref_of(obj)
        resource = discovery.resource_of(ref)
        where = f"{origins[ref]}: " if origins and ref in origins else ""
        before = record.find(ref) if record is not None else None
        # Fields that `kubectl apply` (client-side) owns would outlive their removal from the manifests:
        # a server-side apply only removes fields its own manager applied before. kubectl apply
        # --server-side moves them into its own Apply entry (see managed_fields). kubectl does it after
        # its apply, from the answer, then applies again, to save a GET on every apply. With force,
        # deployer has read every object already (record) and upgrades first, from that read: one request
        # more for such an object, none for the others, and the apply that follows drops what the
        # manifests dropped. Upgrading first cannot change what a forced apply takes (all conflicting
        # fields anyway); without force it would hide the conflicts --no-force-conflicts must refuse, so
        # then deployer keeps kubectl's order: only an apply that went through is followed by the upgrade.
        # Never in a dry run: a dry-run upgrade is not stored, so no dry-run apply could build on it.
        recorded = before.content if before is not None else None
        upgrade_first = options.force and not options.dry_run and recorded is not None
        upgraded: list[str] = []
        if upgrade_first and recorded is not None:
            upgraded = _upgrade_client_side_apply(api, resource, ref, recorded, options.field_manager)
        status, live = _server_side_apply(api, resource, ref, obj, options, where)
        if not upgrade_first and not options.dry_run:
            upgraded = _upgrade_client_side_apply(api, resource, ref, live, options.field_manager)
            if upgraded:
                status, live = _server_side_apply(api, resource, ref, obj, options, where)
        results.append(_apply_result(ref, status, live, before, options.field_manager, upgraded))
    return results


def _server_side_apply(
    api: KubeAPI, resource: Resource, ref: ObjectRef, obj: KubeObject, options: ApplyOptions, where: str
) -> tuple[int, KubeDict]:
    query: dict[str, str | bool] = {"fieldManager": options.field_manager, "force": options.force}
    if options.dry_run:
        # The server runs admission and defaulting and answers with what it would store.
        query["dryRun"] = "All"
    try:
        status, live = api.request(
            "PATCH",
            resource.path(ref.namespace, ref.name),
            query=query,
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )
    except CredentialsExpiredError:
        raise
    except APIConflictError as e:
        raise ApplyError(
            f"{where}{ref} conflicts with other field managers: {conflict_text(e)}; "
            "without --no-force-conflicts deployer takes these fields over",
            status=409,
        ) from e
    except KubernetesError as e:
        raise ApplyError(
            f"{where}{ref} was refused: {e.message}{_refusal_hint(ref, e)}",
            status=e.status,
            request_id=e.request_id,
            retryable=e.retryable,
        ) from e
    return status, dict(live) if isinstance(live, Mapping) else {}


def _upgrade_client_side_apply(
    api: KubeAPI, resource: Resource, ref: ObjectRef, live: KubeObject, field_manager: str
) -> list[str]:
    """Move the client-side apply managers' fields into ``field_manager``'s Apply entry, as kubectl apply
    --server-side does; returns the managers upgraded (empty: nothing to do, or it did not work).

    One JSON patch of metadata.managedFields guarded by the resourceVersion read; on 409 (the object changed
    since) read it again and recompute, up to UPGRADE_ATTEMPTS times. Like kubectl, a failure only warns:
    the apply goes on as it would without the upgrade, and the next run tries again.
    """
    path = resource.path(ref.namespace, ref.name)
    current: KubeObject | None = live
    for _ in range(UPGRADE_ATTEMPTS):
        if current is None:
            return []
        managers = managed_fields.client_side_apply_managers((current.get("metadata") or {}).get("managedFields") or ())
        patch = managed_fields.upgrade_patch(current, field_manager)
        if patch is None:
            return []
        try:
            api.request("PATCH", path, body=patch, content_type="application/json-patch+json")
        except APIConflictError:
            current = api.get(resource, ref.namespace, ref.name)
            continue
        except CredentialsExpiredError:
            raise
        except KubernetesError as e:
            log.warning("could not upgrade the client-side apply field ownership of %s: %s", ref, e)
            return []
        return managers
    log.warning(
        "could not upgrade the client-side apply field ownership of %s: it kept changing (%d attempts)",
        ref,
        UPGRADE_ATTEMPTS,
    )
    return []


def _refusal_hint(ref: ObjectRef, error: KubernetesError) -> str:
    """What to do about a refusal whose cause is known: a Job's pod template, which the API never lets change
    (a re-deploy of the same Job with a new image)."""
    if (
        ref.kind == "Job"
        and isinstance(error, APIUnprocessableError)
        and "spec.template" in error.message
        and "immutable" in error.message
    ):
        return (
            "; a Job's pod template cannot change: delete the finished Job before deploying, name the Job per "
            "deploy, or set ttlSecondsAfterFinished so that it is removed once finished"
        )
    return ""


def field_paths(fields: KubeObject, prefix: str = "") -> set[str]:
    """The leaf field paths of a managedFields ``fieldsV1`` set, written as the API server writes them in
    conflict messages: ``.spec.template.spec.containers[name="web"].image``."""
    paths: set[str] = set()
    for key, sub in fields.items():
        if key == ".":
            continue
        kind, _, rest = key.partition(":")
        if kind == "f":
            path = f"{prefix}.{rest}"
        elif kind == "k":
            try:
                keys = json.loads(rest)
                path = prefix + "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
            except ValueError:
                path = f"{prefix}[{rest}]"
        elif kind == "v":
            path = f"{prefix}[={rest}]"
        elif kind == "i":
            path = f"{prefix}[{rest}]"
        else:
            path = f"{prefix}.{key}"
        if isinstance(sub, Mapping) and any(k != "." for k in sub):
            paths |= field_paths(sub, path)
        else:
            paths.add(path)
    return paths


def _managed_fields(obj: KubeObject | None, operation: str | None = None) -> dict[str, set[str]]:
    owned: dict[str, set[str]] = {}
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or ():
        if operation is not None and entry.get("operation") != operation:
            continue
        fields = entry.get("fieldsV1") or {}
        owned.setdefault(str(entry.get("manager", "")), set()).update(field_paths(fields))
    return owned


def _apply_result(
    ref: ObjectRef,
    status: int,
    live_obj: KubeDict,
    before: ObjectRecord | None,
    field_manager: str,
    upgraded: Sequence[str] = (),
) -> ApplyResult:
    previous = before.content if before is not None else None
    if status == 201 or (before is not None and not before.existed):
        action = "created"
    elif previous is not None and (previous.get("metadata") or {}).get("resourceVersion") == (
        live_obj.get("metadata") or {}
    ).get("resourceVersion"):
        action = "unchanged"
    else:
        action = "configured"
    taken: dict[str, list[str]] = {}
    if previous is not None:
        owned_before, owned_after = _managed_fields(previous), _managed_fields(live_obj)
        mine = owned_after.get(field_manager, set())
        for manager, fields in owned_before.items():
            if manager == field_manager:
                continue
            lost = (fields - owned_after.get(manager, set())) & mine
            if lost:
                taken[manager] = sorted(lost)
    # Compared with the record, taken before any upgrade: an upgraded manager's fields that this apply keeps
    # are reported as taken from it, which is what happened to them.
    return ApplyResult(ref, action, taken, live_obj, list(upgraded))
