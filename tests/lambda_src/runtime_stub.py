"""A SageMaker runtime on 127.0.0.1: records each InvokeEndpoint, answers what a test queued.

Answers use SageMaker's wire format: the variant in ``X-Amzn-Invoked-Production-Variant``;
errors as ``x-amzn-ErrorType: <Code>:<namespace>`` with the modeled fields in a JSON body.
"""

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.sagemaker/"
UNEXPECTED_STATUS = 599


@dataclass(frozen=True)
class Seen:
    path: str
    headers: Dict[str, str]  # lower-case names
    body: bytes
    client: tuple  # (host, port) of the connection it came on


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Dict[str, str]
    body: bytes
    close: bool = False  # drop the connection after answering, without saying so


class RuntimeStub:
    def __init__(self):
        self.answers: deque = deque()
        self.seen: list = []
        self.unexpected = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                stub.seen.append(Seen(self.path, headers, body, self.client_address))
                answer = stub.answers.popleft() if stub.answers else None
                if answer is None:
                    stub.unexpected += 1
                    answer = Answer(UNEXPECTED_STATUS, {}, b"no answer queued")
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
                if answer.close:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def answer(self, payload, variant: Optional[str] = "Model-A", close: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if variant is not None:
            headers["X-Amzn-Invoked-Production-Variant"] = variant
        self.answers.append(Answer(200, headers, body, close))

    def error(self, status: int, code: str, message: str = "", **fields) -> None:
        body = json.dumps({"message": message, **fields}).encode() if message or fields else b""
        headers = {"x-amzn-ErrorType": f"{code}:{ERROR_NAMESPACE}",
                   "Content-Type": "application/json"}
        self.answers.append(Answer(status, headers, body))

    def raw(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.answers.append(Answer(status, headers, body))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
