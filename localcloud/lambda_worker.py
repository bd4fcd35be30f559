"""One warm Lambda execution environment: ``python -m localcloud.lambda_worker``.

Started by :mod:`localcloud.lambdas` with the function's environment, the extracted code as its
working directory, and stdout/stderr going to the function's log file (so handler prints and
logging end up there, never in the invocation channel). It connects back to the runtime's
Unix socket, imports the handler from the code directory (the init phase), says hello, then
serves one invocation at a time until the socket closes.

Wire format, both directions: ``!II`` (meta length, body length), meta JSON, body bytes.
  hello     meta {"token", "pid", "init_error": null | error}             body empty
  invoke    meta {"request_id", "deadline_ms"}                            body = event JSON
  result    meta {"error": null | {"errorType", "errorMessage", ...}}      body = result JSON
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import struct
import sys
import time
import traceback

HEADER = struct.Struct("!II")


def send_frame(sock: socket.socket, meta: dict, body: bytes = b"") -> None:
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    sock.sendall(HEADER.pack(len(meta_bytes), len(body)) + meta_bytes + body)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> tuple[dict, bytes] | None:
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    meta_len, body_len = HEADER.unpack(header)
    payload = _recv_exact(sock, meta_len + body_len)
    if payload is None:
        return None
    return json.loads(payload[:meta_len]), payload[meta_len:]


def error_of(exc: BaseException, error_type: str | None = None) -> dict:
    """Lambda's error shape for an exception raised by function code."""
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }


class LambdaContext:
    """The ``context`` argument, with the attributes the Python runtime provides."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = env.get("LOCALCLOUD_FUNCTION_ARN", "")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _isolate_imports(code_dir: str) -> None:
    """Make the code directory the only source of function code, as in Lambda's /var/task.

    The interpreter and its site-packages stay (Lambda provides boto3), but the working
    directory and any editable install of this project are removed, so a handler can never
    import a module from the source tree instead of from its own deployed zip.
    """
    here = os.path.abspath(os.getcwd())
    sys.path[:] = [code_dir] + [
        p for p in sys.path if p and os.path.abspath(p) not in (here, code_dir)
    ]
    sys.meta_path[:] = [finder for finder in sys.meta_path if not _is_editable_finder(finder)]
    sys.path_hooks[:] = [hook for hook in sys.path_hooks if not _is_editable_finder(hook)]
    sys.path_importer_cache.clear()
    for name in [n for n in sys.modules if n == "localcloud" or n.startswith("localcloud.")]:
        del sys.modules[name]  # this module runs as __main__ and needs none of them any more
    importlib.invalidate_caches()


def _is_editable_finder(finder: object) -> bool:
    """setuptools' editable installs map project packages to the source tree with these."""
    module = finder.__module__ if isinstance(finder, type) else type(finder).__module__
    return module.startswith("__editable__")


def _load_handler(handler: str):
    module_name, _, function_name = handler.rpartition(".")
    if not module_name or not function_name:
        raise ValueError(f"Bad handler '{handler}': expected <module>.<function>")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise _InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return function


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _invoke(handler, request_id: str, deadline_ms: int, body: bytes) -> tuple[dict, bytes]:
    try:
        event = json.loads(body) if body else {}
    except ValueError as exc:
        return {"error": error_of(exc, "Runtime.UnmarshalError")}, b""
    try:
        result = handler(event, LambdaContext(request_id, deadline_ms))
    except Exception as exc:
        error = error_of(exc)
        error["requestId"] = request_id
        print(f"[ERROR] {error['errorType']}: {error['errorMessage']}", flush=True)
        traceback.print_exc()
        return {"error": error}, b""
    try:
        return {"error": None}, json.dumps(result).encode()
    except (TypeError, ValueError) as exc:
        error = error_of(exc, "Runtime.MarshalError")
        error["errorMessage"] = f"Unable to marshal response: {exc}"
        return {"error": error}, b""


def main() -> int:
    code_dir = os.environ["LAMBDA_TASK_ROOT"]
    _isolate_imports(code_dir)
    request_filter = _RequestIdFilter()
    root = logging.getLogger()
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(
        logging.Formatter("[%(levelname)s]\t%(asctime)s\t%(aws_request_id)s\t%(message)s")
    )
    stream.addFilter(request_filter)
    root.addHandler(stream)

    init_error = None
    handler = None
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except _InitError as exc:
        init_error = {"errorType": exc.error_type, "errorMessage": str(exc), "stackTrace": []}
    except Exception as exc:  # anything raised at module import time is an init error
        init_error = error_of(
            exc, "Runtime.UserCodeSyntaxError" if isinstance(exc, SyntaxError) else None
        )
    if init_error is not None:
        print(f"[ERROR] {init_error['errorType']}: {init_error['errorMessage']}", flush=True)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["LOCALCLOUD_WORKER_SOCKET"])
    send_frame(
        sock,
        {
            "token": os.environ["LOCALCLOUD_WORKER_TOKEN"],
            "pid": os.getpid(),
            "init_error": init_error,
        },
    )
    while True:
        frame = recv_frame(sock)
        if frame is None:
            return 0
        meta, body = frame
        request_id = meta["request_id"]
        request_filter.request_id = request_id
        started = time.perf_counter()
        if init_error is not None:
            reply: tuple[dict, bytes] = ({"error": dict(init_error, requestId=request_id)}, b"")
        else:
            reply = _invoke(handler, request_id, int(meta["deadline_ms"]), body)
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms", flush=True)
        send_frame(sock, *reply)


if __name__ == "__main__":
    sys.exit(main())
