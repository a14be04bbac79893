"""``deployer run --dry-run`` and ``deployer diff``: what a deploy would do, changing nothing remote.

Renders, builds locally (never pushes; ``deployer diff`` never builds), and, given cluster credentials, asks
the API server what applying each object would store (server-side dry run, kube/diffing.py) and diffs it
against the live object (deployer.diffs); prints the plan (deployer.plans) or the diff as the result. On a
pull request with ``--comment-on-pr``, keeps the diff in a comment there. Shares the start of a deploy
(preparing.resolve_and_render) and its report (reporting.reported_run).
"""

from __future__ import annotations

from collections.abc import Mapping

from deployer import applysets, canaries, connecting, diffs, plans, pruning, reporting, workflow_commands
from deployer.console import Console
from deployer.diffs import ObjectDiff
from deployer.errors import ExitCode, OptionError
from deployer.preparing import Rendered, resolve_and_render, write_rendered_outputs
from deployer.publishing import build_locally
from deployer.reporting import reported_run
from deployer.settings import RolloutSettings, RunSettings, format_duration

# What applying would do to each object, by (kind, namespace as the manifest names it, name).
Changes = dict[tuple[str, str | None, str], ObjectDiff]

# `deployer diff`'s exit code when applying would change something, as `kubectl diff`'s.
EXIT_DIFFERENCES = 1


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
            console.result(workflow_commands.inert_json(document) + "\n")
        else:
            updated = [diff for diff in (changes or {}).values() if diff.lines]
            shown = "\n" + diffs.diff_text(updated, colour=console.colours_result()) if updated else ""
            console.quoted_result(text + shown + "\n")
        run.report.cluster, run.report.plan = cluster_note, text
        run.report.changes = list((changes or {}).values())
        if changes is not None:
            reporting.comment_on_pull_request(settings, run.report, console, env)
    return ExitCode.OK


def diff(settings: RunSettings, console: Console, env: Mapping[str, str]) -> int:
    """``deployer diff``: every object's change against the cluster; EXIT_DIFFERENCES when there is one."""
    if not settings.cluster.given:
        raise OptionError("--kubeconfig", "deployer diff needs a cluster: --cluster, --kubeconfig or --kubeconfig-data")
    with reported_run(settings, console, env, dry_run=True) as run:
        _, rendered = resolve_and_render(settings, env, run.resolved)
        # What --prune would delete is the dry run's to list (`deployer run --dry-run --prune`), not the diff's.
        changes, cluster_note, _, _ = _server_side_changes(settings, rendered, None, console, env)
        found = list((changes or {}).values())
        if settings.output_format == "json":
            document = {"changed": diffs.changed(found), "objects": [diffs.diff_json(d) for d in found]}
            console.result(workflow_commands.inert_json(document) + "\n")
        else:
            console.quoted_result(diffs.diff_text(found, colour=console.colours_result()) + "\n")
        run.report.cluster, run.report.changes = cluster_note, found
        reporting.comment_on_pull_request(settings, run.report, console, env)
    return EXIT_DIFFERENCES if diffs.changed(found) else ExitCode.OK


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
    """With cluster credentials, what applying each object would change: its live state against the API
    server's dry-run apply answer (dryRun=All); else nothing. Also which existing Deployments would change
    their pod template (namespace, name), and with --prune what a deploy would prune."""
    if not settings.cluster.given:
        return None, "none (rendering only)", None, None
    credentials = connecting.resolve(settings.cluster, settings.rollout, console, env)
    bodies = [obj.body for obj in rendered.objects]
    with connecting.connect(credentials, console) as kube:
        namespace = settings.namespace or kube.default_namespace
        connecting.check_kinds_known(kube, rendered)
        missing_namespace = (
            kube.get(kube.ref_of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})) is None
        )
        answers = kube.dry_run_answers(
            bodies,
            force=settings.rollout.force_conflicts,
            origins={kube.ref_of(obj.body): obj.origin for obj in rendered.objects},
            # The server cannot dry-run into a namespace that a real run would create first.
            missing_namespace=namespace if missing_namespace else None,
        )
        prune_plan = None
        if applyset_name:
            applyset = applysets.ApplySet(applyset_name, namespace)
            wanted = [kube.ref_of(body) for body in bodies]
            prune_plan = pruning.preview(kube, applyset, wanted, settings.prune.allow)
    changes: Changes = {}
    changing: set[tuple[str | None, str]] = set()
    for obj, answer in zip(rendered.objects, answers, strict=True):
        key = (obj.kind, obj.namespace, obj.name)
        if answer.after is None:
            changes[key] = ObjectDiff(obj.kind, obj.name, answer.ref.namespace, "create")
            continue
        changes[key] = diffs.diff_object(answer.live, answer.after)
        if obj.kind == "Deployment" and canaries.template_changes(answer.live, answer.after):
            changing.add((obj.namespace, obj.name))
    return changes, f"{credentials.description} (server-side dry run)", changing, prune_plan
