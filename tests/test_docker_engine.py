"""deployer.docker_engine: the pure parsing and classification as tables, then build and push against the
real Docker engine and the real registry (directly, or through tests/fakes/registry_proxy.py to make it fail
and to count its requests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from deployer.docker_engine import (
    BuildKitOutput,
    BuildRequest,
    ClassicBuildOutput,
    DockerEngine,
    PushProgress,
    RegistryLogin,
    RetryPolicy,
    auth_remedy,
    buildkit_only_features,
    builds_with_docker_buildkit_env,
    classify_registry_message,
    docker_cli_candidates,
    oci_labels,
)
from deployer.errors import (
    BuildError,
    BuildKitUnavailableError,
    DockerError,
    OptionError,
    RegistryAuthError,
    RegistryError,
)
from deployer.images import repository_and_tag
from tests.conftest import TestRegistry as RegistryUnderTest  # aliased: pytest would try to collect "Test*"
from tests.conftest import require_real_part
from tests.fakes.registry_proxy import BLOB_UPLOAD, MANIFEST, RegistryProxy, running_proxy

# --- pure: references and labels ---------------------------------------------------------------------


def test_oci_labels_carry_source_revision_and_utc_creation_time() -> None:
    created = datetime(2026, 3, 4, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert oci_labels("https://github.com/acme/app", "0123abc", created) == {
        "org.opencontainers.image.source": "https://github.com/acme/app",
        "org.opencontainers.image.revision": "0123abc",
        "org.opencontainers.image.created": "2026-03-04T05:08:09Z",
    }


def test_oci_labels_leave_out_an_unknown_source_and_refuse_a_naive_time() -> None:
    assert "org.opencontainers.image.source" not in oci_labels(None, "abc", datetime.now(UTC))
    with pytest.raises(ValueError):
        oci_labels(None, "abc", datetime(2026, 1, 1))


def test_registry_login_repr_hides_the_password() -> None:
    login = RegistryLogin("ghcr.io", "octocat", "ghp_visible-if-leaked")
    assert "ghp_visible-if-leaked" not in repr(login)
    assert "ghp_visible-if-leaked" not in str(login)
    assert login.auth_config()["password"] == "ghp_visible-if-leaked"


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


@pytest.mark.parametrize(
    ("version_output", "builds"),
    [
        ("Docker version 20.10.24+dfsg1, build 297e128", True),
        ("Docker version 18.09.1, build 4c52b90", True),
        ("Docker version 18.06.3-ce, build d7080c1", False),
        ("Docker version 23.0.0, build e92dd87", False),
        ("Docker version 28.2.2, build e6534b4", False),
        ("podman version 4.3.1", False),
        ("", False),
    ],
)
def test_only_clis_from_18_09_to_22_build_with_buildkit_on_docker_buildkit_1(version_output: str, builds: bool) -> None:
    assert builds_with_docker_buildkit_env(version_output) == builds


def test_docker_cli_candidates_prefer_the_argument_then_the_environment_then_path(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    for cli in (first / "docker", second / "docker"):
        cli.write_text("#!/bin/sh\nexit 1\n")
        cli.chmod(0o755)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "docker").symlink_to(first / "docker")  # the same CLI twice: probe it once
    path = f"{first}:{tmp_path / 'c'}:{second}:{tmp_path / 'missing'}"
    assert docker_cli_candidates("/opt/docker", {"DEPLOYER_DOCKER_CLI": "/env/docker"}, path) == ["/opt/docker"]
    assert docker_cli_candidates(None, {"DEPLOYER_DOCKER_CLI": "/env/docker"}, path) == ["/env/docker"]
    assert docker_cli_candidates(None, {}, path) == [str(first / "docker"), str(second / "docker")]


# --- real engine and registry ---------------------------------------------------------------------------

IMAGE_PREFIX = "deployer-test-image-"


@dataclass
class Recorder:
    """Collects log lines and the retry waits the engine asked for (it never really waits in tests)."""

    lines: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@dataclass
class ImageFactory:
    """Makes unique build contexts and references under IMAGE_PREFIX and removes every local tag it made."""

    docker_client: Any
    registry: RegistryUnderTest
    base_image: str
    root: Path
    tags: list[str] = field(default_factory=list)

    def repository(self, host: str) -> str:
        return f"{host}/{IMAGE_PREFIX}{uuid.uuid4().hex[:10]}/app"

    def reference(self, host: str, tag: str = "abc1234") -> str:
        reference = f"{self.repository(host)}:{tag}"
        self.tags.append(reference)
        return reference

    def context(self, *steps: str) -> Path:
        """A context whose image has a layer no other test has, so pushes really upload."""
        context = self.root / uuid.uuid4().hex
        context.mkdir()
        body = "\n".join((f"RUN echo {uuid.uuid4()} > /stamp", *steps))
        (context / "Dockerfile").write_text(f"ARG BASE_IMAGE={self.base_image}\nFROM ${{BASE_IMAGE}}\n{body}\n")
        return context

    def track(self, reference: str) -> str:
        self.tags.append(reference)
        return reference

    def cleanup(self) -> None:
        for reference in self.tags:
            try:
                self.docker_client.images.remove(reference)
            except Exception:
                pass  # never built (a failing build) or already gone
            # Pushed through the proxy or directly, it is the same registry behind.
            name, tag = repository_path(reference)
            digest = self.registry.manifest_digest(name, tag)
            if digest is not None:
                self.registry.request("DELETE", f"/v2/{name}/manifests/{digest}")


@pytest.fixture
def images(
    docker_client: Any, registry: RegistryUnderTest, busybox_base_image: str, tmp_path: Path
) -> Iterator[ImageFactory]:
    factory = ImageFactory(docker_client, registry, busybox_base_image, tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(docker_client: Any, recorder: Recorder) -> Iterator[DockerEngine]:
    engine = DockerEngine.connect(retry=RetryPolicy(attempts=3, sleep=recorder.sleep))
    yield engine
    engine.close()


@pytest.fixture
def classic_engine(docker_client: Any, recorder: Recorder, tmp_path: Path) -> Iterator[DockerEngine]:
    """An engine whose only docker CLI knows neither buildx nor DOCKER_BUILDKIT: a docker CLI 23+ without the
    buildx plugin, which runs but cannot build with BuildKit."""
    cli = tmp_path / "bin" / "docker"
    cli.parent.mkdir()
    cli.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "Docker version 24.0.7, build afdd53b"; exit 0; fi\n'
        "echo \"docker: '$1' is not a docker command.\" >&2\nexit 1\n"
    )
    cli.chmod(0o755)
    engine = DockerEngine.connect(str(cli), retry=RetryPolicy(attempts=3, sleep=recorder.sleep))
    yield engine
    engine.close()


@pytest.fixture
def buildkit_engine(engine: DockerEngine) -> DockerEngine:
    require_real_part(engine.buildkit_cli() is not None, "no docker CLI here builds with BuildKit")
    return engine


@pytest.fixture
def proxy(registry: RegistryUnderTest) -> Iterator[RegistryProxy]:
    with running_proxy(registry.host) as proxy:
        yield proxy


def login_for(host: str, registry: RegistryUnderTest) -> RegistryLogin:
    return RegistryLogin(host, registry.username, registry.password)


def repository_path(reference: str) -> tuple[str, str]:
    """``host/name:tag`` -> (``name``, ``tag``) for the registry's HTTP API."""
    repository, tag = repository_and_tag(reference)
    return repository.split("/", 1)[1], tag


