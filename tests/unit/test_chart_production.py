"""The Helm chart as a production install needs it (issue 20): the seven reviewed configurations against the
declared lowest Kubernetes version and 1.30, and each fix: Secret names, extra variables and volumes, workload
identity, schema patterns and conditions, rotation, RBAC, storage and scaling, and the usual chart conventions."""

from __future__ import annotations

import json
import re
from zoneinfo import available_timezones

import helm_python
import pytest
import yaml

from tests import helm
from tests.helm import KUBE_VERSION, validate
from tests.unit.test_chart import (
    ALL_SECRETS_AS_VALUES,
    BACKFILL,
    NIGHTS,
    named,
    of_kind,
    pod_specs,
    restricted_violations,
    selects,
)

CONSUMER_3 = {"services": {"ingest": {"replicas": 3, "consumer": {"enabled": True}}}, "poll": {"enabled": False}}
EXTERNAL_STORES = {"settings": {"s3EndpointUrl": "https://s3.example.org", "mlflowTrackingUri": "https://mlflow.example.org"},
                   "secrets": {"s3AccessKeyId": {"existingSecret": "stores"}, "s3SecretAccessKey": {"existingSecret": "stores"}},
                   "bundledS3": {"enabled": False}, "bundledMlflow": {"enabled": False}}
CONFIGURATIONS = {"default": {}, "kind": helm.overlay("kind"), "minikube": helm.overlay("minikube"),
                  "external": helm.overlay("external"), "consumer-3": CONSUMER_3, "backfill-3-nights": BACKFILL,
                  "external-s3-and-mlflow": EXTERNAL_STORES}
CRDS = ("monitoring.coreos.com/v1",)  # Prometheus Operator kinds: no schema in the Kubernetes API


def floor_version() -> str:
    """The lowest Kubernetes version Chart.yaml declares (kubeVersion: ">=X.Y.Z-0")."""
    declared = yaml.safe_load((helm.CHART / "Chart.yaml").read_text())["kubeVersion"]
    return re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", declared).group(1)


def validate_for(doc: dict, version: str) -> None:
    import kubernetes_validate

    if doc["apiVersion"] not in CRDS:
        kubernetes_validate.validate(doc, version, strict=True)


def lint_messages(values: dict, version: str) -> list:
    report = helm_python.lint(helm.CHART, values, strict=True, kube_version=f"v{version}")
    return report["errors"] + [m for m in report["messages"] if m["severity"] >= 2]


# -- the seven configurations of the review, at the floor and at 1.30 -------------------------------------------

@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_each_configuration_validates_at_the_declared_floor_and_1_30(config):
    objs = helm.objects(CONFIGURATIONS[config])
    assert objs
    for doc in objs:
        validate_for(doc, floor_version())
        validate_for(doc, KUBE_VERSION)


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_each_configuration_lints_strict_at_the_floor_and_1_30(config):
    assert lint_messages(CONFIGURATIONS[config], floor_version()) == []
    assert lint_messages(CONFIGURATIONS[config], KUBE_VERSION) == []


def test_the_floor_is_one_where_the_backfill_fields_exist():
    """Issue 20 item 4: backoffLimitPerIndex is absent from 1.27 and off in 1.28."""
    major, minor, _ = map(int, floor_version().split("."))
    assert (major, minor) >= (1, 29)
    job = of_kind(helm.objects(BACKFILL), "Job")[0]
    assert "backoffLimitPerIndex" in job["spec"]


# -- 1. the chart's Secret never takes a name users create --------------------------------------------------------

def test_a_value_beside_the_external_secret_renders_no_second_secret_of_that_name():
    values = helm.overlay("external")
    values["secrets"] = {**values["secrets"], "slackBotToken": {"value": "xoxb-1"}}
    objs = helm.objects(values)
    existing = {entry["existingSecret"] for entry in values["secrets"].values() if entry.get("existingSecret")}
    assert existing == {"skysift-credentials"}
    assert [s["metadata"]["name"] for s in of_kind(objs, "Secret")] == ["skysift-values"]


def test_an_existing_secret_named_like_the_charts_own_fails_saying_so():
    with pytest.raises(helm_python.HelmRenderError, match="name your Secret differently"):
        helm.render({"secrets": {"lasairToken": {"existingSecret": "skysift-values"}, "slackBotToken": {"value": "x"}}})


# -- 2. a private CA, a proxy, MLflow authentication, files -------------------------------------------------------

