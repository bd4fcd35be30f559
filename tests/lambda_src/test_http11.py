"""http11: one keep-alive connection, against a server that answers with scripted raw bytes."""

import contextlib
import socket
import threading

import pytest
from lambda_testkit import load_function

REQUEST_END = b"\r\n\r\n"


@pytest.fixture(scope="module")
def http11():
    return load_function("predictor").http11


class ScriptedServer:
    """Connection ``n`` answers its requests with ``scripts[n]`` in turn, then closes.

    An answer of ``None`` closes the connection without answering; ``"silent"`` never answers.
    """

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.requests = []  # (connection number, raw request)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self._listener.settimeout(0.05)
        number = 0
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            script = self.scripts[number] if number < len(self.scripts) else []
            threading.Thread(target=self._answer, args=(conn, number, script), daemon=True).start()
            number += 1

    def _answer(self, conn, number, script):
        with conn, contextlib.suppress(OSError):  # the client may hang up first
            for answer in script:
                request = self._read_request(conn)
                if request is None:
                    return
                self.requests.append((number, request))
                if answer == "silent":
                    self._stop.wait()
                    return
                if answer is None:
                    return
                conn.sendall(answer)

    @staticmethod
    def _read_request(conn):
        data = b""
        while REQUEST_END not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(REQUEST_END)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        return data

    def close(self):
        self._stop.set()
        self._thread.join()
        self._listener.close()


@pytest.fixture
def serve():
    servers = []

    def start(*scripts):
        servers.append(ScriptedServer(*scripts))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def connect(http11, server, read_timeout=2.0):
    return http11.Connection("127.0.0.1", server.port, connect_timeout=1.0,
                             read_timeout=read_timeout)


def request(http11, body=b"{}"):
    return http11.format_request("POST", "/x", {"Host": "h"}, body)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Thing: a\r\nx-thing: b\r\n\r\nok"


def test_format_request_is_one_block_with_the_body_length(http11):
    assert http11.format_request("POST", "/p/q", {"Host": "example.com", "A": "1"}, b"body") == (
        b"POST /p/q HTTP/1.1\r\nHost: example.com\r\nA: 1\r\nContent-Length: 4\r\n\r\nbody")


@pytest.mark.parametrize("path, headers", [
    ("/x", {"Host": "h", "X-Id": "a\r\nX-Admin: yes"}),
    ("/x", {"Host": "h\n"}),
    ("/x HTTP/1.1\r\nHost: evil", {"Host": "h"}),
    ("/x", {"Host": "h", "X-Id": "nul\x00"}),
])
def test_line_breaks_cannot_smuggle_headers_or_requests(http11, path, headers):
    with pytest.raises(ValueError, match="line break or NUL"):
        http11.format_request("POST", path, headers, b"")


def test_answers_reuse_one_connection_and_headers_are_lower_case(http11, serve):
    server = serve([OK, OK])
    conn = connect(http11, server)
    first, second = conn.exchange(request(http11)), conn.exchange(request(http11))
    conn.close()
    assert (first.status, first.body) == (200, b"ok") == (second.status, second.body)
    assert first.headers["x-thing"] == "a, b"
    assert [number for number, _ in server.requests] == [0, 0]


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n",
     b"abc0123456789abcdef"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", b"z"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""),
])
def test_bodies_by_length_chunks_or_none_keep_the_connection(http11, serve, answer, body):
    server = serve([answer, OK])
    conn = connect(http11, server)
    assert conn.exchange(request(http11)).body == body
    assert conn.exchange(request(http11)).body == b"ok"
    conn.close()
    assert [number for number, _ in server.requests] == [0, 0]


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"until the end"),
])
def test_answers_that_end_the_connection_close_it(http11, serve, answer, body):
    server = serve([answer], [OK])
    conn = connect(http11, server)
    assert conn.exchange(request(http11)).body == body
    assert conn.exchange(request(http11)).body == b"ok"
    conn.close()
    assert [number for number, _ in server.requests] == [0, 1]


def test_a_reused_connection_found_closed_is_stale_and_a_new_one_works(http11, serve):
    server = serve([OK, None], [OK])
    conn = connect(http11, server)
    conn.exchange(request(http11))
    with pytest.raises(http11.StaleConnection):
        conn.exchange(request(http11))
    assert conn.exchange(request(http11)).body == b"ok"
    conn.close()


def test_a_new_connection_closed_before_answering_is_a_protocol_error(http11, serve):
    conn = connect(http11, serve([None]))
    with pytest.raises(http11.ProtocolError):
        conn.exchange(request(http11))


@pytest.mark.parametrize("answer", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 101 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
])
def test_answers_that_are_not_http_are_protocol_errors(http11, serve, answer):
    conn = connect(http11, serve([answer]))
    with pytest.raises(http11.ProtocolError):
        conn.exchange(request(http11))


def test_silence_is_a_timeout_and_a_closed_port_cannot_connect(http11, serve):
    conn = connect(http11, serve(["silent"]), read_timeout=0.2)
    with pytest.raises(TimeoutError):
        conn.exchange(request(http11))
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    closed = http11.Connection("127.0.0.1", port, connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(http11.ConnectFailed):
        closed.exchange(request(http11))


RUNTIME_HOST = "runtime.sagemaker.eu-west-1.amazonaws.com"


@pytest.mark.parametrize("url, host, port, host_header, tls", [
    (f"https://{RUNTIME_HOST}", RUNTIME_HOST, 443, RUNTIME_HOST, True),
    ("http://127.0.0.1:4567/Demo", "127.0.0.1", 4567, "127.0.0.1:4567", False),
    ("http://example.com/x", "example.com", 80, "example.com", False),
])
def test_a_connection_to_a_url_takes_its_host_port_and_scheme(http11, url, host, port, host_header,
                                                              tls):
    conn = http11.Connection.to_url(url, connect_timeout=1, read_timeout=1)
    assert (conn.host, conn.port, conn.host_header) == (host, port, host_header)
    assert (conn._ssl_context is not None) == tls