@pytest.mark.docker
def test_build_and_push_reports_the_registry_manifest_digest(
    buildkit_engine: DockerEngine,
    images: ImageFactory,
    registry: RegistryUnderTest,
    recorder: Recorder,
    docker_client: Any,
) -> None:
    reference = images.reference(registry.host)
    extra = images.track(reference.rsplit(":", 1)[0] + ":latest")
    labels = oci_labels("https://github.com/acme/app", "abc1234def", datetime.now(UTC))
    context = images.context("ARG GREETING", 'RUN echo "$GREETING" > /greeting')
    request = BuildRequest(context, [reference, extra], build_args={"GREETING": "hi there"}, labels=labels)

    image_id = buildkit_engine.build(request, recorder.log)
    result = buildkit_engine.push(reference, login_for(registry.host, registry), recorder.log)

    assert image_id.startswith("sha256:")
    image = docker_client.images.get(reference)
    assert image.id == image_id
    assert docker_client.images.get(extra).id == image_id
    assert {k: image.labels[k] for k in labels} == labels
    assert result.digest == registry.manifest_digest(*repository_path(reference))
    assert result.attempts == 1
    assert any("RUN echo" in line for line in recorder.lines)
    assert any(line.endswith(": Pushed") for line in recorder.lines)


@pytest.mark.docker
def test_buildkit_only_dockerfile_builds_with_the_buildkit_cli(
    buildkit_engine: DockerEngine, images: ImageFactory, registry: RegistryUnderTest, recorder: Recorder
) -> None:
    reference = images.reference(registry.host)
    context = images.context(
        "RUN --mount=type=cache,target=/cache echo cached > /cache/marker && cp /cache/marker /built-with-cache"
    )
    buildkit_engine.build(BuildRequest(context, [reference]), recorder.log)
    assert buildkit_engine.builder_name().startswith("buildkit")
    assert recorder.lines[0] == f"Building with {buildkit_engine.builder_name()}"