EXTRAS = {"extraEnvVars": [{"name": "AWS_CA_BUNDLE", "value": "/etc/skysift/ca/ca.crt"},
                           {"name": "HTTPS_PROXY", "value": "http://proxy.example.org:3128"},
                           {"name": "MLFLOW_TRACKING_TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "mlflow-auth", "key": "token"}}}],
          "extraVolumes": [{"name": "ca", "configMap": {"name": "private-ca"}}],
          "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/skysift/ca", "readOnly": True}]}


def test_extra_variables_volumes_and_mounts_reach_every_skysift_container():
    objs = helm.objects({**EXTRAS, **CONSUMER_3, **BACKFILL})
    for name, spec, _ in pod_specs(objs):
        if name in ("skysift-s3", "skysift-mlflow"):
            continue
        assert {"name": "ca", "configMap": {"name": "private-ca"}} in spec["volumes"], name
        for container in spec["containers"]:
            names = [e["name"] for e in container["env"]]
            assert names[-3:] == ["AWS_CA_BUNDLE", "HTTPS_PROXY", "MLFLOW_TRACKING_TOKEN"], (name, container["name"])
            assert {"name": "ca", "mountPath": "/etc/skysift/ca", "readOnly": True} in container["volumeMounts"]
    for doc in objs:
        validate(doc)


def test_extra_variables_must_be_env_var_objects():
    with pytest.raises(helm_python.HelmValuesError, match="/extraEnvVars/0"):
        helm.render({"extraEnvVars": [{"value": "no name"}]})


# -- 3. workload identity --------------------------------------------------------------------------------------

IRSA = {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/skysift"}}}
EXTERNAL_S3 = {"bundledS3": {"enabled": False}}


def test_every_pod_runs_as_the_service_account_carrying_the_workload_identity_annotation():
    objs = helm.objects({**EXTERNAL_S3, **IRSA})
    account = of_kind(objs, "ServiceAccount")
    assert [a["metadata"]["name"] for a in account] == ["skysift"]
    assert account[0]["metadata"]["annotations"] == IRSA["serviceAccount"]["annotations"]
    assert {spec["serviceAccountName"] for name, spec, _ in pod_specs(objs) if name != "skysift-mlflow"} == {"skysift"}
    files = {item["path"] for _, spec, _ in pod_specs(objs) for v in spec["volumes"]
             for s in v.get("projected", {}).get("sources", []) for item in s["secret"]["items"]}
    assert not {"skysift_s3_access_key_id", "skysift_s3_secret_access_key"} & files  # the SDK's chain decides


def test_external_s3_without_keys_or_workload_identity_is_refused():
    with pytest.raises(helm_python.HelmValuesError, match="/secrets/s3AccessKeyId") as refused:
        helm.render(EXTERNAL_S3)
    assert "/serviceAccount/annotations" in str(refused.value)


@pytest.mark.parametrize("identity", [
    {"secrets": {"s3AccessKeyId": {"existingSecret": "s3"}, "s3SecretAccessKey": {"existingSecret": "s3"}}},
    IRSA,
    {"serviceAccount": {"create": False, "name": "prepared-by-the-platform"}},
])
def test_external_s3_with_keys_or_workload_identity_renders(identity):
    assert helm.objects({**EXTERNAL_S3, **identity})


# -- 5. values the schema refuses -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, where", [
    ({"poll": {"schedule": "-5 * * * *"}}, "/poll/schedule"),
    ({"round": {"schedule": "0 6 * *"}}, "/round/schedule"),
    ({"poll": {"schedule": "CRON_TZ=UTC 0 * * * *"}}, "/poll/schedule"),
    ({"poll": {"timeZone": "Mars/Olympus"}}, "/poll/timeZone"),
    ({"services": {"trainer": {"resources": {"requests": {"cpu": "lots"}}}}}, "/services/trainer/resources/requests/cpu"),
    ({"app": {"resources": {"limits": {"memory": "2 GB"}}}}, "/app/resources/limits/memory"),
    ({"bundledMlflow": {"persistence": {"size": "big"}}}, "/bundledMlflow/persistence/size"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"commonLabels": {"app.kubernetes.io/name": "x"}}, "invalid propertyName 'app.kubernetes.io/name'"),
    ({"podLabels": {"app.kubernetes.io/component": "x"}}, "invalid propertyName 'app.kubernetes.io/component'"),
    ({"settings": {"ingest": {"source": "kafka"}, "kafka": {"bootstrapServers": "k:9092"}}}, "/settings/kafka/topics"),
    ({"settings": {"ingest": {"source": "kafka"}, "kafka": {"topics": ["t"]}}}, "/settings/kafka/bootstrapServers"),
    ({"settings": {"kafka": {"securityProtocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512", "saslUsername": "u"}}},
     "/secrets/kafkaSaslPassword"),
    ({"settings": {"kafka": {"securityProtocol": "SASL_SSL", "saslUsername": "u"}},
      "secrets": {"kafkaSaslPassword": {"existingSecret": "k"}}}, "/settings/kafka/saslMechanism"),
    ({"settings": {"kafka": {"saslMechanism": "PLAIN", "saslUsername": "u"}},
      "secrets": {"kafkaSaslPassword": {"existingSecret": "k"}}}, "/settings/kafka/securityProtocol"),
    ({"app": {"ingress": {"enabled": True}}}, "/app/ingress/hosts"),
])
def test_schema_refuses_values_that_would_fail_mid_install_naming_the_key(bad, where):
    with pytest.raises(helm_python.HelmValuesError, match=where):
        helm.render(bad)


