"""Server-side apply and field ownership: managedFields (FieldsV1), merging an applied configuration,
conflicts between field managers, and the ownership moves that ordinary writes cause.

Pure functions over plain dicts; no I/O, no clock (callers pass the timestamp). Paths are tuples of
FieldsV1 keys ("f:spec", 'k:{"name":"app"}', 'v:"x"'). The list and map types follow the schema of the
built-in kinds as far as the simulator needs: keyed lists (containers by name, container ports by
containerPort+protocol, ...), sets of strings (finalizers), atomic lists and atomic selectors.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
MISSING: Any = object()
BEFORE_FIRST_APPLY = "before-first-apply"

# Fields that are never owned: identity and bookkeeping the server writes itself.
_IGNORED_TOP = {"apiVersion", "kind", "status"}
_IGNORED_METADATA = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "resourceClaims": ("name",),
}
_SET_LISTS = {"finalizers"}
# Maps whose keys are data (not struct fields): each key is owned separately, the map itself gets ".".
_GRANULAR_MAPS = {
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "nodeSelector",
    "limits",
    "requests",
    "matchLabels",
}
_ATOMIC_FIELDS = {"selector"}


def list_keys(parents: tuple[str, ...], name: str) -> tuple[str, ...] | None:
    """Key fields of keyed list ``name`` under field path ``parents``; None for atomic lists."""
    if name == "ports":
        return ("containerPort", "protocol") if parents and parents[-1] in _CONTAINER_LISTS else ("port", "protocol")
    return _LIST_KEYS.get(name)


def _item_key(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    identity: dict[str, Any] = {}
    for k in keys:
        if k in item:
            identity[k] = item[k]
        elif k == "protocol":
            identity[k] = "TCP"  # the schema defaults protocol, so it is part of the identity
    return "k:" + json.dumps(identity, sort_keys=True, separators=(",", ":"))


def _item_matches(item: Any, key: str) -> bool:
    if not isinstance(item, dict):
        return False
    identity = json.loads(key[2:])
    return all(item.get(k, "TCP" if k == "protocol" else MISSING) == v for k, v in identity.items())


# ---------------------------------------------------------------- field sets of objects


def field_set(obj: dict[str, Any], status: bool = False) -> set[Path]:
    """Every owned path of ``obj``: its spec/metadata (or, with ``status``, only its status)."""
    paths: set[Path] = set()
    for key, value in obj.items():
        if status:
            if key == "status" and isinstance(value, dict):
                _collect(value, ("f:status",), ("status",), paths)
            continue
        if key in _IGNORED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _IGNORED_METADATA}
            if meta:
                _collect(meta, ("f:metadata",), ("metadata",), paths)
            continue
        _collect_value(value, (f"f:{key}",), (key,), paths)
    return paths


def _collect(mapping: dict[str, Any], path: Path, names: tuple[str, ...], out: set[Path]) -> None:
    if names and names[-1] in _GRANULAR_MAPS:
        out.add(path)
    if not mapping:
        out.add(path)
    for key, value in mapping.items():
        _collect_value(value, (*path, f"f:{key}"), (*names, key), out)


def _collect_value(value: Any, path: Path, names: tuple[str, ...], out: set[Path]) -> None:
    name = names[-1]
    if isinstance(value, dict) and name not in _ATOMIC_FIELDS:
        _collect(value, path, names, out)
    elif isinstance(value, list) and name in _SET_LISTS:
        out.add(path)
        for item in value:
            out.add((*path, "v:" + json.dumps(item, separators=(",", ":"))))
    elif (
        isinstance(value, list)
        and (keys := list_keys(names[:-1], name)) is not None
        and all(isinstance(i, dict) for i in value)
    ):
        if not value:
            out.add(path)
        for item in value:
            item_path = (*path, _item_key(item, keys))
            out.add(item_path)
            for k, v in item.items():
                _collect_value(v, (*item_path, f"f:{k}"), (*names, k), out)
    else:
        out.add(path)


# ---------------------------------------------------------------- FieldsV1 encoding


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Nest paths into the FieldsV1 tree; "." marks a node owned itself that also has owned children."""
    children: dict[str, set[Path]] = {}
    owned_here: set[str] = set()
    for path in paths:
        if not path:
            continue
        children.setdefault(path[0], set())
        if len(path) == 1:
            owned_here.add(path[0])
        else:
            children[path[0]].add(path[1:])
    tree: dict[str, Any] = {}
    for key in sorted(children):
        sub = to_fields_v1(children[key])
        tree[key] = {".": {}, **sub} if sub and key in owned_here else sub
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in tree.items():
        if key == ".":
            paths.add(prefix)
            continue
        path = (*prefix, key)
        if not child:
            paths.add(path)
        else:
            paths |= from_fields_v1(child, path)
    return paths


