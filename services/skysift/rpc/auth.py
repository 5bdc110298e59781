"""Every call's gate, server side, and the token a client sends: :mod:`skysift.access` applied to gRPC.

The server interceptor, in this order, per call: health and reflection pass untouched; the bearer token is
checked (UNAUTHENTICATED), then the caller's roles for the method (PERMISSION_DENIED), then its calls per
second (RESOURCE_EXHAUSTED); only then are the request bytes parsed, so that bytes which are not the method's
message are INVALID_ARGUMENT (gRPC's own deserializer answers INTERNAL and logs a traceback). The caller is
available to the servicer as :func:`principal` while it runs. Nothing here logs a token or the header.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging

import grpc
from google.protobuf.message import DecodeError

from skysift import errors
from skysift.access import (
    OPEN_SERVICES,
    USER_HEADER,
    AuthSettings,
    Principal,
    RateLimiter,
    TokenTable,
    authorize,
    bearer_token,
)
from skysift.rpc.errors import bounded, status_for

log = logging.getLogger(__name__)

_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("skysift_principal", default=None)


def principal() -> Principal:
    """The authenticated caller of the call being served (PermissionDenied outside an authenticated call)."""
    current = _CURRENT.get()
    if current is None:
        raise errors.PermissionDenied("this call carries no authenticated caller")
    return current


@contextlib.contextmanager
def _serving(caller: Principal):
    """``caller`` is :func:`principal` while the servicer runs (the thread serving the call)."""
    token = _CURRENT.set(caller)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, table: TokenTable, limiter: RateLimiter):
        self.table = table
        self.limiter = limiter

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> AuthInterceptor:
        return cls(auth.table(), RateLimiter(auth.calls_per_second, auth.burst))

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        headers = dict(handler_call_details.invocation_metadata or ())

        def admit(raw: bytes, context):
            """The caller and the parsed request, or an abort with the status that says what is wrong."""
            try:
                identity = self.table.authenticate(bearer_token(headers.get("authorization")))
                caller = authorize(identity, method, headers.get(USER_HEADER))
                self.limiter.take(identity.name)
            except errors.SkysiftError as exc:
                log.info("refused", extra={"method": method, "code": status_for(exc).name, "reason": str(exc)})
                context.abort(status_for(exc), bounded(str(exc)))
            try:
                return caller, handler.request_deserializer(raw) if handler.request_deserializer else raw
            except (DecodeError, ValueError, TypeError) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              bounded(f"the request is not a valid {method.rsplit('/', 1)[-1]} request message: {exc}"))

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(raw, context):
                caller, request = admit(raw, context)
                with _serving(caller):
                    return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream(raw, context):
                caller, request = admit(raw, context)
                with _serving(caller):
                    yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(stream, response_serializer=handler.response_serializer)
        raise RuntimeError(f"{method}: client-streaming methods are not served behind the auth interceptor")


def _read(path) -> bytes | None:
    return path.read_bytes() if path else None


def server_credentials(auth: AuthSettings) -> grpc.ServerCredentials | None:
    """TLS (mTLS with a client CA) when a certificate is configured; None: plaintext."""
    if auth.tls_cert_file is None and auth.tls_key_file is None:
        return None
    if auth.tls_cert_file is None or auth.tls_key_file is None:
        raise errors.ConfigError("TLS needs both SKYSIFT_AUTH_TLS_CERT_FILE and SKYSIFT_AUTH_TLS_KEY_FILE")
    try:
        return grpc.ssl_server_credentials([(auth.tls_key_file.read_bytes(), auth.tls_cert_file.read_bytes())],
                                           root_certificates=_read(auth.tls_client_ca_file),
                                           require_client_auth=auth.tls_client_ca_file is not None)
    except OSError as exc:
        raise errors.ConfigError(f"cannot read a TLS file: {exc.filename}: {exc.strerror}") from None


def channel_credentials(auth: AuthSettings) -> grpc.ChannelCredentials | None:
    """TLS to the server when a CA is configured; None: plaintext."""
    if auth.tls_ca_file is None:
        return None
    try:
        return grpc.ssl_channel_credentials(root_certificates=auth.tls_ca_file.read_bytes(),
                                            private_key=_read(auth.tls_client_key_file),
                                            certificate_chain=_read(auth.tls_client_cert_file))
    except OSError as exc:
        raise errors.ConfigError(f"cannot read a TLS file: {exc.filename}: {exc.strerror}") from None
