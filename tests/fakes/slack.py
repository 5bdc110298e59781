"""A local HTTP server that answers like Slack's incoming webhooks and Web API, for sink tests.

From Slack's documentation (docs.slack.dev): an incoming webhook takes ``POST`` JSON (``text``, ``blocks``) and
answers ``200 ok`` as plain text, or an error word (``400 invalid_payload``, ``403 action_prohibited``,
``404 no_service``, ``410 channel_is_archived``); Web API methods (``POST /api/<method>``, ``Authorization: Bearer
<token>``) answer HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "invalid_auth"}``, and 429 with
``Retry-After`` when rate limited. Files: ``files.getUploadURLExternal`` (form ``filename``, ``length``) returns
``upload_url`` and ``file_id``; the bytes are POSTed to ``upload_url``; ``files.completeUploadExternal`` (JSON
``files``, ``channel_id``, ``thread_ts``) shares them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.fakes.loopback import LoopbackHTTP


@dataclass
class FakeSlack(LoopbackHTTP):
    webhook_path: str = "/services/T000/B000/XXXX"
    bot_token: str = "xoxb-test"
    channels: tuple[str, ...] = ("C0SKYSIFT",)
    messages: list[dict] = field(default_factory=list)  # webhook bodies and chat.postMessage bodies
    uploads: dict[str, bytes] = field(default_factory=dict)  # file id -> bytes received
    shared: list[dict] = field(default_factory=list)  # completeUploadExternal bodies
    faults: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def webhook_url(self) -> str:
        return self.url + self.webhook_path

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, ctype, body, headers = fake.answer(self.path, dict(self.headers), raw)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        return self.serve(Handler)

    def answer(self, path: str, headers: dict, raw: bytes) -> tuple[int, str, bytes, dict]:
        with self.lock:
            if self.faults:
                status = self.faults.pop(0)
                extra = {"Retry-After": "0"} if status == 429 else {}
                return status, "text/plain", b"rate_limited" if status == 429 else b"internal_error", extra
            if path == self.webhook_path:
                return self._webhook(raw)
            if path.startswith("/upload/"):
                file_id = path.rsplit("/", 1)[1]
                if file_id not in self.uploads:
                    return 404, "text/plain", b"not found", {}
                self.uploads[file_id] = _multipart_file(headers.get("Content-Type", ""), raw)
                return 200, "text/plain", b"OK - " + str(len(self.uploads[file_id])).encode(), {}
            if path.startswith("/api/"):
                auth = headers.get("Authorization", "")
                if auth != f"Bearer {self.bot_token}":
                    return self._ok(False, error="invalid_auth" if auth else "not_authed")
                return self._api(path[len("/api/"):], headers.get("Content-Type", ""), raw)
            if path.startswith("/services/"):
                return 404, "text/plain", b"no_service", {}
            return 404, "text/plain", b"not found", {}

    def _webhook(self, raw: bytes):
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, "text/plain", b"invalid_payload", {}
        if not body.get("text") and not body.get("blocks"):
            return 400, "text/plain", b"no_text", {}
        self.messages.append(body)
        return 200, "text/plain", b"ok", {}

    def _api(self, method: str, ctype: str, raw: bytes):
        body = json.loads(raw) if ctype.startswith("application/json") else {
            k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if method == "chat.postMessage":
            if body.get("channel") not in self.channels:
                return self._ok(False, error="channel_not_found")
            self.messages.append(body)
            ts = f"{time.time():.6f}"
            return self._ok(True, channel=body["channel"], ts=ts, message={"text": body.get("text"), "ts": ts})
        if method == "files.getUploadURLExternal":
            if not body.get("filename") or not str(body.get("length", "")).isdigit():
                return self._ok(False, error="invalid_arguments")
            file_id = f"F{len(self.uploads) + 1:010d}"
            self.uploads[file_id] = b""
            return self._ok(True, upload_url=f"{self.url}/upload/{file_id}", file_id=file_id)
        if method == "files.completeUploadExternal":
            files = body.get("files") or []
            if not files or any(f.get("id") not in self.uploads or not self.uploads[f["id"]] for f in files):
                return self._ok(False, error="file_not_found")
            self.shared.append(body)
            return self._ok(True, files=[{"id": f["id"], "title": f.get("title", "")} for f in files])
        return self._ok(False, error="unknown_method")

    @staticmethod
    def _ok(ok: bool, **fields):
        return 200, "application/json", json.dumps({"ok": ok, **fields}).encode(), {}


def _multipart_file(ctype: str, raw: bytes) -> bytes:
    """The first part's bytes of a multipart/form-data body (what an upload sends), else the raw body."""
    if "boundary=" not in ctype:
        return raw
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    for part in raw.split(b"--" + boundary):
        if b"\r\n\r\n" in part:
            return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    return b""
