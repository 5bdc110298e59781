"""Translate core errors to gRPC status codes, in one place, for every servicer."""

from __future__ import annotations

import functools
import logging

import grpc

from skysift import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


MAX_DETAILS = 2000  # characters of an error message sent back; messages quote the request, which may be huge


def bounded(message: str, limit: int = MAX_DETAILS) -> str:
    """The message cut to ``limit`` characters: gRPC clients drop a status whose details exceed their metadata
    limit (16 KiB by default) and report RESOURCE_EXHAUSTED instead of the real error."""
    return message if len(message) <= limit else f"{message[:limit]}... ({len(message) - limit} more characters)"


def grpc_method(fn):
    """Decorate a servicer method: core errors become status codes with their message; others INTERNAL."""

    def abort(context, exc):
        code = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("unexpected error in %s", fn.__qualname__)
            context.abort(code, f"internal error in {fn.__qualname__}: {type(exc).__name__}")
        context.abort(code, bounded(str(exc)))

    if _is_generator(fn):

        @functools.wraps(fn)
        def stream(self, request, context):
            try:
                yield from fn(self, request, context)
            except errors.SkysiftError as exc:
                abort(context, exc)

        return stream

    @functools.wraps(fn)
    def unary(self, request, context):
        try:
            return fn(self, request, context)
        except errors.SkysiftError as exc:
            abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - report, never leak a stack trace to the client
            abort(context, exc)

    return unary


def _is_generator(fn) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def call(method, request, timeout: float = 600, metadata=None):
    """Invoke a unary RPC from a client, turning its status back into the core error it stands for."""
    try:
        return method(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        code = exc.code()
        cls = next((c for c, s in STATUS.items() if s == code and c is not errors.ConfigError), errors.SkysiftError)
        raise cls(exc.details() or str(code)) from None
