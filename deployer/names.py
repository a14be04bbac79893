"""Kubernetes' rules for names, namespaces, labels and annotations: what the API server would refuse.

Pure: values in, problems out. The API server checks each object only when it gets it, after the image was
built and pushed and after the objects before it were applied; these are the same rules, checked on every
object before the run does anything remote, so that a bad name costs a second and changes nothing.

The rules follow apimachinery's validation: most kinds take a DNS-1123 subdomain as name (custom resources
too); namespaces a DNS-1123 label; Services a DNS-1035 label; the RBAC kinds (and CertificateSigningRequest)
only a path segment. A Job's name is also its pods' ``job-name`` label, so at most 63 characters, and a
CronJob's at most 52 (its Jobs' names get an 11-character suffix). Label keys and annotation keys are
qualified names (``[prefix/]name``), label values at most 63 characters, all annotations at most 256 KiB;
on the object, and on the pod template of a built-in workload (a custom resource's is its CRD's business).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
ANNOTATIONS_MAX_BYTES = 256 * 1024
JOB_NAME_MAX = 63
CRONJOB_NAME_MAX = 52

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")

DNS1123_LABEL_RULE = (
    f"a DNS-1123 label: at most {DNS1123_LABEL_MAX} lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)
DNS1123_SUBDOMAIN_RULE = (
    f"a DNS-1123 subdomain: at most {DNS1123_SUBDOMAIN_MAX} lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)
DNS1035_LABEL_RULE = (
    f"a DNS-1035 label: at most {DNS1123_LABEL_MAX} lowercase letters, digits and '-', "
    "starting with a letter and ending with a letter or digit"
)
PATH_SEGMENT_RULE = "a path segment: not '.' or '..', without '/' or '%'"


def _shown(value: str) -> str:
    """The value as an error quotes it: a 300-character name is recognised by its start."""
    return repr(value) if len(value) <= 64 else repr(value[:40]) + f"... ({len(value)} characters)"


def _why_not(value: str, limit: int) -> str | None:
    """The most telling reason a value fails a lowercase DNS rule, when there is one more telling than the rule."""
    if not value:
        return "is empty"
    if len(value) > limit:
        return f"is {len(value)} characters long"
    if not value.isascii():
        return "has characters outside ASCII"
    if value != value.lower():
        return "has uppercase letters"
    return None


def _dns_problem(value: str, pattern: re.Pattern[str], limit: int, rule: str) -> str | None:
    if len(value) <= limit and pattern.fullmatch(value):
        return None
    reason = _why_not(value, limit)
    return f"{_shown(value)} {reason}; it must be {rule}" if reason else f"{_shown(value)} is not {rule}"


def dns1123_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (namespaces), or None."""
    return _dns_problem(value, _DNS1123_LABEL, DNS1123_LABEL_MAX, DNS1123_LABEL_RULE)


def dns1123_subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (most object names), or None."""
    return _dns_problem(value, _DNS1123_SUBDOMAIN, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_RULE)


def dns1035_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1035 label (Service names), or None."""
    return _dns_problem(value, _DNS1035_LABEL, DNS1123_LABEL_MAX, DNS1035_LABEL_RULE)


def path_segment_problem(value: str) -> str | None:
    """Why ``value`` cannot be a path segment (RBAC names), or None."""
    if value in (".", "..") or "/" in value or "%" in value or not value:
        return f"{_shown(value)} is not {PATH_SEGMENT_RULE}"
    return None


def _length_capped(rule: Callable[[str], str | None], limit: int, because: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        problem = rule(value)
        if problem is None and len(value) > limit:
            return f"{_shown(value)} is {len(value)} characters long; at most {limit}, because {because}"
        return problem

    return check


@dataclass(frozen=True)
class NameRule:
    """How the API server validates the names of one kind."""

    check: Callable[[str], str | None]


_SUBDOMAIN = NameRule(dns1123_subdomain_problem)
_PATH_SEGMENT = NameRule(path_segment_problem)
# Kinds whose names follow another rule than the DNS-1123 subdomain, by (API group, kind).
_NAME_RULES: dict[tuple[str, str], NameRule] = {
    ("", "Namespace"): NameRule(dns1123_label_problem),
    ("", "Service"): NameRule(dns1035_label_problem),
    ("rbac.authorization.k8s.io", "Role"): _PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "ClusterRole"): _PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "RoleBinding"): _PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _PATH_SEGMENT,
    ("certificates.k8s.io", "CertificateSigningRequest"): _PATH_SEGMENT,
    ("batch", "Job"): NameRule(
        _length_capped(dns1123_subdomain_problem, JOB_NAME_MAX, "it becomes the job-name label of its pods")
    ),
    ("batch", "CronJob"): NameRule(
        _length_capped(dns1123_subdomain_problem, CRONJOB_NAME_MAX, "its Jobs' names add 11 characters to it")
    ),
}