def describe_path(path: Path) -> str:
    """How conflicts name a field: ".spec.template.spec.containers[name="app"].image"."""
    text = ""
    for part in path:
        if part.startswith("f:"):
            text += "." + part[2:]
        elif part.startswith("k:"):
            identity = json.loads(part[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in identity.items()) + "]"
        elif part.startswith("v:"):
            text += f"[{part[2:]}]"
    return text


# ---------------------------------------------------------------- values at paths


def value_at(obj: Any, path: Path) -> Any:
    current = obj
    for part in path:
        if part.startswith("f:"):
            if not isinstance(current, dict) or part[2:] not in current:
                return MISSING
            current = current[part[2:]]
        elif part.startswith("k:"):
            if not isinstance(current, list):
                return MISSING
            current = next((i for i in current if _item_matches(i, part)), MISSING)
            if current is MISSING:
                return MISSING
        elif part.startswith("v:"):
            wanted = json.loads(part[2:])
            if not isinstance(current, list) or wanted not in current:
                return MISSING
            current = wanted
    return current


def _remove_path(obj: dict[str, Any], path: Path) -> None:
    """Delete the field at ``path`` in place; missing parents are fine."""
    parent: Any = obj
    for part in path[:-1]:
        parent = value_at(parent, (part,))
        if parent is MISSING:
            return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        parent[:] = [i for i in parent if not _item_matches(i, last)]
    elif last.startswith("v:") and isinstance(parent, list):
        wanted = json.loads(last[2:])
        parent[:] = [i for i in parent if i != wanted]


# ---------------------------------------------------------------- merging an applied configuration


def merge_applied(live: Any, applied: Any, names: tuple[str, ...] = ()) -> Any:
    """Deep-merge ``applied`` into ``live``: maps by key, keyed lists by key, sets by value, the rest replaces."""
    if isinstance(applied, dict) and isinstance(live, dict) and not (names and names[-1] in _ATOMIC_FIELDS):
        result = dict(live)
        for key, value in applied.items():
            result[key] = merge_applied(live.get(key, MISSING), value, (*names, key))
        return result
    if isinstance(applied, list) and isinstance(live, list) and names:
        name = names[-1]
        if name in _SET_LISTS:
            return list(live) + [v for v in applied if v not in live]
        keys = list_keys(names[:-1], name)
        if keys is not None and all(isinstance(i, dict) for i in applied + live):
            result_list = [copy.deepcopy(i) for i in live]
            for item in applied:
                key = _item_key(item, keys)
                index = next((n for n, existing in enumerate(result_list) if _item_matches(existing, key)), None)
                if index is None:
                    result_list.append(copy.deepcopy(item))
                else:
                    result_list[index] = merge_applied(result_list[index], item, names)
            return result_list
    return copy.deepcopy(applied)


# ---------------------------------------------------------------- managers


@dataclass
class ManagerEntry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    subresource: str
    paths: set[Path] = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def read_managers(obj: dict[str, Any] | None) -> list[ManagerEntry]:
    if not obj:
        return []
    entries: list[ManagerEntry] = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        entries.append(
            ManagerEntry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                subresource=raw.get("subresource", ""),
                paths=from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def write_managers(obj: dict[str, Any], entries: list[ManagerEntry]) -> None:
    kept = [e.to_json() for e in entries if e.paths]
    metadata = obj.setdefault("metadata", {})
    if kept:
        metadata["managedFields"] = kept
    else:
        metadata.pop("managedFields", None)


@dataclass(frozen=True)
class Conflict:
    manager: str
    api_version: str
    path: Path


class ApplyConflictError(Exception):
    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(conflict_message(conflicts))
        self.conflicts = conflicts


def conflict_message(conflicts: list[Conflict]) -> str:
    """The API server's wording: 'Apply failed with 1 conflict: conflict with "x" using apps/v1: .spec.replicas'."""
    count = len(conflicts)
    by_manager: dict[tuple[str, str], list[Conflict]] = {}
    for c in conflicts:
        by_manager.setdefault((c.manager, c.api_version), []).append(c)
    parts: list[str] = []
    for (manager, api_version), items in by_manager.items():
        if len(items) == 1:
            parts.append(f'conflict with "{manager}" using {api_version}: {describe_path(items[0].path)}')
        else:
            listed = "".join(f"\n- {describe_path(i.path)}" for i in items)
            parts.append(f'conflicts with "{manager}" using {api_version}:{listed}')
    noun = "conflict" if count == 1 else "conflicts"
    return f"Apply failed with {count} {noun}: " + "\n".join(parts)


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    api_version: str,
    timestamp: str,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` to ``live`` (None when it does not exist yet).

    Raises ``ApplyConflictError`` when another manager owns a field the configuration sets to a different
    value and ``force`` is false. Defaulting and bookkeeping (uid, resourceVersion) are the caller's.
    """
    applied = {k: v for k, v in applied.items() if k != "status"}
    applied_meta = {k: v for k, v in (applied.get("metadata") or {}).items() if k != "managedFields"}
    applied = {**applied, "metadata": applied_meta}
    entries = read_managers(live)
    if live is not None and not entries:
        # An object nobody tracks (its managedFields were reset, or it predates tracking) gets a stand-in
        # owner of everything it holds before the first apply, as the API server does: the applier then
        # conflicts with it over different values and shares the same ones.
        entries = [ManagerEntry(BEFORE_FIRST_APPLY, "Update", api_version, timestamp, "", field_set(live))]
    wanted = field_set(applied)
    mine = next((e for e in entries if e.identity == (manager, "Apply", "")), None)
    previously = mine.paths if mine else set()

    merged: dict[str, Any] = copy.deepcopy(live) if live else {}
    others = [e for e in entries if e is not mine]
    owned_by_others = set().union(*(e.paths for e in others)) if others else set()
    # Fields this manager applied before but dropped now go away unless someone else still owns them. As the
    # API server prunes: only those fields; what lies under them and is not theirs to drop (owned by another
    # manager, or by none, such as a controller's annotation in a map the applier owned) stays. A node goes
    # whole when everything under it goes, parents first: a list item emptied field by field would no longer
    # match its key and would stay behind as an empty item.
    dropped = previously - wanted - owned_by_others
    live_paths = field_set(live) if live else set()
    for path in sorted(dropped, key=len):
        below = {p for p in live_paths if len(p) > len(path) and p[: len(path)] == path}
        if below <= dropped:
            _remove_path(merged, path)
    merged = merge_applied(merged, applied)

    leaf_paths = {p for p in wanted if not any(q[: len(p)] == p and q != p for q in wanted)}
    conflicts: list[Conflict] = []
    for entry in others:
        if entry.manager == manager or entry.subresource:
            continue
        for path in sorted(entry.paths & leaf_paths):
            if live is not None and value_at(live, path) != value_at(applied, path):
                conflicts.append(Conflict(entry.manager, entry.api_version, path))
    if conflicts and not force:
        raise ApplyConflictError(conflicts)
    for conflict in conflicts:
        for entry in others:
            if entry.manager == conflict.manager:
                entry.paths.discard(conflict.path)

    if mine is None:
        mine = ManagerEntry(manager, "Apply", api_version, timestamp, "")
        entries.append(mine)
    mine.paths = wanted
    mine.time = timestamp
    mine.api_version = api_version
    write_managers(merged, entries)
    return merged


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    timestamp: str,
    subresource: str = "",
) -> None:
    """Give ``manager`` (operation Update) the fields this write changed, taking them from everyone else.

    Mutates ``new``'s metadata.managedFields in place. The ownership it starts from is the one the write
    carries when it sets valid managedFields (see ``managers_for_write``), else the stored one; a write that
    resets them leaves the object without managedFields and is not tracked either.
    """
    entries = managers_for_write(old, new, subresource)
    if entries is None:
        new.setdefault("metadata", {}).pop("managedFields", None)
        return
    status = subresource == "status"
    after = field_set(new, status=status)
    if old is None:
        changed = after
        removed: set[Path] = set()
    else:
        before = field_set(old, status=status)
        changed = {p for p in after if value_at(old, p) != value_at(new, p) or p not in before}
        removed = before - after
    if not changed and not removed:
        write_managers(new, entries)
        return
    touched = changed | removed
    for entry in entries:
        if entry.identity != (manager, "Update", subresource):
            entry.paths -= touched
    mine = next((e for e in entries if e.identity == (manager, "Update", subresource)), None)
    if mine is None:
        mine = ManagerEntry(manager, "Update", api_version, timestamp, subresource)
        entries.append(mine)
    mine.paths = (mine.paths - removed) | changed
    mine.time = timestamp
    write_managers(new, entries)


# ---------------------------------------------------------------- managedFields a client writes


def managers_for_write(
    old: dict[str, Any] | None, new: dict[str, Any], subresource: str = ""
) -> list[ManagerEntry] | None:
    """The ownership an update, patch or create starts from, as the API server's field manager decides it.

    - Through a subresource (status, scale): always the stored managedFields; a client cannot set them there.
    - A write whose managedFields are an empty list or a list of one empty entry resets them: None (the
      object is left without managedFields and this write is not tracked: the server only starts tracking
      again on a create or an apply).
    - A write carrying managedFields the server can decode (each entry with operation Apply or Update, an
      apiVersion, fieldsType FieldsV1 and a FieldsV1 tree) replaces the stored ones.
    - Anything else (no managedFields, or ones it cannot decode) keeps the stored ones: clients that do not
      know the field must not wipe it, and a bad entry is ignored, not refused.
    """
    stored = read_managers(old)
    if subresource:
        return stored
    written = (new.get("metadata") or {}).get("managedFields", MISSING)
    if isinstance(written, list) and (not written or written == [{}]):
        return None
    if isinstance(written, list) and all(_decodable(entry) for entry in written):
        return read_managers(new)
    return stored


def _decodable(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("operation") in ("Apply", "Update")
        and isinstance(entry.get("apiVersion"), str)
        and bool(entry["apiVersion"])
        and entry.get("fieldsType") == "FieldsV1"
        and _fields_tree(entry.get("fieldsV1", {}))
    )


def _fields_tree(tree: Any) -> bool:
    return isinstance(tree, dict) and all(
        isinstance(key, str) and (key == "." or key[:2] in ("f:", "k:", "v:", "i:")) and _fields_tree(child)
        for key, child in tree.items()
    )


def managed_fields_problems(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """What metadata validation refuses in stored managedFields, as (field, message) pairs: a manager longer
    than 128 characters or with unprintable ones, a subresource longer than 256."""
    problems: list[tuple[str, str]] = []
    for index, entry in enumerate((obj.get("metadata") or {}).get("managedFields") or []):
        where = f"metadata.managedFields[{index}]"
        manager = str(entry.get("manager", ""))
        if len(manager) > 128:
            problems.append((f"{where}.manager", "Too long: may not be more than 128 bytes"))
        elif not manager.isprintable():
            problems.append((f"{where}.manager", "must only contain printable characters"))
        if len(str(entry.get("subresource", ""))) > 256:
            problems.append((f"{where}.subresource", "Too long: may not be more than 256 bytes"))
    return problems
