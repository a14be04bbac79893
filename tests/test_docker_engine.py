"""deployer.docker_engine: the image labels, then build and push against the
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
    BuildRequest,
    DockerEngine,
    RegistryLogin,
    RetryPolicy,
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
