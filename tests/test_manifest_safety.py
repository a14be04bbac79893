"""Manifests that would hang, crash or half-apply deployer are refused while rendering, as kubectl refuses them:
alias bombs, anchors that contain themselves, nesting past the documented depth, values JSON cannot carry.
And explicit YAML tags read as kubectl reads them (``!!binary`` as its decoded text, ``!!set`` as a mapping).

Each refusal is a one-line ManifestError naming the file and the document (exit code 2).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from deployer.errors import ManifestError, ManifestFieldError, ManifestSyntaxError
from deployer.manifest_yaml import MAX_NESTING_DEPTH, ManifestSource, allowed_alias_ratio, as_sent
from deployer.manifests import RenderOptions, render_objects
from tests.manifest_texts import HEAD, alias_bomb, nested


def _render(text: str, path: str = "k8s/app.yaml") -> list[dict[str, Any]]:
    return [obj.body for obj in render_objects([ManifestSource(path, text)], RenderOptions())]


def _refusal(text: str, path: str = "k8s/app.yaml") -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        _render(text, path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(path)
    assert caught.value.exit_code == 2
    return caught.value


# --- alias bombs ------------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_naming_file_document_and_line() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\n" + alias_bomb()
    error = _refusal(text)
    assert isinstance(error, ManifestSyntaxError)
    assert (error.document, error.line) == (2, 15)  # a4, where the expansion crosses go-yaml's ratio
    assert "excessive aliasing" in str(error) and "k8s/app.yaml:15:" in str(error) and "(document 2)" in str(error)


def test_aliases_used_as_people_use_them_are_accepted() -> None:
    # A shared block of env vars, aliased into many containers: heavy reuse, but no explosion.
    env = "  env: &env\n" + "".join(f"  - {{name: V{i}, value: '{i}'}}\n" for i in range(50))
    containers = "".join(f"    - {{name: c{i}, env: *env}}\n" for i in range(60))
    text = HEAD + "shared:\n" + env + "spec:\n  containers:\n" + containers
    (body,) = _render(text)
    assert len(body["spec"]["containers"]) == 60 and body["spec"]["containers"][59]["env"][49]["value"] == "49"


@pytest.mark.parametrize(
    ("nodes", "ratio"),
    [(0, 0.99), (400_000, 0.99), (2_200_000, 0.545), (4_000_000, 0.10), (10_000_000, 0.10)],
)
def test_the_allowed_alias_share_falls_from_99_to_10_percent_as_go_yaml_does(nodes: int, ratio: float) -> None:
    assert math.isclose(allowed_alias_ratio(nodes), ratio)


def test_an_anchor_that_contains_an_alias_to_itself_is_refused() -> None:
    error = _refusal(HEAD + "data: &loop\n  again: *loop\n")
    assert "the anchor 'loop' contains an alias to itself" in str(error)
    assert (error.document, error.line) == (1, 6)


# --- nesting --------------------------------------------------------------------------------------------


def test_nesting_up_to_the_documented_depth_is_accepted() -> None:
    (body,) = _render(nested(MAX_NESTING_DEPTH))
    assert isinstance(body["data"]["x"], list)


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 1, 5000, 200_000])
def test_nesting_past_the_documented_depth_is_a_one_line_error(depth: int) -> None:
    error = _refusal("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n" + nested(depth))
    assert error.document == 2 and error.line == 10
    assert f"nested deeper than {MAX_NESTING_DEPTH} levels" in str(error)


def test_block_nesting_counts_like_flow_nesting() -> None:
    lines = [f"{'  ' * level}k{level}:" for level in range(1, MAX_NESTING_DEPTH + 1)]
    error = _refusal(HEAD + "data:\n" + "\n".join(lines) + " leaf\n")
    assert f"nested deeper than {MAX_NESTING_DEPTH} levels" in str(error)


# --- what JSON can carry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field_path", "problem"),
    [
        ({"data": {"tags": {"a", "b"}}}, "data.tags", "a set value cannot be sent to the API as JSON"),
        ({"spec": {"ratios": [1.0, math.inf]}}, "spec.ratios[1]", "inf is not a number JSON can carry"),
        ({"data": {"raw": b"\xff"}}, "data.raw", "a bytes value cannot be sent to the API as JSON"),
    ],
)
def test_a_value_json_cannot_carry_names_its_field(document: dict[str, Any], field_path: str, problem: str) -> None:
    with pytest.raises(ManifestFieldError) as caught:
        as_sent(document, path="k8s/app.yaml", index=3)
    assert str(caught.value) == f"k8s/app.yaml (document 3): {field_path}: {problem}"


def test_the_objects_rendered_are_what_json_sends() -> None:
    (body,) = _render(HEAD + "data:\n  shared: &s {a: 1}\n  again: *s\n")
    assert body["data"]["shared"] == body["data"]["again"]
    assert body["data"]["shared"] is not body["data"]["again"]  # no aliasing survives into what is sent


# --- explicit tags, as kubectl reads them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("!!binary aGVsbG8=", "hello"),
        ("!!binary |\n    aGVs\n    bG8=", "hello"),
        ("!!timestamp 2024-01-01", "2024-01-01"),
        ("!!timestamp 2024-01-01T10:00:00.50Z", "2024-01-01T10:00:00.50Z"),
        ("!!set {a, b}", {"a": None, "b": None}),
        ("!!omap [a: 1, b: 2]", [{"a": 1}, {"b": 2}]),
        ("!!pairs [a: 1, b: 2]", [{"a": 1}, {"b": 2}]),
        ("!!str yes", "yes"),
        ("!!str [a]", ["a"]),
        ('!!int "0x1F"', 31),
        ("!!float 1", 1),
        ('!!bool "yes"', True),
        ('!!null ""', None),
        ("!!map x", "x"),
        ("!foo 5", "5"),
        ("!foo {a: 1}", {"a": 1}),
        ("{!!int 5: a, !!binary aGk=: b, !!bool yes: c}", {"5": "a", "hi": "b", "true": "c"}),
    ],
)
def test_an_explicit_tag_reads_as_kubectl_reads_it(value: str, sent: Any) -> None:
    (body,) = _render(HEAD + f"data:\n  v: {value}\n")
    assert body["data"]["v"] == sent


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("!!binary 'not base64!'", "the !!binary value is not valid base64 (kubectl refuses it too)"),
        ("!!binary aGVsbG8", "the !!binary value is not valid base64"),
        ("!!binary iVBORw0KGgo=", "the !!binary value is not UTF-8 text"),
        ("!!timestamp notadate", "'notadate' is not a !!timestamp"),
        ("!!timestamp 2024-02-30", "'2024-02-30' is not a !!timestamp"),
        ("!!int abc", "'abc' is not a !!int"),
        ("!!int 1.5", "'1.5' is not a !!int"),
        ("!!bool maybe", "'maybe' is not a !!bool"),
        ("!!null x", "'x' is not a !!null"),
        ("!!float .inf", ".inf is not a number JSON can carry"),
        ("{? [a]: b}", "a sequence cannot be a mapping key"),
    ],
)
def test_a_tagged_value_kubectl_refuses_is_refused_at_its_line(value: str, problem: str) -> None:
    error = _refusal(HEAD + f"data:\n  v: {value}\n")
    assert error.line == 6 and error.document == 1
    assert problem in str(error)


# --- duplicate keys --------------------------------------------------------------------------------------


def test_a_duplicate_key_is_reported_as_written() -> None:
    error = _refusal(HEAD + "data:\n  y: a\n  y: b\n")
    assert str(error) == 'k8s/app.yaml:7:3 (document 1): invalid YAML: duplicate key "y" (also at line 6)'


def test_two_spellings_of_one_key_are_both_named() -> None:
    error = _refusal(HEAD + 'data:\n  y: a\n  "true": b\n')
    assert 'duplicate key "true": the key "y" at line 6 is the same key "true" as kubectl reads them' in str(error)


def test_a_duplicate_key_does_not_print_the_values() -> None:
    error = _refusal("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  p: hunter2\n  p: s3cret\n")
    assert "hunter2" not in str(error) and "s3cret" not in str(error)
