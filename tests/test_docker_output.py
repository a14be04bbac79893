"""deployer.docker_output: what Docker says, read as tables: build output, push progress, registry
refusals, Dockerfile features."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.docker_output import (
    BuildKitOutput,
    ClassicBuildOutput,
    PushProgress,
    auth_remedy,
    buildkit_only_features,
    classify_registry_message,
)

# --- pure: Dockerfiles and build output ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "found"),
    [
        ("FROM scratch\nRUN echo hi\n", []),
        ("FROM scratch\nRUN --mount=type=cache,target=/root/.cache pip install .\n", ["RUN --mount (line 2)"]),
        (
            "FROM scratch\nRUN --network=none --mount=type=secret,id=x true\n",
            ["RUN --mount (line 2)", "RUN --network (line 2)"],
        ),
        ("# syntax=docker/dockerfile:1\nFROM scratch\n", ["a '# syntax=' frontend directive (line 1)"]),
        ("FROM scratch\nCOPY --link a /a\n", ["COPY/ADD --link/--chmod (line 2)"]),
        ("FROM scratch\nCOPY --chown=1:1 a /a\n", []),
        ("FROM scratch\nRUN <<EOF\necho hi\nEOF\n", ["a heredoc (<<EOF) (line 2)"]),
        ("FROM scratch\nRUN cat <<'END' > /x\n", ["a heredoc (<<EOF) (line 2)"]),
        ("FROM scratch\n# RUN --mount is mentioned in a comment only\n", []),
    ],
)
def test_buildkit_only_features_are_found_with_their_line(dockerfile: str, found: list[str]) -> None:
    assert buildkit_only_features(dockerfile) == found


BUILDKIT_FAILURE = """\
#4 [2/3] RUN echo one
#4 sha256:28ec74f2565492f6e259daaf2b576ee982c88433445238b871c927f6e3c96b4c
#4 0.192 one
#4 DONE 0.2s

#5 [3/3] RUN echo hi && echo there >&2 && exit 3
#5 sha256:1c9a945f86ad11fdffcc172ecc0624fcd32cf48e5a9c4e0327108d625dfcc1d0
#5 0.256 hi
#5 0.256 there
#5 ERROR: executor failed running [/bin/sh -c echo hi && echo there >&2 && exit 3]: exit code: 3
------
 > [3/3] RUN echo hi && echo there >&2 && exit 3:
------
executor failed running [/bin/sh -c echo hi && echo there >&2 && exit 3]: exit code: 3
"""

BUILDKIT_PARSE_FAILURE = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 36B done
#1 DONE 0.0s
failed to solve with frontend dockerfile.v0: failed to create LLB definition: unknown instruction: RUNN
"""


def test_buildkit_output_names_the_failed_step_and_its_last_lines() -> None:
    output = BuildKitOutput()
    for line in BUILDKIT_FAILURE.splitlines():
        output.feed(line)
    failure = output.failure()
    assert failure.step == "[3/3] RUN echo hi && echo there >&2 && exit 3"
    assert failure.last_lines == ["hi", "there"]
    assert failure.message == "executor failed running [/bin/sh -c echo hi && echo there >&2 && exit 3]: exit code: 3"


def test_buildkit_output_without_a_failed_step_reports_the_clis_last_words() -> None:
    output = BuildKitOutput()
    for line in BUILDKIT_PARSE_FAILURE.splitlines():
        output.feed(line)
    failure = output.failure()
    assert failure.step is None
    assert failure.message.endswith("unknown instruction: RUNN")


def test_classic_build_output_follows_steps_and_stops_at_the_error() -> None:
    output = ClassicBuildOutput()
    chunks: list[dict[str, Any]] = [  # as the engine sends them: lines split, stderr in colour
        {"stream": "Step 1/2 : FROM base"},
        {"stream": "\n"},
        {"stream": " ---> 1a0f3d9f6bc7\n"},
        {"stream": "Step 2/2 : RUN echo doomed && exit 4"},
        {"stream": "\n"},
        {"stream": " ---> Running in 3f2a\n"},
        {"stream": "doomed\n"},
        {"stream": "\x1b[91mon stderr\n\x1b[0m"},
        {"stream": "Removing intermediate container 3f2a\n"},
        {
            "error": "The command '/bin/sh -c echo doomed && exit 4' returned a non-zero code: 4",
            "errorDetail": {
                "code": 4,
                "message": "The command '/bin/sh -c echo doomed && exit 4' returned a non-zero code: 4",
            },
        },
    ]
    logged = [line for chunk in chunks for line in output.feed(chunk)]
    assert output.step == "RUN echo doomed && exit 4"
    assert output.step_lines == ["doomed", "on stderr"]
    assert output.error is not None and output.error.endswith("non-zero code: 4")
    assert logged[-1].startswith("ERROR: The command")
    assert logged[:2] == ["Step 1/2 : FROM base", " ---> 1a0f3d9f6bc7"]
    assert "on stderr" in logged


