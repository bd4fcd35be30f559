"""HTTP/1.1 on one keep-alive connection: a prepared request in one write, the answer to its end.

Both functions call one host over and over. ``http.client`` formats every request anew, writes
head and body separately and parses response headers with the ``email`` package; here a request
is bytes prepared by the caller, and the answer is read with what HTTP/1.1 needs and no more:
status line, headers, a ``Content-Length``, chunked or read-to-close body, keep-alive or not.
"""

import re
import socket
import ssl
from dataclasses import dataclass
from typing import Dict, Mapping, Optional
from urllib.parse import urlsplit

MAX_LINE = 65536  # as http.client
MAX_HEADERS = 100
NO_BODY_STATUSES = (204, 304)
# How a peer that closed an idle keep-alive connection shows when the next request goes out.
PEER_CLOSED = (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError)
LINE_BREAK_OR_NUL = re.compile(r"[\r\n\x00]")


class ConnectFailed(ConnectionError):
    """The connection (TCP, or TLS) could not be opened; nothing was sent."""


class StaleConnection(ConnectionError):
    """A reused connection was found closed before any byte of the answer: send it on a new one."""


class ProtocolError(ConnectionError):
    """The peer's answer is not HTTP/1.x as it should be, or it stopped in the middle."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Dict[str, str]  # lower-case names
    body: bytes


def format_request(method: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """One request as bytes; ``headers`` must carry Host (and no Content-Length: it is added).

    A line break in the path or a header would start a header or a request of its own: refused.
    """
    lines = [f"{method} {path} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if LINE_BREAK_OR_NUL.search("".join(lines)):
        raise ValueError("a request line or header contains a line break or NUL")
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


class Connection:
    """One keep-alive connection to ``host:port``, opened on first use and after a failure."""

    def __init__(self, host: str, port: int, *, connect_timeout: float, read_timeout: float,
                 ssl_context: Optional[ssl.SSLContext] = None):
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}"  # a valid Host value; to_url keeps the URL's own
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl_context = ssl_context
        self._sock: Optional[socket.socket] = None
        self._reader = None
        self._reused = False

    @classmethod
    def to_url(cls, url: str, *, connect_timeout: float, read_timeout: float,
               ssl_context: Optional[ssl.SSLContext] = None) -> "Connection":
        """A connection to the host of an http(s) URL; https verifies with ``ssl_context`` or
        the system's CAs. ``host_header`` is the URL's host[:port], as the Host header wants."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        connection = cls(
            parts.hostname, parts.port or (443 if https else 80), connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ssl_context=(ssl_context or ssl.create_default_context()) if https else None)
        connection.host_header = parts.netloc
        return connection

    def connect(self) -> None:
        """Open the connection unless it is open; raises ConnectFailed."""
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), self._connect_timeout)
        except OSError as error:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {error}") from error
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # notice a vanished peer
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self._read_timeout)
        except OSError as error:  # ssl.SSLError included
            sock.close()
            raise ConnectFailed(f"cannot open TLS to {self.host}:{self.port}: {error}") from error
        self._sock, self._reader, self._reused = sock, sock.makefile("rb"), False

    def exchange(self, request: bytes) -> Response:
        """Send one prepared request and read its answer.

        Raises ConnectFailed, StaleConnection (only on a reused connection), TimeoutError (no
        progress for the read timeout), ProtocolError, or another ConnectionError/OSError. After
        any of them the connection is closed; the next call opens a new one.
        """
        self.connect()
        reused, self._reused = self._reused, True
        try:
            try:
                self._sock.sendall(request)
                status_line = self._reader.readline(MAX_LINE + 1)
            except PEER_CLOSED as error:
                if reused:
                    raise StaleConnection(f"the reused connection was closed: {error}") from error
                raise
            if not status_line:
                raise (StaleConnection if reused else ProtocolError)(
                    "the connection closed before an answer")
            response, keep_alive = self._read_response(status_line)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if self._sock is not None:
            self._reader.close()
            self._sock.close()
        self._sock = self._reader = None

    # -- reading -----------------------------------------------------------------------------

    def _read_response(self, status_line: bytes):
        version, status = _parse_status_line(status_line)
        while 100 <= status < 200:  # informational answers precede the real one
            self._read_headers()
            version, status = _parse_status_line(self._readline())
        headers = self._read_headers()
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection)
        if status in NO_BODY_STATUSES:
            return Response(status, headers, b""), keep_alive
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Response(status, headers, self._read_chunked()), keep_alive
        length = headers.get("content-length")
        if length is None:
            return Response(status, headers, self._reader.read()), False
        if not length.isdigit():
            raise ProtocolError(f"invalid Content-Length {length[:40]!r}")
        return Response(status, headers, self._read_exactly(int(length))), keep_alive

    def _readline(self) -> bytes:
        line = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("a header line is too long")
        if not line:
            raise ProtocolError("the connection closed in the middle of an answer")
        return line

    def _read_headers(self) -> Dict[str, str]:
        headers: Dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._readline()
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name.strip():
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise ProtocolError(f"more than {MAX_HEADERS} headers")

    def _read_exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:
            raise ProtocolError(f"the body stopped after {len(data)} of {size} bytes")
        return data

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size_field = self._readline().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise ProtocolError(f"invalid chunk size {size_field[:40]!r}") from None
            if size == 0:
                self._read_headers()  # trailers, up to the blank line
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            if self._readline() not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk does not end with CRLF")


def _parse_status_line(line: bytes):
    if len(line) > MAX_LINE:
        raise ProtocolError("the status line is too long")
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line {line[:80]!r}")
    return parts[0], int(parts[1])
