"""deployer/digitalocean.py against a fake DigitalOcean API on loopback whose every exchange is checked
against the OpenAPI excerpt."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from deployer.digitalocean import (
    DigitalOceanAPI,
    DigitalOceanCluster,
    cluster_state_warning,
)
from deployer.errors import (
    ClusterLookupError,
    DigitalOceanAuthError,
    DigitalOceanError,
    ExitCode,
    OptionError,
)
from tests.fakes.digitalocean_api import (
    CountingMinter,
    Exchange,
    FakeCluster,
    FakeDigitalOceanAPI,
    Fault,
    RecordedSleeps,
    openapi_problems,
)

TOKEN = "dop_v1_" + "7a3f" * 16


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
        clusters=[FakeCluster("staging"), FakeCluster("production", region="fra1")],
    )
    with api:
        yield api
    problems = {f"{e.status} {e.path}": openapi_problems(e) for e in api.exchanges}
    assert not any(problems.values()), problems


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
def client(fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps) -> Iterator[DigitalOceanAPI]:
    with DigitalOceanAPI(TOKEN, fake.url, sleep=sleeps) as api:
        yield api


def assert_secret_free(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert TOKEN[:12] not in text


# --- finding the cluster ---------------------------------------------------------------------------------


def test_uuid_is_used_as_is_without_listing(client: DigitalOceanAPI, fake: FakeDigitalOceanAPI) -> None:
    cluster = client.find_cluster("BD5F5959-5E1E-4205-A714-A914373942AF")
    assert cluster == DigitalOceanCluster(id="bd5f5959-5e1e-4205-a714-a914373942af")
    assert fake.exchanges == []


def test_name_is_resolved_by_paging_200_at_a_time(client: DigitalOceanAPI, fake: FakeDigitalOceanAPI) -> None:
    fake.clusters = [FakeCluster(f"c{i:03d}") for i in range(450)]
    wanted = fake.clusters[437]
    cluster = client.find_cluster("c437")
    assert (cluster.id, cluster.name, cluster.region, cluster.state) == (wanted.id, "c437", "nyc1", "running")
    # The real API's links point at its public host: following them would bypass the fake.
    assert [(e.query["page"], e.query["per_page"]) for e in fake.exchanges] == [
        ("1", "200"),
        ("2", "200"),
        ("3", "200"),
    ]
    assert all(e.request_headers["authorization"] == f"Bearer {TOKEN}" for e in fake.exchanges)


def test_unknown_name_lists_the_clusters_the_token_can_see(client: DigitalOceanAPI) -> None:
    with pytest.raises(ClusterLookupError) as caught:
        client.find_cluster("prod")
    assert str(caught.value) == (
        'no DigitalOcean Kubernetes cluster goes by the name "prod"; clusters this token can see: production, staging'
    )
    assert caught.value.exit_code == ExitCode.FAILURE


def test_unknown_name_among_many_clusters_lists_twenty_and_counts_the_rest(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI
) -> None:
    fake.clusters = [FakeCluster(f"c{i:03d}") for i in range(250)]
    with pytest.raises(ClusterLookupError) as caught:
        client.find_cluster("prod")
    assert str(caught.value).endswith(
        "clusters this token can see: " + ", ".join(f"c{i:03d}" for i in range(20)) + " and 230 more"
    )


def test_name_shared_by_several_clusters_lists_their_ids(client: DigitalOceanAPI, fake: FakeDigitalOceanAPI) -> None:
    twin = FakeCluster("staging", region="sfo3")
    fake.clusters.append(twin)
    with pytest.raises(ClusterLookupError) as caught:
        client.find_cluster("staging")
    message = str(caught.value)
    assert message.startswith('many DigitalOcean Kubernetes clusters go by the name "staging"')
    assert fake.clusters[0].id in message and twin.id in message
    assert "UUID" in message


@pytest.mark.parametrize(
    ("state", "message", "outcome"),
    [
        ("running", None, None),
        (None, None, None),  # given by UUID: never listed, so not judged
        ("degraded", "a node is not ready", "warning"),
        ("upgrading", None, "warning"),
        ("rebalancing", None, "warning"),  # a state the API may add later: warn, do not block
        ("provisioning", "provisioning", "error"),
        ("deleting", None, "error"),
        ("error", "failed to create", "error"),
        ("deleted", None, "error"),
    ],
)
def test_cluster_state_decides_whether_a_deploy_may_go_ahead(
    state: str | None, message: str | None, outcome: str | None
) -> None:
    cluster = DigitalOceanCluster(
        id="bd5f5959-5e1e-4205-a714-a914373942af", name="web", state=state, status_message=message
    )
    if outcome == "error":
        with pytest.raises(ClusterLookupError) as caught:
            cluster_state_warning(cluster)
        assert f"web (bd5f5959-5e1e-4205-a714-a914373942af) is {state}" in str(caught.value)
        assert "cannot take a deploy" in str(caught.value)
        if message:
            assert message in str(caught.value)
        return
    warning = cluster_state_warning(cluster)
    if outcome is None:
        assert warning is None
    else:
        assert warning is not None and str(state) in warning and "deploying anyway" in warning


# --- issuing credentials -----------------------------------------------------------------------------


def test_kubeconfig_asks_for_a_token_kubeconfig_with_the_expiry(
    fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    sent = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    cluster = fake.clusters[0]
    with DigitalOceanAPI(TOKEN, fake.url, sleep=sleeps, now=sent.timestamp) as api:
        issued = api.kubeconfig(cluster.id, 900)
    (exchange,) = fake.exchanges
    assert exchange.path == f"/v2/kubernetes/clusters/{cluster.id}/kubeconfig"
    assert exchange.query == {"expiry_seconds": "900", "type": "token"}
    assert exchange.content_type == "application/yaml"
    assert f"token: {fake.minted[0]}" in issued.text
    assert fake.minted[0].endswith("-900-c0ffee")
    assert issued.expires_at == sent + timedelta(seconds=900)
    assert fake.minted[0] not in repr(issued)


def test_unknown_cluster_id_is_a_lookup_error_with_the_request_id(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ClusterLookupError) as caught:
        client.kubeconfig(missing, 300)
    (exchange,) = fake.exchanges
    request_id = exchange.response_headers["x-request-id"]
    assert str(caught.value) == (
        f"DigitalOcean has no Kubernetes cluster with id {missing} that this token can see "
        f"(not_found: The resource you were accessing could not be found.) (HTTP 404, request id {request_id})"
    )
    assert sleeps == []


# --- refusals that waiting cannot heal ---------------------------------------------------------------


def test_rejected_token_is_not_retried_and_names_the_variable(
    fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    wrong = "dop_v1_" + "0" * 64
    with DigitalOceanAPI(wrong, fake.url, sleep=sleeps) as api, pytest.raises(DigitalOceanAuthError) as caught:
        api.find_cluster("staging")
    (exchange,) = fake.exchanges
    request_id = exchange.response_headers["x-request-id"]
    assert str(caught.value) == (
        "DigitalOcean rejected the token (unauthorized: Unable to authenticate you): "
        f"check DIGITALOCEAN_ACCESS_TOKEN (HTTP 401, request id {request_id})"
    )
    assert (caught.value.status, caught.value.request_id) == (401, request_id)
    assert caught.value.exit_code == ExitCode.FAILURE and not caught.value.retryable
    assert sleeps == []
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


@pytest.mark.parametrize(
    ("operation", "scope"),
    [("list", "kubernetes:read"), ("kubeconfig", "kubernetes:access_cluster")],
)
def test_missing_scope_is_named(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps, operation: str, scope: str
) -> None:
    fake.scopes = frozenset({"kubernetes:read", "kubernetes:access_cluster"} - {scope})
    with pytest.raises(DigitalOceanAuthError) as caught:
        if operation == "list":
            client.find_cluster("staging")
        else:
            client.kubeconfig(fake.clusters[0].id, 300)
    message = str(caught.value)
    assert f"the token needs the {scope} scope" in message
    assert "You are not authorized to perform this operation" in message
    assert "HTTP 403" in message and fake.exchanges[0].response_headers["x-request-id"] in message
    assert len(fake.exchanges) == 1 and sleeps == []
    assert_secret_free(message, repr(caught.value))


def test_not_implemented_is_not_retried(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    fake.add_fault(Fault(501, times=None))
    with pytest.raises(DigitalOceanError) as caught:
        client.list_clusters()
    assert str(caught.value).startswith(
        "DigitalOcean refused to list Kubernetes clusters (not_implemented: Not implemented.)"
    )
    assert len(fake.exchanges) == 1 and sleeps == []


# --- retries -----------------------------------------------------------------------------------------


def test_rate_limit_with_retry_after_is_waited_out_then_succeeds(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    fake.add_fault(Fault(429, operation="list", times=2, retry_after="7"))
    cluster = client.find_cluster("production")
    assert cluster.region == "fra1"
    assert [e.status for e in fake.exchanges] == [429, 429, 200]
    assert sleeps == [7.0, 7.0]


def test_spent_quota_waits_until_ratelimit_reset(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    fake.add_fault(Fault(429, operation="kubeconfig", times=1, reset_in=20))
    client.kubeconfig(fake.clusters[0].id, 300)
    assert [e.status for e in fake.exchanges] == [429, 200]
    assert fake.exchanges[0].response_headers["ratelimit-remaining"] == "0"
    (wait,) = sleeps
    assert 17.0 <= wait <= 20.0


def test_server_error_is_retried_with_backoff(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    fake.add_fault(Fault(500, times=2))
    assert len(client.list_clusters()) == 2
    assert [e.status for e in fake.exchanges] == [500, 500, 200]
    assert len(sleeps) == 2
    assert 1.0 <= sleeps[0] <= 2.0 and 2.0 <= sleeps[1] <= 3.0  # 1 s, 2 s, each plus up to 1 s of jitter


def test_unavailable_forever_gives_up_after_bounded_attempts(fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps) -> None:
    fake.add_fault(Fault(503, times=None))
    with DigitalOceanAPI(TOKEN, fake.url, sleep=sleeps, max_attempts=5) as api:
        with pytest.raises(DigitalOceanError) as caught:
            api.kubeconfig(fake.clusters[0].id, 300)
    assert [e.status for e in fake.exchanges] == [503] * 5
    assert len(sleeps) == 4 and all(1.0 <= s <= 30.0 for s in sleeps)
    assert sleeps == sorted(sleeps)
    last_request_id = fake.exchanges[-1].response_headers["x-request-id"]
    assert str(caught.value) == (
        f"DigitalOcean failed while trying to issue a kubeconfig for cluster {fake.clusters[0].id} "
        "(service_unavailable: Service is temporarily unavailable.) (gave up after 5 attempts) "
        f"(HTTP 503, request id {last_request_id})"
    )
    assert caught.value.retryable and caught.value.exit_code == ExitCode.FAILURE


def test_retry_after_beyond_a_minute_gives_up_at_once(
    client: DigitalOceanAPI, fake: FakeDigitalOceanAPI, sleeps: RecordedSleeps
) -> None:
    fake.add_fault(Fault(429, times=None, retry_after="3600"))
    with pytest.raises(DigitalOceanError) as caught:
        client.list_clusters()
    assert len(fake.exchanges) == 1 and sleeps == []
    assert "rate limit exceeded" in str(caught.value)
    assert "asks to wait 1h, retry later" in str(caught.value)


def test_unreachable_api_is_retried_then_reported(sleeps: RecordedSleeps) -> None:
    # Bound but never listening: every connection is refused, and while it stays bound no other server (a
    # fake started by another thread or process) can take the port, as it could once the socket were closed.
    with socket.socket() as unreachable:
        unreachable.bind(("127.0.0.1", 0))
        port = unreachable.getsockname()[1]
        with DigitalOceanAPI(TOKEN, f"http://127.0.0.1:{port}", sleep=sleeps, max_attempts=3) as api:
            with pytest.raises(DigitalOceanError) as caught:
                api.list_clusters()
    assert str(caught.value) == (
        f"cannot reach the DigitalOcean API at http://127.0.0.1:{port} to list Kubernetes clusters: "
        "ConnectionError (gave up after 3 attempts)"
    )
    assert len(sleeps) == 2
    assert isinstance(caught.value.__cause__, Exception)
    assert_secret_free(str(caught.value), repr(caught.value), str(caught.value.__cause__))


# --- inputs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [TOKEN + "\n" + TOKEN, "tok en", "tok\x00en", "   "])
def test_unusable_token_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(OptionError) as caught:
        DigitalOceanAPI(bad, "https://api.digitalocean.com")
    assert str(caught.value).startswith("DIGITALOCEAN_ACCESS_TOKEN: ")
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert_secret_free(str(caught.value))
    assert "tok" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://api.digitalocean.com", True),
        ("https://proxy.internal:8443/do/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://proxy.internal:8080", False),
        ("ftp://api.digitalocean.com", False),
        ("api.digitalocean.com", False),
    ],
)
def test_api_url_must_not_send_the_token_in_clear_off_this_host(url: str, accepted: bool) -> None:
    if accepted:
        with DigitalOceanAPI(TOKEN, url) as api:
            assert api.api_url == url.rstrip("/")
            assert TOKEN not in repr(api)
        return
    with pytest.raises(OptionError) as caught:
        DigitalOceanAPI(TOKEN, url)
    assert str(caught.value).startswith("--digitalocean-api-url: ")


# --- the fake itself is checked against the OpenAPI excerpt --------------------------------------------


def test_openapi_check_rejects_a_malformed_list_response() -> None:
    exchange = Exchange(
        method="GET",
        path="/v2/kubernetes/clusters",
        query={"page": "1", "per_page": "200"},
        request_headers={"authorization": f"Bearer {TOKEN}"},
        operation="list",
        status=200,
        response_headers={"content-type": "application/json", "ratelimit-limit": "5000"},
        body=b'{"kubernetes_clusters": {"id": 1}}',
    )
    problems = openapi_problems(exchange)
    assert any(p.startswith("response: ") for p in problems)
    assert "header ratelimit-remaining is declared but missing" in problems


def test_openapi_check_rejects_a_kubeconfig_served_as_json_and_a_page_too_large() -> None:
    exchange = Exchange(
        method="GET",
        path="/v2/kubernetes/clusters/bd5f5959-5e1e-4205-a714-a914373942af/kubeconfig",
        query={"expiry_seconds": "300", "type": "token"},
        request_headers={"authorization": f"Bearer {TOKEN}"},
        operation="kubeconfig",
        status=200,
        response_headers={
            "content-type": "application/json",
            "ratelimit-limit": "5000",
            "ratelimit-remaining": "4999",
            "ratelimit-reset": "1700000000",
        },
        body=b"{}",
    )
    assert any(p.startswith("response: ") for p in openapi_problems(exchange))
    listing = Exchange(
        method="GET",
        path="/v2/kubernetes/clusters",
        query={"page": "1", "per_page": "500"},
        request_headers={"authorization": f"Bearer {TOKEN}"},
        operation="list",
        status=200,
        response_headers={},
        body=b'{"kubernetes_clusters": [], "meta": {"total": 0}}',
    )
    assert any(p.startswith("request: ") for p in openapi_problems(listing))


def test_a_netrc_entry_for_the_api_host_does_not_replace_the_token(
    fake: FakeDigitalOceanAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with DigitalOceanAPI(TOKEN, fake.url) as api:
        assert len(api.list_clusters()) == 2
    assert fake.exchanges[0].request_headers["authorization"] == f"Bearer {TOKEN}"
