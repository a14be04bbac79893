"""deployer/credentials.py: where the cluster credentials come from, how kubeconfigs are read and merged,
what is masked, and that no secret is left in output, errors or files."""

from __future__ import annotations

import base64
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from deployer import connecting, workflow_commands
from deployer.credentials import (
    KubeCredentials,
    client_files_directory,
    expiry_for_run,
    kubeconfig_yaml,
    memory_backed_files,
    memory_backed_kubeconfig,
    needed_expiry_seconds,
    resolve_credentials,
    write_kubeconfig,
)
from deployer.errors import (
    ClusterLookupError,
    DeployerError,
    DigitalOceanAuthError,
    DigitalOceanError,
    ExitCode,
    OptionError,
)
from deployer.settings import ClusterSettings, RolloutSettings
from tests.fakes.digitalocean_api import (
    CountingMinter,
    FakeCluster,
    FakeDigitalOceanAPI,
    Fault,
    RecordedSleeps,
    openapi_problems,
)

TOKEN = "dop_v1_" + "c4fe" * 16
USER_TOKEN = "user-static-token-" + "9b" * 12


@pytest.fixture(scope="module")
def ca_pem() -> bytes:
    return trustme.CA().cert_pem.bytes()


@pytest.fixture
def fake(ca_pem: bytes) -> Iterator[FakeDigitalOceanAPI]:
    api = FakeDigitalOceanAPI(
        token=TOKEN,
        server_url="https://127.0.0.1:6443",
        ca_pem=ca_pem,
        mint_token=CountingMinter(),
        clusters=[FakeCluster("web"), FakeCluster("batch", state="degraded", message="1 node not ready")],
    )
    with api:
        yield api
    problems = {f"{e.status} {e.path}": openapi_problems(e) for e in api.exchanges}
    assert not any(problems.values()), problems


class Events(list[str]):
    """Everything the run would show, in order: masks, warnings."""

    def mask(self, value: str) -> None:
        self.append(f"mask:{value}")

    def warn(self, text: str) -> None:
        self.append(f"warn:{text}")


def resolve(
    events: Events,
    *,
    cluster: str | None = None,
    kubeconfig_path: str | None = None,
    kubeconfig_data: str | None = None,
    context: str | None = None,
    token: str | None = None,
    api_url: str = "https://api.digitalocean.com",
    expiry_seconds: int = 900,
    env: dict[str, str] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> KubeCredentials:
    return resolve_credentials(
        cluster=cluster,
        kubeconfig_path=kubeconfig_path,
        kubeconfig_data=kubeconfig_data,
        context=context,
        digitalocean_token=token,
        api_url=api_url,
        expiry_seconds=expiry_seconds,
        env=env if env is not None else {"HOME": "/nonexistent"},
        warn=events.warn,
        mask=events.mask,
        sleep=sleep or RecordedSleeps(),
    )


def kubeconfig_text(
    *,
    contexts: dict[str, tuple[str, str]],
    clusters: dict[str, str],
    users: dict[str, dict[str, Any]],
    current: str | None = None,
) -> str:
    """A kubeconfig in YAML; contexts map name -> (cluster, user), clusters name -> server."""
    lines = ["apiVersion: v1", "kind: Config", "clusters:"]
    for name, server in clusters.items():
        lines += [f"- name: {name}", "  cluster:", f"    server: {server}", "    certificate-authority: ca.crt"]
    lines.append("contexts:")
    for name, (cluster, user) in contexts.items():
        lines += [f"- name: {name}", "  context:", f"    cluster: {cluster}", f"    user: {user}"]
    lines.append("users:")
    for name, fields in users.items():
        lines += [f"- name: {name}", "  user:"] + [f"    {k}: {v}" for k, v in fields.items()]
    if current:
        lines.append(f"current-context: {current}")
    return "\n".join(lines) + "\n"


USER_KUBECONFIG = kubeconfig_text(
    contexts={"kind-dev": ("kind", "dev"), "prod": ("gke", "ci")},
    clusters={"kind": "https://127.0.0.1:40000", "gke": "https://35.1.2.3"},
    users={"dev": {"token": USER_TOKEN}, "ci": {"client-certificate": "certs/ci.crt", "client-key": "certs/ci.key"}},
    current="kind-dev",
)


# --- how long the DigitalOcean token must live ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rollout", "rollback", "expected"),
    [
        (0, 0, 300),
        (60, 30, 300),  # 270 s needed: the floor wins
        (600, 0, 780),  # a 10-minute wait alone outlives 600 s
        (600, 300, 1080),
        (600.2, 300, 1081),  # rounded up, never down
        (3600, 1800, 5580),
    ],
)
def test_expiry_covers_rollout_rollback_and_a_margin(rollout: float, rollback: float, expected: int) -> None:
    assert needed_expiry_seconds(rollout, rollback) == expected


