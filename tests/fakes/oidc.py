"""A local OpenID Connect provider on 127.0.0.1, for the app's login tests (no network, no real IdP).

It follows OpenID Connect Core 1.0 (authorization code flow), Discovery 1.0, RP-Initiated Logout 1.0, OAuth 2.0
(RFC 6749) and PKCE (RFC 7636), and is strict where a real provider is, so a client that works here does the
protocol right:

- ``GET /.well-known/openid-configuration``: discovery; the issuer is the server's own URL;
- ``GET /authorize``: checks ``client_id`` and the registered ``redirect_uri`` (an error page, no redirect, when
  either is wrong), ``response_type=code`` and the ``openid`` scope; then, as a test IdP with one account, signs
  ``user`` in without a form and redirects to ``redirect_uri`` with a one-time ``code`` and the client's ``state``;
- ``POST /token``: client authentication by ``client_secret_basic`` or ``client_secret_post`` (401
  ``invalid_client`` otherwise), the code once, for the client and ``redirect_uri`` it was issued to, with the
  PKCE ``code_verifier`` when a challenge was sent; answers an access token and an RS256 ``id_token`` (``iss``,
  ``aud``, ``sub``, ``iat``, ``exp``, ``auth_time``, ``nonce``, ``at_hash``, and ``email``/``name`` when the
  ``email``/``profile`` scopes were granted);
- ``GET /jwks``: the public signing key; ``GET /userinfo``: the claims for a Bearer access token;
- ``GET /logout``: the end-session endpoint; redirects to a registered ``post_logout_redirect_uri``.

Every request is recorded; ``fail_next(503)`` answers the next requests with that status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fakes.loopback import LoopbackHTTP

CODE_TTL_S = 60  # authorization codes are short-lived and single-use (RFC 6749 4.1.2)
TOKEN_TTL_S = 3600


@dataclass
class Request:
    method: str
    path: str
    params: dict
    authorization: str | None
    status: int = 0  # what the fake answered


@dataclass
class Grant:
    """What an authorization code stands for, checked again when the code is redeemed."""

    client_id: str
    redirect_uri: str
    scopes: set[str]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires: float
    auth_time: int


@dataclass
class FakeOIDC(LoopbackHTTP):
    client_id: str = "skysift-app"
    client_secret: str = "test-oidc-client-secret"
    redirect_uris: list[str] = field(default_factory=list)  # registered for the client, matched exactly
    user: dict = field(default_factory=lambda: {"sub": "248289761001", "email": "ada@example.org",
                                                "email_verified": True, "name": "Ada Lovelace"})
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(
        2048, parameters={"kid": "fake-oidc-1", "use": "sig", "alg": "RS256"}, private=True))
    requests: list[Request] = field(default_factory=list)
    logouts: list[dict] = field(default_factory=list)  # end-session requests' parameters
    faults: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    _codes: dict[str, Grant] = field(default_factory=dict)
    _access_tokens: dict[str, set[str]] = field(default_factory=dict)  # token -> granted scopes

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def metadata_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"

    def calls(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> FakeOIDC:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                self._reply(*fake.answer("GET", url.path, _form(url.query), self.headers.get("Authorization")))

            def do_POST(self):
                url = urlparse(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                self._reply(*fake.answer("POST", url.path, _form(raw), self.headers.get("Authorization")))

            def _reply(self, status: int, body: dict | str, headers: dict):
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return self.serve(Handler)

    def answer(self, method: str, path: str, params: dict, authorization: str | None):
        with self.lock:
            request = Request(method, path, params, authorization)
            self.requests.append(request)
            if self.faults:
                request.status = self.faults.pop(0)
                return request.status, {"error": "temporarily_unavailable"}, {}
            route = {("GET", "/.well-known/openid-configuration"): self._discovery,
                     ("GET", "/authorize"): self._authorize,
                     ("POST", "/token"): self._token,
                     ("GET", "/jwks"): self._jwks,
                     ("GET", "/userinfo"): self._userinfo,
                     ("POST", "/userinfo"): self._userinfo,
                     ("GET", "/logout"): self._logout}.get((method, path))
            answer = route(params, authorization) if route else (404, "<h1>Not Found</h1>", {})
            request.status = answer[0]
            return answer

    # --- endpoints
    def _discovery(self, params, authorization):
        return 200, {
            "issuer": self.issuer,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "userinfo_endpoint": self.url + "/userinfo",
            "jwks_uri": self.url + "/jwks",
            "end_session_endpoint": self.url + "/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email",
                                 "email_verified", "name"],
        }, {}

    def _authorize(self, params, authorization):
        redirect_uri = params.get("redirect_uri", "")
        # an unknown client or redirect URI must not be redirected to (OIDC Core 3.1.2.6): an error page instead
        if params.get("client_id") != self.client_id:
            return 400, "<h1>Unknown client_id</h1>", {}
        if redirect_uri not in self.redirect_uris:
            return 400, "<h1>redirect_uri is not registered for this client</h1>", {}
        state = {"state": params["state"]} if "state" in params else {}
        scopes = set(params.get("scope", "").split())
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, error="unsupported_response_type", **state)
        if "openid" not in scopes:
            return _redirect(redirect_uri, error="invalid_scope", error_description="openid scope missing", **state)
        method = params.get("code_challenge_method", "plain") if "code_challenge" in params else None
        if method not in (None, "S256"):
            return _redirect(redirect_uri, error="invalid_request", error_description="only S256 PKCE", **state)
        code = secrets.token_urlsafe(24)
        self._codes[code] = Grant(self.client_id, redirect_uri, scopes, params.get("nonce"),
                                  params.get("code_challenge"), method, time.time() + CODE_TTL_S, int(time.time()))
        return _redirect(redirect_uri, code=code, **state)

    def _token(self, params, authorization):
        client_error = self._authenticate_client(params, authorization)
        if client_error:
            return client_error
        if params.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}, {}
        grant = self._codes.pop(params.get("code", ""), None)  # single use, even when the rest is wrong
        if grant is None or grant.expires < time.time() or grant.client_id != self.client_id:
            return 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"}, {}
        if params.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}, {}
        if grant.code_challenge is not None and _s256(params.get("code_verifier", "")) != grant.code_challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}, {}
        access_token = secrets.token_urlsafe(32)
        self._access_tokens[access_token] = grant.scopes
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": self.user["sub"], "aud": self.client_id, "iat": now,
                  "exp": now + TOKEN_TTL_S, "auth_time": grant.auth_time, "at_hash": _at_hash(access_token),
                  **self._scoped_claims(grant.scopes)}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        return 200, {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_TTL_S,
                     "scope": " ".join(sorted(grant.scopes)), "id_token": id_token}, {}

    def _jwks(self, params, authorization):
        return 200, {"keys": [self.key.as_dict(private=False)]}, {}

    def _userinfo(self, params, authorization):
        token = (authorization or "").removeprefix("Bearer ")
        if token not in self._access_tokens:
            return 401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return 200, {"sub": self.user["sub"], **self._scoped_claims(self._access_tokens[token])}, {}

    def _logout(self, params, authorization):
        self.logouts.append(params)
        target = params.get("post_logout_redirect_uri")
        if target and target in self.redirect_uris:
            return _redirect(target, **({"state": params["state"]} if "state" in params else {}))
        return 200, "<h1>Signed out</h1>", {}

    # --- helpers
    def _authenticate_client(self, params, authorization):
        """client_secret_basic (RFC 6749 2.3.1: form-encoded id and secret in Basic) or client_secret_post, one
        of them only; the 401 names the scheme the client tried, as the RFC asks."""
        basic = authorization is not None and authorization.startswith("Basic ")
        if basic and "client_secret" in params:
            return 400, {"error": "invalid_request", "error_description": "more than one client authentication"}, {}
        if basic:
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        else:
            client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
        if client_id == self.client_id and secrets.compare_digest(secret, self.client_secret):
            return None
        challenge = {"WWW-Authenticate": 'Basic realm="fake-oidc"'} if basic else {}
        return 401, {"error": "invalid_client", "error_description": "client authentication failed"}, challenge

    def _scoped_claims(self, scopes: set[str]) -> dict:
        out = {}
        if "email" in scopes:
            out.update({k: self.user[k] for k in ("email", "email_verified") if k in self.user})
        if "profile" in scopes and "name" in self.user:
            out["name"] = self.user["name"]
        return out


def _form(text: str) -> dict:
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _redirect(uri: str, **params) -> tuple[int, str, dict]:
    sep = "&" if urlparse(uri).query else "?"
    return 302, "", {"Location": f"{uri}{sep}{urlencode(params)}"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def _at_hash(access_token: str) -> str:
    """Left half of the access token's SHA-256, base64url (OIDC Core 3.1.3.6, for RS256)."""
    return _b64url(hashlib.sha256(access_token.encode()).digest()[:16])
