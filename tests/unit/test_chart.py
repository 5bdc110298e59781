"""The Helm chart, rendered offline by Helm v4 (helm-python-sdk) for each values file and checked against the
Kubernetes 1.30 API schemas and against the product's own contracts: commands, settings, secrets, ports."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import helm_python
import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

import skysift
from skysift import config
from tests import helm
from tests.helm import KUBE_VERSION, parse_skysift, validate

OVERLAYS = ["default", "kind", "minikube", "external"]
SERVICES = list(config.SERVICES)
ALL_SECRETS_AS_VALUES = {"secrets": {name: {"value": f"value-of-{name}"} for name in (
    "s3AccessKeyId", "s3SecretAccessKey", "kafkaSaslPassword", "lasairToken", "skyportalToken", "slackWebhookUrl",
    "slackBotToken", "appPassword")}}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    values = helm.overlay(request.param)
    return values, helm.objects(values)


def of_kind(objs, kind):
    return [d for d in objs if d["kind"] == kind]


def named(objs, kind, name):
    return next(d for d in objs if d["kind"] == kind and d["metadata"]["name"] == name)


def pod_specs(objs):
    """(object name, pod spec, pod labels) of every workload."""
    for d in objs:
        if d["kind"] in ("Deployment", "Job"):
            template = d["spec"]["template"]
        elif d["kind"] == "CronJob":
            template = d["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield d["metadata"]["name"], template["spec"], template["metadata"]["labels"]


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of the product: skysift.config and each unit's settings module."""
    modules = [config]
    for path in sorted(Path(skysift.__file__).parent.glob("*/settings.py")):  # units may be namespace packages
        modules.append(importlib.import_module(f"skysift.{path.parent.name}.settings"))
    return [obj for m in modules for obj in vars(m).values()
            if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj.__module__ == m.__name__]


def env_names(secret: bool) -> set[str]:
    names = set()
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for field, info in cls.model_fields.items():
            is_secret = info.annotation is SecretStr or SecretStr in typing.get_args(info.annotation)
            if is_secret == secret:
                names.add(f"{prefix}{field}".upper())
    return names


# -- Kubernetes API validity ----------------------------------------------------------------------------------

def test_every_manifest_is_valid_for_kubernetes_1_30(rendered):
    _, objs = rendered
    assert objs
    for doc in objs:
        validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_helm_lint_finds_nothing_above_info(overlay):
    report = helm_python.lint(helm.CHART, helm.overlay(overlay), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_all_secrets_given_as_values_render_valid_manifests():
    for doc in helm.objects(ALL_SECRETS_AS_VALUES):
        validate(doc)


# -- values.schema.json ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, where", [
    ({"poll": {"schedule": 5}}, "/poll/schedule"),
    ({"poll": {"schedule": "every hour"}}, "/poll/schedule"),
    ({"servics": {}}, "servics"),
    ({"settings": {"storeUrl": "/data/store"}}, "/settings/storeUrl"),
    ({"round": {"strategy": "best"}}, "/round/strategy"),
    ({"services": {"ingest": {"replicas": -1}}}, "/services/ingest/replicas"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"settings": {"kafka": {"saslMechanism": "GSSAPI"}}}, "/settings/kafka/saslMechanism"),
    ({"settings": {"extraEnv": {"SKYSIFT_APP_PASSWORD": "hunter2"}}}, "SKYSIFT_APP_PASSWORD"),
    ({"secrets": {"lasairToken": {"existingSecret": "x", "key": "a/b"}}}, "/secrets/lasairToken/key"),
])
def test_schema_rejects_broken_values_naming_the_key(bad, where):
    with pytest.raises(helm_python.HelmValuesError, match=where):
        helm.render(bad)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipped_values_files_pass_the_schema(overlay):
    with helm_python.Chart.load(helm.CHART) as chart:
        chart.validate_schema(chart.merge_values(helm.overlay(overlay)))


# -- commands, ports and probes -------------------------------------------------------------------------------

def skysift_command_lines(objs) -> dict[str, list[str]]:
    """Workload name -> the arguments of its `skysift` container."""
    return {name: c["args"] for name, spec, _ in pod_specs(objs) for c in spec["containers"]
            if c["command"] == ["skysift"]}


