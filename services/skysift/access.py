"""Who may call what: bearer tokens, the identities and roles they stand for, and calls per identity.

Plain classes, no gRPC: :mod:`skysift.rpc.auth` applies them to every call. docs/auth.md is the user's guide.

Why bearer tokens in a table, not OIDC or mTLS alone: the callers are a handful of workloads (the poll CronJob,
the round CronJob, the app, a scoring client) and a few people; a table mounted from a Kubernetes Secret is
enough, works over plaintext loopback in `skysift dev`, and needs no identity provider. TLS is layered under it
when the network is not trusted.

The table (``SKYSIFT_AUTH_TOKENS``: the variable itself, a file of that name under ``SKYSIFT_SECRETS_DIR``, or a
file named by ``SKYSIFT_AUTH_TOKENS_FILE``) has one token per line::

    # token                             identity   roles
    4f1c...(at least 32 characters)     poller     operator
    9a0b...                             streamlit  app,labeller,operator
    77de...                             alice      labeller

Roles: ``scorer`` calls Inference; ``labeller`` submits labels and reads labels and queues (as itself);
``operator`` calls everything (polls, rounds, datasets); ``app`` may label on behalf of the user it names in
the ``x-skysift-user`` header (the Streamlit app, whose own login decides who that is).
Only a SHA-256 digest of each token is kept in memory, so a dump of the table object holds no usable secret.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from skysift.errors import ConfigError, PermissionDenied, ResourceExhausted, Unauthenticated

ROLES = ("operator", "scorer", "labeller", "app")
MIN_TOKEN_CHARS = 32
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")  # identities and asserted users: printable, no spaces
USER_HEADER = "x-skysift-user"

INFERENCE = "/skysift.v1.Inference/"
LABELLER_METHODS = frozenset({"/skysift.v1.Trainer/SubmitLabels", "/skysift.v1.Trainer/GetLabels",
                              "/skysift.v1.Trainer/GetQueue"})
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")  # probes and grpcurl need no token


class AuthSettings(BaseSettings):
    """Server side: the token table and per-identity limit; client side: this process's token; both: TLS."""

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_AUTH_", extra="ignore")

    tokens: SecretStr | None = None  # the table itself (env, or a mounted secret file SKYSIFT_AUTH_TOKENS)
    tokens_file: Path | None = None  # or a file holding it
    token: SecretStr | None = None  # the bearer token this process presents (env or mounted secret file)
    token_file: Path | None = None  # or a file holding it
    calls_per_second: float = 100.0  # per identity, sustained; up to `burst` calls at once
    burst: int = 200
    tls_cert_file: Path | None = None  # server certificate chain (PEM): serve TLS instead of plaintext
    tls_key_file: Path | None = None  # its private key
    tls_client_ca_file: Path | None = None  # server: require client certificates signed by this CA (mTLS)
    tls_ca_file: Path | None = None  # client: connect with TLS, trusting this CA
    tls_client_cert_file: Path | None = None  # client: certificate presented for mTLS
    tls_client_key_file: Path | None = None

    def table(self) -> TokenTable:
        """The token table; ConfigError when none is configured (auth is never silently off)."""
        text = _read_secret(self.tokens, self.tokens_file, "SKYSIFT_AUTH_TOKENS")
        if text is None:
            raise ConfigError("no token table: set SKYSIFT_AUTH_TOKENS (or mount it under SKYSIFT_SECRETS_DIR, or "
                              "name a file with SKYSIFT_AUTH_TOKENS_FILE); see docs/auth.md")
        return TokenTable.parse(text)

    def bearer(self) -> str | None:
        """The token this process presents, or None when it has none."""
        return _read_secret(self.token, self.token_file, "SKYSIFT_AUTH_TOKEN")


def _read_secret(value: SecretStr | None, path: Path | None, name: str) -> str | None:
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if path is None:
        return None
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's identity, and the user its labels are recorded under."""

    identity: Identity
    user: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    def __init__(self, identities: dict[str, Identity]):
        self._by_digest = identities

    @classmethod
    def parse(cls, text: str) -> TokenTable:
        """Read the table's lines; errors name the line, never the token."""
        identities: dict[str, Identity] = {}
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 3:
                raise ConfigError(f"token table line {number}: expected 'TOKEN IDENTITY ROLE[,ROLE...]', "
                                  f"got {len(fields)} fields")
            token, name, roles = fields
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"token table line {number} ({name}): the token is shorter than {MIN_TOKEN_CHARS} "
                                  "characters; make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
            if not NAME.fullmatch(name):
                raise ConfigError(f"token table line {number}: identity {name!r} must match {NAME.pattern}")
            wanted = frozenset(roles.split(","))
            if unknown := wanted - set(ROLES):
                raise ConfigError(f"token table line {number} ({name}): unknown role(s) {', '.join(sorted(unknown))}; "
                                  f"expected some of {', '.join(ROLES)}")
            if digest(token) in identities:
                raise ConfigError(f"token table line {number} ({name}): the same token is listed twice")
            identities[digest(token)] = Identity(name, wanted)
        if not identities:
            raise ConfigError("the token table lists no token")
        return cls(identities)

    def authenticate(self, token: str | None) -> Identity:
        if not token:
            raise Unauthenticated("no credentials: send 'authorization: Bearer <token>' (SKYSIFT_AUTH_TOKEN)")
        identity = self._by_digest.get(digest(token))
        if identity is None:
            raise Unauthenticated("unknown token")
        return identity


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header value (None when absent or another scheme)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def allowed(roles: frozenset[str], method: str) -> bool:
    """May a caller with ``roles`` call ``method`` (a full gRPC method name, /package.Service/Method)?"""
    return ("operator" in roles
            or ("scorer" in roles and method.startswith(INFERENCE))
            or (bool(roles & {"labeller", "app"}) and method in LABELLER_METHODS))


def authorize(identity: Identity, method: str, asserted_user: str | None) -> Principal:
    """The caller as a principal for ``method``: PermissionDenied for a role that does not allow it, or for a
    user named in the header by anyone but the app (a labeller labels as itself)."""
    if not allowed(identity.roles, method):
        raise PermissionDenied(f"{identity.name} (roles {', '.join(sorted(identity.roles))}) may not call "
                               f"{method.rsplit('/', 1)[-1]}")
    if asserted_user is None or asserted_user == identity.name:
        return Principal(identity, identity.name)
    if "app" not in identity.roles:
        raise PermissionDenied(f"{identity.name} may not act for another user: only a token with the app role may "
                               f"send {USER_HEADER}")
    if not NAME.fullmatch(asserted_user):
        raise PermissionDenied(f"{USER_HEADER} must match {NAME.pattern}")
    return Principal(identity, asserted_user)


class RateLimiter:
    """A token bucket per identity: ``rate`` calls a second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens left, when counted)
        self._lock = threading.Lock()

    def take(self, identity: str) -> None:
        now = self.clock()
        with self._lock:
            left, then = self._buckets.get(identity, (float(self.burst), now))
            left = min(float(self.burst), left + (now - then) * self.rate)
            if left < 1:
                raise ResourceExhausted(f"{identity} exceeded {self.rate:g} calls per second (burst {self.burst}); "
                                        "retry later")
            self._buckets[identity] = (left - 1, now)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
