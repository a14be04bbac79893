"""The one error tree of deployer.

Every failure deployer reports is a ``DeployerError``. Library code raises these (chained with
``from e`` when they wrap a library's exception) and never calls ``sys.exit``; only the CLI turns them
into a one-line message and an exit code. Each error carries the fields a user needs to act (file,
document index, field path, flag, HTTP status, request id) and builds its message from them in
``__str__``. ``retryable`` says whether the same call may succeed later unchanged.

    DeployerError                           exit 1 unless a branch says otherwise
    ├── InputError                          exit 2: the user's input or configuration is wrong
    │   ├── OptionError                     a flag or DEPLOYER_* variable has a bad value
    │   ├── RevisionError                   the owner, repository or commit SHA cannot be determined
    │   ├── ImageReferenceError             an image reference does not parse
    │   └── ManifestError                   a manifest file or document is wrong (file, document, field)
    │       ├── ManifestSyntaxError         invalid YAML, with line and column
    │       ├── ManifestFieldError          a required field is missing or has the wrong type
    │       ├── PlaceholderError            placeholder never found, or left over after substitution
    │       └── NamespaceConflictError      an object names another namespace than --namespace
    ├── ExternalError                       exit 1: an outside system refused or failed
    │   ├── DockerError                     the Docker engine (build)
    │   │   ├── BuildError                  a build step failed
    │   │   └── BuildKitUnavailableError    a BuildKit-only Dockerfile on an engine without BuildKit
    │   ├── RegistryError                   the image registry (push, login, lookup)
    │   │   └── RegistryAuthError           credentials or permission refused: retrying cannot help
    │   └── HTTPAPIError                    an HTTP API answered with an error (status, request id)
    │       ├── DigitalOceanError           the DigitalOcean API
    │       │   ├── DigitalOceanAuthError   401/403
    │       │   └── ClusterLookupError      no cluster, several clusters, or one not ready
    │       ├── KubernetesError             the Kubernetes API (status, reason)
    │       │   ├── APINotFoundError        404: no such object (or no such API group version)
    │       │   ├── APIConflictError        409: exists already, changed since read, or other managers' fields
    │       │   ├── APIUnprocessableError   422: the object is invalid (or changes an immutable field)
    │       │   ├── APITooManyRequestsError 429: the API is overloaded; retried
    │       │   ├── APIServerError          5xx: the API failed; retried unless 501
    │       │   ├── CredentialsExpiredError the cluster answered 401 to credentials that worked before
    │       │   ├── ApplyError              an object was refused by the API server
    │       │   │   └── UnknownKindError    the cluster serves no such kind (no CRD installed)
    │       │   ├── LockTimeoutError        another run holds the deploy lock
    │       │   └── LockLostError           another run took the deploy lock while this one held it
    │       └── GitHubError                 the GitHub API: reported as a warning, never fails a deploy
    ├── RolloutOutcomeError                 the rollout failed; the branch says what became of it
    │   ├── RolloutFailedError              exit 3: every change was rolled back
    │   ├── RollbackFailedError             exit 4: the rollback failed too
    │   └── RolloutLeftInPlaceError         exit 1: --no-rollback: the failed rollout is left in place
    ├── PruneFailedError                    exit 1: the rollout is verified and in place; some objects --prune
    │                                       was to delete are left (named)
    └── RunCancelledError                   exit 128 + the signal's number (130 SIGINT, 143 SIGTERM): a signal
                                            stopped the run before it applied anything
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class ExitCode:
    """Process exit codes, documented in the README."""

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    ROLLED_BACK = 3
    ROLLBACK_FAILED = 4


class DeployerError(Exception):
    """Base of every error deployer reports to a user."""

    exit_code: int = ExitCode.FAILURE
    retryable: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- bad input ---------------------------------------------------------------------------------------


class InputError(DeployerError):
    """The user's input or configuration is wrong; fixing it is the only remedy."""

    exit_code = ExitCode.BAD_INPUT


class OptionError(InputError):
    """A command-line flag (or its DEPLOYER_* variable) has a bad value."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(problem)
        self.flag = flag
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.flag}: {self.problem}"


class RevisionError(InputError):
    """The image owner, name or commit SHA cannot be determined from the environment."""


class ImageReferenceError(InputError):
    def __init__(self, reference: str, problem: str) -> None:
        super().__init__(problem)
        self.reference = reference
        self.problem = problem

    def __str__(self) -> str:
        return f"invalid image reference {self.reference!r}: {self.problem}"


class ManifestError(InputError):
    """Something is wrong in a manifest file; ``document`` is the 1-based index in a multi-document file."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | None = None,
        document: int | None = None,
        line: int | None = None,
        column: int | None = None,
        field_path: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path
        self.document = document
        self.line = line
        self.column = column
        self.field_path = field_path

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.document is not None:
            where += f" (document {self.document})"
        return where

    def __str__(self) -> str:
        subject = f"{self.field_path}: " if self.field_path else ""
        prefix = f"{self.location}: " if self.location else ""
        return f"{prefix}{subject}{self.problem}"


class ManifestSyntaxError(ManifestError):
    pass


class ManifestFieldError(ManifestError):
    pass


class PlaceholderError(ManifestError):
    pass


class NamespaceConflictError(ManifestError):
    pass


# --- outside systems ---------------------------------------------------------------------------------


