"""Authentication and roles on a real loopback gRPC server (Trainer and Inference), and a real `skysift serve`
process for the log: no token or an unknown one is UNAUTHENTICATED, a role that does not cover the method is
PERMISSION_DENIED, health and reflection need nothing, a label's user is the caller's identity (or the user the
app names), calls per identity are limited, and no token reaches a log."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from skysift import config, errors
from skysift.access import AuthSettings, RateLimiter, TokenTable, new_token
from skysift.inference.core import InferenceStage
from skysift.inference.service import InferenceServicer
from skysift.rpc import server
from skysift.store import open_store
from skysift.trainer.service import TrainerServicer
from skysift.v1 import (
    enrichment_pb2,
    enrichment_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from tests import servers
from tests.servers import TOKENS


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    settings = config.Settings(store_url=str(tmp_path_factory.mktemp("auth") / "store"))
    store = open_store(settings=settings)
    with servers.serving(settings, {
            "Trainer": (trainer_pb2_grpc.add_TrainerServicer_to_server, TrainerServicer(settings, store)),
            "Inference": (inference_pb2_grpc.add_InferenceServicer_to_server,
                          InferenceServicer(InferenceStage(settings, store)))}) as running:
        yield running


def code_of(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def calls(ch):
    trainer, inference = trainer_pb2_grpc.TrainerStub(ch), inference_pb2_grpc.InferenceStub(ch)
    return {
        "ListModels": lambda: inference.ListModels(inference_pb2.ListModelsRequest(), timeout=10),
        "GetLabels": lambda: trainer.GetLabels(trainer_pb2.GetLabelsRequest(candids=[1]), timeout=10),
        "ListDatasets": lambda: trainer.ListDatasets(trainer_pb2.ListDatasetsRequest(), timeout=10),
        "StreamScores": lambda: list(inference.StreamScores(inference_pb2.ScoreRequest(features_key="x"), timeout=10)),
    }


@pytest.mark.parametrize("token", [None, "not-a-token", new_token()], ids=["none", "garbage", "unknown"])
def test_a_call_without_a_known_token_is_unauthenticated_but_health_and_reflection_answer(running, token):
    with servers.channel(running.port, token=token) as ch:
        assert {name: code_of(fn) for name, fn in calls(ch).items()} == dict.fromkeys(
            calls(ch), grpc.StatusCode.UNAUTHENTICATED)
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="skysift.v1.Trainer"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        listing = list(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "skysift.v1.Trainer" in {s.name for s in listing[0].list_services_response.service}


def test_a_token_in_another_scheme_is_unauthenticated(running):
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        stub = trainer_pb2_grpc.TrainerStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListDatasets(trainer_pb2.ListDatasetsRequest(), timeout=10,
                              metadata=(("authorization", f"Basic {TOKENS['operator']}"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TOKENS["operator"] not in info.value.details()


DENIED, OK = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OK


def gate(code: grpc.StatusCode) -> str:
    """What the gate decided: a call let through may still fail on its request (StreamScores of a missing key)."""
    return {DENIED: "denied", grpc.StatusCode.UNAUTHENTICATED: "unauthenticated"}.get(code, "allowed")


@pytest.mark.parametrize("who,denied", [
    ("scorer", {"GetLabels", "ListDatasets"}),
    ("labeller", {"ListModels", "ListDatasets", "StreamScores"}),
    ("operator", set()),
])
def test_each_role_reaches_its_methods_only(running, who, denied):
    with servers.channel(running.port, token=TOKENS[who]) as ch:
        got = {name: gate(code_of(fn)) for name, fn in calls(ch).items()}
    assert got == {name: "denied" if name in denied else "allowed" for name in got}


def submit(ch, user_field: str = "", header_user: str | None = None, candid: int = 7):
    return trainer_pb2_grpc.TrainerStub(ch).SubmitLabels(
        trainer_pb2.SubmitLabelsRequest(labels=[trainer_pb2.LabelEvent(candid=candid, label="bogus", user=user_field)]),
        timeout=10, metadata=servers.as_user(header_user) if header_user else None)


def latest_user(ch, candid: int) -> str:
    labels = trainer_pb2_grpc.TrainerStub(ch).GetLabels(trainer_pb2.GetLabelsRequest(candids=[candid]), timeout=10)
    return labels.labels[0].user


def test_a_labellers_label_is_recorded_under_its_identity_and_it_cannot_name_another(running):
    with servers.channel(running.port, token=TOKENS["labeller"]) as ch:
        submit(ch, candid=11)
        assert latest_user(ch, 11) == "test-labeller"
        submit(ch, user_field="test-labeller", candid=12)  # naming itself is fine
        assert code_of(lambda: submit(ch, user_field="mallory", candid=13)) == DENIED
        assert code_of(lambda: submit(ch, header_user="mallory", candid=13)) == DENIED
        assert latest_user(ch, 12) == "test-labeller"
        assert not trainer_pb2_grpc.TrainerStub(ch).GetLabels(trainer_pb2.GetLabelsRequest(candids=[13])).labels


def test_the_app_labels_for_the_user_it_names_in_the_header_only(running):
    with servers.channel(running.port, token=TOKENS["operator"]) as ch:  # the test operator token has the app role
        submit(ch, user_field="carol", header_user="carol", candid=21)
        assert latest_user(ch, 21) == "carol"
        assert code_of(lambda: submit(ch, user_field="mallory", header_user="carol", candid=22)) == DENIED
        assert code_of(lambda: submit(ch, header_user="carol admin", candid=22)) == DENIED
        submit(ch, candid=23)  # no header: the app's own identity
        assert latest_user(ch, 23) == "test-operator"


def trainer_alone(tmp_path):
    settings = config.Settings(store_url=str(tmp_path / "store"))
    return settings, {"Trainer": (trainer_pb2_grpc.add_TrainerServicer_to_server,
                                  TrainerServicer(settings, open_store(settings=settings)))}


def test_calls_beyond_the_identitys_rate_are_resource_exhausted(tmp_path):
    settings, trainer = trainer_alone(tmp_path)
    with servers.serving(settings, trainer, auth=AuthSettings(calls_per_second=0.01, burst=3)) as r:
        with servers.channel(r.port, token=TOKENS["labeller"]) as ch:
            stub = trainer_pb2_grpc.TrainerStub(ch)
            codes = [code_of(lambda: stub.GetLabels(trainer_pb2.GetLabelsRequest(candids=[1]), timeout=10))
                     for _ in range(4)]
        with servers.channel(r.port, token=TOKENS["operator"]) as ch:  # another identity has its own bucket
            other = code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(trainer_pb2.GetLabelsRequest(), timeout=10))
    assert codes == [OK, OK, OK, grpc.StatusCode.RESOURCE_EXHAUSTED] and other == OK


def test_the_bucket_refills_at_the_configured_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    limiter.take("a"), limiter.take("a")
    with pytest.raises(errors.ResourceExhausted):
        limiter.take("a")
    now[0] = 0.5  # one call's worth
    limiter.take("a")
    with pytest.raises(errors.ResourceExhausted):
        limiter.take("a")


def test_a_server_without_a_token_table_does_not_start():
    with pytest.raises(errors.ConfigError, match="no token table"):
        server.start("none", lambda s: [], config.Settings(), port=0, auth=AuthSettings(tokens=None, tokens_file=None))


@pytest.mark.parametrize("table,message", [
    ("short alice labeller", "shorter than 32"),
    (f"{'k' * 40} alice labeller,root", "unknown role"),
    (f"{'k' * 40} alice", "expected 'TOKEN IDENTITY"),
    (f"{'k' * 40} a/b labeller", "identity 'a/b'"),
    (f"{'k' * 40} a labeller\n{'k' * 40} b scorer", "listed twice"),
    ("# nothing\n", "no token"),
])
def test_a_malformed_token_table_names_the_line_never_the_token(table, message):
    with pytest.raises(errors.ConfigError, match=message) as info:
        TokenTable.parse(table)
    assert "k" * 40 not in str(info.value)


def test_tokens_come_from_files_mounted_under_the_secrets_dir(tmp_path, monkeypatch):
    (tmp_path / "SKYSIFT_AUTH_TOKENS").write_text(f"{'t' * 40} bob labeller\n")
    (tmp_path / "SKYSIFT_AUTH_TOKEN").write_text(f"{'t' * 40}\n")
    monkeypatch.delenv("SKYSIFT_AUTH_TOKENS")
    monkeypatch.delenv("SKYSIFT_AUTH_TOKEN")
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path))
    auth = config.load(AuthSettings)
    assert auth.table().authenticate(auth.bearer()).name == "bob"


def test_no_token_reaches_the_service_log(tmp_path):
    env = {"SKYSIFT_STORE_URL": str(tmp_path / "store"), "SKYSIFT_LOG_LEVEL": "DEBUG", "GRPC_VERBOSITY": "debug"}
    proc = servers.start_service("enrichment", env, tmp_path)
    stray = new_token()
    try:
        for token in (TOKENS["operator"], TOKENS["scorer"], stray, None):
            with servers.channel(proc.port, token=token) as ch:
                code_of(lambda: enrichment_pb2_grpc.EnrichmentStub(ch).Enrich(
                    enrichment_pb2.EnrichRequest(alerts_key="alerts/survey=ztf/night=20250101/x_alerts.parquet"),
                    timeout=30))
    finally:
        proc.stop()
    log = proc.log_path.read_text()
    assert '"refused"' in log and "PERMISSION_DENIED" in log and "UNAUTHENTICATED" in log  # the calls were logged
    assert [t for t in (*TOKENS.values(), stray) if t in log] == []


def _certificates(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("skysift test CA")).issuer_name(name("skysift test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(stem, cn, serial, names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(serial).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(ca_key, hashes.SHA256()))
        (tmp_path / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / f"{stem}-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return tmp_path / f"{stem}.pem", tmp_path / f"{stem}-key.pem"

    server_cert = leaf("server", "127.0.0.1", 2, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_cert = leaf("client", "skysift poll", 3, [x509.DNSName("poll.skysift.test")])
    return tmp_path / "ca.pem", server_cert, client_cert


def test_over_tls_a_client_trusting_the_ca_gets_in_with_its_token_and_a_plaintext_one_does_not(tmp_path):
    from skysift.rpc import channels

    ca, (cert, key), _ = _certificates(tmp_path)
    settings, trainer = trainer_alone(tmp_path)
    request = trainer_pb2.GetLabelsRequest(candids=[1])
    with servers.serving(settings, trainer, auth=AuthSettings(tls_cert_file=cert, tls_key_file=key)) as r:
        with channels.channel(f"127.0.0.1:{r.port}", auth=AuthSettings(token=TOKENS["labeller"], tls_ca_file=ca)) as ch:
            assert code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(request, timeout=10)) == OK
        with channels.channel(f"127.0.0.1:{r.port}", auth=AuthSettings(token=None, tls_ca_file=ca)) as ch:
            assert code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(request, timeout=10)) == \
                grpc.StatusCode.UNAUTHENTICATED  # TLS does not replace the token
        with servers.channel(r.port, token=TOKENS["labeller"]) as ch:  # plaintext to a TLS port
            assert code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(request, timeout=5)) == \
                grpc.StatusCode.UNAVAILABLE


def test_with_a_client_ca_a_client_without_a_certificate_is_refused_and_one_with_a_signed_certificate_gets_in(
        tmp_path):
    """mTLS: SKYSIFT_AUTH_TLS_CLIENT_CA_FILE on the server makes the handshake itself refuse a client that presents
    no certificate signed by that CA; the token is still checked on top."""
    from skysift.rpc import channels

    ca, (cert, key), (client_cert, client_key) = _certificates(tmp_path)
    settings, trainer = trainer_alone(tmp_path)
    request = trainer_pb2.GetLabelsRequest(candids=[1])
    mtls = AuthSettings(tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=ca)
    with servers.serving(settings, trainer, auth=mtls) as r:
        address = f"127.0.0.1:{r.port}"
        with channels.channel(address, auth=AuthSettings(token=TOKENS["labeller"], tls_ca_file=ca)) as ch:
            assert code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(request, timeout=5)) == \
                grpc.StatusCode.UNAVAILABLE  # no client certificate: the handshake fails
        with channels.channel(address, auth=AuthSettings(token=TOKENS["labeller"], tls_ca_file=ca,
                                                         tls_client_cert_file=client_cert,
                                                         tls_client_key_file=client_key)) as ch:
            assert code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(request, timeout=10)) == OK
        with channels.channel(address, auth=AuthSettings(token=None, tls_ca_file=ca, tls_client_cert_file=client_cert,
                                                         tls_client_key_file=client_key)) as ch:
            assert code_of(lambda: trainer_pb2_grpc.TrainerStub(ch).GetLabels(request, timeout=10)) == \
                grpc.StatusCode.UNAUTHENTICATED  # a certificate does not replace the token