@pytest.mark.parametrize(
    ("given", "rollout", "rollback", "expected"),
    [
        (None, 600, 300, 1080),  # not given: what the run needs
        (0, 600, 300, 1080),
        (1080, 600, 300, 1080),
        (7200, 600, 300, 7200),  # longer is fine
        (300, 60, 30, 300),
    ],
)
def test_expiry_for_run_takes_what_covers_the_run(
    given: int | None, rollout: float, rollback: float, expected: int
) -> None:
    assert expiry_for_run(given, rollout, rollback) == expected


def test_expiry_for_run_refuses_one_the_run_would_outlive_naming_the_flag() -> None:
    with pytest.raises(OptionError) as refused:
        expiry_for_run(600, 600, 300)

    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert str(refused.value) == (
        "--kubeconfig-expiry: 600s is shorter than this run needs: 1080s (--timeout 600s + --rollback-timeout "
        "300s + 180s, at least 300s); raise it or leave it out"
    )


def test_a_canary_run_needs_its_canary_phase_covered_too() -> None:
    # --strategy canary: the canaries' wait (--timeout 600s) and their 60s hold come before the rollout's wait.
    assert expiry_for_run(None, 600, 300, canary_seconds=660) == 1740
    with pytest.raises(OptionError) as refused:
        expiry_for_run(1080, 600, 300, canary_seconds=660)

    assert "1740s (the canary's 660s + --timeout 600s + --rollback-timeout 300s" in str(refused.value)


def test_a_canary_run_asks_digitalocean_for_a_token_that_outlives_its_canary_phase() -> None:
    cluster = ClusterSettings(cluster="web-prod")
    rolling, canary = RolloutSettings(), RolloutSettings(strategy="canary", canary_hold=90)

    assert connecting.expiry_seconds(cluster, canary) == connecting.expiry_seconds(cluster, rolling) + 600 + 90


def test_inline_key_material_is_handed_over_in_memory_files_and_the_original_is_untouched() -> None:
    key, cert, ca = b"-----BEGIN KEY-----\nsecret\n", b"-----BEGIN CERT-----\nc\n", b"-----BEGIN CA-----\na\n"
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://x", "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "u", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }

    copied, release = memory_backed_kubeconfig(config)
    try:
        user, cluster = copied["users"][0]["user"], copied["clusters"][0]["cluster"]
        assert set(user) == {"client-certificate", "client-key"}
        assert Path(user["client-key"]).read_bytes() == key
        assert Path(user["client-certificate"]).read_bytes() == cert
        assert Path(cluster["certificate-authority"]).read_bytes() == ca
        assert user["client-key"].startswith("/proc/self/fd/")
        assert config["users"][0]["user"]["client-key-data"] == b64(key)
    finally:
        release()
    assert not Path(user["client-key"]).exists()


def test_files_the_client_wrote_move_into_memory_and_leave_no_file_behind() -> None:
    directory = client_files_directory()
    key = b"-----BEGIN PRIVATE KEY-----\nfrom an exec plugin\n-----END PRIVATE KEY-----\n"
    (directory / "tmpkey").write_bytes(key)

    moved, release = memory_backed_files(directory)
    try:
        assert not directory.exists()
        assert list(moved) == [str(directory / "tmpkey")]
        assert moved[str(directory / "tmpkey")].startswith("/proc/self/fd/")
        assert Path(moved[str(directory / "tmpkey")]).read_bytes() == key
    finally:
        release()
    assert not Path(moved[str(directory / "tmpkey")]).exists()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- DigitalOcean ------------------------------------------------------------------------------------


