"""Rendering manifests: placeholders, namespaces and change-cause, from YAML text to objects.

Pure: text in, objects or text out; reading files is deployer.workspace's job. Two paths share the same
transforms (``_transform_document``):

* ``render_objects`` parses with ruamel's C-backed safe loader into plain dicts: the objects that are
  planned and applied, with unquoted scalars read by kubectl's rules (deployer.scalars), not YAML 1.2's.
  It validates every document and is the only path that raises for bad input.
* ``render_text`` round-trips one file document by document, keeping comments (also those between
  documents), key order and quoting, for the rendered
  manifests a person reads (``--render-only``, ``--output``). It runs only when asked for, because a
  round trip costs about ten times a safe load (see bench/render.py).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, MutableMapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import BaseConstructor, ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.tag import Tag

from deployer import scalars
from deployer.errors import (
    ManifestError,
    ManifestFieldError,
    ManifestSyntaxError,
    NamespaceConflictError,
    PlaceholderError,
)
from deployer.workspace import ManifestSource

DEFAULT_PLACEHOLDER = "<IMAGE>"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# Kinds whose rollout history `kubectl rollout history` shows, and so where a change-cause is read.
ROLLOUT_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
# Cluster-scoped kinds of the built-in APIs: these take no namespace, with or without --namespace.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "StorageClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "APIService",
        "PriorityClass",
        "RuntimeClass",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CertificateSigningRequest",
        "PodSecurityPolicy",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "ComponentStatus",
    }
)


@dataclass(frozen=True)
class RenderOptions:
    """What to put into the manifests.

    ``images`` maps an image name to its reference: the empty name is the main image (``<IMAGE>``),
    other names fill ``<IMAGE:name>``.
    """

    images: Mapping[str, str] = field(default_factory=dict)
    placeholder: str = DEFAULT_PLACEHOLDER
    namespace: str | None = None
    change_cause: str | None = None


@dataclass(frozen=True)
class ManifestObject:
    """One Kubernetes object to apply, with where it came from (``document`` counts from 1)."""

    path: str
    document: int
    body: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self.body["metadata"].get("namespace")
        return str(namespace) if namespace else None

    @property
    def origin(self) -> str:
        return f"{self.path} (document {self.document})"


class _Placeholders:
    """Finds and fills ``<IMAGE>`` and ``<IMAGE:name>`` (for a placeholder of the form ``<...>``)."""

    def __init__(self, placeholder: str, images: Mapping[str, str]) -> None:
        if not placeholder:
            raise ValueError("the placeholder must not be empty")
        self.placeholder = placeholder
        self.images = images
        if placeholder.startswith("<") and placeholder.endswith(">") and len(placeholder) > 2:
            stem = re.escape(placeholder[:-1])
            self.pattern = re.compile(stem + r"(?::(?P<name>[A-Za-z0-9._-]+))?>")
            # What a leftover looks like: the stem followed by anything, e.g. "<IMAGE:typo>" or "<IMAGE".
            self.leftover = re.compile(stem)
        else:
            self.pattern = re.compile(re.escape(placeholder))
            self.leftover = self.pattern
        self.found: dict[str, int] = {}

    def fill(self, text: str) -> tuple[str, str | None]:
        """Returns the filled text and the name of an image that is not known, if any."""
        unknown: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name = match.groupdict().get("name") or ""
            if name not in self.images:
                unknown.append(name or "(main)")
                return match.group(0)
            self.found[name] = self.found.get(name, 0) + 1
            return self.images[name]

        filled = self.pattern.sub(replace, text)
        return filled, (unknown[0] if unknown else None)


@dataclass
class _Context:
    path: str
    document: int
    placeholders: _Placeholders


def _fail_field(ctx: _Context, field_path: str, problem: str, kind: type[ManifestError] = ManifestFieldError) -> None:
    raise kind(problem, path=ctx.path, document=ctx.document, field_path=field_path or None)


def _fill_strings(node: Any, ctx: _Context, field_path: str) -> Any:
    """Fill placeholders in every string scalar under ``node``, in place; returns the node's new value."""
    if isinstance(node, MutableMapping):
        for key in list(node.keys()):
            child_path = f"{field_path}.{key}" if field_path else str(key)
            if isinstance(key, str) and ctx.placeholders.leftover.search(key):
                _fail_field(
                    ctx, child_path, "the image placeholder may stand only in values, not keys", PlaceholderError
                )
            node[key] = _fill_strings(node[key], ctx, child_path)
        return node
    if isinstance(node, MutableSequence):
        for index, item in enumerate(node):
            node[index] = _fill_strings(item, ctx, f"{field_path}[{index}]")
        return node
    if isinstance(node, str):
        filled, unknown = ctx.placeholders.fill(node)
        if unknown is not None:
            known = ", ".join(sorted(n or "(main)" for n in ctx.placeholders.images)) or "none"
            _fail_field(
                ctx, field_path, f"no image named {unknown!r} for this placeholder (known: {known})", PlaceholderError
            )
        if ctx.placeholders.leftover.search(filled):
            _fail_field(ctx, field_path, f"placeholder left over after substitution: {filled!r}", PlaceholderError)
        if filled is node:
            return node
        # Keep the quoting style a person chose in the round-trip path.
        return type(node)(filled) if isinstance(node, ScalarString) else filled
    return node


