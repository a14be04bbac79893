"""deployer/ keeps a readable shape: no module over 500 lines, no function over 60.

A long module holds more than one job and a long function more than one decision; both are where the next
feature gets wedged in. The offenders of the day the limits came in are listed below as known debt. The list
only shrinks: a listed module or function that is back under its limit (or gone) fails too, so whoever pays a
debt off also strikes it from the list, and the list never names what is already fixed.

A function's length runs from its ``def`` line to its last line (``end_lineno - lineno + 1``), its decorators
not counted; a nested function or a method is measured on its own, as ``Outer.inner``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deployer"
MODULE_LINE_LIMIT = 500
FUNCTION_LINE_LIMIT = 60

# Known debt: modules over MODULE_LINE_LIMIT lines, as paths from the repository root.
MODULES_OVER_LIMIT: set[str] = set()

# Known debt: functions over FUNCTION_LINE_LIMIT lines, as "path::qualified name".
FUNCTIONS_OVER_LIMIT: set[str] = set()


def function_lengths(source: str) -> dict[str, int]:
    """Every function and method of a module's source, by qualified name, with its length in lines."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                assert child.end_lineno is not None  # always set by ast.parse
                lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def _modules() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def _module_lengths() -> dict[str, int]:
    return {name: len(source.splitlines()) for name, source in _modules()}


def _all_function_lengths() -> dict[str, int]:
    return {
        f"{module}::{function}": length
        for module, source in _modules()
        for function, length in function_lengths(source).items()
    }


def test_the_measure_counts_a_function_from_def_to_its_last_line() -> None:
    source = (
        "import functools\n"
        "\n"
        "@functools.cache\n"
        "def short():\n"
        "    return 1\n"
        "\n"
        "class Loop:\n"
        "    async def step(self):\n"
        "        def decide():\n"
        "            pass\n"
        "\n"
        "        return decide\n"
    )
    assert function_lengths(source) == {"short": 2, "Loop.step": 5, "Loop.step.decide": 2}


def test_the_scan_finds_the_package_modules() -> None:
    # A scan that finds nothing would pass every check below.
    assert {"deployer/cli.py", "deployer/errors.py"} <= set(_module_lengths())


def test_no_module_is_over_the_line_limit() -> None:
    too_long = {
        module: lines
        for module, lines in _module_lengths().items()
        if lines > MODULE_LINE_LIMIT and module not in MODULES_OVER_LIMIT
    }
    assert not too_long, "\n".join(
        f"{module} has {lines} lines, over the limit of {MODULE_LINE_LIMIT}: split it by what its parts do"
        for module, lines in sorted(too_long.items())
    )


def test_no_function_is_over_the_line_limit() -> None:
    too_long = {
        function: lines
        for function, lines in _all_function_lengths().items()
        if lines > FUNCTION_LINE_LIMIT and function not in FUNCTIONS_OVER_LIMIT
    }
    assert not too_long, "\n".join(
        f"{function} has {lines} lines, over the limit of {FUNCTION_LINE_LIMIT}: give its steps functions of their own"
        for function, lines in sorted(too_long.items())
    )


@pytest.mark.parametrize(
    ("known_debt", "limit", "measure"),
    [
        pytest.param(MODULES_OVER_LIMIT, MODULE_LINE_LIMIT, _module_lengths, id="modules"),
        pytest.param(FUNCTIONS_OVER_LIMIT, FUNCTION_LINE_LIMIT, _all_function_lengths, id="functions"),
    ],
)
def test_the_known_debt_lists_only_what_is_still_over_the_limit(
    known_debt: set[str], limit: int, measure: Callable[[], dict[str, int]]
) -> None:
    lengths = measure()
    paid_off = sorted(name for name in known_debt if lengths.get(name, 0) <= limit)
    assert not paid_off, "\n".join(
        f"{name} is no longer over {limit} lines (now {lengths[name]}): strike it from the known debt in "
        f"{Path(__file__).name}"
        if name in lengths
        else f"{name} no longer exists: strike it from the known debt in {Path(__file__).name}"
        for name in paid_off
    )