# --- pure: push progress and registry answers ----------------------------------------------------------


def test_push_progress_logs_each_layer_state_change_once_and_throttles_pushing() -> None:
    progress = PushProgress(interval=10.0)
    chunks_at: list[tuple[float, dict[str, Any]]] = [
        (0.0, {"status": "The push refers to repository [ghcr.io/acme/app]"}),
        (0.0, {"status": "Preparing", "id": "aaa", "progressDetail": {}}),
        (0.1, {"status": "Waiting", "id": "aaa", "progressDetail": {}}),
        (0.2, {"status": "Pushing", "id": "aaa", "progressDetail": {"current": 1000, "total": 4000}}),
        (0.3, {"status": "Pushing", "id": "aaa", "progressDetail": {"current": 2000, "total": 4000}}),
        (5.0, {"status": "Pushing", "id": "aaa", "progressDetail": {"current": 3000, "total": 4000}}),
        (10.5, {"status": "Pushing", "id": "aaa", "progressDetail": {"current": 3500, "total": 4000}}),
        (10.6, {"status": "Pushed", "id": "aaa", "progressDetail": {}}),
        (11.0, {"status": "Retrying in 5 seconds", "id": "bbb"}),
        (12.0, {"status": "Retrying in 4 seconds", "id": "bbb"}),
        (13.0, {"status": "Retrying in 3 seconds", "id": "bbb"}),
    ]
    lines = [line for now, chunk in chunks_at for line in progress.feed(chunk, now)]
    assert lines == [
        "The push refers to repository [ghcr.io/acme/app]",
        "aaa: Preparing",
        "aaa: Waiting",
        "aaa: Pushing 25% of 4.0kB",
        "aaa: Pushing 87% of 4.0kB",
        "aaa: Pushed",
        "bbb: Retrying in 5 seconds",
    ]
    assert progress.engine_retried


@pytest.mark.parametrize(
    ("chunks", "digest"),
    [
        (
            [
                {"status": "abc: digest: sha256:" + "1" * 64 + " size: 943"},
                {"aux": {"Tag": "abc", "Digest": "sha256:" + "2" * 64, "Size": 943}},
            ],
            "sha256:" + "2" * 64,
        ),
        ([{"status": "abc: digest: sha256:" + "1" * 64 + " size: 943"}], "sha256:" + "1" * 64),
        ([{"status": "Pushed", "id": "aaa"}], None),
    ],
)
def test_push_progress_takes_the_digest_from_aux_else_the_status_line(
    chunks: list[dict[str, Any]], digest: str | None
) -> None:
    progress = PushProgress()
    for chunk in chunks:
        progress.feed(chunk, 0.0)
    assert progress.digest == digest


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("unauthorized: authentication required", "auth"),
        ("denied: permission_denied: write_package", "auth"),
        ("denied: installation not allowed to Write organization package", "auth"),
        ('Head "http://127.0.0.1:5000/v2/a/manifests/1": no basic auth credentials', "auth"),
        ("denied: requested access to the resource is denied", "auth"),
        ("received unexpected HTTP status: 503 Service Unavailable", "transient"),
        ("received unexpected HTTP status: 502 Bad Gateway", "transient"),
        ("toomanyrequests: rate limit exceeded", "transient"),
        ("error parsing HTTP 429 response body: invalid character", "transient"),
        ("read tcp 10.0.0.2:4312->140.82.1.1:443: read: connection reset by peer", "transient"),
        ('Patch "https://ghcr.io/v2/...": net/http: TLS handshake timeout', "transient"),
        ("unexpected EOF", "transient"),
        ("manifest invalid: manifest invalid", "permanent"),
        ("blob upload unknown", "permanent"),
        ("name invalid: invalid repository name", "permanent"),
    ],
)
def test_registry_messages_are_classified_for_retrying(message: str, verdict: str) -> None:
    assert classify_registry_message(message) == verdict


@pytest.mark.parametrize(
    ("registry", "message", "remedy"),
    [
        ("ghcr.io", "denied: permission_denied: write_package", "permissions: packages: write"),
        ("ghcr.io", "denied: installation not allowed to Write organization package", "Manage Actions access"),
        ("ghcr.io", "unauthorized: authentication required", "GITHUB_TOKEN"),
        ("registry.example", "unauthorized: authentication required", "credentials for registry.example"),
        ("registry.example", "denied: requested access to the resource is denied", "check the image name"),
    ],
)
def test_auth_refusals_say_what_to_fix(registry: str, message: str, remedy: str) -> None:
    assert remedy in auth_remedy(registry, message)
