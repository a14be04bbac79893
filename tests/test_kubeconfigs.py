"""deployer.kubeconfigs: merging a KUBECONFIG list and choosing the context, as tables over plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.errors import OptionError
from deployer.kubeconfigs import merge_kubeconfigs, parse_kubeconfig, select_context


def config(name: str, *, current: str | None = None, server: str = "https://a.example") -> dict[str, Any]:
    made: dict[str, Any] = {
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": f"token-{name}"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    if current:
        made["current-context"] = current
    return made


def test_the_first_config_that_names_an_entry_or_the_current_context_wins() -> None:
    merged = merge_kubeconfigs(
        [config("a", server="https://first.example"), config("a", current="a", server="https://second.example")]
    )
    assert merged["clusters"] == [{"name": "a", "cluster": {"server": "https://first.example"}}]
    assert merged["current-context"] == "a"


@pytest.mark.parametrize(
    ("given", "asked", "chosen"),
    [
        (config("a", current="a"), None, "a"),
        (config("only"), None, "only"),
        (merge_kubeconfigs([config("a"), config("b", current="b")]), "a", "a"),
    ],
)
def test_select_context_takes_the_flag_then_current_context_then_the_only_one(
    given: dict[str, Any], asked: str | None, chosen: str
) -> None:
    assert select_context(given, asked, source="kubeconfig k") == chosen
    assert given["current-context"] == chosen


@pytest.mark.parametrize(
    ("given", "asked", "problem"),
    [
        (config("a"), "b", 'no context "b" in kubeconfig k; available: a'),
        (config("a", current="gone"), None, 'current-context "gone" of kubeconfig k is not defined; available: a'),
        (merge_kubeconfigs([config("a"), config("b")]), None, "kubeconfig k sets no current-context"),
    ],
)
def test_select_context_names_what_is_missing(given: dict[str, Any], asked: str | None, problem: str) -> None:
    with pytest.raises(OptionError) as caught:
        select_context(given, asked, source="kubeconfig k")
    assert caught.value.flag == "--kube-context"
    assert problem in str(caught.value)


def test_a_yaml_error_gives_the_position_and_never_the_text() -> None:
    with pytest.raises(OptionError) as caught:
        parse_kubeconfig(
            "users:\n- name: u\n  user: {token: s3cret-token\n", source="kubeconfig k", flag="--kubeconfig"
        )
    assert "kubeconfig k is not valid YAML at line" in str(caught.value)
    assert "s3cret-token" not in str(caught.value)
