"""The app's "run a round now": skysift.k8s against an API server seeded with the chart's own manifests.

The fake (tests/fakes/k8s_api.py) speaks TLS with a CA and ServiceAccount tokens loaded the in-cluster way,
enforces the chart's Role and RoleBinding, and answers with real status codes and Status bodies.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import streamlit as st
from kubernetes.config import incluster_config
from streamlit.testing.v1 import AppTest

from skysift import k8s
from skysift.errors import FailedPrecondition, NotFound, Unavailable
from tests import helm
from tests.app_support import APP
from tests.fakes.k8s_api import FakeKubeAPI
from tests.servers import free_port

NAMESPACE = "astro"


@pytest.fixture(scope="module")
def manifests():
    return helm.objects(name="skysift", namespace=NAMESPACE)


def find(manifests, kind, name):
    return next(d for d in manifests if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.fixture
def api(tmp_path, manifests):
    server = FakeKubeAPI(tmp_path)
    for doc in manifests:
        if doc["kind"] in ("CronJob", "Role", "RoleBinding"):
            server.apply(doc, NAMESPACE)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app_pod(api, manifests, tmp_path, monkeypatch):
    """The app pod's view: its ServiceAccount token and CA files, the API server's env, the chart's env."""
    app = find(manifests, "Deployment", "skysift-app")["spec"]["template"]["spec"]
    token = tmp_path / "token"
    token.write_text(api.add_service_account(NAMESPACE, app["serviceAccountName"]))
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(api.ca_cert))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    for var in app["containers"][0]["env"]:
        value = NAMESPACE if "valueFrom" in var else var["value"]  # the downward API's metadata.namespace
        monkeypatch.setenv(var["name"], value)
    return k8s.K8sSettings()


def test_chart_env_tells_the_app_where_the_round_cronjob_is(app_pod):
    assert (app_pod.namespace, app_pod.round_cronjob) == (NAMESPACE, "skysift-round")
    assert k8s.available(app_pod)


def test_trigger_creates_job_from_round_cronjob_like_kubectl(api, app_pod):
    name = k8s.trigger_round(app_pod, requested_by="alice", now=lambda: 1_700_000_000)
    assert name == "skysift-round-1700000000"
    job = api.objects[(NAMESPACE, "jobs", name)]
    cronjob = api.objects[(NAMESPACE, "cronjobs", "skysift-round")]
    template = cronjob["spec"]["jobTemplate"]
    assert job["spec"] == template["spec"]
    assert job["metadata"]["labels"] == template["metadata"]["labels"]
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual",
                                              "skysift.io/requested-by": "alice"}
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                                   "name": "skysift-round", "uid": cronjob["metadata"]["uid"],
                                                   "controller": True}]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "round"


def test_created_job_is_valid_for_kubernetes_1_30(api, app_pod):
    name = k8s.trigger_round(app_pod)
    job = {k: v for k, v in api.objects[(NAMESPACE, "jobs", name)].items() if k != "status"}
    kubernetes_validate.validate(job, "1.30.0", strict=True)


def test_same_job_name_twice_is_rejected_with_the_api_message(api, app_pod):
    k8s.trigger_round(app_pod, name="round-1")
    with pytest.raises(FailedPrecondition, match='jobs.batch "round-1" already exists'):
        k8s.trigger_round(app_pod, name="round-1")


def test_role_allows_only_the_round_cronjob(api, app_pod):
    other = app_pod.model_copy(update={"round_cronjob": "skysift-poll"})
    with pytest.raises(FailedPrecondition, match='cannot get resource "cronjobs"'):
        k8s.trigger_round(other)
    assert not any(key[1] == "jobs" for key in api.objects)


def test_service_account_without_the_role_is_forbidden(api, app_pod, tmp_path, monkeypatch):
    token = tmp_path / "other-token"
    token.write_text(api.add_service_account(NAMESPACE, "skysift"))  # the services' account: no Role
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    with pytest.raises(FailedPrecondition, match="forbidden.*round-trigger Role"):
        k8s.trigger_round(app_pod)


def test_missing_cronjob_is_not_found(api, app_pod):
    del api.objects[(NAMESPACE, "cronjobs", "skysift-round")]
    with pytest.raises(NotFound, match='cronjobs.batch "skysift-round" not found'):
        k8s.trigger_round(app_pod)


def test_unreachable_api_server_is_unavailable(api, app_pod, monkeypatch):
    api.stop()
    with pytest.raises(Unavailable, match="unreachable"):
        k8s.trigger_round(app_pod)


def test_outside_a_cluster_the_trigger_is_unavailable_with_a_hint(monkeypatch):
    monkeypatch.delenv("SKYSIFT_K8S_NAMESPACE", raising=False)
    monkeypatch.delenv("SKYSIFT_K8S_ROUND_CRONJOB", raising=False)
    settings = k8s.K8sSettings()
    assert not k8s.available(settings)
    with pytest.raises(FailedPrecondition, match="skysift round"):
        k8s.trigger_round(settings)


def test_default_job_name_fits_the_label_limit():
    name = k8s.default_job_name("r" * 52, 1_700_000_000)
    assert len(name) <= 63 and name.endswith("-1700000000")


# -- the app's rounds page in the pod (AppTest), signed in with the chart's password login -------------------------

@pytest.fixture
def signed_in(app_pod, tmp_path, monkeypatch):
    """The rounds page as "bob" sees it in the cluster; MLflow and the trainer are not needed to start a round."""
    monkeypatch.setenv("SKYSIFT_APP_PASSWORD", "correct horse")
    monkeypatch.setenv("SKYSIFT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input[0].input("bob")
    at.text_input[1].input("correct horse")
    at.button[0].click().run()
    at.switch_page("pages/rounds.py").run()
    assert not at.exception, at.exception
    yield at
    st.cache_resource.clear()
    st.cache_data.clear()


def press_run_round(at) -> AppTest:
    next(b for b in at.button if b.label == "Run a round now").click().run()
    assert not at.exception, at.exception
    return at


def test_app_button_creates_the_job_as_the_signed_in_user(api, signed_in):
    at = press_run_round(signed_in)
    (name,) = [key[2] for key in api.objects if key[1] == "jobs"]
    assert name.startswith("skysift-round-")
    assert api.objects[(NAMESPACE, "jobs", name)]["metadata"]["annotations"]["skysift.io/requested-by"] == "bob"
    assert at.success[0].value == (f"Job **{name}** created. Follow it with "
                                   f"`kubectl -n {NAMESPACE} logs -f job/{name}`.")


def test_app_button_shows_a_refused_trigger_as_a_message(api, signed_in, tmp_path, monkeypatch):
    token = tmp_path / "other-token"
    token.write_text(api.add_service_account(NAMESPACE, "skysift"))  # an account without the round-trigger Role
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    at = press_run_round(signed_in)
    assert not at.success
    assert any(e.value.startswith("Cannot start a round in Kubernetes: reading CronJob astro/skysift-round: ")
               and "forbidden" in e.value for e in at.error), [e.value for e in at.error]
    assert not any(key[1] == "jobs" for key in api.objects)
