"""Settings and what follows from them: durations, KEY=VALUE pairs, the image target, the change-cause."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.commits import Commit, GitState
from deployer.errors import ImageReferenceError, OptionError, RevisionError
from deployer.images import parse_image_reference
from deployer.settings import (
    ClusterSettings,
    GitHubSettings,
    ImageSettings,
    ImageTarget,
    RunSettings,
    change_cause,
    check_run_settings,
    format_duration,
    parse_duration,
    parse_key_values,
    resolve_image_target,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
PR_HEAD = "fedcba9876543210fedcba9876543210fedcba98"
ACTIONS_ENV = {"GITHUB_REPOSITORY": "Acme-Corp/Hello-App", "GITHUB_SHA": SHA}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("600", 600.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("1m500ms", 60.5),
        (" 5m ", 300.0),
    ],
)
def test_parse_duration_reads_kubectl_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--timeout") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1.94831, "1.9s"),
        (2.0, "2s"),
        (0.04, "0s"),
        (12.5, "12.5s"),
        (59.96, "1m"),
        (75.4, "1m15s"),
        (600, "10m"),
        (5400, "1h30m"),
        (3661, "1h1m1s"),
    ],
)
def test_format_duration_prints_a_tenth_of_a_second_below_a_minute_and_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, "--timeout") == pytest.approx(seconds, abs=0.5)


@pytest.mark.parametrize("text", ["", "10x", "m", "1h 30m", "-5s", "5S", "ten minutes", "5m garbage", "1.s"])
def test_parse_duration_rejects_text_naming_the_flag(text: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_duration(text, "--rollback-timeout")
    assert str(caught.value).startswith("--rollback-timeout: ")
    assert "is not a duration" in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "maximum"),
    [
        ("99999999999999h", 24 * 3600.0),  # overflowed the wait's clock arithmetic once the rollout had begun
        ("86401", 24 * 3600.0),
        ("24h1ms", 24 * 3600.0),
        ("9" * 400, 24 * 3600.0),  # a float of infinity
        ("169h", 7 * 24 * 3600.0),
    ],
)
def test_parse_duration_refuses_a_duration_beyond_the_maximum_naming_flag_and_limit(text: str, maximum: float) -> None:
    with pytest.raises(OptionError) as caught:
        parse_duration(text, "--tolerate-failures-for", maximum)
    limit = format_duration(maximum)
    assert str(caught.value) == f"--tolerate-failures-for: {text!r} is longer than the maximum of {limit}"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400.0), ("86400", 86400.0), ("0", 0.0)])
def test_parse_duration_accepts_the_maximum_itself_and_zero(text: str, seconds: float) -> None:
    assert parse_duration(text, "--timeout") == seconds


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        (["A=1"], {"A": "1"}),
        (["A=1", "B="], {"A": "1", "B": ""}),
        (["URL=https://x/?a=b=c"], {"URL": "https://x/?a=b=c"}),
        ([" KEY =value with spaces"], {"KEY": "value with spaces"}),
        (["A=1", "A=2"], {"A": "2"}),
    ],
)
def test_parse_key_values_splits_at_the_first_equals(pairs: list[str], expected: dict[str, str]) -> None:
    assert parse_key_values(pairs, "--build-arg") == expected


@pytest.mark.parametrize("pair", ["NOVALUE", "=value", " =value", ""])
def test_parse_key_values_rejects_pairs_without_key_naming_the_flag(pair: str) -> None:
    with pytest.raises(OptionError, match=r"^--build-arg: .* is not of the form KEY=VALUE"):
        parse_key_values(["OK=1", pair], "--build-arg")


@pytest.mark.parametrize(
    ("settings", "env", "event", "git", "expected", "expected_sha"),
    [
        (ImageSettings(), ACTIONS_ENV, None, GitState(), "ghcr.io/acme-corp/hello-app:0123456", SHA),
        (ImageSettings(sha_length=12), ACTIONS_ENV, None, GitState(), "ghcr.io/acme-corp/hello-app:0123456789ab", SHA),
        (ImageSettings(tag="v1.2.3"), ACTIONS_ENV, None, GitState(), "ghcr.io/acme-corp/hello-app:v1.2.3", None),
        (ImageSettings(name="Site"), ACTIONS_ENV, None, GitState(), "ghcr.io/acme-corp/site:0123456", SHA),
        (
            ImageSettings(registry="127.0.0.1:5000"),
            ACTIONS_ENV,
            None,
            GitState(),
            "127.0.0.1:5000/acme-corp/hello-app:0123456",
            SHA,
        ),
        (
            ImageSettings(repository="localhost:5000/team/web"),
            {},
            None,
            GitState(head=SHA, dirty=True),
            "localhost:5000/team/web:0123456-dirty",
            SHA,
        ),
        (
            ImageSettings(),
            {**ACTIONS_ENV, "GITHUB_EVENT_NAME": "pull_request"},
            {"pull_request": {"head": {"sha": PR_HEAD}}},
            GitState(),
            "ghcr.io/acme-corp/hello-app:fedcba9",
            PR_HEAD,
        ),
        (
            ImageSettings(),
            {},
            None,
            GitState(head=SHA, origin_url="git@github.com:Someone/Thing.git"),
            "ghcr.io/someone/thing:0123456",
            SHA,
        ),
        (ImageSettings(repository="ghcr.io/acme/web", tag="test"), {}, None, GitState(), "ghcr.io/acme/web:test", None),
    ],
)
def test_resolve_image_target_builds_registry_owner_name_and_short_sha(
    settings: ImageSettings,
    env: dict[str, str],
    event: dict[str, Any] | None,
    git: GitState,
    expected: str,
    expected_sha: str | None,
) -> None:
    target = resolve_image_target(settings, env, event, git)
    assert str(target.reference) == expected
    assert (target.commit.sha if target.commit else None) == expected_sha


def test_resolve_image_target_adds_extra_tags_without_repeating_the_main_tag() -> None:
    settings = ImageSettings(extra_tags=("latest", "0123456", "stable"))
    target = resolve_image_target(settings, ACTIONS_ENV, None, GitState())
    assert [str(ref) for ref in target.extra_references] == [
        "ghcr.io/acme-corp/hello-app:latest",
        "ghcr.io/acme-corp/hello-app:stable",
    ]


@pytest.mark.parametrize(
    ("settings", "env", "git", "error", "message"),
    [
        (ImageSettings(repository="ghcr.io/acme/web:v1"), {}, GitState(), OptionError, "^--image: .*use --tag"),
        (
            ImageSettings(repository="ghcr.io/acme/web@sha256:" + "a" * 64),
            {},
            GitState(),
            OptionError,
            "^--image: ",
        ),
        (ImageSettings(repository="ghcr.io/Acme/web"), {}, GitState(), ImageReferenceError, "must be lowercase"),
        (ImageSettings(tag="bad tag!"), ACTIONS_ENV, GitState(), ImageReferenceError, "tag 'bad tag!'"),
        (ImageSettings(extra_tags=("no good",)), ACTIONS_ENV, GitState(), ImageReferenceError, "'no good'"),
        (ImageSettings(), {}, GitState(), RevisionError, "cannot tell the image owner"),
        (ImageSettings(repository="ghcr.io/acme/web"), {}, GitState(), RevisionError, "cannot tell which commit"),
        (ImageSettings(tag="v1"), {}, GitState(origin_url="https://example.com/x.git"), RevisionError, "--image"),
    ],
)
def test_resolve_image_target_errors_name_the_missing_or_bad_part(
    settings: ImageSettings, env: dict[str, str], git: GitState, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        resolve_image_target(settings, env, None, git)


@pytest.mark.parametrize(
    ("commit", "env", "run_url", "expected"),
    [
        (
            Commit(SHA, False, "GITHUB_SHA"),
            {"USER": "ci"},
            "https://github.com/acme/web/actions/runs/42",
            "deployer: ghcr.io/acme/web:0123456 from commit 0123456789ab (https://github.com/acme/web/actions/runs/42)",
        ),
        (
            Commit(SHA, True, "git"),
            {"USER": "alice"},
            None,
            "deployer: ghcr.io/acme/web:0123456 from commit 0123456789ab by alice",
        ),
        (None, {}, None, "deployer: ghcr.io/acme/web:0123456"),
    ],
)
def test_change_cause_names_image_commit_and_run(
    commit: Commit | None, env: dict[str, str], run_url: str | None, expected: str
) -> None:
    target = ImageTarget(reference=parse_image_reference("ghcr.io/acme/web:0123456"), commit=commit)
    assert change_cause(target, env, run_url) == expected


@pytest.mark.parametrize(
    "settings",
    [
        ImageSettings(registry_password="hunter2-registry"),
        ClusterSettings(digitalocean_token="dop_v1_secret", kubeconfig_data="apiVersion: v1 token: kube-secret"),
        GitHubSettings(token="ghp_secrettoken"),
    ],
)
def test_secrets_never_appear_in_settings_repr(settings: object) -> None:
    text = repr(settings)
    for secret in ("hunter2-registry", "dop_v1_secret", "kube-secret", "ghp_secrettoken"):
        assert secret not in text


@pytest.mark.parametrize(
    "settings",
    [
        RunSettings(),
        RunSettings(
            namespace="shop-1", image_refs={"db": "postgres:16", "cache": "127.0.0.1:5055/redis@sha256:" + "a" * 64}
        ),
        RunSettings(
            image=ImageSettings(registry="127.0.0.1:5055", name="Hello_App", tag="v1.2", extra_tags=("latest",))
        ),
        RunSettings(image=ImageSettings(registry="not a registry", repository="ghcr.io/acme/web")),  # --image wins
        RunSettings(namespace=""),  # the kubeconfig context's namespace, as kubectl takes it
    ],
)
def test_check_run_settings_accepts_what_a_registry_and_the_api_server_take(settings: RunSettings) -> None:
    check_run_settings(settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (RunSettings(placeholder=""), "^--placeholder: must not be empty"),
        (RunSettings(placeholder="  "), "^--placeholder: must not be empty"),
        (RunSettings(namespace="Shop"), "^--namespace: 'Shop' has uppercase letters; it must be a DNS-1123 label"),
        (RunSettings(namespace="shop.eu"), "^--namespace: 'shop.eu' is not a DNS-1123 label"),
        (RunSettings(namespace="n" * 64), "^--namespace: 'n{64}' is 64 characters long"),
        (RunSettings(image_refs={"db": "NOT VALID"}), "^--image-ref: db='NOT VALID': path component 'NOT VALID'"),
        (RunSettings(image_refs={"db": ""}), "^--image-ref: db='': empty"),
        (RunSettings(image=ImageSettings(registry="127.0.0.1:99999")), "^--registry: .*port 99999, outside 1-65535"),
        (RunSettings(image=ImageSettings(registry="bad_host.io:x")), "^--registry: .*not a valid host"),
        (RunSettings(image=ImageSettings(repository="ghcr.io/Acme/web")), "^--image: .*must be lowercase"),
        (RunSettings(image=ImageSettings(name="my app")), "^--image-name: 'my app'"),
        (RunSettings(image=ImageSettings(tag="bad tag!")), "^--tag: 'bad tag!'"),
        (RunSettings(image=ImageSettings(extra_tags=("latest", "-x"))), "^--extra-tag: '-x'"),
    ],
)
def test_check_run_settings_names_the_flag_of_a_value_that_would_fail_only_after_the_push(
    settings: RunSettings, message: str
) -> None:
    with pytest.raises(OptionError, match=message) as caught:
        check_run_settings(settings)
    assert caught.value.exit_code == 2
