"""Building the control plane's binaries from the Go modules in this directory, cached outside the clone.

Two modules of our own: ``kube/`` (one binary: kube-apiserver, kube-controller-manager or kube-scheduler by its
first argument, from the pinned ``k8s.io/kubernetes``) and ``etcd/`` (etcd's own main, from the pinned
``go.etcd.io/etcd/server/v3``). Their go.mod and go.sum are committed; ``pin`` writes them again for other
versions, deriving the list of staging modules to replace from ``k8s.io/kubernetes``' own go.mod.

The binaries land in ``${XDG_CACHE_HOME:-~/.cache}/deployer-controlplane/<key>/``; the key names both versions
and a hash of everything that decides the bytes (the module files, the flags, the Go toolchain), so a second
clone of the project, or a second run, builds nothing. A lock file keeps two builds from racing.

This module runs the Go toolchain and nothing else; it must not start what it builds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
KUBE_MODULE = HERE / "kube"
ETCD_MODULE = HERE / "etcd"
KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_SERVER_MODULE = "go.etcd.io/etcd/server/v3"
# A staging module is one that k8s.io/kubernetes' go.mod replaces with a directory of its own tree.
_STAGING_REPLACE = re.compile(r"^\s*(?:replace\s+)?(k8s\.io/\S+)\s+=>\s+\./staging/src/", re.MULTILINE)


class BuildError(RuntimeError):
    """The Go toolchain is missing or a build step failed; the message says which and quotes its output."""


@dataclass(frozen=True)
class Binaries:
    kube: Path  # kube <component> [flags]
    etcd: Path
    kubernetes_version: str
    etcd_version: str


def required_version(module_dir: Path, module: str) -> str:
    """The version of ``module`` that the go.mod in ``module_dir`` requires."""
    text = (module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if match is None:
        raise BuildError(f"{module_dir / 'go.mod'} does not require {module}")
    return match.group(1)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is not installed (no `go` on PATH)")
    return go


def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never fetch another toolchain behind the caller's back; -mod=readonly: go.sum decides.
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"}


def _run_go(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([_go(), *args], cwd=cwd, env=env or _go_env(), capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        raise BuildError(f"go {' '.join(args)} (in {cwd.name}/) failed:\n{output}")
    return done.stdout


def _kube_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    variables = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    settings = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in variables.items()
    ]
    return " ".join(["-s", "-w", *settings])


def _build_commands(kubernetes_version: str) -> dict[str, list[str]]:
    """The go build arguments of each binary: upstream's release flags, without cgo."""
    return {
        "kube": ["build", "-trimpath", "-tags", "selinux,notest", "-ldflags", _kube_ldflags(kubernetes_version)],
        "etcd": ["build", "-trimpath", "-ldflags", "-s -w"],
    }


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deployer-controlplane"


def cache_key() -> str:
    kubernetes_version = required_version(KUBE_MODULE, KUBERNETES_MODULE)
    etcd_version = required_version(ETCD_MODULE, ETCD_SERVER_MODULE)
    digest = hashlib.sha256()
    for module in (KUBE_MODULE, ETCD_MODULE):
        for name in ("go.mod", "go.sum", "main.go"):
            digest.update(f"{module.name}/{name}\0".encode())
            digest.update((module / name).read_bytes())
    digest.update(json.dumps(_build_commands(kubernetes_version)).encode())
    digest.update(_run_go(["env", "GOVERSION"], HERE).encode())
    return f"kubernetes-{kubernetes_version}-etcd-{etcd_version}-{digest.hexdigest()[:16]}"


def ensure_built(log: bool = False) -> Binaries:
    """The cached binaries, built first when the cache has none for this key."""
    kubernetes_version = required_version(KUBE_MODULE, KUBERNETES_MODULE)
    etcd_version = required_version(ETCD_MODULE, ETCD_SERVER_MODULE)
    target = cache_root() / cache_key()
    binaries = Binaries(target / "kube", target / "etcd", kubernetes_version, etcd_version)
    if binaries.kube.exists() and binaries.etcd.exists():
        return binaries
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key: wait for it
        if binaries.kube.exists() and binaries.etcd.exists():
            return binaries
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_root()))
        try:
            for name, module in (("kube", KUBE_MODULE), ("etcd", ETCD_MODULE)):
                if log:
                    print(f"building {name} in {module} (the first build takes minutes)", flush=True)
                _run_go([*_build_commands(kubernetes_version)[name], "-o", str(staging / name), "."], module)
            staging.rename(target)  # whole or not at all: a killed build leaves no half entry
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return binaries


def pin(kubernetes_version: str, etcd_version: str) -> None:
    """Write both modules' go.mod and go.sum for these versions (run by hand when moving to a new release).

    Every staging module that k8s.io/kubernetes replaces with a directory of its tree is replaced here with its
    published twin ``v0.<minor>.<patch>``; the go and godebug lines are copied from its go.mod, since they only
    act in the main module.
    """
    env = {**_go_env(), "GOFLAGS": "-mod=mod -buildvcs=false"}
    listed = _run_go(["mod", "download", "-json", f"{KUBERNETES_MODULE}@{kubernetes_version}"], HERE, env)
    upstream = Path(json.loads(listed)["GoMod"]).read_text()
    staging_version = "v0." + kubernetes_version.lstrip("v").split(".", 1)[1]
    lines = ["module deployer.test/controlplane/kube", ""]
    lines += [line for line in upstream.splitlines() if re.match(r"^(go|godebug) ", line)]
    lines += ["", f"require {KUBERNETES_MODULE} {kubernetes_version}", ""]
    lines += [f"replace {m} => {m} {staging_version}" for m in sorted(set(_STAGING_REPLACE.findall(upstream)))]
    (KUBE_MODULE / "go.mod").write_text("\n".join(lines) + "\n")
    (ETCD_MODULE / "go.mod").write_text(
        f"module deployer.test/controlplane/etcd\n\ngo 1.25.0\n\nrequire {ETCD_SERVER_MODULE} {etcd_version}\n"
    )
    for module in (KUBE_MODULE, ETCD_MODULE):
        (module / "go.sum").unlink(missing_ok=True)
        _run_go(["mod", "tidy"], module, env)
