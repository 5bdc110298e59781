"""HTTP calls of the sinks, retried with exponential backoff when the failure may be temporary.

Temporary: connection errors, timeouts, HTTP 429 (honouring ``Retry-After``) and 5xx. Anything else (401, 400)
is returned at once: retrying a refused token only delays the clear error.
"""

from __future__ import annotations

import time

import requests

from skysift.errors import Unavailable

RETRY_AFTER_CAP = 30.0  # seconds; a larger Retry-After is not waited for inside one poll


def request(session: requests.Session, method: str, url: str, *, attempts: int, backoff: float,
            what: str, **kwargs) -> requests.Response:
    """One HTTP call with retries; raises :class:`Unavailable` when every attempt failed temporarily.

    ``what`` names the call in errors instead of ``url``, which may hold a secret (a Slack webhook's does).
    """
    delay = backoff
    last = ""
    for attempt in range(1, max(1, attempts) + 1):
        try:
            resp = session.request(method, url, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            last = type(exc).__name__  # its text repeats the URL
            wait = delay
        else:
            if resp.status_code != 429 and resp.status_code < 500:
                return resp
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            wait = _retry_after(resp, delay)
        if attempt < attempts:
            time.sleep(wait)
            delay *= 2
    raise Unavailable(f"{what} failed {attempts} times; last: {last}")


def _retry_after(resp: requests.Response, default: float) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", default)), RETRY_AFTER_CAP)
    except ValueError:
        return default
