"""The chart carries a team's taxonomy file: a ConfigMap mounted into every skysift pod, SKYSIFT_TAXONOMY_FILE
naming the mounted file, pods restarted when it changes; without one the image's packaged file is used."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from skysift import modeltags
from tests import helm
from tests.unit.test_chart import named, of_kind, pod_specs

TEAM = modeltags.DEFAULT_TAXONOMY_FILE.read_text().replace("default_tag: galactic", "default_tag: realbogus")
SKYSIFT_PODS = ("skysift-trainer", "skysift-inference", "skysift-app", "skysift-ingest", "skysift-round")


def _mounted_file(objs, pod: str) -> str:
    """The text a container of ``pod`` reads at SKYSIFT_TAXONOMY_FILE (through its volume and the ConfigMap)."""
    env = named(objs, "ConfigMap", "skysift-config")["data"]
    path = PurePosixPath(env["SKYSIFT_TAXONOMY_FILE"])
    spec = next(spec for name, spec, _ in pod_specs(objs) if name == pod)
    (container,) = [c for c in spec["containers"] if c["name"] != "consumer"][:1]
    (mount,) = [m for m in container["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    config_map = named(objs, "ConfigMap", volume["configMap"]["name"])
    return config_map["data"][str(path.relative_to(mount["mountPath"]))]


@pytest.fixture(scope="module")
def team_objects():
    return helm.objects({"taxonomy": TEAM})


@pytest.mark.parametrize("pod", SKYSIFT_PODS)
def test_every_pod_reads_the_teams_file_from_the_configmap(team_objects, pod):
    text = _mounted_file(team_objects, pod)
    assert text == TEAM
    assert modeltags.parse(text).default_tag == "realbogus"


def test_the_taxonomy_release_renders_valid_manifests_and_restarts_pods_when_the_file_changes(team_objects):
    for doc in team_objects:
        helm.validate(doc)
    other = helm.objects({"taxonomy": TEAM.replace("default_tag: realbogus", "default_tag: galactic")})
    checksums = [{name: spec for name, spec in
                  ((d["metadata"]["name"], d["spec"]["template"]["metadata"]["annotations"]["checksum/taxonomy"])
                   for d in of_kind(objs, "Deployment") if d["metadata"]["name"] == "skysift-trainer")}
                 for objs in (team_objects, other)]
    assert checksums[0] != checksums[1]


def test_without_a_file_the_image_packaged_one_is_used():
    objs = helm.objects()
    assert "SKYSIFT_TAXONOMY_FILE" not in named(objs, "ConfigMap", "skysift-config")["data"]
    assert not [d for d in of_kind(objs, "ConfigMap") if d["metadata"]["name"] == "skysift-taxonomy"]
    assert all(v["name"] != "taxonomy" for _, spec, _ in pod_specs(objs) for v in spec["volumes"])
