"""Render the Helm chart offline (Helm v4 as a library, no cluster), for the chart and Job-trigger tests."""

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


def objects(values: dict | None = None, name: str = "skysift", namespace: str = "skysift") -> list[dict]:
    """Every Kubernetes object the release would create (NOTES.txt left out)."""
    docs = []
    for path, text in sorted(render(values, name, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs
