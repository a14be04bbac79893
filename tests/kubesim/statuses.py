"""API errors as the API server reports them: metav1.Status objects with the real reasons and codes.

It owns ``ApiError`` and the constructors for each reason. It must not know about HTTP or the store.
"""

from __future__ import annotations

from typing import Any

from .admission import Cause
from .resources import ResourceType


class ApiError(Exception):
    """A request the API server refuses; ``status()`` is the body it answers with."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rtype: ResourceType | None, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if rtype is not None:
        if rtype.group:
            details["group"] = rtype.group
        details["kind"] = rtype.plural
    details.update(extra)
    return details


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.qualified_plural} "{name}" not found', _details(rtype, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rtype.qualified_plural} "{name}" already exists', _details(rtype, name))


def conflict(rtype: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified_plural} "{name}": {why}',
        _details(rtype, name),
    )


def stale_resource_version(rtype: ResourceType, name: str) -> ApiError:
    return conflict(
        rtype, name, "the object has been modified; please apply your changes to the latest version and try again"
    )


def invalid(rtype: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{rtype.qualified_kind} "{name}" is invalid: {joined}',
        {
            **_details(rtype, name),
            "kind": rtype.kind,
            "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - "
        f"accepted media types include: application/json-patch+json, "
        f"application/merge-patch+json, application/apply-patch+yaml, "
        f"application/strategic-merge-patch+json (got {content_type})",
    )


def method_not_allowed(verb: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({verb})"
    )


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def apply_conflict(rtype: ResourceType, name: str, message: str, conflicts: list[tuple[str, str]]) -> ApiError:
    """409 Conflict for server-side apply; ``conflicts`` are (field, 'conflict with "manager" ...') pairs."""
    causes = [{"reason": "FieldManagerConflict", "message": m, "field": f} for f, m in conflicts]
    return ApiError(409, "Conflict", message, {**_details(rtype, name), "causes": causes})