def _objects_in(document: MutableMapping[str, Any]) -> Iterator[MutableMapping[str, Any]]:
    """A document is one object, or a ``kind: List`` of them as ``kubectl get -o yaml`` writes."""
    if document.get("kind") == "List" and isinstance(document.get("items"), MutableSequence):
        for item in document["items"]:
            if isinstance(item, MutableMapping):
                yield item
    else:
        yield document


def _check_identity(obj: Mapping[str, Any], ctx: _Context, prefix: str) -> None:
    for key in ("apiVersion", "kind"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            _fail_field(
                ctx, prefix + key, "missing or not a string: every object needs apiVersion, kind and metadata.name"
            )
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        _fail_field(ctx, prefix + "metadata", "missing or not a mapping: every object needs metadata.name")
        return
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        _fail_field(ctx, prefix + "metadata.name", "missing or not a string: every object needs a name")


def _apply_namespace(obj: MutableMapping[str, Any], namespace: str | None, ctx: _Context, prefix: str) -> None:
    metadata = obj["metadata"]
    if obj["kind"] in CLUSTER_SCOPED_KINDS or namespace is None:
        return
    current = metadata.get("namespace")
    if current in (None, ""):
        metadata["namespace"] = namespace
    elif current != namespace:
        _fail_field(
            ctx,
            prefix + "metadata.namespace",
            f"{obj['kind']} {metadata['name']!r} is in namespace {current!r} but --namespace is {namespace!r}; "
            f"remove the namespace from the manifest or pass --namespace={current}",
            NamespaceConflictError,
        )


def _apply_change_cause(obj: MutableMapping[str, Any], change_cause: str | None) -> None:
    if change_cause is None or obj["kind"] not in ROLLOUT_KINDS:
        return
    metadata = obj["metadata"]
    if not isinstance(metadata.get("annotations"), MutableMapping):
        metadata["annotations"] = {}
    metadata["annotations"][CHANGE_CAUSE_ANNOTATION] = change_cause


def _transform_document(document: MutableMapping[str, Any], options: RenderOptions, ctx: _Context) -> None:
    _fill_strings(document, ctx, "")
    objects = list(_objects_in(document))
    is_list = objects[0] is not document if objects else False
    for index, obj in enumerate(objects):
        prefix = f"items[{index}]." if is_list else ""
        _check_identity(obj, ctx, prefix)
        _apply_namespace(obj, options.namespace, ctx, prefix)
        _apply_change_cause(obj, options.change_cause)


def _syntax_error(path: str, error: YAMLError) -> ManifestSyntaxError:
    mark = getattr(error, "problem_mark", None) if isinstance(error, MarkedYAMLError) else None
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return ManifestSyntaxError(f"invalid YAML: {problem}", path=path)
    return ManifestSyntaxError(f"invalid YAML: {problem}", path=path, line=mark.line + 1, column=mark.column + 1)


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
    """Builds the objects ``kubectl apply`` would send: YAML 1.1 booleans and octals, JSON numbers, text keys."""

    def construct_kubectl_value(self, node: ScalarNode) -> Any:
        value = scalars.plain_scalar(node.value)
        if not isinstance(value, float):
            return value
        try:
            return scalars.json_number(value)
        except ValueError:
            raise ConstructorError(
                None, None, f"{node.value} is not a number JSON can carry (kubectl refuses it too)", node.start_mark
            ) from None

    def construct_kubectl_key(self, node: ScalarNode) -> str:
        try:
            return scalars.json_key(scalars.plain_scalar(node.value))
        except ValueError:
            raise ConstructorError(
                None, None, f"{node.value or 'an empty key'} cannot be a mapping key", node.start_mark
            ) from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # Keys become text while they are built, as kubectl's JSON has it: "1" and "true" are then two keys,
        # where Python's 1 == True would have called them duplicates.
        if isinstance(node, MappingNode):
            self.flatten_mapping(node)  # first, so that merged keys are turned into text too
            for key_node, _ in node.value:
                if key_node.tag == _KUBECTL_VALUE_TAG:
                    key_node.tag = _KUBECTL_KEY_TAG
        return BaseConstructor.construct_mapping(self, node, deep=deep)


# add_constructor on the subclass leaves SafeConstructor, which other code may use, untouched.
_KubectlConstructor.add_constructor(_KUBECTL_VALUE, _KubectlConstructor.construct_kubectl_value)
_KubectlConstructor.add_constructor(_KUBECTL_KEY, _KubectlConstructor.construct_kubectl_key)


def _safe_yaml() -> YAML:
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


def _round_trip_yaml(text: str = "") -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long image reference or annotation onto a second line
    mapping, offset = _guess_indentation(text)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return yaml


def _load_documents(yaml: YAML, source: ManifestSource) -> list[Any]:
    try:
        return list(yaml.load_all(source.text))
    except YAMLError as e:
        raise _syntax_error(source.path, e) from e


def render_objects(sources: Sequence[ManifestSource], options: RenderOptions) -> list[ManifestObject]:
    """Every object of every source, filled in and validated, ready to plan and apply.

    Raises ManifestError subclasses naming the file, document and field; PlaceholderError when a
    given image's placeholder appears nowhere (listing the files searched).
    """
    placeholders = _Placeholders(options.placeholder, options.images)
    yaml = _safe_yaml()
    objects: list[ManifestObject] = []
    for source in sources:
        for index, document in enumerate(_load_documents(yaml, source), start=1):
            if document is None:
                continue  # an empty document between two "---", as kubectl skips it
            ctx = _Context(source.path, index, placeholders)
            if not isinstance(document, MutableMapping):
                _fail_field(ctx, "", f"a manifest document must be a mapping, not a {type(document).__name__}")
            _transform_document(document, options, ctx)
            for obj in _objects_in(document):
                objects.append(ManifestObject(source.path, index, dict(obj)))
    missing = [name for name in options.images if placeholders.found.get(name, 0) == 0]
    if missing:
        searched = ", ".join(source.path for source in sources) or "no files"
        wanted = ", ".join(_placeholder_text(options.placeholder, name) for name in missing)
        raise PlaceholderError(f"the placeholder {wanted} appears in none of the manifests (searched: {searched})")
    return objects


def _placeholder_text(placeholder: str, name: str) -> str:
    if not name:
        return placeholder
    return f"{placeholder[:-1]}:{name}>" if placeholder.endswith(">") else f"{placeholder}:{name}"


def render_text(source: ManifestSource, options: RenderOptions) -> str:
    """One file rendered for a person: the same changes as render_objects, comments and order kept.

    Call it only on sources render_objects accepted: it reports no placeholder counts.
    """
    placeholders = _Placeholders(options.placeholder, options.images)
    segments = _document_segments(source.text)
    if segments is None:
        return _render_text_whole(source, options, placeholders)
    # Document by document, so that what lies between documents survives as written: a header above
    # the first "---", a document of comments only (an object switched off), the "---" lines themselves.
    out: list[str] = []
    index = 0
    yaml = _round_trip_yaml(source.text)
    for marker, body, is_document in segments:
        if is_document:
            index += 1
        loaded = _load_documents(yaml, ManifestSource(source.path, body)) if is_document else []
        document = loaded[0] if loaded else None
        if not isinstance(document, MutableMapping):
            if body.strip():
                out.append(marker + body)  # comments only (or not a mapping): nothing to change, kept as is
            continue  # a blank document carries nothing, not even for a reader
        _transform_document(document, options, _Context(source.path, index, placeholders))
        dumped = io.StringIO()
        yaml.dump(document, dumped)
        out.append(marker + dumped.getvalue())
    return "".join(out)


# A line that starts a document and carries at most a comment. A "---" at the start of a line followed by
# a blank always starts a document, even inside a quoted scalar, so splitting the text there is exact.
_DOCUMENT_MARKER = re.compile(r"---(?:[ \t]+#[^\n]*)?[ \t]*\n?\Z")
_COMMENT_OR_BLANK = re.compile(r"[ \t]*(?:#[^\n]*)?\n?\Z")


def _document_segments(text: str) -> list[tuple[str, str, bool]] | None:
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


def _render_text_whole(source: ManifestSource, options: RenderOptions, placeholders: _Placeholders) -> str:
    """The whole file in one round trip, for files _document_segments cannot split."""
    yaml = _round_trip_yaml(source.text)
    documents = _load_documents(yaml, source)
    for index, document in enumerate(documents, start=1):
        if isinstance(document, MutableMapping):
            _transform_document(document, options, _Context(source.path, index, placeholders))
    out = io.StringIO()
    # Empty documents carry nothing to apply; dumped they would read "--- null".
    yaml.dump_all([document for document in documents if document is not None], out)
    return _header_comments(source.text, out.getvalue()) + out.getvalue()


# Comment and blank lines up to a file's first "---": a licence or "what is this file" header.
_HEADER_BEFORE_FIRST_DOCUMENT = re.compile(r"\A((?:[ \t]*(?:#[^\n]*)?\n)*)---(?:[ \t]|\n|\Z)")


def _header_comments(text: str, rendered: str) -> str:
    """The comments above a file's first "---", which the round trip drops, unless it kept them."""
    match = _HEADER_BEFORE_FIRST_DOCUMENT.match(text)
    header = match.group(1).strip("\n") + "\n" if match and match.group(1).strip() else ""
    return "" if rendered.startswith(header) else header


def locate_document(source: ManifestSource, document: int) -> int | None:
    """The 1-based line where document number ``document`` starts, for annotations on errors.

    Errors are rare, so this re-reads the file with the round-trip loader rather than paying for
    positions on every successful run.
    """
    try:
        documents = list(_round_trip_yaml().load_all(source.text))
    except YAMLError:
        return None
    if not 1 <= document <= len(documents):
        return None
    lc = getattr(documents[document - 1], "lc", None)
    return int(lc.line) + 1 if lc is not None else None
