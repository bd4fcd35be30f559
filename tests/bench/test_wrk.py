"""wrk runner: result parsing, statistics, and the Lua script against a local server."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import wrk

LINE = ('BENCH-RESULT {"requests": 2000, "duration_us": 2000000, "p50_us": 410, "p90_us": 700, '
        '"p99_us": 1900, "max_us": 5000, "connect_errors": 0, "read_errors": 1, '
        '"write_errors": 0, "timeouts": 2, "non_2xx": 3}')


def test_parse_result_reads_the_done_line_and_counts_every_error():
    result = wrk.parse_result("Running 2s test\n" + LINE + "\nRequests/sec: 1000\n")
    assert result["req_per_s"] == 1000.0
    assert (result["p50_ms"], result["p99_ms"], result["max_ms"]) == (0.41, 1.9, 5.0)
    assert result["errors"] == 6 and result["non_2xx"] == 3


def test_parse_result_without_the_line_fails_with_the_output():
    with pytest.raises(wrk.WrkFailed, match="(?s)no BENCH-RESULT line.*unable to connect"):
        wrk.parse_result("unable to connect to 127.0.0.1:1\n")


def test_summarize_gives_median_and_range_over_runs():
    runs = [{"req_per_s": r, "p50_ms": p, "p99_ms": p * 3, "requests": 10, "errors": e}
            for r, p, e in ((900.0, 1.0, 0), (1100.0, 3.0, 1), (1000.0, 2.0, 0))]
    summary = wrk.summarize(runs)
    assert summary["req_per_s"] == {"median": 1000.0, "min": 900.0, "max": 1100.0,
                                    "runs": [900.0, 1100.0, 1000.0]}
    assert summary["p99_ms"]["median"] == 6.0
    assert (summary["requests"], summary["errors"], summary["runs"]) == (30, 1, 3)


def test_spread_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        wrk.spread([])


def test_write_bodies_refuses_an_empty_list(tmp_path):
    with pytest.raises(ValueError):
        wrk.write_bodies(tmp_path / "b.jsonl", [])


def test_missing_wrk_names_the_install_command(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(wrk.WrkMissing, match="apt-get install wrk"):
        wrk.require_wrk()


@pytest.fixture
def recording_server():
    """A keep-alive HTTP/1.1 server on 127.0.0.1 recording each request's key and body."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers.get("x-api-key"),
                         self.headers.get("Content-Type"), json.loads(body)))
            status = 200 if json.loads(body)["sentence"] != "fail" else 503
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/invocations", seen
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_script_rotates_bodies_sends_the_key_and_counts_non_2xx(recording_server, tmp_path):
    url, seen = recording_server
    bodies = wrk.write_bodies(tmp_path / "b.jsonl", [{"sentence": "a"}, {"sentence": "fail"}])
    result = wrk.run(wrk.Load(url, bodies, api_key="k-123"), connections=1, seconds=1)
    # the server may have received one request that wrk stopped waiting for
    assert 10 < result["requests"] <= len(seen) <= result["requests"] + 1
    assert {entry[:3] for entry in seen} == {("/invocations", "k-123", "application/json")}
    sentences = [entry[3]["sentence"] for entry in seen[:6]]
    assert set(sentences) == {"a", "fail"} and all(x != y for x, y in zip(sentences, sentences[1:]))
    failing = sum(entry[3]["sentence"] == "fail" for entry in seen)
    assert failing - 1 <= result["non_2xx"] <= failing


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_paced_run_keeps_the_schedule_across_connections(recording_server, tmp_path):
    url, seen = recording_server
    bodies = wrk.write_bodies(tmp_path / "b.jsonl", [{"sentence": "a"}])
    result = wrk.run(wrk.Load(url, bodies), connections=4, seconds=2, rate=50)
    assert 45 <= result["req_per_s"] <= 55
    split = wrk.run(wrk.Load(url, bodies), connections=4, seconds=2, rate=50, threads=2)
    assert 45 <= split["req_per_s"] <= 55  # two schedules of 25 req/s
    assert result["errors"] == 0
    assert seen[0][1] is None  # no key given: no x-api-key header