@pytest.mark.docker
def test_classic_builder_is_used_and_said_so_when_no_cli_offers_buildkit(
    classic_engine: DockerEngine,
    images: ImageFactory,
    registry: RegistryUnderTest,
    recorder: Recorder,
    docker_client: Any,
) -> None:
    reference = images.reference(registry.host)
    extra = images.track(reference.rsplit(":", 1)[0] + ":main")
    request = BuildRequest(images.context(), [reference, extra], labels={"org.opencontainers.image.revision": "x1"})

    image_id = classic_engine.build(request, recorder.log)

    assert classic_engine.builder_name() == "classic (docker SDK)"
    assert any("classic builder" in line for line in recorder.lines)
    assert docker_client.images.get(extra).id == image_id
    assert docker_client.images.get(reference).labels["org.opencontainers.image.revision"] == "x1"


@pytest.mark.docker
def test_buildkit_only_dockerfile_on_a_classic_engine_is_refused_clearly(
    classic_engine: DockerEngine, images: ImageFactory, registry: RegistryUnderTest, recorder: Recorder
) -> None:
    context = images.context("RUN --mount=type=cache,target=/cache true")
    with pytest.raises(BuildKitUnavailableError, match=r"needs BuildKit \(RUN --mount \(line 4\)\)") as caught:
        classic_engine.build(BuildRequest(context, [images.reference(registry.host)]), recorder.log)
    assert "DEPLOYER_DOCKER_CLI" in str(caught.value)


@pytest.mark.docker
@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_failed_run_step_names_the_step_and_its_last_lines_and_pushes_nothing(
    builder: str,
    request: pytest.FixtureRequest,
    images: ImageFactory,
    registry: RegistryUnderTest,
    recorder: Recorder,
    docker_client: Any,
) -> None:
    engine: DockerEngine = request.getfixturevalue(f"{builder}_engine" if builder == "classic" else "buildkit_engine")
    reference = images.reference(registry.host)
    context = images.context("RUN echo fine", "RUN echo first-words && echo last-words >&2 && exit 7")

    with pytest.raises(BuildError) as caught:
        engine.build(BuildRequest(context, [reference]), recorder.log)

    error = caught.value
    assert error.step is not None and "echo first-words" in error.step
    # stdout and stderr reach the builder on separate pipes: their order is not guaranteed.
    assert sorted(error.last_lines[-2:]) == ["first-words", "last-words"]
    assert "7" in error.message
    assert "last-words" in str(error)
    assert registry.manifest_digest(*repository_path(reference)) is None
    assert not docker_client.images.list(name=reference.rsplit(":", 1)[0])


