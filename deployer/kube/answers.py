"""What an answer of the Kubernetes API means: the error class for its status, its message said shortly.

Pure: from a status, a decoded body and a request id to a deployer.errors class chosen by the status
(APINotFoundError, APIConflictError, ...), with a 422's Go value dumps cut and an apply conflict's fields and
managers said in one line. The transport (kube/api.py) raises what this returns. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from deployer.errors import (
    APIConflictError,
    APINotFoundError,
    APIServerError,
    APITooManyRequestsError,
    APIUnprocessableError,
    KubernetesError,
)

_ERROR_BY_STATUS: dict[int, type[KubernetesError]] = {
    404: APINotFoundError,
    409: APIConflictError,
    422: APIUnprocessableError,
    429: APITooManyRequestsError,
}


def unavailable_status(status: int) -> bool:
    """Statuses of an API that is overloaded or (re)starting: waiting may help. 501 never heals."""
    return status == 429 or (status >= 500 and status != 501)


def error_class(status: int | None) -> type[KubernetesError]:
    """The error class for an answer's status (KubernetesError for one without a class of its own)."""
    if status is None:
        return KubernetesError
    if status >= 500:
        return APIServerError
    return _ERROR_BY_STATUS.get(status, KubernetesError)


def status_error(status: int, body: object, request_id: str | None, fallback: str) -> KubernetesError:
    """The error for a non-2xx answer other than 401 (whose meaning depends on the credentials): its Status
    message (``fallback`` when it has none), its details, retryable when waiting may help."""
    message = body.get("message") if isinstance(body, Mapping) else None
    text = str(message or (body if isinstance(body, str) and body else fallback))
    cls = error_class(status)
    if cls is APIUnprocessableError:
        text = without_value_dumps(text)
    details = body.get("details") if isinstance(body, Mapping) else None
    return cls(
        text,
        status=status,
        request_id=request_id,
        retryable=unavailable_status(status),
        details=details if isinstance(details, Mapping) else None,
    )


def conflict_text(error: KubernetesError) -> str:
    """The fields and managers of a 409 apply conflict, from the Status's causes (or its message)."""
    causes = error.details.get("causes")
    by_manager: dict[str, list[str]] = {}
    for cause in causes if isinstance(causes, list) else ():
        message = str(cause.get("message") or "")
        manager = message.split('"')[1] if message.count('"') >= 2 else "another manager"
        by_manager.setdefault(manager, []).append(str(cause.get("field") or message))
    if not by_manager:
        return error.message or "conflict"
    return "; ".join(f"{', '.join(fields)} owned by {manager}" for manager, fields in sorted(by_manager.items()))


INVALID_VALUE = "Invalid value: "
# A value in a 422 longer than this is a Go dump of a whole struct (a Job's pod template runs to kilobytes).
LONGEST_INVALID_VALUE = 80


def without_value_dumps(message: str) -> str:
    """A 422 message with each long ``Invalid value: <value>: <detail>`` value cut to its type.

    The API server prints the refused value with Go's %#v: for ``spec.template: field is immutable`` that is
    the whole pod template, kilobytes on one line, twice in the message. The field and the reason are what a
    person needs; the value is theirs already, in the manifest.
    """
    pieces: list[str] = []
    rest = message
    while INVALID_VALUE in rest:
        before, _, after = rest.partition(INVALID_VALUE)
        end = _end_of_value(after)
        value = after[:end]
        if len(value) > LONGEST_INVALID_VALUE:
            kind = value.split("{", 1)[0] if "{" in value[:60] else ""
            value = f"{kind}{{...}}" if kind else f"({len(value)} characters)"
        pieces.append(before + INVALID_VALUE + value)
        rest = after[end:]
    return "".join(pieces) + rest


def _end_of_value(text: str) -> int:
    """Where a %#v value ends: at the first ``": "`` outside brackets and quoted strings (else the end)."""
    depth, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
            continue
        if char == '"':
            quoted = True
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth = max(depth - 1, 0)
        elif char == ":" and depth == 0 and text[index + 1 : index + 2] == " ":
            return index
    return len(text)
