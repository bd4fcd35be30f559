"""The model server's SageMaker container contract, run as a real process on 127.0.0.1."""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

from localcloud import model_server, torchserve

HANDLER = """
    import json, os
    from helper import Refused  # a sibling module in code/, as model archives ship them

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "weights.txt")) as fh:
            return {"weights": fh.read().strip(), "loaded_in": os.getpid()}

    def input_fn(body, content_type):
        if content_type != "application/json":
            raise Refused(f"content type {content_type} is not supported")
        return json.loads(body)

    def predict_fn(data, model):
        if data.get("explode"):
            raise RuntimeError("internal detail that must not reach the client")
        if data.get("exit"):
            os._exit(3)
        return {"echo": data, "weights": model["weights"], "pid": model["loaded_in"]}

    def output_fn(prediction, accept):
        if accept == "text/plain":
            return "plain:" + json.dumps(prediction)  # body only: the type is the Accept value
        return json.dumps(prediction), "application/json"
"""

HELPER = """
    class Refused(Exception):
        status_code = 415
        code = "UnsupportedContentType"

        def __init__(self, message):
            super().__init__(message)
            self.message = message
"""


def write_model(root, handler=HANDLER):
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(textwrap.dedent(handler))
    (root / "code" / "helper.py").write_text(textwrap.dedent(HELPER))
    (root / "weights.txt").write_text("model-weights-v1\n")
    return root


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ping(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "model server exited during start-up"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("model server never answered /ping")


@pytest.fixture
def server(tmp_path):
    """Start servers; each is stopped (its whole process group) at the end of the test."""
    started = []

    def start(model_dir, *extra, cwd=None, env=None):
        port = free_port()
        log = open(tmp_path / f"server-{port}.log", "wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localcloud.model_server",
                "--model-dir",
                str(model_dir),
                "--port",
                str(port),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or tmp_path,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        started.append(proc)
        proc.port, proc.log_path = port, tmp_path / f"server-{port}.log"
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def post(conn, body, content_type="application/json", accept=None):
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    conn.request("POST", "/invocations", body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


def test_ping_and_invocations_follow_the_container_contract(tmp_path, server):
    # A decoy inference.py in the working directory must not shadow the archive's code.
    (tmp_path / "inference.py").write_text("raise SystemExit('imported from the wrong place')\n")
    (tmp_path / "helper.py").write_text("raise SystemExit('imported from the wrong place')\n")
    proc = server(write_model(tmp_path / "model"))
    wait_ping(proc.port, proc)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
    conn.request("GET", "/ping")
    ping = conn.getresponse()
    assert ping.status == 200 and json.loads(ping.read()) == {"status": "Healthy"}

    status, content_type, body = post(conn, b'{"sentence": "hello"}')
    assert status == 200 and content_type == "application/json"
    result = json.loads(body)
    assert result["echo"] == {"sentence": "hello"} and result["weights"] == "model-weights-v1"

    # model_fn ran once: every request sees the same loaded model.
    assert json.loads(post(conn, b"{}")[2])["pid"] == result["pid"]

    status, content_type, body = post(conn, b'{"a": 1}', accept="text/plain")
    assert status == 200 and content_type == "text/plain" and body.startswith(b"plain:")


def test_client_errors_keep_their_status_and_other_errors_are_a_generic_500(tmp_path, server):
    proc = server(write_model(tmp_path / "model"))
    wait_ping(proc.port, proc)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)

    status, content_type, body = post(conn, b"a,b", content_type="text/csv")
    assert status == 415 and content_type == "application/json"
    assert json.loads(body) == {
        "error": {
            "code": "UnsupportedContentType",
            "message": "content type text/csv is not supported",
        }
    }

    status, _, body = post(conn, b'{"explode": true}')
    error = json.loads(body)["error"]
    assert status == 500 and error["code"] == "InternalServerError"
    assert "internal detail" not in error["message"]
    # The cause is in the server log, with its traceback.
    deadline = time.monotonic() + 5
    while "internal detail" not in proc.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log_text = proc.log_path.read_text()
    assert "Traceback" in log_text and "RuntimeError: internal detail" in log_text

    # The connection stays usable after errors (keep-alive).
    assert post(conn, b'{"ok": 1}')[0] == 200


def test_unknown_routes_methods_and_bad_lengths_get_json_errors(tmp_path, server):
    proc = server(write_model(tmp_path / "model"))
    wait_ping(proc.port, proc)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
    for method, path, expected in (
        ("GET", "/nope", 404),
        ("POST", "/nope", 404),
        ("PUT", "/ping", 405),
    ):
        conn.request(method, path, body=b"" if method != "GET" else None)
        response = conn.getresponse()
        error = json.loads(response.read())["error"]
        assert response.status == expected, (method, path)
        assert f"{method}" in error["message"] and "POST /invocations" in error["message"]
    for request, status, text in (
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413, b"exceeds"),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, b"non-negative"),
        (b"POST /invocations HTTP/1.1\r\n\r\n", 411, b"Content-Length header is required"),
        (b"GARBAGE\r\n\r\n", 400, b"Bad request syntax"),
    ):
        raw = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        raw.sendall(request)
        reply = raw.recv(4096)
        raw.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), reply
        assert b"application/json" in head and text in json.loads(body)["error"]["message"].encode()


