"""Reading manifest YAML as kubectl reads it, and the text around its documents.

Pure: text in, plain objects or text out. Owns what deployer.manifests needs from YAML before it renders
anything: ``ManifestSource`` (one file's path and text), the shape checks run on the parser's events
(nesting depth, alias bombs, as kubectl's go-yaml refuses them), the safe loader whose resolver and
constructor read unquoted scalars and explicit tags by kubectl's rules (deployer.scalars) instead of
YAML 1.2's, the round-trip loader that keeps a file's comments, quoting and indentation, the split of a
file into its documents, and ``as_sent`` (an object encoded to the JSON the API receives).

Must not: read files (deployer.workspace does and hands over ManifestSource) or change a manifest
(deployer.manifests renders).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _ruamel_yaml import CParser
from ruamel.yaml import YAML
from ruamel.yaml.constructor import BaseConstructor, ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    ScalarEvent,
    StreamEndEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

from deployer import scalars
from deployer.errors import ManifestFieldError, ManifestSyntaxError


@dataclass(frozen=True)
class ManifestSource:
    """One manifest file as read: its path as the user would name it, and its text."""

    path: str
    text: str


# How deep a manifest may nest mappings and sequences. Real manifests stay far below it (a CRD's schema
# reaches some 30 levels); past a few hundred the YAML, JSON and Kubernetes libraries run out of Python's
# recursion, and a deeply nested C parse can crash the process, so this is checked on the parser's events
# before any tree is built.
MAX_NESTING_DEPTH = 100
# go-yaml's rule against alias bombs (kubectl reads with it): a document whose nodes, aliases expanded, come
# more than this share from aliases is refused: 99% up to 400,000 nodes, falling to 10% at 4,000,000.
_ALIAS_RATIO_LOW_NODES, _ALIAS_RATIO_HIGH_NODES = 400_000, 4_000_000
_ALIAS_RATIO_AT_LOW, _ALIAS_RATIO_AT_HIGH = 0.99, 0.10
# ...and only once a document has more than this many nodes and aliased nodes (small files never trip it).
_ALIAS_RULE_MIN_NODES, _ALIAS_RULE_MIN_ALIASED = 1000, 100


def allowed_alias_ratio(nodes: int) -> float:
    """The share of a document's expanded nodes that may come from aliases, by its expanded size."""
    if nodes <= _ALIAS_RATIO_LOW_NODES:
        return _ALIAS_RATIO_AT_LOW
    if nodes >= _ALIAS_RATIO_HIGH_NODES:
        return _ALIAS_RATIO_AT_HIGH
    progress = (nodes - _ALIAS_RATIO_LOW_NODES) / (_ALIAS_RATIO_HIGH_NODES - _ALIAS_RATIO_LOW_NODES)
    return _ALIAS_RATIO_AT_LOW - (_ALIAS_RATIO_AT_LOW - _ALIAS_RATIO_AT_HIGH) * progress


@dataclass
class _DocumentShape:
    """Counts over one document's parser events, each alias counted as the nodes it expands to (go-yaml's
    decode count), and the expanded size of every anchored node, so that an alias costs one addition."""

    nodes: int = 1  # the document itself, as go-yaml counts it
    aliased: int = 0
    open: list[tuple[str | None, int]] = field(default_factory=list)  # open collections: anchor, size so far
    sizes: dict[str, int] = field(default_factory=dict)  # expanded size of each finished anchored node

    def start_collection(self, anchor: str | None) -> None:
        self.nodes += 1
        self.open.append((anchor, 1))

    def end_collection(self) -> None:
        anchor, size = self.open.pop()
        if anchor is not None:
            self.sizes[anchor] = size
        self._grow_parent(size)

    def add_scalar(self, anchor: str | None) -> None:
        if anchor is not None:
            self.sizes[anchor] = 1
        self.nodes += 1
        self._grow_parent(1)

    def add_alias(self, anchor: str) -> None:
        expanded = self.sizes.get(anchor, 0)  # an unknown anchor: the loader reports it
        self.nodes += 1 + expanded
        self.aliased += expanded
        self._grow_parent(1 + expanded)

    def _grow_parent(self, size: int) -> None:
        if self.open:
            anchor, so_far = self.open[-1]
            self.open[-1] = (anchor, so_far + size)

    def too_aliased(self) -> bool:
        return (
            self.aliased > _ALIAS_RULE_MIN_ALIASED
            and self.nodes > _ALIAS_RULE_MIN_NODES
            and self.aliased / self.nodes > allowed_alias_ratio(self.nodes)
        )