class ExternalError(DeployerError):
    """An outside system refused or failed. ``retryable`` is True when the same call may succeed later."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class DockerError(ExternalError):
    pass


class BuildError(DockerError):
    """A build step failed: ``step`` names it and ``last_lines`` holds the end of its output."""

    def __init__(self, message: str, *, step: str | None = None, last_lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.step = step
        self.last_lines = list(last_lines)

    def __str__(self) -> str:
        text = self.message
        if self.step:
            text += f" (step: {self.step})"
        if self.last_lines:
            text += "\n" + "\n".join(f"  | {line}" for line in self.last_lines)
        return text


class BuildKitUnavailableError(DockerError):
    pass


class RegistryError(ExternalError):
    pass


class RegistryAuthError(RegistryError):
    """Credentials or permission refused by the registry; never retried."""


class HTTPAPIError(ExternalError):
    """An HTTP API answered with an error; carries the status and the request id when the API gives one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        details = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.message}{suffix}"


class DigitalOceanError(HTTPAPIError):
    pass


class DigitalOceanAuthError(DigitalOceanError):
    pass


class ClusterLookupError(DigitalOceanError):
    pass


class KubernetesError(HTTPAPIError):
    """The Kubernetes API refused or failed; ``details`` is the answer's Status ``details`` (the causes of a
    conflict or an invalid object) when it had one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, retryable=retryable)
        self.details: Mapping[str, object] = details or {}


# The transport raises these by the answer's status, so that callers name the answer they expect in an except
# clause instead of testing numbers.


class APINotFoundError(KubernetesError):
    """404: the object (or the API group version) does not exist."""


class APIConflictError(KubernetesError):
    """409: the object exists already, changed since it was read, or its fields are other managers'."""


class APIUnprocessableError(KubernetesError):
    """422: the API server refused the object as invalid (e.g. a change of an immutable field)."""


class APITooManyRequestsError(KubernetesError):
    """429: the API server is overloaded; waiting helps (retryable)."""


class APIServerError(KubernetesError):
    """5xx: the API server failed; retryable unless 501 (not implemented never heals)."""


class CredentialsExpiredError(KubernetesError):
    pass


class ApplyError(KubernetesError):
    pass


class UnknownKindError(ApplyError):
    """Discovery found no resource for the kind in its API version: a CRD that is not installed, or a typo."""


class LockTimeoutError(KubernetesError):
    pass


class LockLostError(KubernetesError):
    """This run's lease on the deploy lock ran out (the run was paused or cut off) and another run took the
    lock, or the lease is gone: the namespace is no longer this run's to change or to roll back."""


class GitHubError(HTTPAPIError):
    pass


# --- rollout outcomes --------------------------------------------------------------------------------


@dataclass
class WorkloadOutcome:
    """What happened to one workload: ``state`` is e.g. 'rolled back', 'failed', 'left as is'."""

    kind: str
    name: str
    state: str
    detail: str = ""


@dataclass
class RolloutFailure:
    """Why a rollout failed, for the error message and the diagnosis."""

    reason: str
    outcomes: list[WorkloadOutcome] = field(default_factory=list)
    diagnosis: str = ""


class RolloutOutcomeError(DeployerError):
    """The rollout failed (or its apply was stopped after a change); ``failure`` says why and what became
    of each workload."""

    def __init__(self, failure: RolloutFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class RolloutFailedError(RolloutOutcomeError):
    """The rollout failed and everything this run changed was put back."""

    exit_code = ExitCode.ROLLED_BACK

    def __str__(self) -> str:
        restored = "; ".join(
            f"{o.state} {o.kind.lower()}/{o.name}" + (f" {o.detail}" if o.detail else "") for o in self.failure.outcomes
        )
        return f"{self.failure.reason}; {restored}" if restored else self.failure.reason


class RollbackFailedError(RolloutOutcomeError):
    """The rollout failed and the rollback did not complete; says what is left in which state."""

    exit_code = ExitCode.ROLLBACK_FAILED

    def __init__(self, failure: RolloutFailure, rollback_problem: str) -> None:
        super().__init__(failure)
        self.rollback_problem = rollback_problem

    def __str__(self) -> str:
        left = "; ".join(
            f"{o.kind.lower()}/{o.name}: {o.state}" + (f" ({o.detail})" if o.detail else "")
            for o in self.failure.outcomes
        )
        text = f"{self.failure.reason}; rollback failed: {self.rollback_problem}"
        return f"{text}; left: {left}" if left else text


class RolloutLeftInPlaceError(RolloutOutcomeError):
    """The rollout failed and --no-rollback asked to leave it as it is: nothing was put back."""

    def __str__(self) -> str:
        return f"{self.failure.reason}; --no-rollback: the failed rollout is left in place"


class PruneFailedError(DeployerError):
    """The rollout was verified and stays; deleting some of the objects the manifests no longer hold failed.
    ``left`` maps each object left (``configmap/settings``) to why."""

    def __init__(self, left: Mapping[str, str]) -> None:
        super().__init__("prune failed")
        self.left = dict(left)

    def __str__(self) -> str:
        named = "; ".join(f"{name}: {why}" for name, why in self.left.items())
        return f"the rollout is verified and in place, but pruning failed; left: {named}"


class RunCancelledError(DeployerError):
    """A signal stopped the run before it applied anything; the exit code is the shell's for a process that
    signal ended (128 + its number), so that a cancelled job reads as cancelled."""

    def __init__(self, signal_name: str, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.exit_code = 128 + signal_number
