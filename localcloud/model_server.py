"""A model server with the SageMaker inference container contract, for one extracted model.tar.gz.

    python -m localcloud.model_server --model-dir DIR --port PORT [--workers N] [--host 127.0.0.1]

``DIR`` is an extracted model archive: model files at the root and the handler in
``DIR/code/inference.py`` (with its own modules beside it). Nothing is imported from the source
tree: ``DIR/code`` is the only handler import path, as in the SageMaker PyTorch container.

* ``GET /ping`` answers 200 ``{"status": "Healthy"}``. The listening socket is bound at once, but
  a worker accepts connections only after ``model_fn`` has returned, so a 200 always means
  "loaded"; a probe simply waits (or times out and retries) while the model loads.
* ``POST /invocations`` runs ``input_fn(body, content_type)``, ``predict_fn(data, model)``,
  ``output_fn(prediction, accept)``. ``output_fn`` may return the body or ``(body, content_type)``;
  a missing or ``*/*`` Accept becomes ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (default
  ``application/json``), as the SageMaker inference toolkit does.
* A handler exception with an int ``status_code`` (4xx/5xx) answers that status with
  ``{"error": {"code": <exception's code or the status phrase>, "message": str(exc)}}``; any other
  exception answers 500 with a generic message, and its traceback goes to the server log.

Why the standard library server: measured on the 2-core reference machine, ``ThreadingHTTPServer``
with HTTP/1.1 keep-alive and ``disable_nagle_algorithm`` did ~2,470 req/s at concurrency 1 and
~2,450 at 16, the same as uvicorn with uvloop and httptools (~2,300-2,570), without the uvicorn
multi-worker Nagle trap (40 ms per request on plain asyncio) and with the handler's blocking,
CPU-bound calls run directly instead of through an executor. TCP_NODELAY is what matters: without
it every keep-alive response waits ~40 ms for a delayed ACK.

``--workers N`` (default ``SAGEMAKER_MODEL_SERVER_WORKERS`` or 1) forks N processes before
anything heavy is imported; each loads the model itself and accepts from the shared socket.
If any worker dies the others are stopped and the server exits with that worker's status, so
the supervisor restarts the server as a whole. torch runs with one intra-op thread per worker.
"""

from __future__ import annotations

import argparse
import http
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

log = logging.getLogger("localcloud.model_server")

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint payload limit
GENERIC_ERROR = "The model server could not process the request; the cause is in its log."
# Every worker loads torch and the model itself: many workers (server_workers allows 64) can
# exhaust memory. The kernel should then kill a model server, which its supervisor restarts or
# fails with a reason, rather than the daemon, whose memory holds every deployed stack.
OOM_SCORE_RAISE = 500  # above the score inherited from the daemon, up to the maximum, 1000


class HandlerError(Exception):
    """The model directory cannot be served (missing or incomplete handler)."""


