"""Rendering manifests: tables of input YAML and the YAML a person reads afterwards, and one test per error.

``render_text`` is the comment-keeping path (``--render-only``, ``--output``); ``render_objects`` the fast
path whose plain dicts are planned and applied. Both must make the same changes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from deployer import preparing
from deployer.errors import (
    ManifestError,
    ManifestFieldError,
    ManifestSyntaxError,
    NamespaceConflictError,
    PlaceholderError,
)
from deployer.images import parse_image_reference
from deployer.manifest_yaml import ManifestSource
from deployer.manifests import RenderOptions, locate_document, render_objects, render_text
from deployer.settings import ImageSettings, ImageTarget, RunSettings

WEB = "ghcr.io/acme/web:abc1234"
WORKER = "ghcr.io/acme/worker:def5678"
MAIN_ONLY = {"": WEB}
BOTH = {"": WEB, "worker": WORKER}


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def source(text: str, path: str = "k8s/app.yaml") -> ManifestSource:
    return ManifestSource(path, yaml_text(text))


def safe_load_all(text: str) -> list[Any]:
    return [document for document in YAML(typ="safe").load_all(text) if document is not None]


# Each case: input YAML, render options, the exact YAML render_text must give.
RENDER_TEXT_CASES = {
    "comments, key order and quoting are kept": (
        """
        # The web tier. deployer fills <IMAGE> in.
        kind: Deployment  # kind before apiVersion on purpose
        apiVersion: apps/v1
        metadata:
          name: web
          labels: {app: web, tier: "front"}
        spec:
          template:
            spec:
              containers:
                - name: web
                  image: "<IMAGE>"  # double quotes stay
                  env:
                    - name: SELF
                      value: 'also <IMAGE> here'
                    - name: PLAIN
                      value: <IMAGE>
                  args: [--image, "<IMAGE>"]
        """,
        RenderOptions(images=MAIN_ONLY),
        """
        # The web tier. deployer fills <IMAGE> in.
        kind: Deployment  # kind before apiVersion on purpose
        apiVersion: apps/v1
        metadata:
          name: web
          labels: {app: web, tier: "front"}
        spec:
          template:
            spec:
              containers:
                - name: web
                  image: "ghcr.io/acme/web:abc1234"  # double quotes stay
                  env:
                    - name: SELF
                      value: 'also ghcr.io/acme/web:abc1234 here'
                    - name: PLAIN
                      value: ghcr.io/acme/web:abc1234
                  args: [--image, "ghcr.io/acme/web:abc1234"]
        """,
    ),
    "sequences flush with their key stay flush": (
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          template:
            spec:
              containers:
              - name: web
                image: <IMAGE>
                ports:
                - containerPort: 8080
        """,
        RenderOptions(images=MAIN_ONLY),
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          template:
            spec:
              containers:
              - name: web
                image: ghcr.io/acme/web:abc1234
                ports:
                - containerPort: 8080
        """,
    ),
    "four-space indentation and block scalars stay": (
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
            name: scripts
        data:
            run.sh: |
                #!/bin/sh
                exec docker run <IMAGE>
            list:
                - a
                - b: 1
                  c: 2
        """,
        RenderOptions(images=MAIN_ONLY),
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
            name: scripts
        data:
            run.sh: |
                #!/bin/sh
                exec docker run ghcr.io/acme/web:abc1234
            list:
                - a
                - b: 1
                  c: 2
        """,
    ),
    "several documents, several placeholders": (
        """
        # web
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          template:
            spec:
              containers:
                - name: web
                  image: <IMAGE>
        ---
        # worker, same file
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: worker
        spec:
          template:
            spec:
              containers:
                - name: worker
                  image: <IMAGE:worker>
                  env:
                    - name: WEB_IMAGE
                      value: "<IMAGE>"
        """,
        RenderOptions(images=BOTH),
        """
        # web
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          template:
            spec:
              containers:
                - name: web
                  image: ghcr.io/acme/web:abc1234
        ---
        # worker, same file
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: worker
        spec:
          template:
            spec:
              containers:
                - name: worker
                  image: ghcr.io/acme/worker:def5678
                  env:
                    - name: WEB_IMAGE
                      value: "ghcr.io/acme/web:abc1234"
        """,
    ),
    "a header above the first document separator is kept": (
        """
        # Copyright Acme. Rendered by deployer.

        ---
        # the config
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          image: <IMAGE>
        """,
        RenderOptions(images=MAIN_ONLY),
        """
        # Copyright Acme. Rendered by deployer.

        ---
        # the config
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          image: ghcr.io/acme/web:abc1234
        """,
    ),
    "blank documents are dropped, documents of comments only are kept as written": (
        """
        ---
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          image: <IMAGE>
        ---   # switched off until the migration lands
        # apiVersion: batch/v1
        # kind: Job

        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: b
        ---
        """,
        RenderOptions(images=MAIN_ONLY),
        """
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          image: ghcr.io/acme/web:abc1234
        ---   # switched off until the migration lands
        # apiVersion: batch/v1
        # kind: Job

        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: b
        """,
    ),
    "a file with a %YAML directive is rendered in one round trip": (
        """
        %YAML 1.2
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a  # kept
        data:
          image: <IMAGE>
        """,
        RenderOptions(images=MAIN_ONLY),
        """
        %YAML 1.2
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a  # kept
        data:
          image: ghcr.io/acme/web:abc1234
        """,
    ),
    "namespace goes to namespaced objects that have none, never to cluster-scoped ones": (
        """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: prod
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata:
          name: reader
        rules: []
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: config  # no namespace
        data:
          image: <IMAGE>
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: already
          namespace: prod
        ---
        apiVersion: example.com/v1
        kind: Widget
        metadata:
          name: custom
        """,
        RenderOptions(images=MAIN_ONLY, namespace="prod"),
        """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: prod
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata:
          name: reader
        rules: []
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: config  # no namespace
          namespace: prod
        data:
          image: ghcr.io/acme/web:abc1234
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: already
          namespace: prod
        ---
        apiVersion: example.com/v1
        kind: Widget
        metadata:
          name: custom
          namespace: prod
        """,
    ),
    "change-cause only on Deployment, StatefulSet and DaemonSet": (
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          annotations:
            team: web  # kept
        spec:
          template:
            spec:
              containers:
                - image: <IMAGE>
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata:
          name: db
        ---
        apiVersion: apps/v1
        kind: DaemonSet
        metadata:
          name: agent
        ---
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: migrate
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: web
        """,
        RenderOptions(images=MAIN_ONLY, change_cause="deployer: ghcr.io/acme/web:abc1234 from commit abc1234"),
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          annotations:
            team: web  # kept
            kubernetes.io/change-cause: 'deployer: ghcr.io/acme/web:abc1234 from commit abc1234'
        spec:
          template:
            spec:
              containers:
                - image: ghcr.io/acme/web:abc1234
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata:
          name: db
          annotations:
            kubernetes.io/change-cause: 'deployer: ghcr.io/acme/web:abc1234 from commit abc1234'
        ---
        apiVersion: apps/v1
        kind: DaemonSet
        metadata:
          name: agent
          annotations:
            kubernetes.io/change-cause: 'deployer: ghcr.io/acme/web:abc1234 from commit abc1234'
        ---
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: migrate
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: web
        """,
    ),
    "a kind List is rendered item by item": (
        """
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: ConfigMap
          metadata:
            name: a
          data:
            image: <IMAGE>
        - apiVersion: v1
          kind: PersistentVolume
          metadata:
            name: pv
        """,
        RenderOptions(images=MAIN_ONLY, namespace="prod"),
        """
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: ConfigMap
          metadata:
            name: a
            namespace: prod
          data:
            image: ghcr.io/acme/web:abc1234
        - apiVersion: v1
          kind: PersistentVolume
          metadata:
            name: pv
        """,
    ),
    "a custom placeholder and unquoted dates and numbers kept as written": (
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          image: __IMAGE__
          released: 2024-01-01
          replicas: "007"
        """,
        RenderOptions(images=MAIN_ONLY, placeholder="__IMAGE__"),
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          image: ghcr.io/acme/web:abc1234
          released: 2024-01-01
          replicas: "007"
        """,
    ),
}


@pytest.mark.parametrize(
    ("given", "options", "expected"), list(RENDER_TEXT_CASES.values()), ids=list(RENDER_TEXT_CASES)
)
def test_render_text_changes_only_what_it_must(given: str, options: RenderOptions, expected: str) -> None:
    assert render_text(source(given), options) == yaml_text(expected)


@pytest.mark.parametrize(
    ("given", "options", "expected"), list(RENDER_TEXT_CASES.values()), ids=list(RENDER_TEXT_CASES)
)
def test_render_objects_makes_the_same_changes_as_render_text(
    given: str, options: RenderOptions, expected: str
) -> None:
    objects = render_objects([source(given)], options)
    expected_objects = []
    for document in safe_load_all(yaml_text(expected)):
        if document.get("kind") == "List":
            expected_objects.extend(document["items"])
        else:
            expected_objects.append(document)
    # The safe load of the expected text turns the one unquoted date into a date; the applied object has text.
    for obj in expected_objects:
        if "released" in obj.get("data", {}):
            obj["data"]["released"] = "2024-01-01"
    assert [obj.body for obj in objects] == expected_objects


@pytest.mark.parametrize(
    ("given", "expected_body"),
    [
        (
            """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: a
            data:
              image: <IMAGE>
              day: 2024-01-01
              moment: 2024-01-01T10:00:00Z
              spaced: 2024-01-01 10:00:00
              quoted: "2024-01-01"
              count: 3
            """,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "a"},
                "data": {
                    "image": WEB,
                    # As kubectl sends them: the text as written, not a re-formatted timestamp.
                    "day": "2024-01-01",
                    "moment": "2024-01-01T10:00:00Z",
                    "spaced": "2024-01-01 10:00:00",
                    "quoted": "2024-01-01",
                    "count": 3,
                },
            },
        ),
    ],
)
def test_render_objects_gives_plain_dicts_with_dates_as_written(given: str, expected_body: dict[str, Any]) -> None:
    (obj,) = render_objects([source(given)], RenderOptions(images=MAIN_ONLY))
    assert obj.body == expected_body
    assert type(obj.body) is dict
    assert all(type(value) in (dict, str, int) for value in obj.body["data"].values())


def test_render_objects_expands_a_list_and_keeps_file_and_document_index() -> None:
    sources = [
        source(
            """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: first}
            data: {image: <IMAGE>}
            ---
            ---
            apiVersion: v1
            kind: List
            items:
            - {apiVersion: v1, kind: Service, metadata: {name: s1}}
            - {apiVersion: v1, kind: Service, metadata: {name: s2}}
            """,
            path="k8s/a.yaml",
        ),
        source("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n", path="k8s/b.yml"),
    ]
    objects = render_objects(sources, RenderOptions(images=MAIN_ONLY, namespace="web"))
    assert [(o.path, o.document, o.kind, o.name, o.namespace) for o in objects] == [
        ("k8s/a.yaml", 1, "ConfigMap", "first", "web"),
        ("k8s/a.yaml", 3, "Service", "s1", "web"),
        ("k8s/a.yaml", 3, "Service", "s2", "web"),
        ("k8s/b.yml", 1, "Deployment", "d", "web"),
    ]
    assert objects[1].origin == "k8s/a.yaml (document 3)"


# --- errors: one test per error, with its message ------------------------------------------------


@pytest.mark.parametrize(
    ("given", "line", "column", "problem"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n data: x\n", 5, 2, "did not find expected key"),
        ("apiVersion: v1\nkind: ConfigMap: x\n", 2, 16, "mapping values are not allowed"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: [unclosed\n", 5, 1, "expected ',' or ']'"),
        ("a: 1\na: 2\n", 2, 1, 'duplicate key "a"'),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: a\n", 4, 1, "cannot start any token"),
    ],
)
def test_invalid_yaml_names_file_line_and_column(given: str, line: int, column: int, problem: str) -> None:
    with pytest.raises(ManifestSyntaxError) as caught:
        render_objects([ManifestSource("k8s/bad.yaml", given)], RenderOptions(images=MAIN_ONLY))
    error = caught.value
    assert (error.path, error.line, error.column) == ("k8s/bad.yaml", line, column)
    assert str(error).startswith(f"k8s/bad.yaml:{line}:{column} (document 1): invalid YAML: ")
    assert problem in str(error)
    assert "\n" not in str(error)
    assert error.exit_code == 2


@pytest.mark.parametrize(
    ("given", "document", "field_path"),
    [
        ("kind: ConfigMap\nmetadata: {name: a}\n", 1, "apiVersion"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n", 2, "kind"),
        ("apiVersion: v1\nkind: ''\nmetadata: {name: a}\n", 1, "kind"),
        ("apiVersion: v1\nkind: ConfigMap\n", 1, "metadata"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: name-only\n", 1, "metadata"),
        ("---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n", 2, "metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 5}\n", 1, "metadata.name"),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {}}\n",
            1,
            "items[0].metadata.name",
        ),
    ],
)
def test_missing_identity_field_names_file_document_and_field(given: str, document: int, field_path: str) -> None:
    with pytest.raises(ManifestFieldError) as caught:
        render_objects([ManifestSource("k8s/app.yaml", given)], RenderOptions(images={}))
    error = caught.value
    assert (error.path, error.document, error.field_path) == ("k8s/app.yaml", document, field_path)
    assert str(error).startswith(f"k8s/app.yaml (document {document}): {field_path}: ")
    assert "every object needs" in str(error)


@pytest.mark.parametrize(("given", "type_name"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_document_that_is_not_a_mapping_is_an_error(given: str, type_name: str) -> None:
    with pytest.raises(ManifestFieldError, match=rf"^k8s/app.yaml \(document 1\): .*not a {type_name}$"):
        render_objects([ManifestSource("k8s/app.yaml", given)], RenderOptions(images={}))


@pytest.mark.parametrize(
    ("images", "placeholder", "missing"),
    [
        (MAIN_ONLY, "<IMAGE>", "<IMAGE>"),
        (BOTH, "<IMAGE>", "<IMAGE>, <IMAGE:worker>"),
        (MAIN_ONLY, "__IMAGE__", "__IMAGE__"),
    ],
)
def test_placeholder_never_found_lists_the_files_searched(
    images: dict[str, str], placeholder: str, missing: str
) -> None:
    sources = [
        ManifestSource("k8s/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {image: nginx}\n"),
        ManifestSource("k8s/sub/b.yml", "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n"),
    ]
    with pytest.raises(PlaceholderError) as caught:
        render_objects(sources, RenderOptions(images=images, placeholder=placeholder))
    assert str(caught.value) == (
        f"the placeholder {missing} appears in none of the manifests (searched: k8s/a.yaml, k8s/sub/b.yml)"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("data", "field_path", "problem"),
    [
        ("image: <IMAGE:typo>", "data.image", "no image named 'typo' for this placeholder (known: (main))"),
        ("image: <IMAGE", "data.image", "placeholder left over after substitution: '<IMAGE'"),
        ("image: x-<IMAGE>-<IMAGE:>", "data.image", "placeholder left over"),
        ("<IMAGE>: value", "data.<IMAGE>", "the image placeholder may stand only in values, not keys"),
        ('list: [ok, "<IMAGE:other>"]', "data.list[1]", "no image named 'other'"),
    ],
)
def test_placeholder_left_over_names_document_and_field(data: str, field_path: str, problem: str) -> None:
    given = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\nother: <IMAGE>\ndata:\n  {data}\n"
    with pytest.raises(PlaceholderError) as caught:
        render_objects([ManifestSource("k8s/app.yaml", given)], RenderOptions(images=MAIN_ONLY))
    assert str(caught.value).startswith(f"k8s/app.yaml (document 1): {field_path}: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "Widget"])
def test_namespace_conflict_names_object_both_namespaces_and_the_fix(kind: str) -> None:
    given = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\ndata: {image: <IMAGE>}\n---\n"
        f"apiVersion: example/v1\nkind: {kind}\nmetadata:\n  name: web\n  namespace: staging\n"
    )
    with pytest.raises(NamespaceConflictError) as caught:
        render_objects([ManifestSource("k8s/app.yaml", given)], RenderOptions(images=MAIN_ONLY, namespace="prod"))
    assert str(caught.value) == (
        f"k8s/app.yaml (document 2): metadata.namespace: {kind} 'web' is in namespace 'staging' but --namespace "
        "is 'prod'; remove the namespace from the manifest or pass --namespace=staging"
    )
    assert caught.value.exit_code == 2


def test_duplicate_object_names_both_documents(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {image: <IMAGE>}\n", encoding="utf-8"
    )
    (tmp_path / "b.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n",
        encoding="utf-8",
    )
    settings = RunSettings(manifests=(str(tmp_path),), namespace="prod", image=ImageSettings(tag="abc1234"))
    target = ImageTarget(reference=parse_image_reference(WEB), commit=None)
    with pytest.raises(ManifestError) as caught:
        preparing.render(settings, target, {})
    assert str(caught.value) == (
        f"{tmp_path}/b.yaml (document 2): Deployment 'web' is also defined in {tmp_path}/a.yaml (document 1); "
        "each object may appear once"
    )
    assert caught.value.exit_code == 2


def test_same_name_in_different_kinds_or_namespaces_is_not_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {image: <IMAGE>}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: other}\n",
        encoding="utf-8",
    )
    settings = RunSettings(manifests=(str(tmp_path),), image=ImageSettings(tag="abc1234"))
    target = ImageTarget(reference=parse_image_reference(WEB), commit=None)
    rendered = preparing.render(settings, target, {})
    assert [(o.kind, o.namespace) for o in rendered.objects] == [
        ("Deployment", None),
        ("Service", None),
        ("Deployment", "other"),
    ]


def test_locate_document_gives_the_line_where_a_document_starts() -> None:
    text = "# head\napiVersion: v1\nkind: A\n---\n# second\napiVersion: v1\nkind: B\n"
    assert locate_document(ManifestSource("x.yaml", text), 1) == 2
    assert locate_document(ManifestSource("x.yaml", text), 2) == 6
    assert locate_document(ManifestSource("x.yaml", text), 3) is None
    assert locate_document(ManifestSource("x.yaml", "a: [\n"), 1) is None
