"""Credentials embedded in URIs (``https://user:pass@host``, ``postgresql://u:p@db``) never reach a message."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_uri(uri: str) -> str:
    """``uri`` with any user:password replaced by ``***``; other URIs unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "***"
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))
