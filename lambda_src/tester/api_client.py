"""One persistent keep-alive HTTP connection to the API, timing each request to its last byte.

The request is formatted and the connection opened before the clock starts, so a latency is
what wrk would measure: from writing the request to reading the last byte of the answer.
"""

import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

import http11

TIMEOUT = "timeout"
CONNECTION_ERROR = "connection-error"


@dataclass(frozen=True)
class Reply:
    status: object  # HTTP status (int), or TIMEOUT / CONNECTION_ERROR
    latency_ms: Optional[float]  # send to last body byte; None when no response arrived
    body: bytes = b""


class ApiConnection:
    def __init__(self, base_url: str, timeout_sec: float):
        self._conn = http11.Connection.to_url(base_url, connect_timeout=timeout_sec,
                                              read_timeout=timeout_sec)

    def post(self, url: str, body: bytes, headers: dict) -> Reply:
        request = http11.format_request(
            "POST", urlsplit(url).path, {"Host": self._conn.host_header, **headers}, body)
        for _ in range(2):  # again only if the reused connection had gone stale
            try:
                self._conn.connect()
                started = time.perf_counter()
                response = self._conn.exchange(request)
            except http11.StaleConnection:
                continue
            except TimeoutError:
                return Reply(TIMEOUT, None)
            except OSError:  # refused, reset, not HTTP
                return Reply(CONNECTION_ERROR, None)
            return Reply(response.status, (time.perf_counter() - started) * 1000, response.body)
        return Reply(CONNECTION_ERROR, None)

    def close(self) -> None:
        self._conn.close()
