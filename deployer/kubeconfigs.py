"""Kubeconfigs as kubectl reads them: parse, merge, pick the context, find the secrets.

Pure: text and dicts in, dicts and OptionErrors out; tested through deployer.credentials' tables. A
kubeconfig arrives here as text (a file's, ``--kubeconfig-data``'s inline or base64 text, or the one
DigitalOcean issued) and leaves as a plain dict whose ``current-context`` is chosen and checked, its file
paths made absolute, and the secret values it holds listed for masking.

Must not: read files or the environment, ask DigitalOcean or write a kubeconfig anywhere
(deployer/credentials.py does all that), or quote a kubeconfig's text in a message: a YAML error's own
text quotes the lines around it, which may hold a token, so errors give the position only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from deployer.errors import OptionError

KUBECONFIG_DATA_FLAG = "--kubeconfig-data"
CONTEXT_FLAG = "--kube-context"
BASE64_TEXT = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

# Fields of a kubeconfig that hold secrets, to be masked in Actions logs (kubectl's names).
SECRET_USER_FIELDS = ("token", "password", "client-key-data")
# Fields holding file paths, which kubectl resolves against the directory of the kubeconfig that names them.
CLUSTER_PATH_FIELDS = ("certificate-authority",)
USER_PATH_FIELDS = ("client-certificate", "client-key", "tokenFile")


def parse_kubeconfig_data(data: str) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """A kubeconfig given inline, base64-encoded (as secrets usually hold it) or as plain YAML. Returns the
    config, a description and the base64 blob itself when there was one (a secret of its own)."""
    compact = "".join(data.split())
    blob_secrets: tuple[str, ...] = ()
    text = data
    # A kubeconfig in YAML always has a colon, which base64 never has.
    if BASE64_TEXT.match(compact):
        try:
            text = base64.b64decode(compact, validate=True).decode("utf-8")
            blob_secrets = (compact,)
        except (binascii.Error, UnicodeDecodeError):
            text = data  # not base64 after all: let the YAML parser say what is wrong
    config = parse_kubeconfig(text, source="the kubeconfig", flag=KUBECONFIG_DATA_FLAG)
    return normalized(config), f"kubeconfig from {KUBECONFIG_DATA_FLAG}", blob_secrets


def merge_kubeconfigs(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A KUBECONFIG list merged as kubectl merges it: for each cluster, user and context name (and for
    current-context) the first config that sets it wins."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    merged.update(clusters=[], contexts=[], users=[])
    for config in configs:
        for section in ("clusters", "contexts", "users"):
            seen = {entry["name"] for entry in merged[section]}
            for entry in named_entries(config, section):
                if entry["name"] not in seen:
                    merged[section].append(entry)
                    seen.add(entry["name"])
        if not merged.get("current-context") and config.get("current-context"):
            merged["current-context"] = config["current-context"]
    return merged


def select_context(config: dict[str, Any], context: str | None, *, source: str) -> str:
    """The context to use (``--kube-context`` or current-context), checked against what ``config`` defines;
    sets current-context in ``config`` so that loading it needs no further choice."""
    contexts = {entry["name"]: entry for entry in named_entries(config, "contexts")}
    available = ", ".join(sorted(contexts)) or "none"
    if context:
        if context not in contexts:
            raise OptionError(CONTEXT_FLAG, f'no context "{context}" in {source}; available: {available}')
        chosen = context
    elif config.get("current-context"):
        chosen = str(config["current-context"])
        if chosen not in contexts:
            raise OptionError(
                CONTEXT_FLAG, f'current-context "{chosen}" of {source} is not defined; available: {available}'
            )
    elif len(contexts) == 1:
        chosen = next(iter(contexts))
    else:
        raise OptionError(CONTEXT_FLAG, f"{source} sets no current-context; pick one of: {available}")
    details = contexts[chosen].get("context")
    if not isinstance(details, dict):
        raise OptionError(CONTEXT_FLAG, f'context "{chosen}" in {source} is empty')
    for section, key in (("clusters", "cluster"), ("users", "user")):
        names = {entry["name"] for entry in named_entries(config, section)}
        wanted = details.get(key)
        if key == "cluster" and wanted not in names:
            raise OptionError(
                CONTEXT_FLAG, f'context "{chosen}" in {source} names cluster "{wanted}", which is not defined'
            )
        if key == "user" and wanted is not None and wanted not in names:
            raise OptionError(
                CONTEXT_FLAG, f'context "{chosen}" in {source} names user "{wanted}", which is not defined'
            )
    config["current-context"] = chosen
    return chosen


def kubeconfig_secrets(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Every secret value in a kubeconfig's users (tokens, passwords, client keys)."""
    found: list[str] = []
    for entry in named_entries(config, "users"):
        user = entry.get("user")
        if not isinstance(user, dict):
            continue
        for key in SECRET_USER_FIELDS:
            value = user.get(key)
            if isinstance(value, str) and value and value not in found:
                found.append(value)
    return tuple(found)


def parse_kubeconfig(text: str, *, source: str, flag: str) -> dict[str, Any]:
    """Parse with the safe loader. The message gives the position only: a YAML error's own text quotes
    the surrounding lines, which may hold a token."""
    try:
        loaded = YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise OptionError(flag, f"{source} is not valid YAML{where}") from None
    except YAMLError:
        raise OptionError(flag, f"{source} is not valid YAML") from None
    if not isinstance(loaded, dict):
        raise OptionError(flag, f"{source} is not a kubeconfig (expected a mapping at the top)")
    for section in ("clusters", "contexts", "users"):
        entries = loaded.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in entries
        ):
            raise OptionError(flag, f"{source}: {section} must be a list of entries with a name")
    return loaded


def named_entries(config: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    entries = config.get(section)
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)] if entries else []


def normalized(config: dict[str, Any]) -> dict[str, Any]:
    for section in ("clusters", "contexts", "users"):
        config.setdefault(section, [])
        if config[section] is None:
            config[section] = []
    return config


def resolve_local_paths(config: dict[str, Any], base: Path) -> None:
    """Make the file paths inside a kubeconfig absolute, as kubectl does, so the dict works when loaded in
    memory from another working directory."""

    def resolve(holder: dict[str, Any], key: str) -> None:
        value = holder.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            holder[key] = str(base / value)

    for entry in named_entries(config, "clusters"):
        cluster = entry.get("cluster")
        if isinstance(cluster, dict):
            for key in CLUSTER_PATH_FIELDS:
                resolve(cluster, key)
    for entry in named_entries(config, "users"):
        user = entry.get("user")
        if not isinstance(user, dict):
            continue
        for key in USER_PATH_FIELDS:
            resolve(user, key)
        exec_config = user.get("exec")
        # A bare command name is looked up on PATH; only a relative path is relative to the kubeconfig.
        if isinstance(exec_config, dict) and os.sep in str(exec_config.get("command", "")):
            resolve(exec_config, "command")