def check_shape(source: ManifestSource) -> None:
    """Refuses, before any tree is built, a document nested deeper than MAX_NESTING_DEPTH, one whose aliases
    expand too much (an alias bomb, which would take exponential time and memory), and an anchor whose value
    contains an alias to itself. Linear in the text: an alias adds its anchor's remembered size.

    go-yaml checks its ratio at every node it decodes; checking at every event is the same test, because
    within one alias's expansion the aliased share only grows while the allowed share only falls.
    Syntax errors are left to the loader, which reports them with its own message.
    """
    parser = CParser(source.text)
    document = 0
    shape = _DocumentShape()
    try:
        while not isinstance(event := parser.get_event(), StreamEndEvent):
            if isinstance(event, DocumentStartEvent):
                document += 1
                shape = _DocumentShape()
            elif isinstance(event, CollectionStartEvent):
                if len(shape.open) >= MAX_NESTING_DEPTH:
                    problem = f"nested deeper than {MAX_NESTING_DEPTH} levels, the most deployer reads"
                    raise _shape_error(source, document, problem, event)
                shape.start_collection(event.anchor)
            elif isinstance(event, CollectionEndEvent):
                shape.end_collection()
            elif isinstance(event, ScalarEvent):
                shape.add_scalar(event.anchor)
            elif isinstance(event, AliasEvent):
                if any(anchor == event.anchor for anchor, _ in shape.open):
                    problem = f"the anchor {event.anchor!r} contains an alias to itself (kubectl refuses it too)"
                    raise _shape_error(source, document, problem, event)
                shape.add_alias(event.anchor)
            if shape.too_aliased():
                problem = (
                    f"excessive aliasing: aliases expand to {shape.aliased} of the first {shape.nodes} nodes "
                    "of this document (an alias bomb?); kubectl refuses it too"
                )
                raise _shape_error(source, document, problem, event)
    except YAMLError:
        return


def _shape_error(source: ManifestSource, document: int, problem: str, event: Event) -> ManifestSyntaxError:
    mark = event.start_mark
    return ManifestSyntaxError(problem, path=source.path, document=document, line=mark.line + 1, column=mark.column + 1)


def _syntax_error(path: str, error: YAMLError, document: int | None = None) -> ManifestSyntaxError:
    mark = getattr(error, "problem_mark", None) if isinstance(error, MarkedYAMLError) else None
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return ManifestSyntaxError(f"invalid YAML: {problem}", path=path, document=document)
    return ManifestSyntaxError(
        f"invalid YAML: {problem}", path=path, document=document, line=mark.line + 1, column=mark.column + 1
    )


def as_sent(document: Mapping[str, Any], *, path: str, index: int) -> dict[str, Any]:
    """``document`` as the API receives it: encoded to JSON, as deployer sends it, and read back.

    Encoding at render time means a value JSON cannot carry fails here, with exit 2 and before anything
    is built or applied, instead of while objects are being applied. Raises ManifestFieldError naming
    the field (``path`` and ``index`` name the file and document).
    """
    try:
        sent: dict[str, Any] = json.loads(json.dumps(document, allow_nan=False))
    except (TypeError, ValueError):
        field_path, problem = _unsendable(document, "")
        raise ManifestFieldError(problem, path=path, document=index, field_path=field_path or None) from None
    return sent


