"""Sherlock host context from Lasair's API, spent carefully: cached by objectId, bounded per batch, and never
failing a poll.

Lasair's API (lsst-uk/lasair-lsst ``webserver/lasairapi``, client ``lasair.lasair_client``):
``POST <base>/sherlock/position/`` with form fields ``ra``, ``dec``, ``lite``, and ``POST <base>/sherlock/object/``
with ``objectId``, ``lite``; header ``Authorization: Token <token>``. A 200 answer is Sherlock's
``{"classifications": {<name>: [<class>, <description>]}, "crossmatches": [{...}, ...]}`` (the documented
object answer may also be wrapped as ``{<objectId>: {...}}``); a 4xx/5xx carries ``{"error": ...}``,
``{"detail": ...}`` (401) or ``{"message": ...}`` (429, with ``Retry-After`` in seconds).

Statuses written per row: ``ok`` (asked now), ``cached``, ``not_configured`` (no token), ``rate_limited`` (429
and Lasair asked to wait longer than we may), ``unavailable`` (timeouts, 5xx, connection errors after retries),
``rejected`` (Lasair refused the request: 400/401/403, unknown object), ``deferred`` (over this batch's call
budget). Only answers are cached, so anything not ``ok``/``cached`` is asked again in a later batch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable
from urllib.parse import quote

import requests
from pydantic import SecretStr

from skysift.concurrency import threaded_map
from skysift.errors import NotFound

log = logging.getLogger(__name__)

OK, CACHED, NOT_CONFIGURED = "ok", "cached", "not_configured"
RATE_LIMITED, UNAVAILABLE, REJECTED, DEFERRED = "rate_limited", "unavailable", "rejected", "deferred"


class LasairError(Exception):
    """A call to Lasair that gave no usable answer."""


class RateLimited(LasairError):
    def __init__(self, message: str, retry_after: float | None):
        super().__init__(message)
        self.retry_after = retry_after


class LasairUnavailable(LasairError):
    """Timeout, connection error or 5xx: worth retrying later."""


class LasairRejected(LasairError):
    """Lasair refused the request (bad token, bad parameters): retrying the same call will not help."""


class LasairObjectNotFound(LasairRejected):
    """Lasair does not know this objectId (yet)."""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class LasairClient:
    """The two Sherlock calls of Lasair's REST API, with Lasair's status codes turned into typed errors."""

    def __init__(self, base_url: str, token: SecretStr, timeout: float = 10.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.session = session or requests.Session()

    def sherlock_position(self, ra: float, dec: float, lite: bool = False) -> dict:
        return self._post("sherlock/position", {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "lite": str(lite)})

    def sherlock_object(self, object_id: str, lite: bool = False) -> dict:
        return self._post("sherlock/object", {"objectId": object_id, "lite": str(lite)})

    def _post(self, method: str, data: dict) -> dict:
        url = f"{self.base_url}/{method}/"
        headers = {"Authorization": f"Token {self._token.get_secret_value()}", "Accept": "application/json"}
        try:
            r = self.session.post(url, data=data, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise LasairUnavailable(f"{method}: no answer within {self.timeout}s") from None
        except requests.ConnectionError as exc:
            raise LasairUnavailable(f"{method}: cannot connect to {self.base_url}: {type(exc).__name__}") from None
        if r.status_code == 429:
            raise RateLimited(f"{method}: request limit exceeded", _retry_after(r.headers.get("Retry-After")))
        if r.status_code >= 500:
            raise LasairUnavailable(f"{method}: HTTP {r.status_code}")
        if r.status_code == 404:
            raise LasairObjectNotFound(f"{method}: {data.get('objectId')} not found")
        if r.status_code in (401, 403):
            raise LasairRejected(f"{method}: HTTP {r.status_code} (is the Lasair token valid?)")
        if r.status_code != 200:
            raise LasairRejected(f"{method}: HTTP {r.status_code}: {r.text[:200]}")
        try:
            body = r.json()
        except ValueError:
            raise LasairUnavailable(f"{method}: answer is not JSON") from None
        if not isinstance(body, dict) or "error" in body:
            raise LasairRejected(f"{method}: {str(body.get('error') if isinstance(body, dict) else body)[:200]}")
        return body


@dataclass(frozen=True)
class SherlockMatch:
    """What the features and the labelling page need from one Sherlock answer."""

    status: str
    classification: str | None = None
    separation_arcsec: float | None = None
    catalogue: str | None = None
    catalogue_object_id: str | None = None


def parse_sherlock(answer: dict, name: str | None = None) -> SherlockMatch:
    """The classification and the best crossmatch (lowest rank) of a Sherlock answer; no crossmatch: ORPHAN-like
    answers keep a null separation."""
    if "classifications" not in answer and len(answer) == 1:
        (answer,) = answer.values()  # the documented {objectId: {...}} wrapping
    classifications = answer.get("classifications") or {}
    value = classifications.get(name) if name in classifications else next(iter(classifications.values()), None)
    classification = value[0] if isinstance(value, list) and value else value
    matches = [m for m in answer.get("crossmatches") or [] if isinstance(m, dict)]
    own = [m for m in matches if m.get("transient_object_id") == name]
    matches = own or matches
    best = min(matches, key=lambda m: m.get("rank") or 0) if matches else {}
    separation = best.get("separationArcsec")
    object_id = best.get("catalogue_object_id")
    return SherlockMatch(
        OK,
        classification=str(classification) if classification is not None else None,
        separation_arcsec=float(separation) if separation is not None else None,
        catalogue=best.get("catalogue_table_name"),
        catalogue_object_id=str(object_id) if object_id is not None else None,
    )


class SherlockCache:
    """Lasair's answers in the object store, one JSON object per objectId: ``<prefix>/<survey>/<objectId>.json``."""

    def __init__(self, store, survey: str, prefix: str = "enrichment/sherlock_cache", threads: int = 16):
        self.store = store
        self.prefix = f"{prefix.strip('/')}/{survey}"
        self.threads = threads

    def key(self, object_id: str) -> str:
        return f"{self.prefix}/{quote(object_id, safe='')}.json"

    def get_many(self, object_ids: Iterable[str]) -> dict[str, SherlockMatch]:
        ids = list(object_ids)
        if not ids:
            return {}
        found = threaded_map(self._get, ids, self.threads)
        return {i: m for i, m in zip(ids, found) if m is not None}

    def _get(self, object_id: str) -> SherlockMatch | None:
        try:
            record = json.loads(self.store.get_bytes(self.key(object_id)))
            match = parse_sherlock(record["answer"], record.get("name"))
        except NotFound:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("unreadable Sherlock cache entry, asking again", extra={"objectId": object_id})
            return None
        return SherlockMatch(CACHED, match.classification, match.separation_arcsec, match.catalogue,
                             match.catalogue_object_id)

    def put(self, object_id: str, name: str | None, method: str, answer: dict) -> None:
        record = {"objectId": object_id, "name": name, "method": method,
                  "fetched_at": datetime.now(timezone.utc).isoformat(), "answer": answer}
        self.store.put_bytes(self.key(object_id), json.dumps(record).encode())


