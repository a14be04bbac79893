"""Rendering manifests: placeholders, namespaces and change-cause, from YAML text to objects.

Pure: text in, objects or text out; reading files is deployer.workspace's job, and how YAML is read
(kubectl's rules, the shape checks, the round trip) is deployer.manifest_yaml's. Two paths share the
same transforms (``_transform_document``):

* ``render_objects`` parses with ruamel's C-backed safe loader into plain dicts: the objects that are
  planned and applied, with unquoted scalars and explicit tags read by kubectl's rules (deployer.scalars),
  not YAML 1.2's. It validates every document and is the only path that raises for bad input: first the
  shape of each file on the parser's events (nesting depth, alias bombs, as kubectl's go-yaml refuses
  them), then each object encoded to the JSON that will be sent (``as_sent``).
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

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.tokens import CommentToken

from deployer import kinds, manifest_yaml
from deployer.errors import (
    ManifestError,
    ManifestFieldError,
    NamespaceConflictError,
    PlaceholderError,
)
from deployer.manifest_yaml import ManifestSource

DEFAULT_PLACEHOLDER = "<IMAGE>"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
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
            node[key] = _filled_child(node, key, ctx, child_path)
        return node
    if isinstance(node, MutableSequence):
        for index in range(len(node)):
            node[index] = _filled_child(node, index, ctx, f"{field_path}[{index}]")
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


def _filled_child(parent: Any, key: Any, ctx: _Context, field_path: str) -> Any:
    before = parent[key]
    after = _fill_strings(before, ctx, field_path)
    if isinstance(before, str) and len(after) > len(before):
        _keep_comment_clear(parent, key, len(after) - len(before))
    return after


def _keep_comment_clear(parent: Any, key: Any, grown: int) -> None:
    """Moves the comment after a value that grew by ``grown`` characters as far right, so that it keeps the
    spaces written before it; ruamel keeps a comment's column, which a longer value would run into."""
    comments = getattr(parent, "ca", None)
    entry = comments.items.get(key) if comments is not None else None
    if not entry:
        return
    # ruamel keeps the comment after a mapping's value in slot 2, after a sequence's item in slot 0.
    token = entry[2] if isinstance(parent, CommentedMap) else entry[0]
    if isinstance(token, CommentToken) and token.start_mark is not None:
        # ruamel types marks as stream marks; a CommentMark is what it gives comments it makes itself.
        token.start_mark = CommentMark(token.start_mark.column + grown)  # type: ignore[assignment]


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
    if change_cause is None or obj["kind"] not in kinds.REVISIONED_KINDS:
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


def render_objects(sources: Sequence[ManifestSource], options: RenderOptions) -> list[ManifestObject]:
    """Every object of every source, filled in and validated, ready to plan and apply.

    Raises ManifestError subclasses naming the file, document and field; PlaceholderError when a
    given image's placeholder appears nowhere (listing the files searched).
    """
    placeholders = _Placeholders(options.placeholder, options.images)
    yaml = manifest_yaml.safe_yaml()
    objects: list[ManifestObject] = []
    for source in sources:
        manifest_yaml.check_shape(source)
        for index, document in enumerate(manifest_yaml.load_documents(yaml, source), start=1):
            if document is None:
                continue  # an empty document between two "---", as kubectl skips it
            ctx = _Context(source.path, index, placeholders)
            if not isinstance(document, MutableMapping):
                _fail_field(ctx, "", f"a manifest document must be a mapping, not a {type(document).__name__}")
            _transform_document(document, options, ctx)
            for obj in _objects_in(manifest_yaml.as_sent(document, path=source.path, index=index)):
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
    segments = manifest_yaml.document_segments(source.text)
    if segments is None:
        return _render_text_whole(source, options, placeholders)
    # Document by document, so that what lies between documents survives as written: a header above
    # the first "---", a document of comments only (an object switched off), the "---" lines themselves.
    out: list[str] = []
    index = 0
    yaml = manifest_yaml.round_trip_yaml(source.text)
    for marker, body, is_document in segments:
        if is_document:
            index += 1
        loaded = manifest_yaml.load_documents(yaml, ManifestSource(source.path, body)) if is_document else []
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


def _render_text_whole(source: ManifestSource, options: RenderOptions, placeholders: _Placeholders) -> str:
    """The whole file in one round trip, for files manifest_yaml.document_segments cannot split."""
    yaml = manifest_yaml.round_trip_yaml(source.text)
    documents = manifest_yaml.load_documents(yaml, source)
    for index, document in enumerate(documents, start=1):
        if isinstance(document, MutableMapping):
            _transform_document(document, options, _Context(source.path, index, placeholders))
    out = io.StringIO()
    # Empty documents carry nothing to apply; dumped they would read "--- null".
    yaml.dump_all([document for document in documents if document is not None], out)
    return manifest_yaml.header_comments(source.text, out.getvalue()) + out.getvalue()


def locate_document(source: ManifestSource, document: int) -> int | None:
    """The 1-based line where document number ``document`` starts, for annotations on errors.

    Errors are rare, so this re-reads the file with the round-trip loader rather than paying for
    positions on every successful run.
    """
    try:
        documents = list(manifest_yaml.round_trip_yaml().load_all(source.text))
    except YAMLError:
        return None
    if not 1 <= document <= len(documents):
        return None
    lc = getattr(documents[document - 1], "lc", None)
    return int(lc.line) + 1 if lc is not None else None