def test_service_and_poll_commands_are_real_skysift_commands(rendered):
    _, objs = rendered
    lines = skysift_command_lines(objs)
    assert set(lines) == {f"skysift-{s}" for s in SERVICES} | {"skysift-poll", "skysift-round", "skysift-app"}
    for name, args in lines.items():
        if name != "skysift-round":
            assert parse_skysift(args).name == args[0], name


def test_round_command_is_a_real_skysift_command(rendered):
    _, objs = rendered
    args = skysift_command_lines(objs)["skysift-round"]
    assert parse_skysift(args).name == "round"


def test_round_cronjob_is_suspended_and_named_for_kubectl_create_job():
    objs = helm.objects(name="demo")
    cronjob = named(objs, "CronJob", "demo-skysift-round")
    assert cronjob["spec"]["suspend"] is True
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][:1] == ["round"]


def test_long_release_names_keep_cronjob_names_within_52_characters():
    objs = helm.objects(name="a-very-long-release-name-for-the-astro-team-cluster")
    assert all(len(d["metadata"]["name"]) <= 52 for d in of_kind(objs, "CronJob"))


def test_poll_cronjob_has_the_hourly_schedule_contract():
    spec = named(helm.objects(), "CronJob", "skysift-poll")["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("0 * * * *", "Etc/UTC", "Forbid")
    assert spec["startingDeadlineSeconds"] > 0 and spec["jobTemplate"]["spec"]["backoffLimit"] >= 0


def test_service_probes_and_services_point_at_the_grpc_port(rendered):
    _, objs = rendered
    cm = of_kind(objs, "ConfigMap")[0]["data"]
    for service in SERVICES:
        name = f"skysift-{service}"
        container = named(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        port = int(args[args.index("--port") + 1])
        grpc_ports = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
        assert grpc_ports == [port]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, probe
        svc_port = next(p for p in named(objs, "Service", name)["spec"]["ports"] if p["name"] == "grpc")
        assert svc_port["targetPort"] == "grpc"
        assert cm[f"SKYSIFT_{service.upper()}_ADDRESS"] == f"dns:///{name}:{svc_port['port']}"


def test_services_bind_all_interfaces_in_the_cluster(rendered):
    _, objs = rendered
    assert of_kind(objs, "ConfigMap")[0]["data"]["SKYSIFT_HOST"] == "0.0.0.0"


# -- settings and secrets -------------------------------------------------------------------------------------

def test_configmap_variables_are_known_non_secret_settings(rendered):
    _, objs = rendered
    known, secret = env_names(secret=False), env_names(secret=True)
    for name in of_kind(objs, "ConfigMap")[0]["data"]:
        if name.startswith("SKYSIFT_") and name != "SKYSIFT_SECRETS_DIR":  # that one is read by config.secrets_dir
            assert name in known, f"{name} is no field of any skysift settings class"
            assert name not in secret


def test_secret_files_are_the_names_settings_read_from_the_secrets_dir():
    secret_names = {n.lower() for n in env_names(secret=True)}
    paths = set()
    for _, spec, _ in pod_specs(helm.objects(ALL_SECRETS_AS_VALUES)):
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                paths.update(item["path"] for item in source["secret"]["items"])
    assert len(paths) == len(ALL_SECRETS_AS_VALUES["secrets"])
    assert paths <= secret_names, paths - secret_names


def test_secret_file_names_are_read_by_pydantic_settings(tmp_path, monkeypatch):
    """What the chart mounts is what config.load() picks up: the file named after the variable."""
    (tmp_path / "skysift_s3_secret_access_key").write_text("from-a-file")
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("SKYSIFT_S3_SECRET_ACCESS_KEY", raising=False)
    assert config.load().s3_secret_access_key.get_secret_value() == "from-a-file"


def secret_references(objs):
    """(secret name, key) of every secretKeyRef, projected secret and secret volume."""
    for _, spec, _ in pod_specs(objs):
        for container in spec["containers"]:
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"]
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                for item in source["secret"]["items"]:
                    yield source["secret"]["name"], item["key"]
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    yield volume["secret"]["secretName"], item["key"]


def test_secret_references_resolve_to_the_chart_secret_when_given_as_values():
    objs = helm.objects({**ALL_SECRETS_AS_VALUES, "bundledS3": {"enabled": True}})
    secret = named(objs, "Secret", "skysift-values")
    refs = set(secret_references(objs))
    assert refs and refs <= {("skysift-values", key) for key in secret["data"]}


def test_secret_references_name_only_the_existing_secrets_of_the_values(rendered):
    values, objs = rendered
    existing = {entry["existingSecret"] for entry in values.get("secrets", {}).values()}
    existing |= {values.get("app", {}).get("streamlitSecrets", {}).get("existingSecret")}
    generated = not values  # the defaults run the bundled S3 with keys the chart generates into its own Secret
    assert {name for name, _ in secret_references(objs)} <= existing | ({"skysift-values"} if generated else set())
    assert [s["metadata"]["name"] for s in of_kind(objs, "Secret")] == (["skysift-values"] if generated else [])


def test_secret_values_never_reach_a_configmap():
    objs = helm.objects(ALL_SECRETS_AS_VALUES)
    text = str(of_kind(objs, "ConfigMap"))
    assert not any(f"value-of-{name}" in text for name in ALL_SECRETS_AS_VALUES["secrets"])


def test_each_component_gets_only_the_secrets_it_uses():
    objs = helm.objects(ALL_SECRETS_AS_VALUES)
    files = {}
    for name, spec, _ in pod_specs(objs):
        files[name] = {item["path"] for v in spec.get("volumes", []) for s in v.get("projected", {}).get("sources", [])
                       for item in s["secret"]["items"]}
    assert "skysift_kafka_sasl_password" in files["skysift-ingest"]
    assert "skysift_kafka_sasl_password" not in files["skysift-trainer"]
    assert files["skysift-app"] == {"skysift_s3_access_key_id", "skysift_s3_secret_access_key", "skysift_app_password"}


def test_bundled_s3_without_credentials_gets_generated_keys_the_pods_share():
    objs = helm.objects()
    data = named(objs, "Secret", "skysift-values")["data"]
    assert set(data) == {"access-key-id", "secret-access-key"} and all(len(v) >= 32 for v in data.values())
    s3 = named(objs, "Deployment", "skysift-s3")["spec"]["template"]["spec"]["containers"][0]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in s3["env"] if "valueFrom" in e} == {"skysift-values"}
    assert ("skysift-values", "secret-access-key") in set(secret_references(objs))


def test_bundled_s3_with_half_its_credentials_fails_with_what_to_set():
    with pytest.raises(helm_python.HelmRenderError, match="secrets.s3AccessKeyId"):
        helm.render({"secrets": {"s3SecretAccessKey": {"existingSecret": "mine"}}})


def test_two_mlflows_fail_with_what_to_set():
    with pytest.raises(helm_python.HelmRenderError, match="bundledMlflow.enabled=false"):
        helm.render({"settings": {"mlflowTrackingUri": "http://mlflow:5000"}})


def test_kind_values_keep_everything_in_the_cluster():
    objs = helm.objects(helm.overlay("kind"))
    data = of_kind(objs, "ConfigMap")[0]["data"]
    assert data["SKYSIFT_S3_ENDPOINT_URL"] == "http://skysift-s3:8333"
    assert data["SKYSIFT_MLFLOW_TRACKING_URI"] == "http://skysift-mlflow:5000"
    assert data["SKYSIFT_INGEST_SOURCE"] == "replay"
    s3 = named(objs, "Deployment", "skysift-s3")["spec"]["template"]["spec"]["containers"][0]
    assert "-bucket=skysift" in s3["args"]


# -- security -------------------------------------------------------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                   "secret"}


def restricted_violations(spec: dict) -> list[str]:
    """The checks of the Pod Security Standard "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    problems = []
    pod = spec.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            problems.append(host)
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}")
    if pod.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("pod seccompProfile")
    if pod.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']} allowPrivilegeEscalation")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{c['name']} capabilities.drop")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']} capabilities.add")
        if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{c['name']} runAsNonRoot")
        if sc.get("privileged") or sc.get("runAsUser") == 0:
            problems.append(f"{c['name']} privileged/root")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{c['name']} hostPort")
        if not sc.get("readOnlyRootFilesystem"):  # not required by "restricted": the image promises it
            problems.append(f"{c['name']} readOnlyRootFilesystem")
    return problems


def test_every_pod_meets_restricted_pod_security(rendered):
    _, objs = rendered
    for name, spec, _ in pod_specs(objs):
        assert restricted_violations(spec) == [], name


def test_no_pod_has_a_kubernetes_api_token_or_role():
    """The app's "run a round now" calls Trainer.RunRound: no pod may create Jobs (which could run any pod spec
    and mount every Secret of the namespace)."""
    objs = helm.objects()
    tokens = {name for name, spec, _ in pod_specs(objs) if spec.get("automountServiceAccountToken") is not False}
    assert tokens == set()
    assert not [d for d in objs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    app = containers(objs, "skysift-app")["app"]
    assert not [e for e in app["env"] if e["name"].startswith("SKYSIFT_K8S_")]


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policy_lets_only_the_app_and_cronjobs_reach_the_services(rendered):
    _, objs = rendered
    policy = named(objs, "NetworkPolicy", "skysift-services")
    pods = {name: labels for name, _, labels in pod_specs(objs)}
    guarded = {name for name, labels in pods.items() if selects(policy["spec"]["podSelector"], labels)}
    assert guarded == {f"skysift-{s}" for s in SERVICES}
    grpc_rules = [r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "grpc", "protocol": "TCP"}]]
    assert len(grpc_rules) == 1
    admitted = {name for name, labels in pods.items()
                if any(selects(peer["podSelector"], labels) for peer in grpc_rules[0]["from"])}
    assert admitted == {"skysift-app", "skysift-poll", "skysift-round"}


def test_bundled_stores_admit_only_this_release(rendered):
    _, objs = rendered
    for policy in of_kind(objs, "NetworkPolicy"):
        if policy["metadata"]["name"] in ("skysift-s3", "skysift-mlflow"):
            peers = policy["spec"]["ingress"][0]["from"]
            assert peers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "skysift"}}}]


# -- conventions and notes ------------------------------------------------------------------------------------

RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
               "app.kubernetes.io/version", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
               "helm.sh/chart")


def test_objects_carry_the_recommended_labels_and_selectors_match_pods(rendered):
    _, objs = rendered
    for doc in objs:
        assert set(RECOMMENDED) <= set(doc["metadata"]["labels"]), doc["metadata"]["name"]
    for deployment in of_kind(objs, "Deployment"):
        assert selects(deployment["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    deployments = of_kind(objs, "Deployment")
    for svc in of_kind(objs, "Service"):
        matched = [d for d in deployments if selects({"matchLabels": svc["spec"]["selector"]},
                                                     d["spec"]["template"]["metadata"]["labels"])]
        assert [d["metadata"]["name"] for d in matched] == [svc["metadata"]["name"]]


def test_notes_tell_how_to_open_the_app_and_mlflow_and_trigger_a_round():
    notes = helm.render(name="skysift", namespace="astro")["skysift/templates/NOTES.txt"]
    assert "port-forward svc/skysift-app 8501:8501" in notes
    assert "port-forward svc/skysift-mlflow 5000:5000" in notes
    assert "create job --from=cronjob/skysift-round round-$(date +%s)" in notes
    assert "-n astro" in notes


def test_round_and_inference_model_tags_are_known_tags():
    from skysift.modeltags import tags

    with helm_python.Chart.load(helm.CHART) as chart:
        values = chart.merge_values(helm.overlay("external"))
    assert values["round"]["modelTag"] in tags()
    assert set(values["settings"]["inference"]["modelTags"]) <= set(tags())


# -- scaling out: continuous ingest, backfill of archived nights -----------------------------------------------

CONSUMER = {"services": {"ingest": {"replicas": 4, "consumer": {"enabled": True}}}, "poll": {"enabled": False}}
NIGHTS = ["20240501", "20240502", "20240503"]
BACKFILL = {"backfill": {"enabled": True, "nights": NIGHTS, "parallelism": 2,
                         "archive": {"existingClaim": "ztf-archive", "subPath": "ztf/public"}}}
SCALED_OUT = {**CONSUMER, **BACKFILL, **ALL_SECRETS_AS_VALUES}


def containers(objs, name) -> dict[str, dict]:
    spec = next(spec for n, spec, _ in pod_specs(objs) if n == name)
    return {c["name"]: c for c in spec["containers"]}


def backfill_job(objs) -> dict:
    (job,) = of_kind(objs, "Job")
    return job


def test_scaled_out_values_render_valid_manifests_that_lint_clean():
    objs = helm.objects(SCALED_OUT)
    for doc in objs:
        validate(doc)
    report = helm_python.lint(helm.CHART, SCALED_OUT, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_scaled_out_pods_meet_restricted_pod_security_and_carry_the_recommended_labels():
    objs = helm.objects(SCALED_OUT)
    for name, spec, labels in pod_specs(objs):
        assert restricted_violations(spec) == [], name
        assert set(RECOMMENDED) - {"helm.sh/chart"} <= set(labels), name


def test_consumer_runs_a_real_skysift_poll_loop_beside_each_ingest_server():
    objs = helm.objects(CONSUMER)
    ingest = named(objs, "Deployment", "skysift-ingest")
    assert ingest["spec"]["replicas"] == 4  # one consumer of the group per replica: set to the partitions
    pod = containers(objs, "skysift-ingest")
    assert set(pod) == {"ingest", "poller"}
    serve, poller = pod["ingest"]["args"], pod["poller"]["args"]
    assert parse_skysift(serve).name == "serve" and parse_skysift(poller).name == "poll"
    assert poller[:3] == ["poll", "--every", "0s"] and "--in-process" not in poller
    address = {e["name"]: e["value"] for e in pod["poller"]["env"]}["SKYSIFT_INGEST_ADDRESS"]
    assert address == f"127.0.0.1:{serve[serve.index('--port') + 1]}"  # its own pod's server, not the Service


def test_consumer_uses_the_configured_consumer_group():
    objs = helm.objects({**CONSUMER, "settings": {"kafka": {"groupId": "astro-night-shift"}}})
    assert of_kind(objs, "ConfigMap")[0]["data"]["SKYSIFT_KAFKA_GROUP_ID"] == "astro-night-shift"
    assert "env" not in containers(objs, "skysift-ingest")["ingest"]  # every replica reads the same group id


def test_consumer_pods_may_call_the_other_stages_through_the_network_policy():
    objs = helm.objects(CONSUMER)
    policy = named(objs, "NetworkPolicy", "skysift-services")
    grpc_rule = next(r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "grpc", "protocol": "TCP"}])
    labels = next(labels for name, _, labels in pod_specs(objs) if name == "skysift-ingest")
    assert any(selects(peer["podSelector"], labels) for peer in grpc_rule["from"])


def test_poller_gets_no_secret_and_ingest_keeps_its_own():
    objs = helm.objects({**CONSUMER, **ALL_SECRETS_AS_VALUES})
    pod = containers(objs, "skysift-ingest")
    assert {m["name"] for m in pod["poller"]["volumeMounts"]} == {"tmp"}
    assert "secrets" in {m["name"] for m in pod["ingest"]["volumeMounts"]}


def test_consumer_and_the_hourly_poll_together_fail_with_what_to_set():
    with pytest.raises(helm_python.HelmRenderError, match="set poll.enabled=false"):
        helm.render({"services": {"ingest": {"consumer": {"enabled": True}}}})


def test_backfill_is_an_indexed_job_with_one_index_per_night():
    spec = backfill_job(helm.objects(BACKFILL))["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 2)
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    pod = spec["template"]["spec"]
    archive = next(v for v in pod["volumes"] if v["name"] == "archive")
    assert archive["persistentVolumeClaim"] == {"claimName": "ztf-archive", "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "archive")
    assert mount == {"name": "archive", "mountPath": "/archive", "subPath": "ztf/public", "readOnly": True}


def run_backfill_command(container: dict, index: int, tmp_path) -> tuple[int, list[str], str]:
    """Run the container's command with /bin/sh as the pod would, Kubernetes' JOB_COMPLETION_INDEX set, and a
    stand-in `skysift` on PATH that records its arguments instead of polling."""
    stub = tmp_path / "bin" / "skysift"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {"JOB_COMPLETION_INDEX": str(index), "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else [], done.stderr


@pytest.mark.parametrize("index", range(len(NIGHTS)))
def test_each_backfill_index_runs_a_real_skysift_poll_of_its_own_night(index, tmp_path):
    container = backfill_job(helm.objects(BACKFILL))["spec"]["template"]["spec"]["containers"][0]
    code, argv, err = run_backfill_command(container, index, tmp_path)
    assert code == 0, err
    command = parse_skysift(argv)
    assert command.name == "poll"
    params = command.make_context("poll", argv[1:]).params
    assert params["from_path"] == f"/archive/{NIGHTS[index]}"
    assert params["in_process"] and params["drain"]


def test_backfill_index_without_a_night_fails_saying_so(tmp_path):
    container = backfill_job(helm.objects(BACKFILL))["spec"]["template"]["spec"]["containers"][0]
    code, _, err = run_backfill_command(container, len(NIGHTS), tmp_path)
    assert code == 1 and "no night for index 3" in err


def test_backfill_job_name_follows_its_spec():
    """A Job's pod template is immutable: new nights must make a new Job, unchanged values the same one."""
    first = backfill_job(helm.objects(BACKFILL))["metadata"]["name"]
    again = backfill_job(helm.objects({**BACKFILL, "app": {"replicas": 2}}))["metadata"]["name"]
    more = backfill_job(helm.objects({"backfill": {**BACKFILL["backfill"], "nights": [*NIGHTS, "20240504"]}}))
    assert first == again and first.startswith("skysift-backfill-")
    assert more["metadata"]["name"] != first
    long = helm.objects({**BACKFILL}, name="a-very-long-release-name-for-the-astro-team-cluster")
    assert len(backfill_job(long)["metadata"]["name"]) <= 53  # room for "-<index>" in the pods' hostnames


