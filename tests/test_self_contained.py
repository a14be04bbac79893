"""The repository holds every file its tests and tools read: no path in tests/ or bench/ climbs out of it.

A clone from GitHub has nothing beside it, so a path built to reach outside the checkout (the OpenAPI
excerpts once lay in ../shared/) works on one machine and fails with FileNotFoundError on every other.
.ci/run runs the suite on a copy with nothing beside it; the checks here name the offending line at once.

The scan follows how these files build paths: from ``__file__`` (``.parent``, ``.parents[k]``,
``os.path.dirname``), from a relative literal given to ``Path()``, ``open()`` or ``os.path.join()`` (relative
to the repository root, where the tests run), through a module-level name bound to such a path, and on
through ``/ "part"`` and ``os.path.join`` with literal parts. A path built from anything else (``tmp_path``,
the home directory) is not the repository's and is not judged.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fakes import digitalocean_api, github_api

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "bench")
OPENAPI_COPIES = ROOT / "tests" / "openapi"

# A location: parts relative to the repository root; a leading ".." means it lies outside.
Location = tuple[str, ...]


def _moved(location: Location, relative: str) -> Location:
    parts = list(location)
    for part in PurePosixPath(relative).parts:
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            else:
                parts.append("..")
        elif part not in (".", "/"):
            parts.append(part)
    return tuple(parts)


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _PathFinder:
    """Where the path expressions of one file point, as far as they are built from the repository."""

    def __init__(self, relative_file: str) -> None:
        self.file: Location = PurePosixPath(relative_file).parts
        self.names: dict[str, Location] = {}

    def location(self, node: ast.expr) -> Location | None:
        match node:
            case ast.Name(id="__file__"):
                return self.file
            case ast.Name(id=name):
                return self.names.get(name)
            case ast.Attribute(attr="parent", value=inner):
                return self._then(inner, "..")
            case ast.Subscript(value=ast.Attribute(attr="parents", value=inner), slice=ast.Constant(value=int(k))):
                return self._then(inner, "/".join([".."] * (k + 1)))
            case ast.BinOp(left=inner, op=ast.Div(), right=right) if (part := _text(right)) is not None:
                return self._then(inner, part)
            case ast.Call(func=ast.Attribute(attr="resolve" | "absolute", value=inner), args=[]):
                return self.location(inner)
            case ast.Call(func=ast.Name(id="Path" | "open") | ast.Attribute(attr="Path"), args=[first, *_]):
                return self._start(first)
            case ast.Call(func=ast.Attribute(attr="dirname"), args=[inner]):
                return self._then(inner, "..")
            case ast.Call(func=ast.Attribute(attr="join"), args=[first, *rest]):
                location = self._start(first)
                for part in rest:
                    if location is None or (text := _text(part)) is None:
                        return None
                    location = _moved(location, text)
                return location
        return None

    def _start(self, node: ast.expr) -> Location | None:
        text = _text(node)
        if text is None:
            return self.location(node)
        return None if text.startswith("/") else _moved((), text)

    def _then(self, inner: ast.expr, relative: str) -> Location | None:
        location = self.location(inner)
        return None if location is None else _moved(location, relative)


def escapes(relative_file: str, source: str) -> Iterator[str]:
    """``line: expression`` for each path expression of the file that points outside the repository."""
    tree = ast.parse(source)
    finder = _PathFinder(relative_file)
    for statement in tree.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            location = finder.location(statement.value)
            for target in targets:
                if isinstance(target, ast.Name) and location is not None:
                    finder.names[target.id] = location
    reported: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr):
            continue
        location = finder.location(node)
        if location and location[0] == ".." and node.lineno not in reported:
            reported.add(node.lineno)
            yield f"{node.lineno}: {ast.unparse(node)}"


@pytest.mark.parametrize(
    ("relative_file", "source", "outside"),
    [
        ("tests/fakes/github_api.py", 'SPEC = Path(__file__).resolve().parents[3] / "shared" / "a.json"', True),
        ("tests/fakes/github_api.py", 'SPEC = Path(__file__).resolve().parents[1] / "openapi" / "a.json"', False),
        ("tests/test_x.py", 'ROOT = Path(__file__).resolve().parent.parent\nDATA = ROOT / ".." / "shared"', True),
        ("tests/test_x.py", 'ROOT = Path(__file__).resolve().parent.parent\nDATA = ROOT / "README.md"', False),
        ("tests/test_x.py", 'def f():\n    return open("../shared/STYLE.md").read()', True),
        ("bench/x.py", 'D = os.path.join(os.path.dirname(__file__), "..", "..", "shared")', True),
        ("bench/x.py", 'D = os.path.join(os.path.dirname(__file__), "..", "tests")', False),
        ("tests/test_x.py", 'def f(tmp_path):\n    return tmp_path / ".." / "elsewhere"', False),
    ],
)
def test_the_scan_tells_a_path_out_of_the_repository_from_one_inside(
    relative_file: str, source: str, outside: bool
) -> None:
    assert bool(list(escapes(relative_file, source))) is outside


def test_no_test_or_tool_builds_a_path_outside_the_repository() -> None:
    files = sorted(path for directory in SCANNED for path in (ROOT / directory).rglob("*.py"))
    assert len(files) > 20, f"the scan found only {len(files)} files under {SCANNED}"
    found = {
        str(path.relative_to(ROOT)): problems
        for path in files
        if (problems := list(escapes(path.relative_to(ROOT).as_posix(), path.read_text())))
    }
    assert found == {}


def test_the_fakes_read_openapi_descriptions_kept_in_the_repository_with_their_origin() -> None:
    descriptions = [
        digitalocean_api.OPENAPI_ROOT,
        *(github_api.SPEC_DIRECTORY / name for name in github_api.SPEC_FILES),
    ]
    for description in descriptions:
        assert description.is_relative_to(OPENAPI_COPIES) and description.is_file(), description
        provider = OPENAPI_COPIES / description.relative_to(OPENAPI_COPIES).parts[0]
        assert (provider / "SOURCE.txt").is_file(), f"{provider} has no SOURCE.txt saying where its files came from"


def _references(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(document, list):
        for item in document:
            yield from _references(item)


def test_the_digitalocean_excerpt_resolves_within_its_copy() -> None:
    """Its files keep DigitalOcean's layout, so every relative $ref lands on a file of the copy."""
    copy = digitalocean_api.OPENAPI_ROOT.parents[1]
    yaml = YAML(typ="safe", pure=True)
    pending, seen = [digitalocean_api.OPENAPI_ROOT], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for reference in _references(yaml.load(current)):
            target, _, _ = reference.partition("#")
            if target:
                resolved = (current.parent / target).resolve()
                assert resolved.is_relative_to(copy) and resolved.is_file(), f"{current}: $ref {reference}"
                pending.append(resolved)
    assert len(seen) > 30, f"only {len(seen)} files reached from {digitalocean_api.OPENAPI_ROOT}"
