"""What kubectl makes of an unquoted YAML scalar, so that deployer applies the values ``kubectl apply`` would.

kubectl reads manifests with sigs.k8s.io/yaml, which keeps go-yaml v2's YAML 1.1 habits where ruamel.yaml
follows YAML 1.2. The differences change what reaches the API server: ``defaultMode: 0644`` is octal (420),
not 644, which the API would refuse as a file mode; ``y``, ``yes`` and ``on`` are booleans, as keys too; and
``1e3`` travels as the JSON number 1000. The rules here were checked one by one against kubectl 1.32's
``create --dry-run=client -o json`` (tests/test_scalars.py keeps that check).

Explicit tags follow go-yaml v2 as kubectl runs it: ``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``
and ``!!timestamp`` read the text by the plain rules and refuse a value of another type; ``!!binary`` is
base64 that becomes the decoded text; every other tag (``!!set``, ``!!omap``, ``!foo``...) is ignored, so a
node reads as if it had none (a scalar as its text).

Pure: text in, value out. The YAML library's hooks that call this live in manifest_yaml.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
import struct

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

# go-yaml v2's timestamp layouts (Go's "2006-1-2T15:4:5.999999999Z07:00", the same with a lower-case "t" or
# a space and no zone, and "2006-1-2"); an explicit !!timestamp must match one, and is sent as its text.
_TIMESTAMP = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})"
    r"(?:(?:[Tt](?P<time>[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?)(?:Z|[-+][0-9]{2}:[0-9]{2}))"
    r"|(?: (?P<local>[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?)))?\Z"
)
# What a scalar becomes in the JSON kubectl sends.
Scalar = str | int | float | bool | None

_TAG_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (float, int),
    "null": (type(None),),
}

_INT64 = range(-(2**63), 2**63)
_UINT64 = range(2**64)
# encoding/json writes a float64 without a fraction or exponent below this magnitude: 1e3 goes out as 1000.
_JSON_PLAIN_FLOAT_LIMIT = 1e21


def plain_scalar(text: str) -> Scalar:
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


def _number(plain: str, text: str) -> int | float | str:
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


def json_key(key: object) -> str:
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


def tagged_scalar(tag: str, text: str) -> Scalar:
    """The value of a scalar written with the standard tag ``!!<tag>``, as kubectl reads it.

    Raises ValueError, naming the text and the tag, where kubectl refuses the value: a text of another
    type (``!!int abc``), a date that is none, base64 that is not. Tags outside these give the text.
    """
    if tag == "binary":
        return binary_text(text)
    if tag == "timestamp":
        if not is_timestamp(text):
            raise ValueError(f"{text!r} is not a !!timestamp (kubectl refuses it too)")
        return text  # kubectl sends a timestamp as it is written
    wanted = _TAG_TYPES.get(tag)
    if wanted is None:
        return text
    value = plain_scalar(text)
    # bool is an int in Python, not in YAML: !!int true is refused, as kubectl refuses it.
    if not isinstance(value, wanted) or (isinstance(value, bool) and tag != "bool"):
        raise ValueError(f"{text!r} is not a !!{tag} (kubectl refuses it too)")
    return float(value) if isinstance(value, int) and tag == "float" else value


def binary_text(text: str) -> str:
    """The text a ``!!binary`` scalar holds: its base64 decoded, as kubectl sends it (a JSON string).

    Raises ValueError for base64 kubectl refuses, and for bytes that are not UTF-8 text: kubectl would
    send each such byte as U+FFFD, silently mangling the data, so deployer refuses it instead.
    """
    # Go's base64.StdEncoding, which go-yaml uses, skips line breaks and nothing else.
    try:
        data = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except binascii.Error:
        raise ValueError("the !!binary value is not valid base64 (kubectl refuses it too)") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            "the !!binary value is not UTF-8 text, which the API cannot take in a string field "
            "(kubectl would send it mangled): put binary data, base64-encoded without the tag, under a "
            "ConfigMap's binaryData or a Secret's data"
        ) from None


def is_timestamp(text: str) -> bool:
    """Whether go-yaml takes ``text`` as a !!timestamp: one of its layouts, and a real date and time."""
    match = _TIMESTAMP.match(text)
    if match is None:
        return False
    clock = match.group("time") or match.group("local") or "0:0:0"
    hours, minutes, seconds = (int(float(part)) for part in clock.split(":"))
    try:
        datetime.datetime(int(match.group("year")), int(match.group("month")), int(match.group("day")))
    except ValueError:
        return False
    return hours < 24 and minutes < 60 and seconds < 60
