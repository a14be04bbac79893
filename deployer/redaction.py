"""How a secret is kept out of text deployer shows: each occurrence becomes ``***``.

Pure: no I/O. The one rule for every place that quotes text which may hold a secret (the console, the
registry's and the engine's messages, the DigitalOcean API's): ``***`` is what the GitHub Actions runner
shows for a masked value, so a line reads the same whether we or the runner hid the secret.

Must not: decide what is secret (callers pass what they hold) or register masks with the runner
(deployer/workflow_commands.py writes ``::add-mask::``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

REDACTED = "***"
# Shorter than this, a "secret" would star out ordinary words and numbers in every line.
MIN_SECRET_LENGTH = 4


def secret_pieces(values: Iterable[str | None]) -> list[str]:
    """The strings to hide for ``values``, longest first: each value whole, and each line of a multi-line one
    on its own, as the runner masks them (one line of a key quoted in an error message must not leak).
    Longest first, so that a piece replaced early cannot break up a longer secret that contains it."""
    pieces: dict[str, None] = {}
    for value in values:
        if not value or len(value) < MIN_SECRET_LENGTH:
            continue
        for piece in (value, *(line.strip() for line in value.splitlines())):
            if len(piece) >= MIN_SECRET_LENGTH:
                pieces[piece] = None
    return sorted(pieces, key=len, reverse=True)


def redact(text: str, pieces: Sequence[str]) -> str:
    """``text`` with every occurrence of each of ``pieces`` (from secret_pieces) replaced by ``***``."""
    for piece in pieces:
        text = text.replace(piece, REDACTED)
    return text