@pytest.mark.parametrize("good", [
    {"poll": {"schedule": "*/15 2-5,22 * JAN-MAR mon-fri", "timeZone": "America/Argentina/Buenos_Aires"}},
    {"round": {"schedule": "@daily", "timeZone": "Europe/Paris"}},
    {"services": {"trainer": {"resources": {"requests": {"cpu": 1.5, "memory": "1.5Gi"}, "limits": {"cpu": "2"}}}}},
    {"settings": {"ingest": {"source": "kafka"}, "kafka": {
        "bootstrapServers": "k:9093", "topics": ["t"], "securityProtocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512",
        "saslUsername": "u"}}, "secrets": {"kafkaSaslPassword": {"existingSecret": "k"}}},
])
def test_schema_accepts_the_forms_kubernetes_and_the_broker_accept(good):
    assert helm.objects(good)


def test_the_time_zones_the_schema_accepts_are_the_tz_database():
    zones = set(json.loads((helm.CHART / "values.schema.json").read_text())["definitions"]["timeZone"]["enum"])
    assert {"Etc/UTC", "UTC", "Europe/Paris", "Pacific/Auckland"} <= zones
    assert zones <= available_timezones()


# -- 6. credential rotation --------------------------------------------------------------------------------------

def s3_pod_annotations(values: dict) -> dict:
    return named(helm.objects(values), "Deployment", "skysift-s3")["spec"]["template"]["metadata"]["annotations"]


def test_new_s3_keys_roll_the_bundled_s3_with_the_skysift_pods():
    def keys(secret):
        return {"secrets": {"s3AccessKeyId": {"value": "id"}, "s3SecretAccessKey": {"value": secret}}}

    before, after = s3_pod_annotations(keys("old-secret")), s3_pod_annotations(keys("new-secret"))
    assert before["checksum/secret"] != after["checksum/secret"]
    moved = s3_pod_annotations({"secrets": {"s3AccessKeyId": {"existingSecret": "a"},
                                            "s3SecretAccessKey": {"existingSecret": "b"}}})
    assert moved["checksum/credentials"] != s3_pod_annotations(
        {"secrets": {"s3AccessKeyId": {"existingSecret": "a"}, "s3SecretAccessKey": {"existingSecret": "c"}}}
    )["checksum/credentials"]


def test_bundled_pods_carry_the_pod_annotations_and_labels():
    objs = helm.objects({"podAnnotations": {"reloader.stakater.com/auto": "true"}, "podLabels": {"team": "astro"}})
    for name in ("skysift-s3", "skysift-mlflow"):
        template = named(objs, "Deployment", name)["spec"]["template"]["metadata"]
        assert template["annotations"]["reloader.stakater.com/auto"] == "true", name
        assert template["labels"]["team"] == "astro", name


# -- 8. storage and scaling ---------------------------------------------------------------------------------------

def test_uninstall_keeps_the_registry_and_store_volumes():
    claims = {c["metadata"]["name"]: c for c in of_kind(helm.objects(), "PersistentVolumeClaim")}
    assert set(claims) == {"skysift-mlflow", "skysift-s3"}
    for claim in claims.values():
        assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_generated_s3_keys_are_kept_with_the_data_they_open():
    secret = named(helm.objects(), "Secret", "skysift-values")
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    given = named(helm.objects(ALL_SECRETS_AS_VALUES), "Secret", "skysift-values")
    assert "annotations" not in given["metadata"]  # values only: uninstall removes them