@pytest.mark.docker
def test_wrong_password_is_an_auth_error_without_retries_and_never_shows_the_password(
    engine: DockerEngine,
    images: ImageFactory,
    registry: RegistryUnderTest,
    recorder: Recorder,
    proxy: RegistryProxy,
    docker_client: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reference = images.reference(proxy.host)
    engine.build(BuildRequest(images.context(), [reference]), recorder.log)
    password = f"wrong-{uuid.uuid4().hex}"
    login = RegistryLogin(proxy.host, registry.username, password)

    with pytest.raises(RegistryAuthError) as pushed:
        engine.push(reference, login, recorder.log)
    with pytest.raises(RegistryAuthError) as looked_up:
        engine.remote_digest(reference, login)

    assert recorder.sleeps == []  # deployer did not retry
    # One attempt: at most one refused upload start per layer, no manifest, nothing accepted.
    layers = len(docker_client.images.get(reference).attrs["RootFS"]["Layers"])
    assert proxy.count("POST", BLOB_UPLOAD) <= layers
    assert proxy.count("PUT", MANIFEST) == 0
    assert {r.status for r in proxy.writes()} <= {401}
    assert "unauthorized" in str(pushed.value) and "--registry-password" in str(pushed.value)
    out, err = capfd.readouterr()
    everything = [
        str(pushed.value),
        repr(pushed.value),
        str(looked_up.value),
        repr(looked_up.value),
        repr(login),
        out,
        err,
        caplog.text,
        *recorder.lines,
    ]
    assert not [text for text in everything if password in text]


@pytest.mark.docker
def test_push_succeeds_when_the_first_two_blob_uploads_fail_with_503(
    engine: DockerEngine, images: ImageFactory, registry: RegistryUnderTest, recorder: Recorder, proxy: RegistryProxy
) -> None:
    reference = images.reference(proxy.host)
    engine.build(BuildRequest(images.context(), [reference]), recorder.log)
    proxy.fail_blob_uploads(2, status=503)

    result = engine.push(reference, login_for(proxy.host, registry), recorder.log)

    refused = [r for r in proxy.requests if r.refused]
    assert [(r.method, r.status) for r in refused] == [("POST", 503), ("POST", 503)]
    assert result.digest == registry.manifest_digest(*repository_path(reference))
    # The engine retries a failed layer upload itself (with its own countdown): logged once, not per second.
    assert len([line for line in recorder.lines if "Retrying in" in line]) <= 2


@pytest.mark.docker
@pytest.mark.parametrize(
    ("fail", "status"),
    [("manifest", 503), ("blob", 429)],
    ids=["manifest-503", "blob-429"],
)
def test_push_retries_transient_refusals_that_the_engine_passes_on(
    fail: str,
    status: int,
    engine: DockerEngine,
    images: ImageFactory,
    registry: RegistryUnderTest,
    recorder: Recorder,
    proxy: RegistryProxy,
) -> None:
    reference = images.reference(proxy.host)
    engine.build(BuildRequest(images.context(), [reference]), recorder.log)
    if fail == "manifest":
        proxy.fail_manifest_uploads(2, status=status)
    else:
        proxy.fail_blob_uploads(2, status=status)

    result = engine.push(reference, login_for(proxy.host, registry), recorder.log)

    # Layers upload in parallel, so both refusals may land in one attempt: count what deployer did.
    assert result.attempts >= 2
    assert len(recorder.sleeps) == result.attempts - 1 and all(0 <= wait <= 30 for wait in recorder.sleeps)
    assert len([r for r in proxy.requests if r.refused]) == 2
    assert result.digest == registry.manifest_digest(*repository_path(reference))


@pytest.mark.docker
def test_push_gives_up_after_bounded_attempts_with_the_registry_message_when_it_always_fails(
    engine: DockerEngine, images: ImageFactory, registry: RegistryUnderTest, recorder: Recorder, proxy: RegistryProxy
) -> None:
    reference = images.reference(proxy.host)
    engine.build(BuildRequest(images.context(), [reference]), recorder.log)
    proxy.fail_manifest_uploads(None, status=503)

    with pytest.raises(RegistryError) as caught:
        engine.push(reference, login_for(proxy.host, registry), recorder.log)

    assert not isinstance(caught.value, RegistryAuthError)
    assert "503 Service Unavailable" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    assert proxy.count("PUT", MANIFEST) == 3
    assert len(recorder.sleeps) == 2
    assert registry.manifest_digest(*repository_path(reference)) is None


@pytest.mark.docker
def test_reuse_existing_finds_the_pushed_tag_by_reading_only(
    engine: DockerEngine, images: ImageFactory, registry: RegistryUnderTest, recorder: Recorder, proxy: RegistryProxy
) -> None:
    reference = images.reference(proxy.host)
    login = login_for(proxy.host, registry)
    assert engine.remote_digest(reference, login) is None  # first run: not there, so build and push
    engine.build(BuildRequest(images.context(), [reference]), recorder.log)
    pushed = engine.push(reference, login, recorder.log)
    proxy.clear_log()

    reused = engine.remote_digest(reference, login)  # second run of the same commit

    assert reused == pushed.digest
    assert proxy.requests, "the look-up must have gone through the proxy"
    assert proxy.writes() == []


@pytest.mark.docker
def test_a_docker_cli_named_in_the_environment_that_does_not_exist_is_an_option_error(
    docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYER_DOCKER_CLI", str(tmp_path / "no-such-docker"))
    with pytest.raises(OptionError, match="DEPLOYER_DOCKER_CLI: .*no-such-docker is not an executable"):
        DockerEngine.connect()


@pytest.mark.docker
def test_pushing_an_image_that_was_never_built_is_a_docker_error(
    engine: DockerEngine, images: ImageFactory, registry: RegistryUnderTest, recorder: Recorder
) -> None:
    with pytest.raises(DockerError, match="no such local image|does not exist"):
        engine.push(images.reference(registry.host), login_for(registry.host, registry), recorder.log)
    assert recorder.sleeps == []
