"""``deployer run --dry-run``: what a deploy would do, changing nothing remote.

Renders, builds locally (never pushes), and, given cluster credentials, asks the API server what applying
each object would change (server-side dry run); prints the plan (deployer.plans) as the result. Shares the
start of a deploy (preparing.resolve_and_render) and its report (reporting.reported_run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from deployer import applysets, canaries, connecting, plans, pruning
from deployer.console import Console
from deployer.errors import ExitCode
from deployer.preparing import Rendered, resolve_and_render, write_rendered_outputs
from deployer.publishing import build_locally
from deployer.reporting import reported_run
from deployer.settings import RolloutSettings, RunSettings, format_duration

# What applying would do to each object, by (kind, namespace, name): "create", "configure", "unchanged".
Changes = dict[tuple[str, str | None, str], str]


def dry_run(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    with reported_run(settings, console, env, dry_run=True) as run:
        target, rendered = resolve_and_render(settings, env, run.resolved)
        applyset_name = pruning.prepare(settings.prune, rendered.objects, env)
        write_rendered_outputs(settings, rendered, console)
        build_note = build_locally(settings, target, console, env)
        changes, cluster_note, changing, prune_plan = _server_side_changes(
            settings, rendered, applyset_name, console, env
        )
        plan = plans.make_plan(
            str(target.reference),
            build_note,
            rendered.objects,
            changes=changes,
            cluster=cluster_note,
            namespace=settings.namespace,
        )
        if settings.rollout.strategy == "canary":
            plan.canaries = _canary_lines(settings.rollout, rendered, changing)
        text, document = plans.plan_as_text(plan), plans.plan_as_json(plan)
        if prune_plan is not None:
            text, document = (
                text + "\n" + applysets.plan_as_text(prune_plan),
                {**document, "prune": applysets.plan_as_json(prune_plan)},
            )
            run.report.prune = pruning.planned(prune_plan)
        if settings.output_format == "json":
            console.result(json.dumps(document, indent=2) + "\n")
        else:
            console.result(text + "\n")
        run.report.cluster, run.report.plan = cluster_note, text
    return ExitCode.OK


def _canary_lines(
    rollout: RolloutSettings, rendered: Rendered, changing: set[tuple[str | None, str]] | None
) -> list[str]:
    """Which canaries the run would create: for the Deployments whose pod template the server says would
    change, or, with no cluster asked, for each Deployment whose template changes."""
    deployments = [obj for obj in rendered.objects if obj.kind == "Deployment"]
    pods = f"{rollout.canary_replicas} pod(s), held {format_duration(rollout.canary_hold)}"
    if changing is None:
        return [
            f"deployment/{canaries.canary_name(obj.name)} ({pods}) if the pod template of deployment/{obj.name} changes"
            for obj in deployments
        ]
    lines = [
        f"deployment/{canaries.canary_name(obj.name)} ({pods}) before deployment/{obj.name} changes"
        for obj in deployments
        if (obj.namespace, obj.name) in changing
    ]
    return lines or ["none: no existing Deployment changes its pod template"]


def _server_side_changes(
    settings: RunSettings, rendered: Rendered, applyset_name: str | None, console: Console, env: Mapping[str, str]
) -> tuple[Changes | None, str, set[tuple[str | None, str]] | None, applysets.PrunePlan | None]:
    """With cluster credentials, ask the API server what applying would change (dryRun=All); else nothing.
    Also which existing Deployments would change their pod template (namespace, name), and with --prune what
    a deploy would prune."""
    if not settings.cluster.given:
        return None, "none (rendering only)", None, None
    credentials = connecting.resolve(settings.cluster, settings.rollout, console, env)
    bodies = [obj.body for obj in rendered.objects]
    with connecting.connect(credentials, console) as kube:
        namespace = settings.namespace or kube.default_namespace
        connecting.check_kinds_known(kube, rendered)
        record = kube.record(bodies)
        changes: Changes = {}
        changing: set[tuple[str | None, str]] = set()
        missing_namespace = (
            kube.get(kube.ref_of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})) is None
        )
        for obj in rendered.objects:
            ref = kube.ref_of(obj.body)
            before = record.find(ref)
            live = before.content if before is not None else None
            if live is None and missing_namespace and ref.namespace == namespace:
                # The server cannot dry-run into a namespace that a real run would create first.
                changes[(obj.kind, obj.namespace, obj.name)] = "create"
                continue
            (result,) = kube.apply([obj.body], force=settings.rollout.force_conflicts, dry_run=True)
            changes[(obj.kind, obj.namespace, obj.name)] = plans.change_of(live, result.live)
            if obj.kind == "Deployment" and canaries.template_changes(live, result.live):
                changing.add((obj.namespace, obj.name))
        prune_plan = None
        if applyset_name:
            applyset = applysets.ApplySet(applyset_name, namespace)
            wanted = [kube.ref_of(body) for body in bodies]
            prune_plan = pruning.preview(kube, applyset, wanted, settings.prune.allow)
    return changes, f"{credentials.description} (server-side dry run)", changing, prune_plan