def name_rule(api_version: str, kind: str) -> NameRule:
    """The rule for names of ``kind``; the DNS-1123 subdomain for every kind not listed (custom ones too)."""
    group = api_version.rpartition("/")[0]
    return _NAME_RULES.get((group, kind), _SUBDOMAIN)


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` cannot be a label or annotation key (``[DNS-1123 subdomain/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns1123_subdomain_problem(prefix)):
        return f"{_shown(key)} has an invalid prefix {_shown(prefix)}; it must be {DNS1123_SUBDOMAIN_RULE}"
    if len(name) > QUALIFIED_NAME_MAX or not _QUALIFIED_NAME_PART.fullmatch(name):
        return (
            f"{_shown(key)} is not a valid key: the name part must be at most {QUALIFIED_NAME_MAX} letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit, after an optional "
            "DNS-subdomain prefix and '/'"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a label value (empty, or at most 63 of letters, digits, '-', '_', '.'), or None."""
    if value == "" or (len(value) <= LABEL_VALUE_MAX and _QUALIFIED_NAME_PART.fullmatch(value)):
        return None
    reason = f"is {len(value)} characters long; it must be" if len(value) > LABEL_VALUE_MAX else "is not"
    return (
        f"{_shown(value)} {reason} a valid label value: at most {LABEL_VALUE_MAX} letters, digits, '-', '_' "
        "and '.', starting and ending with a letter or digit, or empty"
    )


def _string_map_problems(
    values: object, field_path: str, key_check: Callable[[str], str | None]
) -> list[tuple[str, str]]:
    if values is None:
        return []
    if not isinstance(values, Mapping):
        return [(field_path, "must be a mapping of strings to strings")]
    problems = []
    for key, value in values.items():
        where = f"{field_path}.{key}"
        key_problem = key_check(str(key))
        if key_problem:
            problems.append((where, key_problem))
        if not isinstance(value, str):
            # The API server cannot read it into its string map; a YAML reader made a number or boolean of it.
            problems.append((where, f"{value!r} is not a string; quote it in the manifest"))
    return problems


def metadata_problems(metadata: object, field_path: str) -> list[tuple[str, str]]:
    """What is wrong with the labels and annotations in ``metadata`` (an object's or a pod template's)."""
    if not isinstance(metadata, Mapping):
        return []
    problems = _string_map_problems(metadata.get("labels"), f"{field_path}.labels", qualified_name_problem)
    for where, value in _string_items(metadata.get("labels"), f"{field_path}.labels"):
        problem = label_value_problem(value)
        if problem:
            problems.append((where, problem))
    annotations = metadata.get("annotations")
    # Annotation keys are checked in lower case, as the API server does.
    problems += _string_map_problems(
        annotations, f"{field_path}.annotations", lambda k: qualified_name_problem(k.lower())
    )
    size = sum(len(str(k).encode()) + len(v.encode()) for k, v in _string_items(annotations, ""))
    if size > ANNOTATIONS_MAX_BYTES:
        problems.append(
            (
                f"{field_path}.annotations",
                f"hold {size} bytes together; the API server takes at most {ANNOTATIONS_MAX_BYTES}",
            )
        )
    return problems


def _string_items(values: object, field_path: str) -> list[tuple[str, str]]:
    if not isinstance(values, Mapping):
        return []
    return [(f"{field_path}.{key}", value) for key, value in values.items() if isinstance(value, str)]


# Where the pod templates of the built-in workload kinds keep their metadata. A custom resource's template is
# checked only as far as its CRD's schema says, which is not known here: those are left to the API server.
_TEMPLATE_METADATA_PATHS = (("spec", "template", "metadata"), ("spec", "jobTemplate", "spec", "template", "metadata"))
_GROUPS_WITH_POD_TEMPLATES = frozenset({"", "apps", "batch"})


def object_problems(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field path, problem) for each name, namespace, label or annotation of one object the API would refuse.

    ``body`` has passed the manifest checks: apiVersion, kind and metadata.name are non-empty strings.
    """
    kind, metadata = str(body["kind"]), body["metadata"]
    problems: list[tuple[str, str]] = []
    name_problem = name_rule(str(body["apiVersion"]), kind).check(str(metadata["name"]))
    if name_problem:
        problems.append(("metadata.name", f"{name_problem} (the rule for {kind} names)"))
    namespace = metadata.get("namespace")
    if namespace not in (None, ""):
        namespace_problem = dns1123_label_problem(namespace) if isinstance(namespace, str) else "is not a string"
        if namespace_problem:
            problems.append(("metadata.namespace", namespace_problem))
    problems += metadata_problems(metadata, "metadata")
    if str(body["apiVersion"]).rpartition("/")[0] not in _GROUPS_WITH_POD_TEMPLATES:
        return problems
    for path in _TEMPLATE_METADATA_PATHS:
        node: object = body
        for step in path:
            node = node.get(step) if isinstance(node, Mapping) else None
        problems += metadata_problems(node, ".".join(path))
    return problems
