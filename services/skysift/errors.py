"""Errors the core raises; the gRPC layer maps each to one status code, the CLI to a clear message."""


class SkysiftError(Exception):
    """Base of every error skysift reports to a user."""


class InvalidArgument(SkysiftError):
    """The request itself is wrong (empty list, malformed key, unknown label)."""


class NotFound(SkysiftError):
    """A key, candid, round or dataset that does not exist."""


class FailedPrecondition(SkysiftError):
    """The system is not in a state to do this (no model yet, feature-set mismatch)."""


class Unavailable(SkysiftError):
    """A dependency (store, broker, MLflow) cannot be reached; retrying later may work."""


class ConfigError(SkysiftError):
    """Settings are missing or malformed; raised at start-up so services fail fast."""


class Unauthenticated(SkysiftError):
    """The caller presented no credentials, or credentials skysift does not know."""


class PermissionDenied(SkysiftError):
    """The caller is known but its roles do not allow this call (or this user)."""


class ResourceExhausted(SkysiftError):
    """The caller exceeded a limit (calls per second, labels per call); retrying later may work."""
