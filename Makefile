# Every target installs what it needs: a fresh clone runs `make dev` or `make test` directly.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
CATALOGS := $(VENV)/share/skysift/catalogs/PROVENANCE.json
PYTEST_ARGS ?=
# Compiled bytecode makes every test subprocess start seconds faster (astropy, mlflow).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: dev test test-slow bench bench-gate al-evidence proto lint audit lock venv image system-deps catalogs clean help chart-scan

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

# Reproducible installs: every package at the version and hash of a lock file compiled from pyproject.toml
# (`make lock`): requirements-dev.lock for .venv (make, CI), requirements.lock (no dev tools) for the image. uv itself
# is pinned here; it installs the rest. The lock is resolved for Linux x86_64 and Python 3.11 (CI and the image).
UV_VERSION := 0.13.9
LOCK_ARGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28

$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q uv==$(UV_VERSION)
	$(UV) pip install -q --python $(PY) --require-hashes -r requirements-dev.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the package and its dev tools, at the versions of requirements-dev.lock

lock:  ## compile requirements-dev.lock and requirements.lock from pyproject.toml (after changing a dependency)
	test -x $(UV) || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(UV) pip compile -q pyproject.toml --extra dev $(LOCK_ARGS) -o requirements-dev.lock
	$(UV) pip compile -q pyproject.toml $(LOCK_ARGS) -c requirements-dev.lock -o requirements.lock

# VSX, GCVS and Mangrove for the offline cross-match, from the pinned fink-science wheel on PyPI (43 MB, not in git)
$(CATALOGS): $(STAMP) services/skysift/enrichment/catalog_install.py
	$(VENV)/bin/skysift catalogs install

catalogs: $(CATALOGS)  ## install the offline cross-match catalogues into .venv

# The browser tests are part of `make test`: without Chromium it stops here, saying why, instead of skipping them.
system-deps:  ## Debian packages the browser tests need (Chromium); skipped when present
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || { echo "error: could not install chromium with apt-get; the browser tests need it" >&2; exit 1; }; \
	  else echo "error: chromium is not on PATH and cannot be installed here (needs apt-get as root):" \
	    "install Debian's chromium package; the browser tests need it" >&2; exit 1; fi; \
	  command -v chromium >/dev/null 2>&1 \
	    || { echo "error: chromium installed but not on PATH; the browser tests need it" >&2; exit 1; }; }

proto: $(STAMP)  ## regenerate the gRPC code from protos/
	$(PY) -m skysift.rpc.codegen

dev: $(CATALOGS)  ## run every service on loopback, MLflow, one poll of the demo alerts, Streamlit
	$(VENV)/bin/skysift dev

# The 25 slowest tests end the report, so a drift towards the 15-minute budget shows in every run.
test: $(CATALOGS) system-deps  ## run the test suite (real broker, S3, MLflow, gRPC on loopback)
	$(PY) -m pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

test-slow: $(CATALOGS) system-deps  ## long fault-injection and soak runs
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(CATALOGS)  ## throughput / latency benchmarks with ratios against baselines
	$(VENV)/bin/skysift bench

bench-gate: $(CATALOGS)  ## short bench (~1-4 min): fails when a ratio falls below 55% of bench/gate_reference.json
	$(PY) -m bench.gate

al-evidence: $(CATALOGS)  ## compare the query strategies on the labelled sets in tests/data, write docs/active-learning.md (~1 h)
	nice $(PY) tools/al_evidence.py run
	$(PY) tools/al_evidence.py write

# Known issues that cannot be fixed yet are listed with their reason in docs/audit.md and ignored here by id.
# The lock file is audited (what make, CI and the image install), strictly: a package that could not be audited
# fails the audit with its reason, instead of "No known vulnerabilities found" over nothing.
AUDIT_IGNORE ?=
AUDIT := $(VENV)/bin/pip-audit --strict --require-hashes --disable-pip -r requirements-dev.lock --desc on \
	$(addprefix --ignore-vuln ,$(AUDIT_IGNORE))
audit: $(STAMP)  ## dependency audit of requirements-dev.lock (PyPI's advisory data); fails on any vulnerability not in docs/audit.md, or any package it could not audit
	$(AUDIT)

lint: $(STAMP)
	$(PY) -m ruff check services tests streamlit_app

image:  ## build the container image (needs Docker)
	docker build -f deploy/Dockerfile -t skysift:dev .

clean:
	rm -rf $(VENV) .skysift

# checkov runs from its own tool environment (uv tool run): installed into .venv it would downgrade astropy,
# boto3 and packaging. Skipped checks are the chart's documented choices (charts/skysift/README.md, "Security
# scan"): no CPU limits (CKV_K8S_11), images by tag unless image.digest is set (CKV_K8S_43), IfNotPresent pulls
# (CKV_K8S_15); the rest are skipped per object by checkov.io/skip annotations in the templates.
CHART_SCAN_SKIP := CKV_K8S_11,CKV_K8S_43,CKV_K8S_15
chart-scan: $(STAMP)  ## checkov scan of the Helm chart's default manifests (fails on any check not skipped)
	mkdir -p .skysift
	$(PY) -m tests.helm > .skysift/chart-defaults.yaml
	$(UV) tool run --from checkov checkov -f .skysift/chart-defaults.yaml --framework kubernetes --compact --quiet \
	  --skip-check $(CHART_SCAN_SKIP)
