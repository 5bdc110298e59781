"""The fake OpenID Connect provider is as strict as a real one, so the app's login test proves the protocol: a
code works once, for its redirect URI and PKCE verifier; the ID token verifies with Authlib's own checks."""

from __future__ import annotations

import secrets

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.fakes.oidc import FakeOIDC

REDIRECT = "http://127.0.0.1:8501/oauth2callback"


@pytest.fixture
def idp():
    fake = FakeOIDC(redirect_uris=[REDIRECT]).start()
    yield fake
    fake.stop()


def authorize(idp, client: OAuth2Session, verifier: str, redirect_uri: str = REDIRECT) -> requests.Response:
    meta = requests.get(idp.metadata_url, timeout=5).json()
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], nonce="n-0S6", code_verifier=verifier,
                                             redirect_uri=redirect_uri)
    return requests.get(url, timeout=5, allow_redirects=False)


def client_for(idp, secret: str | None = None, **kwargs) -> OAuth2Session:
    return OAuth2Session(idp.client_id, secret or idp.client_secret, scope="openid email profile",
                        redirect_uri=REDIRECT, code_challenge_method="S256", **kwargs)


def test_code_flow_gives_a_verifiable_id_token_once(idp):
    client, verifier = client_for(idp, token_endpoint_auth_method="client_secret_post"), secrets.token_urlsafe(48)
    back = authorize(idp, client, verifier).headers["Location"]
    token = client.fetch_token(idp.url + "/token", authorization_response=back, code_verifier=verifier, timeout=5)
    jwks = KeySet.import_key_set(requests.get(idp.url + "/jwks", timeout=5).json())
    decoded = jwt.decode(token["id_token"], jwks, algorithms=["RS256"])
    claims = CodeIDToken(decoded.claims, decoded.header, {"iss": {"values": [idp.issuer]}},
                         {"nonce": "n-0S6", "client_id": idp.client_id, "access_token": token["access_token"]})
    claims.validate()  # iss, aud, exp, iat, nonce and at_hash
    assert (claims["email"], claims["name"]) == (idp.user["email"], idp.user["name"])
    assert "client_secret" in idp.calls("/token")[-1].params  # client_secret_post, as asked
    with pytest.raises(OAuthError, match="invalid_grant"):  # the same code again
        client.fetch_token(idp.url + "/token", authorization_response=back, code_verifier=verifier, timeout=5)


def test_wrong_verifier_secret_or_redirect_is_refused(idp):
    client, verifier = client_for(idp), secrets.token_urlsafe(48)
    with pytest.raises(OAuthError, match="PKCE"):
        client.fetch_token(idp.url + "/token", authorization_response=authorize(idp, client, verifier).headers[
            "Location"], code_verifier=secrets.token_urlsafe(48), timeout=5)
    wrong = client_for(idp, secret="not-the-secret")
    with pytest.raises(OAuthError, match="invalid_client"):
        wrong.fetch_token(idp.url + "/token", authorization_response=authorize(idp, wrong, verifier).headers[
            "Location"], code_verifier=verifier, timeout=5)
    assert idp.calls("/token")[-1].status == 401
    unregistered = authorize(idp, client, verifier, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert unregistered.status_code == 400 and "Location" not in unregistered.headers
