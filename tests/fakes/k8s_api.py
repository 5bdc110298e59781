"""A Kubernetes API server for the two calls of `kubectl create job --from=cronjob/...`, over TLS on loopback.

No real API server can run on this machine, so this one reproduces what those calls meet in a cluster:
- HTTPS with a cluster CA and a ServiceAccount bearer token (the in-cluster client loads both from files);
- authentication (401 for an unknown token) and RBAC authorization from the chart's own Role and RoleBinding,
  evaluated as Kubernetes does, before the object is looked up: rules match apiGroup, resource and verb, and a
  rule with resourceNames never matches `create`;
- GET /apis/batch/v1/namespaces/{ns}/cronjobs/{name} (200, 404) and POST /apis/batch/v1/namespaces/{ns}/jobs
  (201, 400 for a wrong kind or namespace, 409 AlreadyExists, 422 Invalid), answering with metav1.Status
  bodies whose reason and message read like the real ones;
- a created Job must pass the Kubernetes 1.30 schema (kubernetes-validate, strict: unknown fields are errors,
  where a real server would only drop them with a warning) and gets uid, resourceVersion and creationTimestamp.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate

KUBE_VERSION = "1.30.0"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PATHS = {
    ("GET", re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/cronjobs/([^/]+)$")): "get_cronjob",
    ("POST", re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs$")): "create_job",
}


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A CA-style certificate for 127.0.0.1 (the role of the cluster CA in ca.crt) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.crt", directory / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class FakeKubeAPI:
    """Objects by (namespace, resource, name); users by token; RBAC from Role/RoleBinding manifests."""

    def __init__(self, workdir: Path):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.tokens: dict[str, str] = {}
        self.roles: dict[tuple[str, str], dict] = {}
        self.bindings: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.ca_cert, key = self_signed_cert(workdir)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)

    # -- set-up -----------------------------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_service_account(self, namespace: str, name: str) -> str:
        token = uuid.uuid4().hex
        self.tokens[token] = f"system:serviceaccount:{namespace}:{name}"
        return token

    def apply(self, manifest: dict, namespace: str) -> dict:
        """Store an object as the API server would after a create (CronJobs, Roles, RoleBindings)."""
        obj = json.loads(json.dumps(manifest))
        meta = obj.setdefault("metadata", {})
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion="1",
                    creationTimestamp=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        kind = obj["kind"]
        if kind == "Role":
            self.roles[(namespace, meta["name"])] = obj
        elif kind == "RoleBinding":
            self.bindings.append(obj)
        else:
            self.objects[(namespace, kind.lower() + "s", meta["name"])] = obj
        return obj

    # -- authorization, as RBAC evaluates it ------------------------------------------------------------
    def allowed(self, user: str, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        for binding in self.bindings:
            if binding["metadata"]["namespace"] != namespace or binding["roleRef"]["kind"] != "Role":
                continue
            subjects = {f"system:serviceaccount:{s.get('namespace', namespace)}:{s['name']}"
                        for s in binding.get("subjects", []) if s["kind"] == "ServiceAccount"}
            role = self.roles.get((namespace, binding["roleRef"]["name"]))
            if user not in subjects or role is None:
                continue
            for rule in role.get("rules", []):
                names = rule.get("resourceNames")
                if (_matches(rule.get("apiGroups", []), group) and _matches(rule.get("resources", []), resource)
                        and _matches(rule.get("verbs", []), verb) and (not names or name in names)):
                    return True
        return False

    # -- the two endpoints ------------------------------------------------------------------------------
    def get_cronjob(self, user: str, namespace: str, name: str, _body: bytes) -> tuple[int, dict]:
        if not self.allowed(user, "get", "batch", "cronjobs", namespace, name):
            return 403, _forbidden(user, "get", "cronjobs", namespace, name)
        obj = self.objects.get((namespace, "cronjobs", name))
        if obj is None:
            return 404, status(404, "NotFound", f'cronjobs.batch "{name}" not found',
                               {"name": name, "group": "batch", "kind": "cronjobs"})
        return 200, obj

    def create_job(self, user: str, namespace: str, body: bytes) -> tuple[int, dict]:
        if not self.allowed(user, "create", "batch", "jobs", namespace, ""):
            return 403, _forbidden(user, "create", "jobs", namespace, "")
        try:
            job = json.loads(body)
        except ValueError as exc:
            return 400, status(400, "BadRequest", f"the object provided is unrecognized: {exc}")
        if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
            return 400, status(400, "BadRequest", f"the API version in the data ({job.get('apiVersion')}) does "
                               f"not match the expected API version (batch/v1) or kind ({job.get('kind')}) is not Job")
        meta = job.setdefault("metadata", {})
        if meta.get("namespace", namespace) != namespace:
            return 400, status(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        problems = []
        if not name:
            problems.append("metadata.name: Required value: name or generateName is required")
        elif len(name) > 63 or not DNS_SUBDOMAIN.match(name):
            problems.append(f'metadata.name: Invalid value: "{name}": must be no more than 63 characters and '
                            "consist of lower case alphanumeric characters, '-' or '.'")
        meta.update(name=name, namespace=namespace)
        try:
            kubernetes_validate.validate(job, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{'.'.join(str(p) for p in exc.path)}: {exc.message}")
        if problems:
            return 422, status(422, "Invalid", f'Job.batch "{name}" is invalid: ' + ", ".join(problems),
                               {"name": name, "group": "batch", "kind": "Job"})
        if (namespace, "jobs", name) in self.objects:
            return 409, status(409, "AlreadyExists", f'jobs.batch "{name}" already exists',
                               {"name": name, "group": "batch", "kind": "jobs"})
        return 201, self.apply(job, namespace) | {"status": {}}


def _matches(allowed: list[str], value: str) -> bool:
    return "*" in allowed or value in allowed


def _forbidden(user: str, verb: str, resource: str, namespace: str, name: str) -> dict:
    what = f'{resource}.batch "{name}"' if name else f"{resource}.batch"
    return status(403, "Forbidden", f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in '
                  f'API group "batch" in the namespace "{namespace}"', {"name": name, "group": "batch",
                                                                       "kind": resource})


def _handler(api: FakeKubeAPI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.requests.append((method, path))
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            user = api.tokens.get(token.strip()) if scheme.lower() == "bearer" else None  # scheme: any case
            if user is None:
                return self._reply(401, status(401, "Unauthorized", "Unauthorized"))
            for (verb, pattern), handler in PATHS.items():
                match = pattern.match(path)
                if match and verb == method:
                    # like the apiserver's NegotiateInputSerializer: no Content-Type means JSON
                    content_type = self.headers.get("Content-Type") or "application/json"
                    if method == "POST" and "json" not in content_type:
                        return self._reply(415, status(415, "UnsupportedMediaType",
                                                       "the body of the request was in an unknown format"))
                    return self._reply(*getattr(api, handler)(user, *match.groups(), body))
            self._reply(404, status(404, "NotFound", "the server could not find the requested resource"))

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