def test_cluster_name_gives_an_issued_kubeconfig_in_memory(fake: FakeDigitalOceanAPI) -> None:
    events = Events()
    before = datetime.now(UTC)
    credentials = resolve(events, cluster="web", token=TOKEN, api_url=fake.url, expiry_seconds=1200)
    after = datetime.now(UTC)
    web = fake.clusters[0]
    (minted,) = fake.minted
    assert credentials.context == "do-nyc1-web"
    assert credentials.kubeconfig["current-context"] == "do-nyc1-web"
    assert credentials.kubeconfig["users"][0]["user"]["token"] == minted
    assert credentials.kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert credentials.secrets == (TOKEN, minted)
    assert credentials.expires_at is not None
    assert before + timedelta(seconds=1200) <= credentials.expires_at <= after + timedelta(seconds=1200)
    assert not credentials.has_expired()
    assert credentials.has_expired(credentials.expires_at)
    assert credentials.description.startswith(f"DigitalOcean cluster web ({web.id}) in nyc1, token valid until ")
    assert events == [f"mask:{TOKEN}", f"mask:{minted}"]
    assert fake.requests_for("kubeconfig")[0].query == {"expiry_seconds": "1200", "type": "token"}
    for text in (repr(credentials), str(credentials), credentials.description):
        assert TOKEN not in text and minted not in text


def test_token_can_come_from_the_environment(fake: FakeDigitalOceanAPI) -> None:
    credentials = resolve(
        Events(), cluster=fake.clusters[0].id, api_url=fake.url, env={"DIGITALOCEAN_ACCESS_TOKEN": TOKEN}
    )
    assert credentials.context == "do-nyc1-web"
    assert fake.requests_for("list") == []  # a UUID needs no lookup


def test_degraded_cluster_is_a_warning_after_the_token_is_masked(fake: FakeDigitalOceanAPI) -> None:
    events = Events()
    resolve(events, cluster="batch", token=TOKEN, api_url=fake.url)
    assert events[0] == f"mask:{TOKEN}"
    assert events[1].startswith(f"warn:DigitalOcean cluster batch ({fake.clusters[1].id}) is degraded")
    assert "1 node not ready" in events[1]
    assert events[2] == f"mask:{fake.minted[0]}"


@pytest.mark.parametrize("state", ["provisioning", "deleting", "error"])
def test_cluster_that_cannot_take_a_deploy_stops_before_any_token_is_issued(
    fake: FakeDigitalOceanAPI, state: str
) -> None:
    fake.clusters[0].state = state
    with pytest.raises(ClusterLookupError) as caught:
        resolve(Events(), cluster="web", token=TOKEN, api_url=fake.url)
    assert f"is {state}" in str(caught.value)
    assert caught.value.exit_code == ExitCode.FAILURE
    assert fake.requests_for("kubeconfig") == [] and fake.minted == []


def test_in_github_actions_secrets_are_masked_before_anything_else(fake: FakeDigitalOceanAPI) -> None:
    shown: list[str] = []
    env = {"GITHUB_ACTIONS": "true", "DIGITALOCEAN_ACCESS_TOKEN": TOKEN}
    resolve_credentials(
        cluster="batch",
        kubeconfig_path=None,
        kubeconfig_data=None,
        context=None,
        digitalocean_token=None,
        api_url=fake.url,
        expiry_seconds=600,
        env=env,
        warn=lambda text: shown.append(f"warning: {text}"),
        mask=lambda value: shown.extend(workflow_commands.mask(value)),
    )
    assert shown[0] == f"::add-mask::{TOKEN}"
    assert shown[1].startswith("warning: ")
    assert shown[2] == f"::add-mask::{fake.minted[0]}"


