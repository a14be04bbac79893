"""Manifest texts that attack a YAML reader, for the unit and the end-to-end tests; imports nothing of deployer."""

from __future__ import annotations

HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The billion laughs: each level a list of ``width`` aliases to the level below (9**9 strings)."""
    lines = ["data:", '  a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return HEAD + "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    """A ConfigMap whose data nests flow sequences until the whole document is ``depth`` levels deep."""
    inner = depth - 2  # the document's mapping and data's mapping are two levels
    return HEAD + "data:\n  x: " + "[" * inner + "]" * inner + "\n"
