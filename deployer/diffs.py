"""What applying would change in each object, as a diff: pure computation over plain data.

Owns what a diff compares (the live object against the server's dry-run answer, without what the server writes
on its own: ``metadata.managedFields``, ``resourceVersion``, ``generation``, ``uid``, ``creationTimestamp``,
``status``, and the revision annotations the controllers and kubectl set), how a Secret's values are masked (as
``kubectl diff`` masks them), the unified diff of the two as YAML with sorted keys (as ``kubectl diff`` shows
them), and its renderings as text (plain, or coloured for a terminal) and as JSON. The Markdown of a diff (step
summary, pull request comment) is deploy_report's, the reading of the cluster kube/diffing.py's.

Must not: talk to the cluster, print, or write files.
"""

from __future__ import annotations

import copy
import difflib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from deployer.kinds import SERVER_METADATA, KubeDict, KubeObject

Change = Literal["create", "update", "unchanged"]

# Annotations that record a revision rather than say what is wanted: the Deployment controller's revision
# number, the DaemonSet's template generation, and the copy of the whole object client-side `kubectl apply`
# keeps (a Secret's values in clear among them), which deployer's first apply drops.
REVISION_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "deprecated.daemonset.template.generation",
    "kubectl.kubernetes.io/last-applied-configuration",
)

# kubectl diff's masks: a value that did not change, and the two sides of one that did.
SECRET_MASK = "***"
SECRET_MASK_BEFORE = "*** (before)"
SECRET_MASK_AFTER = "*** (after)"
# The fields of a Secret that hold its values (stringData is write-only, but a dry-run answer is never trusted
# to have folded it into data).
SECRET_VALUE_FIELDS = ("data", "stringData")

# ANSI colours of a diff's lines on a terminal, as git and `kubectl diff` (through diff --color) show them.
_COLOURS = {"+": "\x1b[32m", "-": "\x1b[31m", "@": "\x1b[36m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


@dataclass(frozen=True)
class ObjectDiff:
    """What applying would do to one object; ``lines`` is the unified diff (no line ends), empty unless
    ``change`` is "update"."""

    kind: str
    name: str
    namespace: str | None
    change: Change
    lines: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


def without_noise(obj: KubeObject) -> KubeDict:
    """A copy of ``obj`` without what the server writes on its own: its status, the metadata it keeps
    (kinds.SERVER_METADATA) and the revision annotations."""
    body = {key: copy.deepcopy(value) for key, value in obj.items() if key != "status"}
    metadata = dict(body.get("metadata") or {})
    for key in SERVER_METADATA:
        metadata.pop(key, None)
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in REVISION_ANNOTATIONS}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    body["metadata"] = metadata
    return body


def masked(live: KubeObject | None, after: KubeObject) -> tuple[KubeDict | None, KubeDict]:
    """Copies of a Secret's two sides with every value masked as ``kubectl diff`` masks them: ``***`` for a key
    whose value is the same on both sides (or that only one side has), ``*** (before)`` and ``*** (after)``
    for a key whose value changes, so that the diff shows which keys change and never what they hold.
    Objects of other kinds are returned unchanged (copied)."""
    before_copy = copy.deepcopy(dict(live)) if live is not None else None
    after_copy = copy.deepcopy(dict(after))
    if after.get("kind") != "Secret":
        return before_copy, after_copy
    for field in SECRET_VALUE_FIELDS:
        old = (before_copy or {}).get(field)
        new = after_copy.get(field)
        old_values: Mapping[str, Any] = old if isinstance(old, Mapping) else {}
        new_values: Mapping[str, Any] = new if isinstance(new, Mapping) else {}
        if before_copy is not None and isinstance(old, Mapping):
            before_copy[field] = {
                key: SECRET_MASK_BEFORE if key in new_values and new_values[key] != value else SECRET_MASK
                for key, value in old_values.items()
            }
        elif before_copy is not None and old is not None:
            before_copy[field] = SECRET_MASK
        if isinstance(new, Mapping):
            after_copy[field] = {
                key: SECRET_MASK_AFTER if key in old_values and old_values[key] != value else SECRET_MASK
                for key, value in new_values.items()
            }
        elif new is not None:
            after_copy[field] = SECRET_MASK
    return before_copy, after_copy


def diff_object(live: KubeObject | None, after: KubeObject) -> ObjectDiff:
    """What applying would do to an object, from the live object (None: absent) and the server's dry-run
    answer: create, unchanged, or update with the unified diff of the two, noise removed and Secrets masked."""
    metadata = after.get("metadata") or {}
    kind, name, namespace = str(after.get("kind", "")), str(metadata.get("name", "")), metadata.get("namespace")
    if live is None:
        return ObjectDiff(kind, name, namespace, "create")
    before, answer = masked(without_noise(live), without_noise(after))
    assert before is not None
    where = "/".join(part for part in (namespace, kind.lower(), name) if part)
    lines = tuple(
        line.rstrip("\n")
        for line in difflib.unified_diff(
            as_yaml(before).splitlines(keepends=True),
            as_yaml(answer).splitlines(keepends=True),
            fromfile=f"live/{where}",
            tofile=f"dry-run/{where}",
        )
    )
    return ObjectDiff(kind, name, namespace, "update" if lines else "unchanged", lines)


def as_yaml(obj: KubeObject) -> str:
    """``obj`` as YAML with sorted keys, one line per value (multi-line text as a block), as kubectl shows it."""
    yaml = YAML(typ="rt", pure=True)
    yaml.width = 1 << 16  # never fold a long value: a fold would turn one changed value into several lines
    stream = io.StringIO()
    yaml.dump(_sorted(obj), stream)
    return stream.getvalue()


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    if isinstance(value, str) and "\n" in value.rstrip("\n"):
        return LiteralScalarString(value)
    return value


def changed(diffs: Sequence[ObjectDiff]) -> bool:
    """Whether applying would change anything."""
    return any(diff.change != "unchanged" for diff in diffs)


def heading(diff: ObjectDiff) -> str:
    """``deployment/web (namespace web): update``: which object, and what applying would do to it."""
    where = f" (namespace {diff.namespace})" if diff.namespace else ""
    return f"{diff.key}{where}: {diff.change}"


def diff_text(diffs: Sequence[ObjectDiff], *, colour: bool = False) -> str:
    """Every object's heading, each followed by its diff; ``colour`` for a terminal (ANSI), else plain."""
    lines: list[str] = []
    for diff in diffs:
        lines.append(f"{_BOLD}{heading(diff)}{_RESET}" if colour else heading(diff))
        lines += [_coloured(line) if colour else line for line in diff.lines]
    return "\n".join(lines)


def _coloured(line: str) -> str:
    if line.startswith(("---", "+++")):
        return f"{_BOLD}{line}{_RESET}"
    code = _COLOURS.get(line[:1])
    return f"{code}{line}{_RESET}" if code else line


def diff_json(diff: ObjectDiff) -> dict[str, Any]:
    """One object's diff for ``--format json``: kind, name, namespace, change, and the unified diff as lines."""
    return {
        "kind": diff.kind,
        "name": diff.name,
        "namespace": diff.namespace,
        "change": diff.change,
        "diff": list(diff.lines),
    }