def test_cluster_without_a_token_is_bad_input() -> None:
    with pytest.raises(OptionError) as caught:
        resolve(Events(), cluster="web", env={})
    assert str(caught.value) == "--cluster: needs a DigitalOcean API token: set DIGITALOCEAN_ACCESS_TOKEN"
    assert caught.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize("expiry", [0, -5])
def test_expiry_must_be_positive(fake: FakeDigitalOceanAPI, expiry: int) -> None:
    with pytest.raises(OptionError) as caught:
        resolve(Events(), cluster="web", token=TOKEN, api_url=fake.url, expiry_seconds=expiry)
    assert str(caught.value).startswith("--kubeconfig-expiry: must be a positive number of seconds")
    assert fake.exchanges == []


@pytest.mark.parametrize(
    ("content_type", "problem"),
    [
        ("application/yaml", "is not valid YAML at line 2, column 8"),
        ("text/html; charset=utf-8", "unexpected response"),
    ],
)
def test_kubeconfig_that_is_not_yaml_is_a_digitalocean_error(content_type: str, problem: str) -> None:
    # An API URL that answers 200 with garbage: a misconfigured proxy. Served by a tiny fake of its own
    # (the DigitalOcean fake only gives answers the OpenAPI excerpt allows).
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = f"<html>token: [{TOKEN}\n</html>".encode()
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    thread = Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        with pytest.raises(DigitalOceanError) as caught:
            resolve(
                Events(),
                cluster="bd5f5959-5e1e-4205-a714-a914373942af",
                token=TOKEN,
                api_url=f"http://127.0.0.1:{server.server_address[1]}",
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    message = str(caught.value)
    assert problem in message and "bd5f5959-5e1e-4205-a714-a914373942af" in message
    assert TOKEN not in message and "<html>" not in message


# --- the user's kubeconfig ---------------------------------------------------------------------------


def test_kubeconfig_file_gives_its_current_context_with_paths_made_absolute(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(USER_KUBECONFIG)
    events = Events()
    credentials = resolve(events, kubeconfig_path=str(path))
    assert credentials.context == "kind-dev"
    assert credentials.expires_at is None and not credentials.has_expired()
    assert credentials.secrets == (USER_TOKEN,)
    assert events == [f"mask:{USER_TOKEN}"]
    assert credentials.description == f"kubeconfig {path}, context kind-dev"
    clusters = {c["name"]: c["cluster"] for c in credentials.kubeconfig["clusters"]}
    users = {u["name"]: u["user"] for u in credentials.kubeconfig["users"]}
    assert clusters["kind"]["certificate-authority"] == str(tmp_path / "ca.crt")
    assert users["ci"]["client-key"] == str(tmp_path / "certs" / "ci.key")
    assert USER_TOKEN not in repr(credentials)


def test_kube_context_picks_another_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(USER_KUBECONFIG)
    credentials = resolve(Events(), kubeconfig_path=str(path), context="prod")
    assert credentials.context == "prod"
    assert credentials.kubeconfig["current-context"] == "prod"


def test_unknown_kube_context_names_it_and_the_contexts_available(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(USER_KUBECONFIG)
    with pytest.raises(OptionError) as caught:
        resolve(Events(), kubeconfig_path=str(path), context="staging")
    assert str(caught.value) == f'--kube-context: no context "staging" in kubeconfig {path}; available: kind-dev, prod'
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_kubeconfig_list_merges_with_the_first_file_winning(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "sub" / "second"
    second.parent.mkdir()
    first.write_text(
        kubeconfig_text(
            contexts={"shared": ("one", "u1")},
            clusters={"one": "https://first.example"},
            users={"u1": {"token": "first-token-abcdef"}},
        )
    )
    second.write_text(
        kubeconfig_text(
            contexts={"shared": ("two", "u2"), "extra": ("two", "u2")},
            clusters={"one": "https://second.example", "two": "https://two.example"},
            users={"u2": {"token": "second-token-abcdef"}},
            current="extra",
        )
    )
    missing = tmp_path / "missing"
    env = {"KUBECONFIG": os.pathsep.join([str(missing), str(first), str(second)]), "HOME": "/nonexistent"}
    credentials = resolve(Events(), env=env)
    config = credentials.kubeconfig
    assert credentials.context == "extra"  # the first file sets no current-context; the second does
    assert {c["name"]: c["cluster"]["server"] for c in config["clusters"]} == {
        "one": "https://first.example",
        "two": "https://two.example",
    }
    assert {c["name"]: c["context"]["cluster"] for c in config["contexts"]} == {"shared": "one", "extra": "two"}
    two = next(c["cluster"] for c in config["clusters"] if c["name"] == "two")
    assert two["certificate-authority"] == str(second.parent / "ca.crt")
    assert credentials.secrets == ("first-token-abcdef", "second-token-abcdef")


def test_kubeconfig_list_with_no_existing_file_is_bad_input(tmp_path: Path) -> None:
    env = {"KUBECONFIG": f"{tmp_path}/a{os.pathsep}{tmp_path}/b"}
    with pytest.raises(OptionError) as caught:
        resolve(Events(), env=env)
    assert str(caught.value).startswith("KUBECONFIG: none of the kubeconfig files exist: ")


@pytest.mark.parametrize("encoding", ["plain", "base64", "base64-wrapped"])
def test_kubeconfig_data_is_read_plain_or_base64(encoding: str) -> None:
    data = USER_KUBECONFIG
    if encoding != "plain":
        data = base64.b64encode(USER_KUBECONFIG.encode()).decode()
        if encoding == "base64-wrapped":  # as `base64` prints it, 76 columns
            data = "\n".join(data[i : i + 76] for i in range(0, len(data), 76)) + "\n"
    events = Events()
    credentials = resolve(events, kubeconfig_data=data, context="prod")
    assert credentials.context == "prod"
    assert credentials.description == "kubeconfig from --kubeconfig-data, context prod"
    assert f"mask:{USER_TOKEN}" in events
    assert len(credentials.kubeconfig["users"]) == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("bm90IHlhbWw6IFs=", "--kubeconfig-data: the kubeconfig is not valid YAML at line 1, column 12"),
        (
            "bm90IGEga3ViZWNvbmZpZw==",
            "--kubeconfig-data: the kubeconfig is not a kubeconfig (expected a mapping at the top)",
        ),
        ("notbase64", "--kubeconfig-data: the kubeconfig is not a kubeconfig (expected a mapping at the top)"),
        ("- a\n- b\n", "--kubeconfig-data: the kubeconfig is not a kubeconfig (expected a mapping at the top)"),
        ("users: {name: x}\n", "--kubeconfig-data: the kubeconfig: users must be a list of entries with a name"),
    ],
)
def test_unreadable_kubeconfig_data_is_bad_input(data: str, expected: str) -> None:
    with pytest.raises(OptionError) as caught:
        resolve(Events(), kubeconfig_data=data)
    assert str(caught.value) == expected
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_yaml_error_names_the_position_but_never_the_content(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(f"users:\n- name: a\n  user:\n    token: {USER_TOKEN}\n    password: [unclosed\n")
    with pytest.raises(OptionError) as caught:
        resolve(Events(), kubeconfig_path=str(path))
    assert str(caught.value).startswith(f"--kubeconfig: {path} is not valid YAML at line ")
    assert USER_TOKEN not in str(caught.value) and "unclosed" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"cluster": "web", "kubeconfig_path": "/x"}, "--kubeconfig: cannot be combined with --cluster"),
        ({"cluster": "web", "kubeconfig_data": "x"}, "--kubeconfig-data: cannot be combined with --cluster"),
        ({"kubeconfig_path": "/x", "kubeconfig_data": "x"}, "--kubeconfig-data: cannot be combined with --kubeconfig"),
    ],
)
def test_only_one_source_of_credentials_is_accepted(kwargs: dict[str, str], expected: str) -> None:
    with pytest.raises(OptionError) as caught:
        resolve(Events(), token=TOKEN, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(expected)


def test_missing_kubeconfig_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(OptionError) as caught:
        resolve(Events(), kubeconfig_path=str(tmp_path / "nope"))
    assert str(caught.value) == f"--kubeconfig: {tmp_path / 'nope'} does not exist or is not a file"


def test_without_any_source_the_default_kubeconfig_is_used_or_all_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(OptionError) as caught:
        resolve(Events(), env={"HOME": str(tmp_path)})
    assert str(caught.value).startswith(
        "--cluster: no cluster credentials: pass --cluster NAME with DIGITALOCEAN_ACCESS_TOKEN, "
        "--kubeconfig PATH or --kubeconfig-data, or set KUBECONFIG"
    )
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(USER_KUBECONFIG)
    assert resolve(Events(), env={"HOME": str(tmp_path)}).context == "kind-dev"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            kubeconfig_text(contexts={"a": ("c", "u"), "b": ("c", "u")}, clusters={"c": "https://c"}, users={"u": {}}),
            "--kube-context: kubeconfig {path} sets no current-context; pick one of: a, b",
        ),
        (
            kubeconfig_text(contexts={"a": ("c", "u")}, clusters={"c": "https://c"}, users={"u": {}}, current="z"),
            '--kube-context: current-context "z" of kubeconfig {path} is not defined; available: a',
        ),
        (
            kubeconfig_text(contexts={"a": ("gone", "u")}, clusters={"c": "https://c"}, users={"u": {}}),
            '--kube-context: context "a" in kubeconfig {path} names cluster "gone", which is not defined',
        ),
    ],
)
def test_context_must_be_chosen_and_complete(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(OptionError) as caught:
        resolve(Events(), kubeconfig_path=str(path))
    assert str(caught.value) == expected.format(path=path)


def test_single_context_without_current_context_is_used(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig_text(contexts={"only": ("c", "u")}, clusters={"c": "https://c"}, users={"u": {}}))
    assert resolve(Events(), kubeconfig_path=str(path)).context == "only"


# --- files -------------------------------------------------------------------------------------------


def _credentials(tmp_path: Path) -> KubeCredentials:
    path = tmp_path / "config"
    path.write_text(USER_KUBECONFIG)
    return resolve(Events(), kubeconfig_path=str(path))


def test_written_kubeconfig_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    credentials = _credentials(tmp_path)
    target = tmp_path / "out" / "kubeconfig"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o644)
    write_kubeconfig(credentials, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == kubeconfig_yaml(credentials)
    assert os.listdir(target.parent) == ["kubeconfig"]
    again = resolve(Events(), kubeconfig_path=str(target))
    assert again.kubeconfig == credentials.kubeconfig


# --- no secret left anywhere -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    [
        "success",
        "rejected token",
        "missing scope",
        "unavailable",
        "unknown name",
        "context",
        "memory-backed kubeconfig",
    ],
)
def test_tokens_never_reach_output_errors_logs_or_files(
    fake: FakeDigitalOceanAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    scenario: str,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    token = TOKEN
    if scenario == "rejected token":
        token = "dop_v1_" + "e" * 64
    if scenario == "missing scope":
        fake.scopes = frozenset({"kubernetes:read"})
    if scenario == "unavailable":
        fake.add_fault(Fault(503, times=None))
    error: DeployerError | None = None
    try:
        credentials = resolve_credentials(
            cluster="nope" if scenario == "unknown name" else "web",
            kubeconfig_path=None,
            kubeconfig_data=None,
            context="other" if scenario == "context" else None,
            digitalocean_token=token,
            api_url=fake.url,
            expiry_seconds=600,
            env={},
            warn=seen.append,
            mask=lambda value: None,
            sleep=RecordedSleeps(),
        )
        seen += [repr(credentials), str(credentials), credentials.description]
        if scenario == "memory-backed kubeconfig":
            _, release = memory_backed_kubeconfig(credentials.kubeconfig)
            release()
    except DeployerError as e:
        error = e
    expected_error = {
        "rejected token": DigitalOceanAuthError,
        "missing scope": DigitalOceanAuthError,
        "unavailable": DigitalOceanError,
        "unknown name": ClusterLookupError,
        "context": OptionError,
    }.get(scenario)
    if expected_error is None:
        assert error is None
    else:
        assert isinstance(error, expected_error)
        chain: BaseException | None = error
        while chain is not None:
            seen += [str(chain), repr(chain), *map(str, chain.args)]
            chain = chain.__cause__ or chain.__context__
    out, err = capfd.readouterr()
    seen += [out, err, caplog.text, *(r.getMessage() for r in caplog.records)]
    for file in scratch.rglob("*"):
        seen.append(file.read_text(errors="replace") if file.is_file() else file.name)
    assert list(scratch.iterdir()) == []
    secrets = [token, *fake.minted]
    leaks = [(secret[:16], text[:80]) for secret in secrets for text in seen if secret in text]
    assert leaks == []


# --- end to end: DigitalOcean fake -> kubeconfig -> the Kubernetes simulator ------------------------------
# On the simulator, not the real control plane: these move the cluster's clock past the token's expiry to see
# deployer's has_expired() and the server's 401 agree; a real API server's clock cannot be moved, and its
# TokenRequest refuses expiries under 10 minutes.


@pytest.fixture
def simulator() -> Iterator[Any]:
    from tests.kubesim import KubeSim

    # A clock that all but stands still: only advance() moves it, so a slow machine's seconds between issuing a
    # token and using it cannot carry it past its expiry (it did, on a loaded machine, 10 s before the check).
    sim = KubeSim.start(kubelet="scripted", clock_speed=1e-6)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def fake_for_simulator(simulator: Any) -> Iterator[FakeDigitalOceanAPI]:
    api = FakeDigitalOceanAPI(
        token=TOKEN,
        server_url=simulator.server_url,
        ca_pem=simulator.ca_pem,
        mint_token=simulator.issue_token,
        clusters=[FakeCluster("web", region="ams3")],
    )
    with api:
        yield api
    problems = {f"{e.status} {e.path}": openapi_problems(e) for e in api.exchanges}
    assert not any(problems.values()), problems


def _issue(simulator: Any, fake: FakeDigitalOceanAPI, expiry_seconds: int) -> KubeCredentials:
    return resolve_credentials(
        cluster="web",
        kubeconfig_path=None,
        kubeconfig_data=None,
        context=None,
        digitalocean_token=TOKEN,
        api_url=fake.url,
        expiry_seconds=expiry_seconds,
        env={},
        warn=lambda text: None,
        mask=lambda value: None,
        now=simulator.clock.now,  # expires_at read from the clock the simulator expires tokens by
    )


def test_issued_kubeconfig_authenticates_to_the_cluster_until_it_expires(
    simulator: Any, fake_for_simulator: FakeDigitalOceanAPI
) -> None:
    from kubernetes import client, config
    from kubernetes.client import ApiException

    credentials = _issue(simulator, fake_for_simulator, 600)
    api_client = config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
        credentials.kubeconfig, context=credentials.context
    )
    try:
        core = client.CoreV1Api(api_client)
        names = [ns.metadata.name for ns in core.list_namespace().items if ns.metadata]
        assert "default" in names
        simulator.clock.advance(590)
        core.list_namespace()
        assert not credentials.has_expired(datetime.fromtimestamp(simulator.clock.now(), UTC))
        simulator.clock.advance(15)
        with pytest.raises(ApiException) as caught:
            core.list_namespace()
        assert caught.value.status == 401
        assert credentials.has_expired(datetime.fromtimestamp(simulator.clock.now(), UTC))
    finally:
        api_client.close()


def test_written_kubeconfig_works_for_kubectl_until_its_token_expires(
    simulator: Any, fake_for_simulator: FakeDigitalOceanAPI, kubectl: str, tmp_path: Path
) -> None:
    import subprocess

    credentials = _issue(simulator, fake_for_simulator, 300)
    path = tmp_path / "kubeconfig"
    write_kubeconfig(credentials, path)
    command = [kubectl, "--kubeconfig", str(path), "get", "namespaces", "-o", "name"]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "namespace/default" in listed.stdout
    simulator.clock.advance(301)
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr or "must be logged in" in refused.stderr
