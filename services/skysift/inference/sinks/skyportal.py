"""SkyPortal/Fritz: one annotation per source for the configured origin, updated by each new alert.

As oracle-support does, and stateless: POST ``/api/sources/<obj_id>/annotations``; when SkyPortal answers that an
annotation of this origin already exists (one per origin and source is allowed), GET the source's annotations,
find ours and PUT the new data. ``group_ids`` go in every body: without them SkyPortal would share the annotation
with all the token's groups, the sitewide (public) one included. A 401 means the token lacks the Annotate ACL:
a configuration error, raised at once rather than retried.

The data is the pre-order walk of each model's taxonomy (parents before children, root dropped), plus the model
and candid that produced it. One tag: keys are the class labels, as Oracle's; several tags: ``<tag>.<label>``.
Within a batch only the latest alert (highest candid) of a source is sent: the earlier ones would be overwritten.
"""

from __future__ import annotations

from collections import defaultdict

import requests

from skysift.errors import ConfigError, SkysiftError
from skysift.inference.settings import SkyPortalSettings
from skysift.inference.sinks import http
from skysift.inference.sinks.base import Scored, class_probabilities

DUPLICATE_MARKERS = ("already exists", "duplicate key value violates unique constraint")


class SkyPortalError(SkysiftError):
    """SkyPortal refused a request for a reason other than the duplicate origin."""


class SkyPortalSink:
    name = "skyportal"

    def __init__(self, settings: SkyPortalSettings, attempts: int = 4, backoff: float = 0.5):
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.attempts = attempts
        self.backoff = backoff
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {settings.token.get_secret_value()}"

    def send(self, scored: Scored) -> str:
        per_source = annotations(scored)
        counts: dict[str, int] = defaultdict(int)
        errors: list[str] = []
        for obj_id, data in per_source.items():
            try:
                counts[self.annotate(obj_id, data)] += 1
            except SkyPortalError as exc:  # one source refused: report it, go on with the others
                counts["failed"] += 1
                errors.append(f"{obj_id}: {exc}")
        summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to annotate"
        if errors:
            raise SkyPortalError(f"{summary}; " + "; ".join(errors[:5]))
        return f"{len(per_source)} sources: {summary}"

    def annotate(self, obj_id: str, data: dict) -> str:
        """POST, or on a duplicate origin GET and PUT; return "posted" or "updated"."""
        path = f"/api/sources/{obj_id}/annotations"
        body = {"origin": self.settings.origin, "data": data, "group_ids": self.settings.group_ids}
        status, payload = self._call("POST", path, json=body)
        if status == 200 and payload.get("status") == "success":
            return "posted"
        message = str(payload.get("message", ""))
        if not any(marker in message for marker in DUPLICATE_MARKERS):
            raise SkyPortalError(f"POST {path} answered HTTP {status}: {message[:300]}")
        status, payload = self._call("GET", path)
        if status != 200:
            raise SkyPortalError(f"GET {path} answered HTTP {status}: {str(payload.get('message', ''))[:300]}")
        ours = [a for a in payload.get("data") or [] if a.get("origin") == self.settings.origin]
        if not ours:
            raise SkyPortalError(f"POST said an annotation exists but GET {path} lists none of origin "
                                 f"{self.settings.origin!r} visible to this token: {message[:200]}")
        put_path = f"{path}/{ours[0]['id']}"
        status, payload = self._call("PUT", put_path, json=body)
        if status != 200 or payload.get("status") != "success":
            raise SkyPortalError(f"PUT {put_path} answered HTTP {status}: {str(payload.get('message', ''))[:300]}")
        return "updated"

    def _call(self, method: str, path: str, **kwargs) -> tuple[int, dict]:
        resp = http.request(self.session, method, self.base + path, attempts=self.attempts, backoff=self.backoff,
                            what=f"SkyPortal {method} {path}", timeout=self.settings.timeout_seconds, **kwargs)
        if resp.status_code == 401:
            raise ConfigError(
                f"SkyPortal at {self.base} answered 401 to {method} {path}: the token in SKYSIFT_SKYPORTAL_TOKEN "
                "is not valid or lacks the Annotate ACL (read-only tokens get 401 on annotations)"
            )
        try:
            payload = resp.json()
        except ValueError:
            payload = {"status": "error", "message": resp.text[:300]}
        return resp.status_code, payload if isinstance(payload, dict) else {"data": payload}


def annotations(scored: Scored) -> dict[str, dict]:
    """objectId → annotation data for the latest alert of each source in the batch."""
    rows = class_probabilities(scored.predictions, scored.models)
    several = len({tag for _, tag, _ in rows}) > 1
    latest: dict[str, int] = {}
    for row, _, _ in rows:
        obj_id = row["objectId"]
        if obj_id:
            latest[obj_id] = max(latest.get(obj_id, row["candid"]), row["candid"])
    out: dict[str, dict] = {}
    for row, tag, walk in rows:
        obj_id = row["objectId"]
        if not obj_id or row["candid"] != latest[obj_id]:
            continue
        data = out.setdefault(obj_id, {"candid": row["candid"]})
        prefix = f"{tag}." if several else ""
        for label, _, p in walk:
            data[f"{prefix}{label}"] = round(float(p), 4)
        data[f"{prefix}model"] = f"{row['model_name']} v{row['model_version']}"
        data[f"{prefix}feature_set_version"] = row["feature_set_version"]
    return out
