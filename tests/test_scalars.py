"""deployer must send the values ``kubectl apply`` sends: the same manifest, the same objects.

The tables pin kubectl's reading of unquoted scalars (YAML 1.1 booleans and octals, Go's number syntax);
the last tests hold them, through render_objects, against the real kubectl's client-side dry run (kubectl
reads the kinds from the real API server of tests/controlplane/; the objects it prints are its own reading, sent
nowhere: a server's dry run would drop the fields the tables are in).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deployer import scalars
from deployer.errors import ManifestSyntaxError
from deployer.manifest_yaml import ManifestSource
from deployer.manifests import RenderOptions, render_objects
from tests.controlplane import ControlPlane


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # booleans: YAML 1.1's words, one letter included
        ("yes", True),
        ("Yes", True),
        ("YES", True),
        ("y", True),
        ("Y", True),
        ("on", True),
        ("ON", True),
        ("true", True),
        ("True", True),
        ("no", False),
        ("n", False),
        ("N", False),
        ("off", False),
        ("Off", False),
        ("false", False),
        ("FALSE", False),
        # not booleans
        ("yES", "yES"),
        ("tRUE", "tRUE"),
        ("oN", "oN"),
        ("yep", "yep"),
        ("nope", "nope"),
        # null
        ("", None),
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("nULL", "nULL"),
        # integers: a leading 0 is octal, Go's prefixes, underscores anywhere
        ("0644", 420),
        ("0755", 493),
        ("0_644", 420),
        ("00", 0),
        ("0", 0),
        ("-012", -10),
        ("0o17", 15),
        ("0O17", 15),
        ("0x1F", 31),
        ("0X1f", 31),
        ("-0x1F", -31),
        ("+0x1F", 31),
        ("0x_1F", 31),
        ("0b101", 5),
        ("0b_11", 3),
        ("1_000", 1000),
        ("1__0", 10),
        ("+12", 12),
        ("-0", 0),
        ("42", 42),
        ("9223372036854775807", 2**63 - 1),
        ("12345678901234567890", 12345678901234567890),
        # floats: Go's syntax; not an octal, so a float
        ("08", 8.0),
        ("08.5", 8.5),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("1.", 1.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("-.5", -0.5),
        (".5e1", 5.0),
        ("1e-7", 1e-7),
        ("99999999999999999999", 1e20),
        ("-9223372036854775809", -9223372036854775809.0),
        # text: no sexagesimal, no timestamps, no half-numbers
        ("1:20", "1:20"),
        ("190:20:30", "190:20:30"),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01 10:00:00", "2024-01-01 10:00:00"),
        ("0x", "0x"),
        ("0o", "0o"),
        ("0o8", "0o8"),
        ("-", "-"),
        ("+", "+"),
        (".", "."),
        ("._5", "._5"),
        ("+inf", "+inf"),
        ("1.2.3", "1.2.3"),
        ("v1", "v1"),
        ("<IMAGE>", "<IMAGE>"),
        ("nginx:1.25", "nginx:1.25"),
        ("12Mi", "12Mi"),
        ("100m", "100m"),
    ],
)
def test_an_unquoted_scalar_reads_as_kubectl_reads_it(text: str, value: Any) -> None:
    read = scalars.plain_scalar(text)
    assert read == value and type(read) is type(value)


def test_infinities_and_nan_are_read_but_cannot_become_json() -> None:
    assert scalars.plain_scalar(".inf") == math.inf and scalars.plain_scalar("-.Inf") == -math.inf
    assert math.isnan(scalars.plain_scalar(".NaN"))
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="not a JSON number"):
            scalars.json_number(value)


@pytest.mark.parametrize(
    ("value", "number"),
    [(1000.0, 1000), (0.0, 0), (-5.0, -5), (0.5, 0.5), (1e20, 10**20), (1e21, 1e21), (1e-7, 1e-7)],
)
def test_a_whole_float_travels_as_an_integer_below_json_exponent_notation(value: float, number: float) -> None:
    sent = scalars.json_number(value)
    assert sent == number and type(sent) is type(number)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("name", "name"),
        (True, "true"),
        (False, "false"),
        (16, "16"),
        (-3, "-3"),
        (1.5, "1.5"),
        (7.0, "7"),
        (0.1, "0.1"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (-0.0, "-0"),
        (math.inf, ".inf"),
    ],
)
def test_a_mapping_key_becomes_the_text_kubectl_gives_it(key: Any, text: str) -> None:
    assert scalars.json_key(key) == text


def test_a_null_key_is_refused() -> None:
    with pytest.raises(ValueError, match="NoneType cannot be a mapping key"):
        scalars.json_key(None)


# --- through render_objects ---------------------------------------------------------------------------------

SECRET_VOLUME = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1e0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: <IMAGE>
        env:
        - name: FEATURE
          value: "yes"
      volumes:
      - name: tls
        secret:
          secretName: tls
          defaultMode: 0644
"""


def _render(text: str, path: str = "k8s/app.yaml") -> list[dict[str, Any]]:
    options = RenderOptions(images={"": "ghcr.io/acme/web:abc1234"} if "<IMAGE>" in text else {})
    return [obj.body for obj in render_objects([ManifestSource(path, text)], options)]


