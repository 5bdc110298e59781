"""Reproducible, audited builds: the lock files pin every dependency of pyproject.toml with hashes, `make venv`,
the image and so CI install from them, the environment the tests run in is the locked one, and `make audit` audits
the lock strictly (a package it could not audit fails it). The audit itself needs PyPI's advisory API, which a
test cannot count on: its command line is what is checked."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)")


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a `uv pip compile --generate-hashes` file."""
    out: dict[str, tuple[str, int]] = {}
    name = None
    for line in (REPO / lock).read_text().splitlines():
        if m := PIN.match(line):
            name = canonicalize_name(m[1].split("[")[0])
            out[name] = (m[2], 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            out[name] = (out[name][0], out[name][1] + 1)
    return out


def declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (project["optional-dependencies"][extra] if extra else project["dependencies"])]


def test_every_declared_dependency_is_pinned_with_hashes_within_its_range():
    dev, runtime = pins("requirements-dev.lock"), pins("requirements.lock")
    assert all(n_hashes for _, n_hashes in [*dev.values(), *runtime.values()])
    for lock, requirements in ((runtime, declared()), (dev, declared() + declared("dev"))):
        for req in requirements:
            if req.marker is not None and not req.marker.evaluate():
                continue
            name = canonicalize_name(req.name)
            assert name in lock, f"{req} is not in the lock: run `make lock`"
            assert req.specifier.contains(lock[name][0], prereleases=True), f"{req} but locked {lock[name][0]}"
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}  # one resolution
    assert not {"pytest", "ruff", "pip-audit"} & set(runtime)  # the image gets no dev tools


def test_the_environment_the_tests_run_in_is_the_locked_one():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {name: (version, installed.get(name)) for name, (version, _) in pins("requirements-dev.lock").items()
              if installed.get(name) != version}
    assert differ == {}, "the environment is not the lock's: run `make venv`"


def make_n(*args: str) -> str:
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_make_venv_and_the_image_install_from_the_lock_with_hashes(tmp_path):
    commands = make_n("venv", f"VENV={tmp_path / 'venv'}").splitlines()  # as on a fresh machine
    assert [c for c in commands if "--require-hashes -r requirements-dev.lock" in c and "uv pip install" in c]
    assert [c for c in commands if "--no-deps -e ." in c]  # skysift itself adds no unlocked package
    assert not [c for c in commands if "pip install" in c and "-e ." in c and "--no-deps" not in c]
    docker = (REPO / "deploy/Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in docker
    assert re.search(r"pip install --no-deps \.", docker)


def test_make_audit_audits_the_lock_strictly():
    (line,) = [c for c in make_n("audit").splitlines() if "pip-audit" in c]
    args = line.split()
    assert "--strict" in args  # a package that could not be audited fails the audit, with its reason
    assert args[args.index("-r") + 1] == "requirements-dev.lock" and "--require-hashes" in args
