"""One persistent keep-alive HTTP connection to the API, timing each request to its last byte."""

import http.client
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

TIMEOUT = "timeout"
CONNECTION_ERROR = "connection-error"
# A server may close an idle keep-alive connection just as a request goes out.
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Reply:
    status: object  # HTTP status (int), or TIMEOUT / CONNECTION_ERROR
    latency_ms: Optional[float]  # send to last body byte; None when no response arrived
    body: bytes = b""


class ApiConnection:
    def __init__(self, base_url: str, timeout_sec: float):
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout_sec
        self._conn: Optional[http.client.HTTPConnection] = None
        self._reused = False

    def post(self, url: str, body: bytes, headers: dict) -> Reply:
        path = urlsplit(url).path
        reply = self._attempt(path, body, headers)
        if reply is None:  # the reused connection had gone stale: one try on a fresh one
            reply = self._attempt(path, body, headers) or Reply(CONNECTION_ERROR, None)
        return reply

    def _attempt(self, path: str, body: bytes, headers: dict) -> Optional[Reply]:
        try:
            self._open()
        except OSError:
            self.close()
            return Reply(CONNECTION_ERROR, None)
        reused = self._reused
        started = time.perf_counter()
        try:
            self._conn.request("POST", path, body=body, headers=headers)
            response = self._conn.getresponse()
            payload = response.read()
        except TimeoutError:
            self.close()
            return Reply(TIMEOUT, None)
        except STALE_CONNECTION_ERRORS:
            self.close()
            return None if reused else Reply(CONNECTION_ERROR, None)
        except (OSError, http.client.HTTPException):
            self.close()
            return Reply(CONNECTION_ERROR, None)
        latency_ms = (time.perf_counter() - started) * 1000
        self._reused = True
        if response.will_close:
            self.close()
        return Reply(response.status, latency_ms, payload)

    def _open(self) -> None:
        """Connect outside the timed section: latency is the API's, not the TCP/TLS handshake's."""
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
            self._reused = False
        if self._conn.sock is None:
            self._conn.connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
