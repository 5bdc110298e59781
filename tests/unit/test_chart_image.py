"""deploy/Dockerfile against what the chart expects of the image (no Docker daemon runs here: see the README).

The Dockerfile is read into stages of (instruction, arguments), continuation lines joined, as Docker reads it.
"""

from __future__ import annotations

import re
import shlex

import pytest

from tests import helm

DOCKERFILE = helm.ROOT / "deploy" / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|cmake|cargo|rustc|pip install)\b")


def stages() -> list[list[tuple[str, str]]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, args.strip()))
    return result


def final() -> list[tuple[str, str]]:
    return stages()[-1]


def args_of(stage, instruction) -> list[str]:
    return [args for ins, args in stage if ins == instruction]


def test_image_is_multi_stage_and_final_stage_has_no_build_tools():
    assert len(stages()) >= 2
    for ins, args in final():
        if ins == "RUN":
            assert not BUILD_TOOLS.search(args), args
    assert any(args.startswith("--from=build /opt/venv") for args in args_of(final(), "COPY"))


def test_base_image_is_a_pinned_python_3_11_slim():
    header = DOCKERFILE.read_text().split("FROM", 1)[0]
    image = re.search(r"ARG PYTHON_IMAGE=(\S+)", header).group(1)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image)
    assert all(args.split()[0] == "${PYTHON_IMAGE}" for args in args_of([i for s in stages() for i in s], "FROM"))


def test_final_stage_runs_as_the_chart_uid_with_home_on_tmp():
    pod_uid = 10001  # the chart's runAsUser
    user = args_of(final(), "USER")[-1]
    assert user.split(":")[0] == str(pod_uid)
    env = " ".join(args_of(final(), "ENV"))
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env


def test_entrypoint_is_skysift_and_workdir_holds_the_streamlit_app():
    assert args_of(final(), "ENTRYPOINT") == ['["skysift"]']
    assert args_of(final(), "WORKDIR")[-1] == "/app"
    app = helm.objects()
    container = next(d for d in app if d["kind"] == "Deployment" and d["metadata"]["name"] == "skysift-app")
    args = container["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "app"  # `skysift app` runs Streamlit with the redacting log
    script = args[args.index("--script") + 1]
    copied = [shlex.split(a)[-1] for a in args_of(final(), "COPY") if not a.startswith("--from")]
    assert script.split("/")[0] in {c.strip("./") for c in copied}
    assert (helm.ROOT / script).is_file()


@pytest.mark.parametrize("stage", [0, -1])
def test_every_copied_path_exists_in_the_build_context(stage):
    ignore = (helm.ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].split("/")[0] for line in ignore if line.startswith("!")}
    for args in args_of(stages()[stage], "COPY"):
        if args.startswith("--from"):
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (helm.ROOT / source).exists(), source
            assert source.split("/")[0] in allowed, f"{source} is excluded by Dockerfile.dockerignore"
