"""What the fakes of internet services share: serving a handler on 127.0.0.1 in a thread, and scripted faults."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHTTP:
    """Mixin for a fake with ``faults``, ``lock`` and ``server`` fields (see FakeSlack, FakeSkyPortal)."""

    server: ThreadingHTTPServer | None
    faults: list
    lock: threading.Lock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, in order, before behaving again."""
        with self.lock:
            self.faults.extend(statuses)

    def serve(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
