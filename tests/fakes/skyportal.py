"""A local HTTP server that answers like SkyPortal's (Fritz's) annotation API on sources, for sink tests.

Built from SkyPortal's own code (skyportal/skyportal ``skyportal/handlers/api/annotation.py`` and
``skyportal/tests/api/test_annotations.py``; baselayer's ``auth_or_token``/``permissions`` and its JSON envelope):

- ``POST /api/sources/<obj_id>/annotations`` with ``{"origin", "data", "group_ids"}``: 200
  ``{"status": "success", "data": {"annotation_id": <int>}}``; without ``group_ids`` the annotation goes to all
  the token's groups (recorded, so a test can see it); ``origin`` must match ``^\\w+``; ``data`` must be an
  object; one annotation per (source, origin): a second POST is 400 ``"Annotation already exists: ..."``
  (the database's unique-constraint error, as SkyPortal words it);
- ``GET /api/sources/<obj_id>/annotations``: 200, ``data`` the list of annotations visible to the token;
- ``PUT /api/sources/<obj_id>/annotations/<id>``: partial update of ``data``/``origin``/``group_ids``, 200
  ``{"status": "success", "data": {}}``; an id of another source is 400;
- ``Authorization: token <t>``: an unknown token is 401; POST/PUT without the Annotate ACL is 401 (a view-only
  token), both with ``{"status": "error", "message": ...}`` as baselayer answers.

Faults are scripted (``fail_next(503, 503)``) and every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.loopback import LoopbackHTTP

PATH = re.compile(r"^/api/sources/(?P<obj>[^/]+)/annotations(?:/(?P<id>[^/]+))?/?$")


@dataclass
class Request:
    method: str
    path: str
    token: str | None
    body: dict | None
    status: int


@dataclass
class Annotation:
    id: int
    obj_id: str
    origin: str
    data: dict
    group_ids: list[int]
    author: str

    def as_dict(self) -> dict:
        return {"id": self.id, "obj_id": self.obj_id, "origin": self.origin, "data": self.data,
                "author_id": 1, "groups": [{"id": g} for g in self.group_ids]}



@dataclass
class FakeSkyPortal(LoopbackHTTP):
    """Tokens map to (groups the user belongs to, whether the token has the Annotate ACL)."""

    tokens: dict[str, tuple[list[int], bool]]
    annotations: dict[int, Annotation] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> FakeSkyPortal:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                header = self.headers.get("Authorization") or ""
                token = header[len("token "):].strip() if header.startswith("token ") else None
                status, payload = fake.answer(method, self.path, token, body)
                with fake.lock:
                    fake.requests.append(Request(method, self.path, token, body, status))
                self._send(status, payload)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        return self.serve(Handler)

    def answer(self, method: str, path: str, token: str | None, body: dict | None) -> tuple[int, dict]:
        with self.lock:
            if self.faults:
                status = self.faults.pop(0)
                return status, {"status": "error", "message": f"HTTP {status}: scripted fault"}
            m = PATH.match(path)
            if not m:
                return 404, {"status": "error", "message": f"HTTP 404: Not Found ({path})"}
            if token is None or token not in self.tokens:
                return 401, {"status": "error", "message": "HTTP 401: Unauthorized (Credentials malformed)"}
            groups, can_annotate = self.tokens[token]
            if method in ("POST", "PUT") and not can_annotate:
                return 401, {"status": "error", "message": "HTTP 401: Unauthorized (Insufficient permissions: "
                                                           "Annotate required)"}
            obj_id, annotation_id = m["obj"], m["id"]
            if method == "GET" and annotation_id is None:
                visible = [a.as_dict() for a in self.annotations.values()
                           if a.obj_id == obj_id and set(a.group_ids) & set(groups)]
                return 200, {"status": "success", "data": visible}
            if method == "POST" and annotation_id is None:
                return self._post(obj_id, token, groups, body or {})
            if method == "PUT" and annotation_id is not None:
                return self._put(obj_id, int(annotation_id), groups, body or {})
            return 405, {"status": "error", "message": "HTTP 405: Method Not Allowed"}

    def _post(self, obj_id: str, token: str, groups: list[int], body: dict) -> tuple[int, dict]:
        origin = body.get("origin")
        if origin is None:
            return 400, {"status": "error", "message": "origin must be specified"}
        if not re.search(r"^\w+", origin):
            return 400, {"status": "error", "message": "Input `origin` must begin with alphanumeric/underscore"}
        if not isinstance(body.get("data"), dict):
            return 400, {"status": "error", "message": "Invalid data: the annotation data must be an object with "
                                                       "at least one {key: value} pair"}
        group_ids = body.get("group_ids") or groups  # SkyPortal's default: every group of the token's user
        if not set(group_ids) <= set(groups):
            return 400, {"status": "error", "message": f"Cannot find one or more groups with IDs: {group_ids}."}
        if any(a.obj_id == obj_id and a.origin == origin for a in self.annotations.values()):
            return 400, {"status": "error", "message": (
                "Annotation already exists: (psycopg2.errors.UniqueViolation) duplicate key value violates unique "
                f'constraint "annotations_obj_id_origin_key"\nDETAIL:  Key (obj_id, origin)=({obj_id}, {origin}) '
                "already exists.")}
        new_id = max(self.annotations, default=0) + 1
        self.annotations[new_id] = Annotation(new_id, obj_id, origin, body["data"], list(group_ids), token)
        return 200, {"status": "success", "data": {"annotation_id": new_id}}

    def _put(self, obj_id: str, annotation_id: int, groups: list[int], body: dict) -> tuple[int, dict]:
        a = self.annotations.get(annotation_id)
        if a is None or not set(a.group_ids) & set(groups):
            return 403, {"status": "error", "message": "Could not find any accessible annotations."}
        if a.obj_id != obj_id:
            return 400, {"status": "error", "message": (
                f"Annotation resource ID does not match resource ID given in path ({obj_id})")}
        if "data" in body:
            a.data = body["data"]
        if "origin" in body:
            a.origin = body["origin"]
        if body.get("group_ids") is not None:
            a.group_ids = list(body["group_ids"])
        return 200, {"status": "success", "data": {}}