def load_handler(model_dir: Path) -> ModuleType:
    """Import ``model_dir/code/inference.py``; ``model_dir/code`` is the only extra import path."""
    code_dir = model_dir / "code"
    entry = code_dir / "inference.py"
    if not entry.is_file():
        raise HandlerError(
            f"{entry} does not exist: a model archive must contain code/inference.py"
        )
    # The working directory (possibly the source tree) must not shadow the archive's modules.
    cwd = os.getcwd()
    sys.path[:] = [str(code_dir)] + [p for p in sys.path if p not in ("", cwd)]
    spec = importlib.util.spec_from_file_location("inference", entry)
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    missing = [name for name in HANDLER_FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        raise HandlerError(
            f"{entry} does not define {', '.join(missing)}; this server needs "
            f"{', '.join(HANDLER_FUNCTIONS)}"
        )
    return module


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def client_error(exc: BaseException) -> tuple[int, bytes] | None:
    """(status, body) for an exception that names its HTTP status, else None."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        return None
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not code:
        try:
            code = http.HTTPStatus(status).phrase.replace(" ", "")
        except ValueError:
            code = f"Error{status}"
    message = getattr(exc, "message", None)
    return status, error_body(code, message if isinstance(message, str) else str(exc))


class Inference:
    """The loaded model and the per-request pipeline around the handler functions."""

    def __init__(self, handler: ModuleType, model_dir: Path):
        self.input_fn: Callable = handler.input_fn
        self.predict_fn: Callable = handler.predict_fn
        self.output_fn: Callable = handler.output_fn
        self.default_accept = os.environ.get(
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json"
        )
        self.model: Any = handler.model_fn(str(model_dir))

    def __call__(
        self, body: bytes, content_type: str | None, accept: str | None
    ) -> tuple[int, str, bytes]:
        if not accept or accept.strip() == "*/*":
            accept = self.default_accept
        try:
            result = self.output_fn(
                self.predict_fn(self.input_fn(body, content_type), self.model), accept
            )
        except Exception as exc:
            mapped = client_error(exc)
            if mapped is not None:
                return mapped[0], "application/json", mapped[1]
            log.exception("handler failed on a %d-byte %s request", len(body), content_type)
            return 500, "application/json", error_body("InternalServerError", GENERIC_ERROR)
        response_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, response_type = result
        if isinstance(result, str):
            result = result.encode("utf-8")
        if not isinstance(result, (bytes, bytearray)):
            log.error("output_fn returned %s; it must return bytes or str", type(result).__name__)
            return 500, "application/json", error_body("InternalServerError", GENERIC_ERROR)
        return 200, response_type, bytes(result)


class ContainerRequestHandler(BaseHTTPRequestHandler):
    """GET /ping and POST /invocations; every response is one write with a Content-Length."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # without it, each keep-alive response waits ~40 ms
    server_version = "localcloud-model-server"
    inference: Inference  # set on the subclass made by serve()

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def _error(self, status: int, message: str) -> None:
        code = _PHRASES[status].replace(" ", "")
        self._reply(status, "application/json", error_body(code, message))

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/ping":
            self._reply(200, "application/json", b'{"status": "Healthy"}')
        else:
            self._error(
                404,
                f"no route for GET {self.path}; this server serves GET /ping and POST /invocations",
            )

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/invocations":
            self._error(
                404,
                f"no route for POST {self.path}; "
                "this server serves GET /ping and POST /invocations",
            )
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._error(411, "a Content-Length header is required")
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(400, f"Content-Length {length_header!r} is not a non-negative integer")
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(
                413, f"request body of {length} bytes exceeds the {MAX_BODY_BYTES}-byte limit"
            )
            return
        body = self.rfile.read(length)
        status, content_type, payload = self.inference(
            body, self.headers.get("Content-Type"), self.headers.get("Accept")
        )
        self._reply(status, content_type, payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, oversized headers...) get JSON errors too."""
        self.close_connection = True
        self._error(code if code in _PHRASES else 400, message or explain or _PHRASES.get(code, ""))

    def _method_not_allowed(self) -> None:
        self._error(
            405,
            f"{self.command} is not allowed; this server serves GET /ping and POST /invocations",
        )

    do_PUT = do_DELETE = do_PATCH = do_HEAD = _method_not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        # Per-request access lines would dominate the log and the CPU; errors are logged elsewhere.
        pass


_PHRASES = {s.value: s.phrase for s in http.HTTPStatus}


class _SharedSocketServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, handler_class: type):
        super().__init__(sock.getsockname(), handler_class, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def serve(sock: socket.socket, model_dir: Path) -> None:
    """Load the model, then accept connections on ``sock`` until killed (one worker)."""
    started = time.monotonic()
    handler = load_handler(model_dir)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    inference = Inference(handler, model_dir)
    handler_class = type("BoundHandler", (ContainerRequestHandler,), {"inference": inference})
    log.info(
        "worker %d: model loaded in %.2fs; serving on %s",
        os.getpid(),
        time.monotonic() - started,
        sock.getsockname(),
    )
    _SharedSocketServer(sock, handler_class).serve_forever()


def serve_logged(sock: socket.socket, model_dir: Path) -> None:
    """``serve``, with the reason it stopped in the log (the supervisor restarts the server)."""
    try:
        serve(sock, model_dir)
    except HandlerError as exc:
        log.error("%s", exc)
    except Exception:
        log.exception("worker %d: loading or serving the model failed", os.getpid())


def _run_workers(sock: socket.socket, model_dir: Path, workers: int) -> int:
    """Fork ``workers`` processes serving ``sock``; return the exit status of the first to die."""
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                serve_logged(sock, model_dir)
            finally:
                logging.shutdown()
                os._exit(1)
        children.append(pid)

    def on_term(signum: int, frame: Any) -> None:
        _stop_children(children)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    pid, status = os.wait()
    log.error("worker %d exited (%s); stopping the others", pid, _describe(status))
    _stop_children([c for c in children if c != pid])
    return os.waitstatus_to_exitcode(status) or 1


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _stop_children(children: list[int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


# The same argument checks as localcloud.torchserve's: each runs isolated (-I),
# importing nothing from the source tree, so each has its own copy;
# tests/localcloud/test_model_server.py holds the two to one behaviour.
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def prefer_as_oom_victim() -> None:
    """Raise this process's OOM score (any process may raise its own), before it forks workers,
    which inherit it."""
    try:
        score = Path("/proc/self/oom_score_adj")
        score.write_text(str(min(1000, int(score.read_text()) + OOM_SCORE_RAISE)))
    except OSError:  # not Linux: nothing to prefer
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud.model_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="extracted model.tar.gz")
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes (default: SAGEMAKER_MODEL_SERVER_WORKERS or 1)",
    )
    args = parser.parse_args(argv)
    if not (args.model_dir / "code" / "inference.py").is_file():
        parser.error(f"--model-dir {args.model_dir}: no code/inference.py in it")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: must be 0-65535")
    if args.workers is None:
        raw = os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
        try:
            args.workers = _positive(raw)
        except ValueError:
            parser.error(f"SAGEMAKER_MODEL_SERVER_WORKERS={raw!r}: must be a positive integer")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    prefer_as_oom_victim()
    # Before torch is imported (by the handler): one intra-op thread per worker is fastest here.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    print(f"listening on {args.host}:{sock.getsockname()[1]}", flush=True)
    if args.workers == 1:
        serve_logged(sock, args.model_dir.resolve())
        return 1
    return _run_workers(sock, args.model_dir.resolve(), args.workers)


if __name__ == "__main__":
    sys.exit(main())
