"""The three classic patch types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

Pure functions over plain data; they never mutate their inputs. Errors raise ``PatchError`` with a
message fit for a 422/400 Status. The strategic merge keys are the ones of the built-in kinds the
simulator serves (containers by name, container ports by containerPort, Service ports by port, env by
name, ...), chosen by the field's path because the simulator has no OpenAPI schema.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch is malformed or cannot be applied to the object."""


# ---------------------------------------------------------------- JSON patch


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _resolve_parent(doc: Any, tokens: list[str], pointer: str) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"doc is missing path: {pointer}")
            current = current[token]
        elif isinstance(current, list):
            index = _list_index(current, token, pointer, allow_end=False)
            current = current[index]
        else:
            raise PatchError(f"doc is missing path: {pointer}")
    return current


def _list_index(items: list[Any], token: str, pointer: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(items)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r} in {pointer}")
    index = int(token)
    limit = len(items) if allow_end else len(items) - 1
    if index > limit:
        raise PatchError(f"array index out of bounds in {pointer}")
    return index


def _get(doc: Any, pointer: str) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing path: {pointer}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_list_index(parent, last, pointer, allow_end=False)]
    raise PatchError(f"doc is missing path: {pointer}")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, last, pointer, allow_end=True), value)
    else:
        raise PatchError(f"doc is missing path: {pointer}")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_list_index(parent, last, pointer, allow_end=False)]
    else:
        raise PatchError(f"doc is missing path: {pointer}")
    return doc


def apply_json_patch(doc: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply RFC 6902 operations to a copy of ``doc``."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result: Any = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid JSON patch operation {operation!r}")
        op, path = operation["op"], operation["path"]
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            _get(result, path)  # replace requires the target to exist
            tokens = _split_pointer(path)
            if not tokens:
                result = copy.deepcopy(operation.get("value"))
            else:
                parent = _resolve_parent(result, tokens, path)
                key: Any = tokens[-1] if isinstance(parent, dict) else int(tokens[-1])
                parent[key] = copy.deepcopy(operation.get("value"))
        elif op == "move":
            value = _get(result, operation["from"])
            result = _remove(result, operation["from"])
            result = _add(result, path, value)
        elif op == "copy":
            result = _add(result, path, copy.deepcopy(_get(result, operation["from"])))
        elif op == "test":
            if _get(result, path) != operation.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    if not isinstance(result, dict):
        raise PatchError("the patched document is not an object")
    return result


# ---------------------------------------------------------------- merge patch


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, everything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- strategic merge patch

_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
_KEYED_LISTS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_PRIMITIVE_SET_LISTS = {"finalizers"}


def merge_key(path: tuple[str, ...], field: str) -> str | None:
    """The patchMergeKey of list ``field`` found under map path ``path`` (list indices left out)."""
    if field == "ports":
        return "containerPort" if path and path[-1] in _CONTAINER_LISTS else "port"
    return _KEYED_LISTS.get(field)


def is_primitive_set(field: str) -> bool:
    return field in _PRIMITIVE_SET_LISTS


def strip_directives(value: Any) -> Any:
    """A copy of ``value`` without "$patch", "$retainKeys", "$setElementOrder/..." and friends."""
    if isinstance(value, dict):
        if value.get("$patch") == "delete":
            return None
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v and len(v) == 1)]
    return copy.deepcopy(value)


def apply_strategic_merge_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _merge_map(doc, patch, ())
    if not isinstance(result, dict):
        raise PatchError("the patch deletes the whole object")
    return result


def _merge_map(original: Any, patch: dict[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return strip_directives(patch)
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch type {directive!r} at {'.'.join(path) or 'the root'}")
    result: dict[str, Any] = copy.deepcopy(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, path, key)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], path: tuple[str, ...], field: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" and len(item) == 1 for item in patch):
        return [strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if is_primitive_set(field):
        merged = list(original) if isinstance(original, list) else []
        merged.extend(v for v in patch if v not in merged)
        return merged
    key = merge_key(path, field)
    if key is None or not isinstance(original, list):
        return [v for v in (strip_directives(i) for i in patch) if v is not None]
    merged = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {key}")
        position = next((i for i, o in enumerate(merged) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if position is not None:
                del merged[position]
            continue
        if position is None:
            merged.append(strip_directives(item))
        else:
            merged[position] = _merge_map(merged[position], item, (*path, field))
    return merged
