"""What kubectl makes of an unquoted YAML scalar, so that deployer applies the values ``kubectl apply`` would.

kubectl reads manifests with sigs.k8s.io/yaml, which keeps go-yaml v2's YAML 1.1 habits where ruamel.yaml
follows YAML 1.2. The differences change what reaches the API server: ``defaultMode: 0644`` is octal (420),
not 644, which the API would refuse as a file mode; ``y``, ``yes`` and ``on`` are booleans, as keys too; and
``1e3`` travels as the JSON number 1000. The rules here were checked one by one against kubectl 1.32's
``create --dry-run=client -o json`` (tests/test_scalars.py keeps that check).

Pure: text in, value out. The YAML library's hooks that call this live in manifests.py.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE = frozenset({"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}

# Go's strconv.ParseInt with base 0: 0x, 0o and 0b prefixes, and a bare leading 0 for octal.
_GO_INTEGER = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_BASES = {"x": 16, "o": 8, "b": 2}
# go-yaml v2's yamlStyleFloat: no "inf", "nan" or hex floats, which Go's ParseFloat alone would take.
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
# Go's ParseFloat, for scalars that start with ".": digits with an optional exponent.
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?\Z")

_INT64 = range(-(2**63), 2**63)
_UINT64 = range(2**64)
# encoding/json writes a float64 without a fraction or exponent below this magnitude: 1e3 goes out as 1000.
_JSON_PLAIN_FLOAT_LIMIT = 1e21


def plain_scalar(text: str) -> Any:
    """The value of an unquoted scalar as kubectl reads it: None, bool, int, float or the text itself.

    Timestamps stay text, as kubectl sends them. NaN and infinities come back as floats; json_number
    refuses them, as kubectl does.
    """
    if not text:
        return None
    first = text[0]
    if first in "yYnNtTfFoO~":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return None if text in _NULL else text
    if first == ".":
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        return float(text) if _DOT_FLOAT.match(text) else text
    if first in "+-" or first.isdigit():
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        return _number(text.replace("_", ""), text)
    return text


def _number(plain: str, text: str) -> Any:
    integer = _GO_INTEGER.match(plain)
    if integer is not None:
        sign, digits = integer.groups()
        if len(digits) > 1 and digits[0] == "0":
            base = _BASES.get(digits[1].lower(), 8)
            digits = digits[2:] if base != 8 or digits[1] in "oO" else digits[1:]
        else:
            base = 10
        value = int(digits or "0", base) * (-1 if sign == "-" else 1)
        # Past int64, Go's unsigned parse takes what it can (no sign allowed); the rest is a float below.
        if value in _INT64 or (value in _UINT64 and not sign):
            return value
    if _YAML_FLOAT.match(plain):
        return float(plain)
    return text


def json_number(value: float) -> int | float:
    """A float as the JSON kubectl sends carries it: 1000.0 as 1000. Raises ValueError for NaN and infinity."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value} is not a JSON number")
    if value.is_integer() and abs(value) < _JSON_PLAIN_FLOAT_LIMIT:
        return int(value)
    return value


def json_key(key: Any) -> str:
    """A mapping key as text, the way sigs.k8s.io/yaml turns a non-string key into a JSON object key.

    Raises ValueError for keys JSON cannot name (null, a list, a mapping), as kubectl does.
    """
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return _go_float32_text(key)
    raise ValueError(f"a {type(key).__name__} cannot be a mapping key")


def _go_float32_text(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'g', -1, 32), which sigs.k8s.io/yaml uses for float keys."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    single = struct.unpack("f", struct.pack("f", value))[0]
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    # The fewest significant digits that read back as the same float32.
    for precision in range(1, 10):
        digits = f"{single:.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(digits)))[0] == single:
            break
    mantissa, exponent_text = digits.split("e")
    exponent = int(exponent_text)
    significant = mantissa.replace(".", "").lstrip("-").rstrip("0") or "0"
    sign = "-" if single < 0 else ""
    # With the shortest precision, Go's 'g' writes an exponent below 1e-4 and from 1e6 on.
    if exponent < -4 or exponent >= 6:
        fraction = f".{significant[1:]}" if len(significant) > 1 else ""
        return f"{sign}{significant[0]}{fraction}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{significant}"
    whole = significant[: exponent + 1].ljust(exponent + 1, "0")
    fraction = significant[exponent + 1 :]
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"