def test_a_file_mode_written_in_octal_is_sent_as_kubectl_sends_it() -> None:
    (deployment,) = _render(SECRET_VOLUME)
    spec = deployment["spec"]
    assert spec["template"]["spec"]["volumes"][0]["secret"]["defaultMode"] == 0o644 == 420
    assert spec["replicas"] == 1 and type(spec["replicas"]) is int
    assert spec["template"]["spec"]["containers"][0]["env"][0]["value"] == "yes"  # quoted: stays text


def test_an_infinite_number_is_a_one_line_error_at_its_line() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nspec:\n  ratio: .inf\n"
    with pytest.raises(ManifestSyntaxError) as caught:
        _render(text)
    message = str(caught.value)
    assert message.startswith("k8s/app.yaml:6:10 (document 1): invalid YAML:") and "\n" not in message
    assert ".inf is not a number JSON can carry" in message


def test_a_null_key_is_a_one_line_error_at_its_line() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  ~: value\n"
    expected = r"^k8s/app.yaml:6:3 \(document 1\): invalid YAML: ~ cannot be a mapping key$"
    with pytest.raises(ManifestSyntaxError, match=expected):
        _render(text)


def test_merge_keys_still_merge_and_their_keys_become_text() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
        "base: &base\n  1: one\n  on: yes\n"
        "data:\n  <<: *base\n  extra: '2'\n"
    )
    (config_map,) = _render(text)
    assert config_map["data"] == {"1": "one", "true": True, "extra": "2"}


# --- against the real kubectl -------------------------------------------------------------------------------

# Scalars whose JSON kubectl prints exactly (it prints numbers through float64, so no integers past 2**53).
# A block sequence: libyaml, under ruamel, refuses "1:20" inside [...] where go-yaml takes it.
KUBECTL_TABLE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: scalars
values:
- yes
- Yes
- y
- Y
- on
- ON
- true
- no
- n
- N
- off
- false
- ~
- null
- 0644
- 0755
- 0_644
- 00
- -012
- 0o17
- 0x1F
- -0x1F
- 0x_1F
- 0b101
- 1_000
- +12
- -0
- 08
- 08.5
- 1e3
- 1E3
- 1.
- .5
- -.5
- .5e1
- 0e0
- 1e-7
- 1e21
- 99999999999999999999
- 1:20
- 190:20:30
- 2024-01-01
- "2024-01-01 10:00:00"
- 0x
- ._5
- +inf
- yep
- 12Mi
- v1
keys:
  y: a
  n: b
  1: c
  1.5: d
  1e6: e
  0.1: f
  123456.0: g
  7.0: h
  0x10: i
  +5: j
  "quoted": l
"""


def _kubectl_reads(kubectl: str, control_plane: ControlPlane, manifest: Path, home: Path) -> dict[str, Any]:
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path), "HOME": str(home)}
    done = subprocess.run(
        [kubectl, "create", "--dry-run=client", "--validate=false", "-o", "json", "-f", str(manifest)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def test_render_objects_sends_the_values_and_keys_the_real_kubectl_sends(
    kubectl: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    manifest = tmp_path / "scalars.yaml"
    manifest.write_text(KUBECTL_TABLE)

    expected = _kubectl_reads(kubectl, control_plane, manifest, tmp_path)
    (ours,) = _render(KUBECTL_TABLE, str(manifest))
    sent = json.loads(json.dumps(ours))  # what goes over the wire

    assert sent["values"] == expected["values"]
    assert sent["keys"] == expected["keys"]
    # the check has teeth: YAML 1.2 would have read these differently
    assert expected["values"][:2] == [True, True] and expected["values"][14] == 420
    assert "true" in expected["keys"] and "false" in expected["keys"]


def test_a_manifest_kubectl_refuses_for_an_infinite_number_is_refused_too(
    kubectl: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  ratio: .inf\n"
    manifest = tmp_path / "inf.yaml"
    manifest.write_text(text)
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [kubectl, "create", "--dry-run=client", "--validate=false", "-o", "json", "-f", str(manifest)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert done.returncode != 0 and "unsupported value: +Inf" in done.stderr
    with pytest.raises(ManifestSyntaxError, match="not a number JSON can carry"):
        _render(text)


TAGGED = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: tags
data:
  binary: !!binary aGVsbG8=
  lines: !!binary |
    aGVs
    bG8=
  day: !!timestamp 2024-01-01
  moment: !!timestamp 2024-01-01T10:00:00.50Z
  number: !!str 12
  hex: !!int "0x1F"
  whole: !!float 1
  set: !!set {a, b}
  omap: !!omap [a: 1, b: 2]
  pairs: !!pairs [a: 1, b: 2]
  custom: !foo bar
  mapped: !!map x
  keys: {!!int 5: a, !!binary aGk=: b, !!bool yes: c}
"""


def test_explicit_tags_are_sent_as_the_real_kubectl_sends_them(
    kubectl: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    manifest = tmp_path / "tags.yaml"
    manifest.write_text(TAGGED)

    expected = _kubectl_reads(kubectl, control_plane, manifest, tmp_path)
    (ours,) = _render(TAGGED, str(manifest))

    assert ours["data"] == expected["data"]
    # the check has teeth: a YAML library's own reading would have sent bytes, a date, a set
    assert expected["data"]["binary"] == "hello" and expected["data"]["set"] == {"a": None, "b": None}
