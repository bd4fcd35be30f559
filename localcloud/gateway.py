"""The data-plane HTTP server on ``LOCALCLOUD_PORT + 1``: API Gateway stages and sagemaker-runtime.

A plain ASGI callable served by uvicorn with uvloop and httptools: the fastest Python stack
measured for this job (about 2,300-2,600 req/s on 2 cores), HTTP/1.1 keep-alive, and uvloop
sets TCP_NODELAY on every accepted socket, which avoids the 40 ms Nagle/delayed-ACK stall that
stdlib servers and uvicorn on plain asyncio show. No framework: routing is two prefix checks.

Routes:
  ANY  /restapis/<apiId>/<stage>/_user_request_/<path>  -> :class:`ApiGatewayDataPlane`
  ANY  /endpoints/<name>/invocations                    -> the SageMaker runtime's ``handle``
  GET  /_localcloud/health                              -> 200 {"status": "ok"}
Anything else is 404 {"message": "Not Found"}. Bodies above 10 MB are refused with 413 before
they are read (for a stage, through its API's gateway responses).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Callable, Iterable, Mapping, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from localcloud.apigateway import MAX_PAYLOAD_BYTES, ApiGatewayDataPlane

log = logging.getLogger("localcloud.gateway")

API_PREFIX = "/restapis/"
USER_REQUEST = "_user_request_"
HEALTH_PATH = "/_localcloud/health"
_JSON = [(b"content-type", b"application/json")]


class InvocationHandler(Protocol):
    """What the SageMaker runtime provides for ``POST /endpoints/<name>/invocations``."""

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str] | Iterable[tuple[str, str]], bytes]: ...


def _json_body(status: int, message: str) -> tuple[int, list, bytes]:
    return status, list(_JSON), json.dumps({"message": message}).encode()


class Gateway:
    """The ASGI application."""

    def __init__(self, apis: ApiGatewayDataPlane, sagemaker: InvocationHandler) -> None:
        self.apis = apis
        self.sagemaker = sagemaker

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._route(scope, receive)
        except Exception:  # one bad request must never take the server down
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            status, headers, body = _json_body(500, "Internal server error")
        # an explicit length keeps responses unchunked, which clients parse faster
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: dict, receive: Callable) -> tuple[int, list, bytes]:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(API_PREFIX):
            parts = path[len(API_PREFIX) :].split("/", 3)
            if len(parts) >= 3 and parts[2] == USER_REQUEST and parts[0] and parts[1]:
                api_id, stage = parts[0], parts[1]
                resource_path = "/" + (parts[3] if len(parts) == 4 else "")
                body = await _read_body(scope, receive)  # None: over 10 MB, refused there
                client = scope.get("client")
                status, headers, out = await self.apis.handle(
                    method,
                    api_id,
                    stage,
                    resource_path,
                    scope.get("query_string", b""),
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                    body,
                    client[0] if client else "127.0.0.1",
                )
                return status, _encode_headers(headers), out
        elif path.startswith("/endpoints/"):
            body = await _read_body(scope, receive)
            if body is None:
                return _json_body(413, "Request Too Long")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            status, out_headers, out = await self.sagemaker.handle(method, path, headers, body)
            pairs = out_headers.items() if isinstance(out_headers, Mapping) else out_headers
            return status, _encode_headers(pairs), out
        elif path == HEALTH_PATH:
            return 200, list(_JSON), b'{"status": "ok"}'
        return _json_body(404, "Not Found")


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]


async def _read_body(scope: dict, receive: Callable) -> bytes | None:
    """The request body, or None when it exceeds the 10 MB API Gateway payload limit."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_PAYLOAD_BYTES:
            return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_PAYLOAD_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a busy port fails here with a clear error rather than inside uvicorn."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class QuickAckProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, acknowledging a request's headers at once.

    Clients that write headers and body separately without TCP_NODELAY (botocore does) hold the
    body back until the headers are acknowledged, and Linux delays that ACK: about 5 ms per
    InvokeEndpoint on loopback. TCP_QUICKACK when the headers are parsed sends the ACK now.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._socket = transport.get_extra_info("socket")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._socket is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:  # the peer is already gone
                pass


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT and shutdown."""

    def capture_signals(self):  # type: ignore[override]
        import contextlib

        return contextlib.nullcontext()


def make_server(app: Gateway) -> _Server:
    config = uvicorn.Config(
        app,
        loop="none",  # runs on the daemon's (uvloop) loop
        http=QuickAckProtocol,
        lifespan="off",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level="warning",
        timeout_keep_alive=75,
        backlog=1024,
    )
    return _Server(config)
