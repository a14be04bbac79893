"""``deployer run --prune``: the set of objects a deploy owns, tracked as a KEP-3659 ApplySet, and the prune
that follows a verified rollout; and the dry run's preview of it.

Before the apply, ``track`` reads the set's parent Secret (refusing one another tool manages) and widens it to
the kinds the manifests hold, as kubectl does, so that a run stopped part-way leaves no member untracked.
After a verified rollout, ``prune`` deletes the members the manifests no longer hold (applysets.plan_prune
decides), each logged, then narrows the parent to what the set still holds; a deletion that fails leaves the
parent wide, so that the next run finds what is left. A failed rollout never gets here. Wires
deployer.applysets (what) to the Kubernetes adapter (how); writes nothing into the report (deploying does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deployer import applysets, commits, workspace
from deployer.applysets import ApplySet, PrunePlan, Tracked, where
from deployer.console import Console
from deployer.deploy_report import PruneResult
from deployer.errors import KubernetesError, OptionError, RevisionError
from deployer.manifests import ManifestObject
from deployer.rollbacks import ObjectRef
from deployer.settings import PruneSettings

if TYPE_CHECKING:
    from deployer.connecting import Cluster


def prepare(prune: PruneSettings, objects: Sequence[ManifestObject], env: Mapping[str, str]) -> str | None:
    """With --prune, the set's name, and the manifests checked for labels that are deployer's to set; before
    anything remote, in a deploy and a dry run alike. None without --prune."""
    if not prune.enabled:
        return None
    applysets.check_unlabelled(objects)
    return chosen_name(prune, env)


def chosen_name(prune: PruneSettings, env: Mapping[str, str]) -> str:
    """--applyset, else the repository's default (applysets.default_name)."""
    if prune.applyset:
        return prune.applyset
    try:
        repository = commits.choose_repository(env, workspace.read_git_state(Path.cwd()))
    except RevisionError as e:
        raise OptionError(
            "--applyset", f"no default name for the set --prune tracks ({e}); give --applyset NAME"
        ) from e
    return applysets.default_name(repository.owner, repository.name)


@dataclass(frozen=True)
class Tracking:
    """The set a deploy prunes, where the parent said its members were before this run, and the objects the
    manifests hold (``wanted``)."""

    applyset: ApplySet
    before: Tracked
    wanted: list[ObjectRef]


def track(kube: Cluster, applyset: ApplySet, wanted: Sequence[ObjectRef], console: Console) -> Tracking:
    """Read the set's parent and widen it to the manifests' kinds."""
    before = applysets.read_parent(kube.applyset_parent(applyset), applyset)
    widened = before | Tracked.of(wanted) | Tracked(namespaces=frozenset({applyset.namespace}))
    kube.apply_applyset_parent(applysets.parent_body(applyset, widened))
    if not before.group_kinds:
        # The first --prune deploy: only what the manifests hold joins the set, nothing else is touched.
        console.info(f"ApplySet {applyset} ({applyset.id}) tracks what this deploy applies")
    return Tracking(applyset, before, list(wanted))


def find(
    kube: Cluster, applyset: ApplySet, tracked: Tracked, wanted: Sequence[ObjectRef], allowed: frozenset[str]
) -> PrunePlan:
    """What a prune would delete and keep: the members of the kinds the parent tracked, one LIST per kind."""
    listed, _ = kube.applyset_members(applyset, tracked.group_kinds, tracked.namespaces | {applyset.namespace})
    return applysets.plan_prune(applyset, listed, wanted, allowed)


def preview(kube: Cluster, applyset: ApplySet, wanted: Sequence[ObjectRef], allowed: frozenset[str]) -> PrunePlan:
    """The dry run's answer: what a deploy of ``wanted`` would prune, changing nothing."""
    tracked = applysets.read_parent(kube.applyset_parent(applyset), applyset)
    return find(kube, applyset, tracked, wanted, allowed)


@dataclass
class Pruned:
    """What the prune did to each member the manifests no longer hold; ``left`` maps what it could not
    delete to why."""

    results: list[PruneResult] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)


def prune(kube: Cluster, tracking: Tracking, allowed: frozenset[str], console: Console) -> Pruned:
    """Delete the members the manifests no longer hold (background propagation, reverse dependency order),
    each logged; a deletion that fails does not stop the others. Then narrow the parent to what the set holds."""
    applyset, wanted = tracking.applyset, tracking.wanted
    plan = find(kube, applyset, tracking.before, wanted, allowed)
    done = Pruned()
    with console.phase(f"Prune {len(plan.delete)} object(s)"):
        for ref in plan.delete:
            try:
                deleted = kube.delete(ref)
            except KubernetesError as e:
                done.left[str(ref)] = str(e)
                done.results.append(_result(ref, "left", str(e)))
                console.warn(f"could not prune {where(ref)}: {e}")
                continue
            done.results.append(_result(ref, "pruned" if deleted else "gone already"))
            console.info(f"pruned {where(ref)}" if deleted else f"{where(ref)} was gone already")
        for kept in plan.kept:
            done.results.append(_result(kept.ref, "kept", kept.reason))
            console.info(f"would prune, kept {where(kept.ref)}: {kept.reason}")
    if not done.left:
        still = Tracked.of([*wanted, *(k.ref for k in plan.kept)]) | Tracked(namespaces=frozenset({applyset.namespace}))
        try:
            kube.apply_applyset_parent(applysets.parent_body(applyset, still))
        except KubernetesError as e:
            # Harmless: a wider parent only costs the next run a LIST per kind it no longer holds.
            console.warn(f"pruned, but could not narrow the ApplySet parent {applyset}: {e}")
    return done


def planned(plan: PrunePlan) -> list[PruneResult]:
    """A dry run's prune, as the report lists it."""
    return [_result(ref, "would prune") for ref in plan.delete] + [_result(k.ref, "kept", k.reason) for k in plan.kept]


def _result(ref: ObjectRef, result: str, detail: str = "") -> PruneResult:
    return PruneResult(ref.kind, ref.name, ref.namespace, result, detail)
