"""Render the Helm chart offline (Helm v4 as a library, no cluster), validate what it renders against the
Kubernetes API schemas, and parse its container commands as `skysift` would: for the chart and Job-trigger tests."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "skysift"
OVERLAYS = {"default": None, "kind": ROOT / "deploy/kind/values.yaml",
            "minikube": ROOT / "deploy/minikube/values.yaml",
            "external": ROOT / "deploy/examples/values-external.yaml"}


def overlay(name: str) -> dict:
    path = OVERLAYS[name]
    return yaml.safe_load(path.read_text()) if path else {}


def render(values: dict | None = None, name: str = "skysift", namespace: str = "skysift") -> dict[str, str]:
    """Template path -> rendered text, as `helm template` prints them (memoised: a render takes ~0.4 s)."""
    return dict(_render(json.dumps(values or {}, sort_keys=True), name, namespace))


@functools.lru_cache(maxsize=64)
def _render(values_json: str, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        return tuple(chart.render(json.loads(values_json), name=name, namespace=namespace).items())


KUBE_VERSION = "1.30.0"
_VALID: set[str] = set()


def validate(doc: dict) -> None:
    """kubernetes-validate, strict (unknown fields are errors); a document already seen valid is skipped."""
    import kubernetes_validate

    key = json.dumps(doc, sort_keys=True)
    if key not in _VALID:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        _VALID.add(key)


def parse_skysift(args: list[str]):
    """Parse a command line the way `skysift` would, without running it; raises click's usage errors.

    (Typer vendors its own click, so groups are told apart by what they can do, not by click's classes.)"""
    import typer

    from skysift import cli

    command, name, ctx = typer.main.get_command(cli.app), "skysift", None
    while True:
        ctx = command.make_context(name, list(args), parent=ctx)
        if not hasattr(command, "resolve_command"):
            return command
        name, command, args = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])


def objects(values: dict | None = None, name: str = "skysift", namespace: str = "skysift") -> list[dict]:
    """Every Kubernetes object the release would create (NOTES.txt left out)."""
    docs = []
    for path, text in sorted(render(values, name, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def manifests(values: dict | None = None) -> str:
    """The release's manifests as one YAML stream (what `helm template` prints, NOTES.txt left out)."""
    return "\n---\n".join(text for path, text in sorted(render(values).items()) if not path.endswith("NOTES.txt"))


if __name__ == "__main__":  # `python -m tests.helm`: the default values' manifests, for scanners (make chart-scan)
    print(manifests())
