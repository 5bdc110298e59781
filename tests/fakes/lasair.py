"""A local HTTP server that answers like Lasair's API, for enrichment tests (no network).

Built from Lasair's own code and docs (lsst-uk/lasair-lsst ``webserver/lasairapi/{urls,views,serializers,
throttle}.py``, ``docs/source/core_functions/rest-api.md``; the Sherlock service behind it):

- paths ``/api/sherlock/position/`` (``ra``, ``dec``, ``lite``) and ``/api/sherlock/object/`` (``objectId``,
  ``lite``), by GET query string or POST form/JSON, as Django REST framework accepts them;
- ``Authorization: Token <token>`` (or ``?token=`` on GET): 401 ``{"detail": "Invalid token."}`` otherwise;
- 200: ``{"classifications": {<name>: [<class>, <description>]}, "crossmatches": [...]}``; the position answer
  names the transient ``query0`` as Lasair's Sherlock service does; no object there: ORPHAN, no crossmatch;
- unknown object: 404 ``{"message": "Object <id> not found"}``; ra/dec out of range: 400 with DRF field errors;
- throttled: 429 ``{"message": "Request limit exceeded. ..."}`` with ``Retry-After`` (seconds), as DRF sends it.

Faults are scripted per request (``fail_next("429", "500", "timeout")``) and every request is recorded.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.determinism import scaled

THROTTLED = "Request limit exceeded. Either wait an hour, or see API documentation to increase your limits."
ORPHAN_TEXT = ("The transient is not obviously associated with any catalogued galaxy nor is it coincident with a "
               "known stellar source.")


@dataclass
class SkyObject:
    """What Sherlock knows around one transient."""

    object_id: str
    ra: float
    dec: float
    classification: str
    separation_arcsec: float | None = None
    catalogue: str | None = None
    catalogue_object_id: str | None = None

    def answer(self, name: str) -> dict:
        if self.separation_arcsec is None:
            return {"classifications": {name: [self.classification, ORPHAN_TEXT]}, "crossmatches": []}
        best = {
            "transient_object_id": name, "association_type": self.classification, "rank": 1,
            "catalogue_table_name": self.catalogue, "catalogue_object_id": self.catalogue_object_id,
            "catalogue_object_type": "galaxy", "raDeg": self.ra, "decDeg": self.dec,
            "separationArcsec": self.separation_arcsec, "northSeparationArcsec": self.separation_arcsec / 2,
            "eastSeparationArcsec": -self.separation_arcsec / 2, "physical_separation_kpc": None, "z": None,
            "classificationReliability": 2,
        }
        second = {**best, "rank": 2, "catalogue_object_id": "farther", "separationArcsec": self.separation_arcsec + 9}
        text = (f"The transient is possibly associated with <em>{self.catalogue_object_id}</em>; a galaxy found in "
                f"the {self.catalogue} catalogue. It's located {self.separation_arcsec:.2f} arcsec from its centre.")
        return {"classifications": {name: [self.classification, text]}, "crossmatches": [second, best]}


@dataclass
class Request:
    path: str
    params: dict
    authorization: str | None


@dataclass
class FakeLasair:
    token: str = "test-lasair-token"
    timeout_delay: float = scaled(2.0)  # how long a "timeout" fault keeps the client waiting
    objects: dict[str, SkyObject] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    def add(self, obj: SkyObject) -> None:
        self.objects[obj.object_id] = obj

    def fail_next(self, *faults: str) -> None:
        """Answer the next requests with these faults, in order: "429" or "429:<retry-after>", "500", "timeout"."""
        self.faults.extend(faults)

    def calls(self, path_part: str = "sherlock") -> list[Request]:
        return [r for r in self.requests if path_part in r.path]

    # --- the server
    def start(self) -> "FakeLasair":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                url = urlparse(self.path)
                fake._handle(self, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()})

            def do_POST(self):
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(body or "{}")
                else:
                    params = {k: v[-1] for k, v in parse_qs(body).items()}
                fake._handle(self, url.path, params)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def _handle(self, h: BaseHTTPRequestHandler, path: str, params: dict) -> None:
        auth = h.headers.get("Authorization")
        self.requests.append(Request(path, dict(params), auth))
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "timeout":
                time.sleep(self.timeout_delay)
                return self._send(h, 200, {"classifications": {}, "crossmatches": []})
            if fault.startswith("429"):
                retry_after = fault.partition(":")[2] or "3599"
                return self._send(h, 429, {"message": THROTTLED}, {"Retry-After": retry_after})
            if fault == "500":
                return self._send(h, 500, "<h1>Server Error (500)</h1>", content_type="text/html")
            raise ValueError(f"unknown fault {fault!r}")
        if auth != f"Token {self.token}" and params.get("token") != self.token:
            return self._send(h, 401, {"detail": "Invalid token."})
        if path == "/api/sherlock/position/":
            return self._position(h, params)
        if path == "/api/sherlock/object/":
            return self._object(h, params)
        return self._send(h, 404, "<h1>Not Found</h1>", content_type="text/html")

    def _position(self, h, params: dict) -> None:
        try:
            ra, dec = float(params["ra"]), float(params["dec"])
        except (KeyError, ValueError):
            return self._send(h, 400, {"ra": ["A valid number is required."], "dec": ["A valid number is required."]})
        if not 0 <= ra <= 360:
            return self._send(h, 400, {"ra": ["ra must be between 0 and 360"]})
        if not -90 <= dec <= 90:
            return self._send(h, 400, {"dec": ["dec must be between -90 and 90"]})
        near = [o for o in self.objects.values() if _separation_arcsec(o.ra, o.dec, ra, dec) < 2.0]
        obj = near[0] if near else SkyObject("", ra, dec, "ORPHAN")
        return self._send(h, 200, obj.answer("query0"))

    def _object(self, h, params: dict) -> None:
        object_id = params.get("objectId")
        if not object_id:
            return self._send(h, 400, {"objectId": ["This field is required."]})
        obj = self.objects.get(object_id)
        if obj is None:
            return self._send(h, 404, {"message": f"Object {object_id} not found"})
        return self._send(h, 200, obj.answer(object_id))

    @staticmethod
    def _send(h, status: int, body, headers: dict | None = None, content_type: str = "application/json") -> None:
        data = (json.dumps(body) if content_type == "application/json" else body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout), as a real client does


def _separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(min(1.0, max(-1.0, c)))) * 3600