def test_keep_alive_responses_do_not_wait_for_delayed_acks(tmp_path, server):
    """Nagle's algorithm plus delayed ACKs costs ~40 ms per keep-alive request.

    The server guards against it twice (one write per response, TCP_NODELAY); this fails when
    both are lost. It checks for the trap, not a speed target (that is a benchmark's job).
    """
    proc = server(write_model(tmp_path / "model"))
    wait_ping(proc.port, proc)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
    post(conn, b"{}")
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        assert post(conn, b'{"sentence": "latency probe"}')[0] == 200
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.020


def test_a_handler_without_the_required_functions_fails_with_a_clear_log(tmp_path, server):
    model_dir = write_model(tmp_path / "model", handler="def model_fn(model_dir):\n    return 1\n")
    proc = server(model_dir)
    assert proc.wait(15) != 0
    log_text = proc.log_path.read_text()
    assert "does not define input_fn, predict_fn, output_fn" in log_text


# Both servers run as isolated (-I) scripts that import nothing from the source tree, so each
# has its own copy of the argument checks: these tests hold the two copies to one behaviour.
SERVERS = pytest.mark.parametrize(
    "server, lowest_port", [(model_server, 0), (torchserve, 1)], ids=["model_server", "torchserve"]
)


@SERVERS
def test_parse_args_takes_the_worker_count_from_the_flag_or_the_container(
    server, lowest_port, tmp_path, monkeypatch
):
    model_dir = str(write_model(tmp_path / "model"))
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "3")
    args = server.parse_args(["--model-dir", model_dir, "--port", str(lowest_port)])
    assert (args.port, args.workers) == (lowest_port, 3)
    monkeypatch.delenv("SAGEMAKER_MODEL_SERVER_WORKERS")
    assert server.parse_args(["--model-dir", model_dir, "--port", "80"]).workers == 1
    assert server.parse_args(["--model-dir", model_dir, "--port", "80", "--workers=2"]).workers == 2


@SERVERS
@pytest.mark.parametrize(
    "port, workers, env, message",
    [
        ("below", None, None, "must be {lowest}-65535"),
        ("65536", None, None, "--port 65536: must be {lowest}-65535"),
        ("80", "0", None, "invalid _positive value: '0'"),
        ("80", None, "two", "SAGEMAKER_MODEL_SERVER_WORKERS='two': must be a positive integer"),
    ],
)
def test_parse_args_names_the_bad_value(
    server, lowest_port, port, workers, env, message, tmp_path, monkeypatch, capsys
):
    if env is not None:
        monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", env)
    argv = ["--model-dir", str(write_model(tmp_path / "model"))]
    argv += ["--port", str(lowest_port - 1) if port == "below" else port]
    argv += ["--workers", workers] if workers else []
    with pytest.raises(SystemExit) as exit_info:
        server.parse_args(argv)
    assert exit_info.value.code == 2
    assert message.format(lowest=lowest_port) in capsys.readouterr().err


def test_a_missing_model_dir_is_refused_with_the_argument_named(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "localcloud.model_server",
            "--model-dir",
            str(tmp_path),
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        result.returncode == 2
        and "--model-dir" in result.stderr
        and "code/inference.py" in result.stderr
    )


def test_workers_share_the_port_and_one_dying_stops_the_server(tmp_path, server):
    proc = server(write_model(tmp_path / "model"), "--workers", "2")
    wait_ping(proc.port, proc)
    pids = set()
    deadline = time.monotonic() + 10
    while len(pids) < 2 and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
        pids.add(json.loads(post(conn, b"{}")[2])["pid"])
        conn.close()
    assert len(pids) == 2 and proc.pid not in pids
    # A worker that dies takes the server down, so its supervisor restarts it as a whole.
    os.kill(pids.pop(), signal.SIGKILL)
    assert proc.wait(10) != 0
    assert "exited (signal 9); stopping the others" in proc.log_path.read_text()


def test_a_model_server_and_its_workers_are_the_first_the_kernel_kills_out_of_memory(
    tmp_path, server
):
    """Out of memory, the kernel kills the process with the highest score: a model server (its
    supervisor restarts it), not the daemon whose memory holds every deployment."""
    proc = server(write_model(tmp_path / "model"), "--workers", "2")
    wait_ping(proc.port, proc)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
    worker = json.loads(post(conn, b"{}")[2])["pid"]
    conn.close()
    daemon = int(open("/proc/self/oom_score_adj").read())  # what the server inherited
    assert daemon < 1000
    for pid in (proc.pid, worker):
        score = int(open(f"/proc/{pid}/oom_score_adj").read())
        assert score == min(1000, daemon + model_server.OOM_SCORE_RAISE) > daemon
    assert torchserve.OOM_SCORE_RAISE == model_server.OOM_SCORE_RAISE