def _unsendable(value: object, field_path: str) -> tuple[str, str]:
    """The first value under ``value`` that JSON cannot carry, and why (called only once encoding failed)."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return field_path, f"a {type(key).__name__} cannot be a key in JSON"
            found = _unsendable(child, f"{field_path}.{key}" if field_path else str(key))
            if found[1]:
                return found
    elif isinstance(value, list | tuple):
        for position, child in enumerate(value):
            found = _unsendable(child, f"{field_path}[{position}]")
            if found[1]:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return field_path, f"{value} is not a number JSON can carry"
    elif not isinstance(value, str | int | float | bool) and value is not None:
        return field_path, f"a {type(value).__name__} value cannot be sent to the API as JSON"
    return field_path, ""


# Private tags for unquoted scalars: the resolver below sends every one to the constructor, which reads it
# by kubectl's rules (scalars.py) instead of ruamel's YAML 1.2 ones.
_KUBECTL_VALUE = "tag:deployer,2026:kubectl-value"
_KUBECTL_KEY = "tag:deployer,2026:kubectl-key"
_MERGE = "tag:yaml.org,2002:merge"
# Built once: the resolver runs for every scalar of every manifest.
_KUBECTL_VALUE_TAG, _KUBECTL_KEY_TAG, _MERGE_TAG = (Tag(suffix=t) for t in (_KUBECTL_VALUE, _KUBECTL_KEY, _MERGE))


class _KubectlResolver(VersionedResolver):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0]:
            return _MERGE_TAG if value == "<<" else _KUBECTL_VALUE_TAG
        return super().resolve(kind, value, implicit)


class _KubectlConstructor(SafeConstructor):
    """Builds the objects ``kubectl apply`` would send: YAML 1.1 booleans and octals, JSON numbers, text keys,
    explicit tags read as go-yaml reads them (deployer.scalars)."""

    def construct_kubectl_value(self, node: ScalarNode) -> Any:
        return self._sendable(scalars.plain_scalar(node.value), node)

    def construct_kubectl_key(self, node: ScalarNode) -> str:
        try:
            return scalars.json_key(scalars.plain_scalar(node.value))
        except ValueError:
            raise ConstructorError(
                None, None, f"{node.value or 'an empty key'} cannot be a mapping key", node.start_mark
            ) from None

    def construct_tagged(self, node: Node) -> Any:
        """A node with an explicit tag: go-yaml reads collections by their kind whatever their tag (``!!set``
        becomes a mapping, ``!!omap`` a sequence) and scalars by deployer.scalars.tagged_scalar."""
        if isinstance(node, MappingNode):
            return self.construct_yaml_map(node)
        if isinstance(node, SequenceNode):
            return self.construct_yaml_seq(node)
        tag = str(node.tag)
        standard = tag[len(_YAML_TAG_PREFIX) :] if tag.startswith(_YAML_TAG_PREFIX) else ""
        try:
            return self._sendable(scalars.tagged_scalar(standard, node.value), node)
        except ValueError as e:
            raise ConstructorError(None, None, str(e), node.start_mark) from None

    def _sendable(self, value: object, node: Node) -> Any:
        if not isinstance(value, float):
            return value
        try:
            return scalars.json_number(value)
        except ValueError:
            raise ConstructorError(
                None, None, f"{node.value} is not a number JSON can carry (kubectl refuses it too)", node.start_mark
            ) from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # Keys become text while they are built, as kubectl's JSON has it: "1" and "true" are then two keys,
        # where Python's 1 == True would have called them duplicates.
        if not isinstance(node, MappingNode):
            return BaseConstructor.construct_mapping(self, node, deep=deep)  # raises its own error
        self.flatten_mapping(node)  # first, so that merged keys are turned into text too
        merged = len(getattr(node, "merge", None) or ())
        mapping: dict[str, Any] = {}
        written: dict[str, Any] = {}  # the key nodes of this mapping's own keys, to name a duplicate's twin
        for index, (key_node, value_node) in enumerate(node.value):
            if key_node.tag == _KUBECTL_VALUE_TAG:
                key_node.tag = _KUBECTL_KEY_TAG
            key = self._mapping_key(key_node)
            if index >= merged:  # merged keys may repeat: the mapping's own keys win over them
                if key in written:
                    raise ConstructorError(None, None, _duplicate_key(key, key_node, written[key]), key_node.start_mark)
                written[key] = key_node
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def _mapping_key(self, key_node: Node) -> str:
        key = self.construct_object(key_node, deep=True)
        try:
            return scalars.json_key(key)
        except ValueError:
            raise ConstructorError(
                None, None, f"a {_kind_of(key)} cannot be a mapping key (kubectl refuses it too)", key_node.start_mark
            ) from None


def _kind_of(value: object) -> str:
    return {dict: "mapping", list: "sequence", type(None): "null"}.get(type(value), type(value).__name__)


def _duplicate_key(key: str, again: Node, first: Node) -> str:
    """The problem of a key written twice, with the key as written (``y``, not the "true" kubectl reads)."""
    written_again, written_first = (node.value if isinstance(node, ScalarNode) else key for node in (again, first))
    first_line = first.start_mark.line + 1
    if written_again == written_first:
        return f"duplicate key {json.dumps(written_again)} (also at line {first_line})"
    return (
        f"duplicate key {json.dumps(written_again)}: the key {json.dumps(written_first)} at line {first_line} "
        f"is the same key {json.dumps(key)} as kubectl reads them"
    )


_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
# add_constructor on the subclass leaves SafeConstructor, which other code may use, untouched.
_KubectlConstructor.add_constructor(_KUBECTL_VALUE, _KubectlConstructor.construct_kubectl_value)
_KubectlConstructor.add_constructor(_KUBECTL_KEY, _KubectlConstructor.construct_kubectl_key)
for _tag in ("str", "int", "float", "bool", "null", "timestamp", "binary", "set", "omap", "pairs", "seq", "map"):
    _KubectlConstructor.add_constructor(_YAML_TAG_PREFIX + _tag, _KubectlConstructor.construct_tagged)
_KubectlConstructor.add_constructor(None, _KubectlConstructor.construct_tagged)  # any other tag: ignored


def safe_yaml() -> YAML:
    yaml = YAML(typ="safe")
    yaml.Resolver = _KubectlResolver
    yaml.Constructor = _KubectlConstructor
    return yaml


_KEY_LINE = re.compile(r"^( *)[^\s#-][^#]*:\s*(?:#.*)?$")
_DASH_LINE = re.compile(r"^( *)- ")
_ANY_LINE = re.compile(r"^( *)\S")


def _guess_indentation(text: str) -> tuple[int, int]:
    """The file's mapping indent and the offset of "-" under a key, so a rendered file keeps its style.

    Both styles are common in Kubernetes manifests: "containers:\n  - name" and "containers:\n- name".
    """
    mapping, dash_offset = None, None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for previous, line in zip(lines, lines[1:], strict=False):
        parent = _KEY_LINE.match(previous)
        if parent is None:
            continue
        dash = _DASH_LINE.match(line)
        child = _ANY_LINE.match(line)
        if dash is not None and dash_offset is None:
            dash_offset = len(dash.group(1)) - len(parent.group(1))
        elif dash is None and child is not None and mapping is None:
            step = len(child.group(1)) - len(parent.group(1))
            if step > 0:
                mapping = step
        if mapping is not None and dash_offset is not None:
            break
    return mapping or 2, max(dash_offset if dash_offset is not None else 2, 0)


def round_trip_yaml(text: str = "") -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long image reference or annotation onto a second line
    mapping, offset = _guess_indentation(text)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return yaml


def load_documents(yaml: YAML, source: ManifestSource) -> list[Any]:
    documents: list[Any] = []
    try:
        for document in yaml.load_all(source.text):
            documents.append(document)
    except YAMLError as e:
        raise _syntax_error(source.path, e, document=len(documents) + 1) from e
    return documents


# A line that starts a document and carries at most a comment. A "---" at the start of a line followed by
# a blank always starts a document, even inside a quoted scalar, so splitting the text there is exact.
_DOCUMENT_MARKER = re.compile(r"---(?:[ \t]+#[^\n]*)?[ \t]*\n?\Z")
_COMMENT_OR_BLANK = re.compile(r"[ \t]*(?:#[^\n]*)?\n?\Z")


def document_segments(text: str) -> list[tuple[str, str, bool]] | None:
    """(the "---" line or "", the text after it, whether it is a document) for each part of ``text``;
    None when the file uses what this split does not handle: directives, "..." ends, content on a
    "---" line. The part before the first "---" is a document only when it holds more than comments."""
    segments: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines(keepends=True):
        if line.startswith(("---", "...", "%")):
            if not _DOCUMENT_MARKER.match(line):
                if line.startswith("---") and not line[3:4].isspace() and line[3:4] != "":
                    segments[-1][1].append(line)  # "----" or "---x": text, not a marker
                    continue
                return None
            segments.append((line if line.endswith("\n") else line + "\n", []))
        else:
            segments[-1][1].append(line)
    parts = [(marker, "".join(lines)) for marker, lines in segments]
    head_marker, head = parts[0]
    head_is_document = not all(_COMMENT_OR_BLANK.match(line) for line in head.splitlines(keepends=True))
    return [(head_marker, head, head_is_document)] + [(marker, body, True) for marker, body in parts[1:]]


# Comment and blank lines up to a file's first "---": a licence or "what is this file" header.
_HEADER_BEFORE_FIRST_DOCUMENT = re.compile(r"\A((?:[ \t]*(?:#[^\n]*)?\n)*)---(?:[ \t]|\n|\Z)")


def header_comments(text: str, rendered: str) -> str:
    """The comments above a file's first "---", which the round trip drops, unless it kept them."""
    match = _HEADER_BEFORE_FIRST_DOCUMENT.match(text)
    header = match.group(1).strip("\n") + "\n" if match and match.group(1).strip() else ""
    return "" if rendered.startswith(header) else header