def test_backfill_gets_the_store_and_lasair_secrets_only_and_posts_to_no_sink():
    objs = helm.objects({**BACKFILL, **ALL_SECRETS_AS_VALUES})
    job = backfill_job(objs)["spec"]["template"]["spec"]
    files = {item["path"] for v in job["volumes"] for s in v.get("projected", {}).get("sources", [])
             for item in s["secret"]["items"]}
    assert files == {"skysift_s3_access_key_id", "skysift_s3_secret_access_key", "skysift_enrichment_lasair_token"}
    env = {e["name"]: e["value"] for e in job["containers"][0]["env"]}
    assert env["SKYSIFT_SKYPORTAL_URL"] == ""


@pytest.mark.parametrize("bad, where", [
    ({"backfill": {"enabled": True, "archive": {"existingClaim": "a"}}}, "/backfill/nights"),
    ({"backfill": {"enabled": True, "nights": ["20240501"]}}, "/backfill/archive/existingClaim"),
    ({"backfill": {"nights": ["../etc"]}}, "/backfill/nights/0"),
    ({"backfill": {"nights": ["2024 0501"]}}, "/backfill/nights/0"),
    ({"backfill": {"parallelism": 0}}, "/backfill/parallelism"),
    ({"services": {"ingest": {"consumer": {"every": "5 minutes"}}}}, "/services/ingest/consumer/every"),
    ({"services": {"enrichment": {"consumer": {"enabled": True}}}}, "consumer"),
    ({"poll": {"timeout": "500ms"}}, "/poll/timeout"),
])
def test_schema_rejects_broken_scale_out_values_naming_the_key(bad, where):
    with pytest.raises(helm_python.HelmValuesError, match=where):
        helm.render(bad)


def test_durations_the_schema_accepts_are_durations_the_cli_reads():
    from skysift.cli import parse_duration

    pattern = json.loads((helm.CHART / "values.schema.json").read_text())["definitions"]["duration"]["pattern"]
    for text in ("0s", "60s", "5m", "1.5h", "90"):
        assert re.match(pattern, text) and parse_duration(text) >= 0, text


def test_notes_tell_how_to_follow_the_consumers_and_the_backfill():
    notes = helm.render({**CONSUMER, **BACKFILL}, name="skysift", namespace="astro")["skysift/templates/NOTES.txt"]
    assert "4 ingest pod(s), each one consumer of the Kafka group \"skysift\"" in notes
    assert "kubectl -n astro logs -f deploy/skysift-ingest -c poller" in notes
    assert "Backfill of 3 archived night(s), 2 at a time, from the PVC ztf-archive" in notes
    assert "kubectl -n astro get jobs,pods -l app.kubernetes.io/instance=skysift,app.kubernetes.io/component=backfill" in notes
