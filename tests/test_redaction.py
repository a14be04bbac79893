"""deployer/redaction.py: which pieces of a secret are hidden, and how a line reads once they are."""

from __future__ import annotations

import pytest

from deployer.redaction import redact, secret_pieces

KEY = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"


@pytest.mark.parametrize(
    ("values", "pieces"),
    [
        ([None, "", "abc"], []),
        (["s3cret-token"], ["s3cret-token"]),
        (["short", "a-longer-secret"], ["a-longer-secret", "short"]),
        (["same-secret", "same-secret"], ["same-secret"]),
        ([KEY], [KEY, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "-----BEGIN KEY-----", "-----END KEY-----"]),
        (["line-one\nab\n"], ["line-one\nab\n", "line-one"]),
    ],
)
def test_secret_pieces_are_each_secret_and_its_lines_longest_first(values: list[str | None], pieces: list[str]) -> None:
    assert secret_pieces(values) == pieces


@pytest.mark.parametrize(
    ("text", "values", "redacted"),
    [
        ("token=s3cret-token, again s3cret-token", ["s3cret-token"], "token=***, again ***"),
        ("nothing secret here", ["s3cret-token"], "nothing secret here"),
        ("quoted: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", [KEY], "quoted: ***"),
        ("the whole s3cret-token-long", ["s3cret", "s3cret-token-long"], "the whole ***"),
        ("abc is too short to hide", ["abc"], "abc is too short to hide"),
    ],
)
def test_redact_replaces_every_piece_by_stars(text: str, values: list[str], redacted: str) -> None:
    assert redact(text, secret_pieces(values)) == redacted