class SherlockClient:
    """Sherlock for a batch's objects: the cache first, then Lasair within a budget, with backoff.

    ``lookup`` never raises for Lasair's sake: each object gets a :class:`SherlockMatch` whose status says what
    happened. A 429 with a wait we may honour is retried; a longer one (the hourly quota is spent) stops calls for
    the rest of the batch, as do ``max_consecutive_failures`` unavailable calls in a row.
    """

    def __init__(self, lasair: LasairClient, cache: SherlockCache | None, settings,
                 sleep: Callable[[float], None] = time.sleep):
        self.lasair = lasair
        self.cache = cache
        self.settings = settings
        self.sleep = sleep

    def lookup(self, objects: list[tuple[str, float, float]]) -> dict[str, SherlockMatch]:
        """``objects``: (objectId, ra, dec) once per object. Returns a match for every objectId."""
        s = self.settings
        result = self.cache.get_many(o for o, _, _ in objects) if self.cache else {}
        todo = [o for o in objects if o[0] not in result]
        calls = failures = 0
        stop_status = None
        for object_id, ra, dec in todo:
            if stop_status is None and calls >= s.max_calls_per_batch:
                stop_status = DEFERRED
            if stop_status is not None:
                result[object_id] = SherlockMatch(stop_status)
                continue
            calls += 1
            try:
                name, method, answer = self._ask(object_id, ra, dec)
            except RateLimited as exc:
                log.warning("Lasair quota spent; no more Sherlock calls this batch", extra={"error": str(exc)})
                result[object_id] = SherlockMatch(RATE_LIMITED)
                stop_status = RATE_LIMITED
                continue
            except LasairUnavailable as exc:
                failures += 1
                log.warning("Lasair unavailable", extra={"objectId": object_id, "error": str(exc)})
                result[object_id] = SherlockMatch(UNAVAILABLE)
                if failures >= s.max_consecutive_failures:
                    stop_status = UNAVAILABLE
                continue
            except LasairRejected as exc:
                log.warning("Lasair refused a Sherlock call", extra={"objectId": object_id, "error": str(exc)})
                result[object_id] = SherlockMatch(REJECTED)
                continue
            failures = 0
            try:
                result[object_id] = parse_sherlock(answer, name)
            except (AttributeError, TypeError, ValueError) as exc:
                log.warning("unexpected Sherlock answer", extra={"objectId": object_id, "error": str(exc)})
                result[object_id] = SherlockMatch(REJECTED)
                continue
            if self.cache is not None:
                self.cache.put(object_id, name, method, answer)
        return result

    def _ask(self, object_id: str, ra: float, dec: float) -> tuple[str | None, str, dict]:
        """One lookup with retries; returns (name in the answer, method used, answer)."""
        lite = self.settings.sherlock_lite
        if self.settings.sherlock_lookup == "object":
            try:
                return object_id, "object", self._retrying(lambda: self.lasair.sherlock_object(object_id, lite))
            except LasairObjectNotFound:
                pass  # not ingested by Lasair (yet): its position still has a context
        return None, "position", self._retrying(lambda: self.lasair.sherlock_position(ra, dec, lite))

    def _retrying(self, call: Callable[[], dict]) -> dict:
        s = self.settings
        attempt = 0
        while True:
            try:
                return call()
            except RateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else s.backoff_seconds * 2**attempt
                if attempt >= s.max_retries or wait > s.max_wait_seconds:
                    raise
            except LasairUnavailable:
                if attempt >= s.max_retries:
                    raise
                wait = s.backoff_seconds * 2**attempt
            attempt += 1
            self.sleep(wait)
