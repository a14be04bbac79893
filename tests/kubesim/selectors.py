"""Label and field selectors: parsing the query-string forms and matching objects against them.

Pure functions over plain dicts; no I/O. A selector that does not parse raises ``SelectorError`` with
the text the API server would put in a 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """The selector text does not parse."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects without the label, as the API server does.
        return not present or value not in self.values


LabelMatcher = Callable[[dict[str, str]], bool]

_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|[^\s(),!=]+)")


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse "app=web,tier in (a,b),!legacy,env" into requirements."""
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    if "".join(tokens) != re.sub(r"\s+", "", text):
        raise SelectorError(f"unable to parse requirement: {text!r}")
    requirements: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end of {text!r}")
        token = tokens[i]
        i += 1
        return token

    while i < len(tokens):
        token = take()
        if token == "!":
            requirements.append(Requirement(take(), "!"))
        else:
            key = token
            nxt = tokens[i] if i < len(tokens) else ","
            if nxt == ",":
                requirements.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                i += 1
                value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                if value:
                    i += 1
                requirements.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
            elif nxt in ("in", "notin"):
                i += 1
                if take() != "(":
                    raise SelectorError(f"unable to parse requirement: expected '(' after {nxt} in {text!r}")
                values: list[str] = []
                while True:
                    item = take()
                    if item == ")":
                        break
                    if item == ",":
                        continue
                    values.append(item)
                requirements.append(Requirement(key, nxt, tuple(values)))
            else:
                raise SelectorError(f"unable to parse requirement: found {nxt!r} after {key!r} in {text!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"unable to parse requirement: expected ',' in {text!r}")
            i += 1
    return requirements


def labels_match(requirements: list[Requirement], labels: dict[str, str] | None) -> bool:
    actual = labels or {}
    return all(r.matches(actual) for r in requirements)


def label_selector_requirements(selector: dict[str, Any] | None) -> list[Requirement]:
    """The requirements of a LabelSelector object (matchLabels + matchExpressions)."""
    if not selector:
        return []
    requirements = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        operator = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(
            expression.get("operator", ""), ""
        )
        if not operator:
            raise SelectorError(f"{expression.get('operator')!r} is not a valid label selector operator")
        requirements.append(
            Requirement(expression.get("key", ""), operator, tuple(str(v) for v in expression.get("values") or []))
        )
    return requirements


def selector_matches_labels(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Whether a LabelSelector object selects these labels; an empty selector selects everything."""
    return labels_match(label_selector_requirements(selector), labels)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    equal: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        current: Any = obj
        for part in self.path:
            current = current.get(part) if isinstance(current, dict) else None
        actual = "" if current is None else (str(current).lower() if isinstance(current, bool) else str(current))
        return (actual == self.value) == self.equal


def parse_field_selector(text: str) -> list[FieldRequirement]:
    """Parse "metadata.name=web,involvedObject.uid!=x"; any dotted path is accepted."""
    requirements: list[FieldRequirement] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)", part)
        if not match:
            raise SelectorError(f"invalid selector: {text!r}; can't understand {part!r}")
        path, operator, value = match.groups()
        requirements.append(FieldRequirement(tuple(path.split(".")), operator != "!=", value))
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)