def test_an_existing_claim_replaces_the_bundled_pvc():
    objs = helm.objects({"bundledMlflow": {"persistence": {"existingClaim": "mlflow-registry-2024"}}})
    assert [c["metadata"]["name"] for c in of_kind(objs, "PersistentVolumeClaim")] == ["skysift-s3"]
    volumes = named(objs, "Deployment", "skysift-mlflow")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "mlflow-registry-2024"}} in volumes


def test_grpc_services_are_headless_and_clients_resolve_every_pod():
    objs = helm.objects()
    data = of_kind(objs, "ConfigMap")[0]["data"]
    for service in ("ingest", "enrichment", "features", "inference", "trainer"):
        assert named(objs, "Service", f"skysift-{service}")["spec"]["clusterIP"] == "None"
        assert data[f"SKYSIFT_{service.upper()}_ADDRESS"] == f"dns:///skysift-{service}:50051"
    assert named(objs, "Service", "skysift-app")["spec"].get("clusterIP") != "None"


def test_each_component_may_have_its_own_scheduling_and_bundled_pods_follow_the_global_one():
    values = {"nodeSelector": {"pool": "general"}, "tolerations": [{"key": "astro", "operator": "Exists"}],
              "imagePullSecrets": [{"name": "registry"}], "priorityClassName": "skysift",
              "services": {"trainer": {"nodeSelector": {"pool": "highmem"}, "priorityClassName": "batch-high"}},
              "bundledMlflow": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                  "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}}
    specs = {name: spec for name, spec, _ in pod_specs(helm.objects(values))}
    assert specs["skysift-trainer"]["nodeSelector"] == {"pool": "highmem"}
    assert specs["skysift-trainer"]["priorityClassName"] == "batch-high"
    assert "affinity" in specs["skysift-mlflow"] and "affinity" not in specs["skysift-s3"]
    for name, spec in specs.items():
        assert spec["imagePullSecrets"] == [{"name": "registry"}], name
        assert spec["tolerations"] == values["tolerations"], name
        if name != "skysift-trainer":
            assert spec["nodeSelector"] == {"pool": "general"} and spec["priorityClassName"] == "skysift", name


def test_poll_and_round_pods_get_no_secret():
    """They are gRPC clients: SkyPortal and Slack are posted by inference, the store is read by the services."""
    objs = helm.objects(ALL_SECRETS_AS_VALUES)
    for name in ("skysift-poll", "skysift-round"):
        spec = next(spec for n, spec, _ in pod_specs(objs) if n == name)
        assert not [v for v in spec["volumes"] if "projected" in v or "secret" in v], name


def test_a_finished_backfill_job_is_not_deleted_so_upgrades_do_not_rerun_it():
    assert "ttlSecondsAfterFinished" not in of_kind(helm.objects(BACKFILL), "Job")[0]["spec"]
    values = {"backfill": {**BACKFILL["backfill"], "ttlSecondsAfterFinished": 3600}}
    assert of_kind(helm.objects(values), "Job")[0]["spec"]["ttlSecondsAfterFinished"] == 3600
    assert len(NIGHTS) == 3


# -- 9. conventions ----------------------------------------------------------------------------------------------

def test_common_labels_reach_every_object_and_pod_labels_every_pod():
    objs = helm.objects({"commonLabels": {"cost-centre": "astro"}, "podLabels": {"azure.workload.identity/use": "true"},
                         "app": {"ingress": {"enabled": True, "hosts": [{"host": "skysift.example.org"}]}},
                         "metrics": {"monitor": {"enabled": True}}, **BACKFILL})
    for doc in objs:
        assert doc["metadata"]["labels"]["cost-centre"] == "astro", doc["metadata"]["name"]
    for name, _, labels in pod_specs(objs):
        assert labels["azure.workload.identity/use"] == "true" and labels["cost-centre"] == "astro", name


def test_disruption_budgets_cover_the_services_and_the_app():
    objs = helm.objects()
    budgets = {b["metadata"]["name"]: b["spec"] for b in of_kind(objs, "PodDisruptionBudget")}
    assert set(budgets) == {f"skysift-{c}" for c in ("app", "ingest", "enrichment", "features", "inference", "trainer")}
    for name, spec in budgets.items():
        deployment = named(objs, "Deployment", name)
        assert spec["selector"] == deployment["spec"]["selector"] and spec["maxUnavailable"] == 1
    assert not of_kind(helm.objects({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")


def test_the_app_ingress_routes_to_the_app_service():
    values = {"app": {"ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "skysift.example.org"}],
                                  "tls": [{"hosts": ["skysift.example.org"], "secretName": "skysift-tls"}]}}}
    objs = helm.objects(values)
    (ingress,) = of_kind(objs, "Ingress")
    validate(ingress)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "skysift-app", "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx" and ingress["spec"]["tls"] == values["app"]["ingress"]["tls"]


@pytest.mark.parametrize("kind, endpoints", [("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")])
def test_the_monitor_switch_scrapes_the_metrics_port_of_the_five_services(kind, endpoints):
    objs = helm.objects({"metrics": {"monitor": {"enabled": True, "kind": kind, "labels": {"release": "prom"}}}})
    (monitor,) = [d for d in objs if d["kind"] == kind]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"][endpoints][0]["port"] == "metrics"
    selected = [d["metadata"]["name"] for d in of_kind(objs, "Service" if kind == "ServiceMonitor" else "Deployment")
                if selects(monitor["spec"]["selector"], d["metadata"]["labels"] if kind == "ServiceMonitor"
                                else d["spec"]["template"]["metadata"]["labels"])]
    assert sorted(selected) == sorted(f"skysift-{s}" for s in ("ingest", "enrichment", "features", "inference", "trainer"))
    assert not [d for d in helm.objects() if d["kind"] in ("ServiceMonitor", "PodMonitor")]


def test_an_image_digest_pins_every_skysift_container():
    digest = "sha256:" + "ab" * 32
    objs = helm.objects({"image": {"digest": digest}})
    images = {c["image"] for name, spec, _ in pod_specs(objs) if name not in ("skysift-s3", "skysift-mlflow")
              for c in spec["containers"]}
    assert images == {f"ghcr.io/skysift/skysift@{digest}"}


def test_helm_test_checks_every_enabled_service_is_serving():
    objs = helm.objects({"services": {"enrichment": {"enabled": False}}})
    (pod,) = of_kind(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["python", "-c"]
    assert container["args"] == ["ingest", "features", "inference", "trainer"]
    assert pod["metadata"]["labels"]["skysift.io/grpc-client"] == "true"  # admitted by the services' policy
    compile(container["command"][2], "helm-test", "exec")
    assert restricted_violations(pod["spec"]) == []


def test_chart_names_its_maintainers_and_sources():
    chart = yaml.safe_load((helm.CHART / "Chart.yaml").read_text())
    assert chart["maintainers"] and chart["sources"] and chart["home"]


def test_default_values_install_a_complete_release():
    """Without any value: an image from a registry, alerts replayed from the image, the bundled S3 with
    generated keys and the bundled MLflow, both kept on uninstall."""
    objs = helm.objects()
    images = {c["image"] for _, spec, _ in pod_specs(objs) for c in spec["containers"]}
    assert all("/" in image.split(":")[0] for image in images), images  # never docker.io/library/<name>
    data = of_kind(objs, "ConfigMap")[0]["data"]
    assert data["SKYSIFT_INGEST_SOURCE"] == "replay"
    assert data["SKYSIFT_S3_ENDPOINT_URL"] == "http://skysift-s3:8333"
    assert data["SKYSIFT_MLFLOW_TRACKING_URI"] == "http://skysift-mlflow:5000"
    assert lint_messages({}, floor_version()) == []


def test_every_object_names_the_release_namespace():
    """`helm template | kubectl apply` lands in the release's namespace, not the context's (checkov CKV_K8S_21)."""
    objs = helm.objects({"metrics": {"monitor": {"enabled": True}}, **BACKFILL}, namespace="astro")
    assert {d["metadata"].get("namespace") for d in objs} == {"astro"}


def test_scan_skips_are_scoped_to_the_objects_that_need_them():
    """The checkov checks skipped by annotation: the bundled S3's env keys and the one-shot helm test pod."""
    objs = helm.objects()
    skips = {(d["kind"], d["metadata"]["name"]): sorted(v.split("=")[0] for k, v in d["metadata"].get("annotations", {}).items()
                                           if k.startswith("checkov.io/skip")) for d in objs}
    assert {name: checks for name, checks in skips.items() if checks} == {
        ("Deployment", "skysift-s3"): ["CKV_K8S_35"], ("Pod", "skysift-test"): ["CKV_K8S_8", "CKV_K8S_9"]}


def test_notes_tell_how_to_run_helm_test():
    notes = helm.render(name="skysift", namespace="astro")["skysift/templates/NOTES.txt"]
    assert "helm test skysift -n astro" in notes
    assert "helm test" not in helm.render({"tests": {"enabled": False}})["skysift/templates/NOTES.txt"]
