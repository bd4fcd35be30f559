"""Tester: against a local HTTP server, with CloudWatch and S3 from moto."""

import collections
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber
from lambda_testkit import event, load_function
from moto import mock_aws

from generator import config
from generator.stacks import tester_dashboard
from workflow import loadtest

BUCKET = "textclassification-load-test-results"
NAMESPACE = "TextClassification"
ANSWER = {"success": "true", "label": 1, "labelName": "World"}


class ApiStub(BaseHTTPRequestHandler):
    """Routes by last path segment: fast, fast-b, wrong, fail, slow, slowbody, stall, drop
    (answers, then closes the keep-alive connection unannounced), garbage (not HTTP)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway
    disable_nagle_algorithm = True  # else every keep-alive reply waits ~40 ms for a delayed ACK

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        route = self.path.rsplit("/", 1)[-1]
        self.server.seen.append(SimpleNamespace(at=time.perf_counter(), path=self.path, route=route,
                                                headers=dict(self.headers), body=body,
                                                client=self.client_address))
        if route == "garbage":
            self.wfile.write(b"garbage\r\n\r\n")
            self.close_connection = True
            return
        if route == "drop":
            self.close_connection = True
        if route == "stall":
            time.sleep(1.0)
        if route == "slow":
            time.sleep(0.5)
        if route == "fail":
            return self._reply(502, {"MessageId": "m", "error": {"code": "ModelError",
                                                                 "message": "model failed"}})
        answer = dict(ANSWER, label=2) if route == "wrong" else ANSWER
        variant = "Model-B" if route == "fast-b" else "Model-A"
        self._reply(200, {"MessageId": "m", "variant": variant, **answer},
                    body_delay=0.3 if route == "slowbody" else 0)

    def _reply(self, status, payload, body_delay=0.0):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body_delay:
            self.wfile.flush()
            time.sleep(body_delay)
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApiStub)
    server.daemon_threads = True
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tester():
    return load_function("tester")


@pytest.fixture
def tester_env(tester, api, monkeypatch):
    """The tester's environment; AWS calls go to a closed local port unless moto is started."""
    tester.awsclients.reset_clients()
    monkeypatch.setattr(tester.api_auth, "_api_keys", {})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name, value in {"API_URL": f"http://127.0.0.1:{api.server_port}/Demo",
                        "API_RESOURCE_PATH": "text", "AUTH_MODE": "api_key",
                        "API_KEY_ID": "unused", "METRIC_NAMESPACE": NAMESPACE,
                        "STAGE": "Demo", "RESULTS_BUCKET": BUCKET, "TESTER_INDEX": "1",
                        "TESTER_COUNT": "1"}.items():
        monkeypatch.setenv(name, value)
    api.seen.clear()
    yield monkeypatch
    tester.awsclients.reset_clients()


@pytest.fixture(scope="module")
def moto_backend():
    """moto CloudWatch, S3 (the results bucket) and API Gateway (the API key), once per module:
    tests use their own RunIds, and only the metrics test reads metrics (under its own Stage)."""
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        key = boto3.client("apigateway", region_name="us-east-1").create_api_key(
            name="tester", value="k" * 30, enabled=True)
        yield SimpleNamespace(key_id=key["id"], key_value="k" * 30,
                              s3=boto3.client("s3", region_name="us-east-1"),
                              cloudwatch=boto3.client("cloudwatch", region_name="us-east-1"))


@pytest.fixture
def aws(tester_env, moto_backend):
    tester_env.delenv("AWS_ENDPOINT_URL")
    tester_env.setenv("API_KEY_ID", moto_backend.key_id)
    return moto_backend


def context(remaining_s=60.0, name="TextClassificationDemo-tester-1"):
    deadline = time.monotonic() + remaining_s
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    return SimpleNamespace(
        function_name=name, aws_request_id="req-1", memory_limit_in_mb=256,
        invoked_function_arn=arn,
        get_remaining_time_in_millis=lambda: int((deadline - time.monotonic()) * 1000))


def message(cases, duration=1.0, rate=None, interval=None, timeout=2.0, run_id="run-1"):
    config = {"DurationInSec": duration, "RatePerSec": rate, "IntervalInSec": interval,
              "RequestTimeoutSec": timeout}
    return {"RunId": run_id, "Config": config, "TestData": [
        {"type": case_id, "resource": route, "request": {"sentence": f"text for {case_id}"},
         "response": {"success": "true", "label": 1}} for case_id, route in cases]}


def stored_summary(aws, run_id="run-1", name="TextClassificationDemo-tester-1"):
    obj = aws.s3.get_object(Bucket=BUCKET, Key=f"load-tests/{run_id}/{name}.json")
    return json.loads(obj["Body"].read())


# --- counts, labels, errors, summary -----------------------------------------------------------

def test_counts_labels_errors_and_stored_summary(tester, aws, api):
    result = tester.handler.handler(message([("tc-001", "fast"), ("tc-002", "wrong"),
                                             ("tc-003", "fail"), ("tc-004", "fast-b")], rate=80,
                                            duration=0.5, run_id="run-counts"), context())
    assert result["status"] == "completed"
    assert result["requestsScheduled"] == result["requestsSent"] == 40
    assert result["requestsCompleted"] == 40
    assert result["requestsUnfinished"] == 0
    assert result["errorsByStatus"] == {"502": 10}
    assert result["errorsByCode"] == {"502 ModelError": 10}
    assert result["wrongLabels"] == 10 and result["passed"] == 20
    assert result["achievedRatePerSec"] == pytest.approx(80, rel=0.01)
    per_case = result["perCase"]
    assert {case: stats["requests"] for case, stats in per_case.items()} == {
        "tc-001": 10, "tc-002": 10, "tc-003": 10, "tc-004": 10}
    assert per_case["tc-002"]["wrongLabels"] == 10
    assert per_case["tc-003"]["errorsByStatus"] == {"502": 10}
    assert per_case["tc-003"]["errorsByCode"] == {"502 ModelError": 10}
    assert per_case["tc-001"]["errorsByCode"] == {}
    assert {variant: stats["requests"] for variant, stats in result["perVariant"].items()} == {
        "Model-A": 20, "Model-B": 10, "unknown": 10}
    assert set(result["latencyMs"]) == {"p50", "p90", "p99", "max"}
    latency = result["latencyMs"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert "samples" not in result

    stored = stored_summary(aws, "run-counts")
    assert {key: value for key, value in stored.items() if key != "samples"} == result
    assert len(stored["samples"]) == 40
    offset, latency, status, case, variant = stored["samples"][0]
    assert (status, case, variant) == (200, "tc-001", "Model-A") and offset < 0.1 and latency > 0
    assert result["resultsS3Uri"] == (
        f"s3://{BUCKET}/load-tests/run-counts/TextClassificationDemo-tester-1.json")


def test_requests_carry_the_api_key_and_json_and_reuse_connections(tester, aws, api, capsys):
    result = tester.handler.handler(message([("tc-001", "fast")], rate=40, duration=0.5,
                                            run_id="run-key"), context())
    assert len(api.seen) == 20
    assert {seen.headers["x-api-key"] for seen in api.seen} == {aws.key_value}
    # The key is a secret: never in the logs, the result or the stored summary.
    assert aws.key_value not in capsys.readouterr().out
    assert aws.key_value not in json.dumps(result) + json.dumps(stored_summary(aws, "run-key"))
    assert {seen.headers["Content-Type"] for seen in api.seen} == {"application/json"}
    assert {seen.path for seen in api.seen} == {"/Demo/fast"}
    assert json.loads(api.seen[0].body) == {"sentence": "text for tc-001"}
    connections = {seen.client for seen in api.seen}
    assert len(connections) <= result["workers"] < 20


def test_case_without_resource_uses_the_configured_path(tester, aws, api):
    msg = message([("tc-001", "fast")], rate=5, duration=0.2)
    del msg["TestData"][0]["resource"]
    tester.handler.handler(msg, context())
    assert {seen.path for seen in api.seen} == {"/Demo/text"}


def test_iam_mode_signs_every_request_with_sigv4(tester, aws, api, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "iam")
    monkeypatch.delenv("API_KEY_ID")
    tester.handler.handler(message([("tc-001", "fast"), ("tc-002", "fast")], rate=10, duration=0.3),
                           context())
    credentials = boto3.session.Session().get_credentials()
    assert len(api.seen) == 3
    for seen in api.seen:
        authorization = seen.headers["Authorization"]
        assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/")
        assert "/us-east-1/execute-api/aws4_request" in authorization
        assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in authorization
        assert seen.headers["X-Amz-Security-Token"] == credentials.token
        assert "X-Amz-Date" in seen.headers
        assert "x-api-key" not in seen.headers
    signatures = {seen.body: seen.headers["Authorization"] for seen in api.seen}
    assert len(set(signatures.values())) == 2  # each request is signed over its own body


# --- schedule ----------------------------------------------------------------------------------

def test_open_loop_slow_responses_do_not_slow_the_send_rate(tester, aws, api):
    result = tester.handler.handler(message([("tc-slow", "slow")], rate=40, duration=0.5),
                                    context())
    # A closed loop would need 20 x 0.5 s; the schedule puts them 25 ms apart regardless.
    arrivals = sorted(seen.at for seen in api.seen)
    # The bounds leave a busy machine seconds of room: a closed loop would take 9.5 s to send
    # them, each request waiting for the 0.5 s reply before it.
    assert len(arrivals) == 20 and arrivals[-1] - arrivals[0] < 3.0
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert max(gaps) < 0.45
    assert result["workers"] >= 15  # 0.5 s replies at 40/s: nearly every request needs a worker
    assert result["latencyMs"]["p50"] >= 500
    assert result["sendLagMs"]["max"] < 2000


def test_latency_is_measured_to_the_end_of_the_body(tester, aws, api):
    result = tester.handler.handler(message([("tc-body", "slowbody")], rate=5, duration=0.4),
                                    context())
    assert result["requestsCompleted"] == 2
    assert result["latencyMs"]["p50"] >= 300  # the body arrives 300 ms after the headers


def test_it_stops_at_its_duration_and_sends_nothing_afterwards(tester, aws, api):
    result = tester.handler.handler(message([("tc-001", "fast")], rate=50, duration=0.5), context())
    assert result["requestsScheduled"] == result["requestsSent"] == 25
    # Dispatch for 0.5 s, then only the last replies: never a 2 s request timeout on top.
    assert result["elapsedSec"] < 2.0
    count = len(api.seen)
    time.sleep(0.2)
    assert count == len(api.seen) == 25


def test_duration_is_cut_to_fit_the_functions_remaining_time(tester, aws, api):
    # 6 s left = 0.5 s of load + 0.5 s request timeout + 5 s margin for metrics and the summary.
    result = tester.handler.handler(
        message([("tc-001", "fast")], rate=40, duration=60, timeout=0.5), context(remaining_s=6.0))
    assert result["config"]["durationSec"] == 60
    assert result["config"]["runDurationSec"] == pytest.approx(0.5, abs=0.1)
    assert 18 <= result["requestsSent"] <= 21


def test_interval_mode_sends_every_case_once_per_interval(tester, aws, api):
    result = tester.handler.handler(message([("tc-001", "fast"), ("tc-002", "fast")], duration=0.7,
                                            interval=0.3), context())
    assert result["requestsSent"] == 6  # rounds at 0, 0.3 and 0.6 s
    arrivals = sorted(seen.at - api.seen[0].at for seen in api.seen)
    assert arrivals[1] == pytest.approx(0, abs=0.1)
    assert arrivals[2] == pytest.approx(0.3, abs=0.1)
    assert arrivals[4] == pytest.approx(0.6, abs=0.1)


@pytest.mark.parametrize("route, status", [("stall", "timeout"), (None, "connection-error")])
def test_timeouts_and_refused_connections_are_counted_as_errors(tester, aws, api, monkeypatch,
                                                                route, status):
    if route is None:
        closed = ThreadingHTTPServer(("127.0.0.1", 0), ApiStub)
        closed.server_close()
        monkeypatch.setenv("API_URL", f"http://127.0.0.1:{closed.server_port}/Demo")
    result = tester.handler.handler(message([("tc-x", route or "fast")], rate=5, duration=0.4,
                                            timeout=0.3), context())
    assert result["requestsSent"] == 2 and result["requestsCompleted"] == 0
    assert result["errorsByStatus"] == {status: 2}
    assert result["latencyMs"]["p50"] is None


def test_a_keep_alive_connection_closed_by_the_server_is_reopened_once(tester, api):
    connection = tester.api_client.ApiConnection(f"http://127.0.0.1:{api.server_port}", 2.0)
    url = f"http://127.0.0.1:{api.server_port}/Demo/drop"
    api.seen.clear()
    try:
        replies = [connection.post(url, b"{}", {"Content-Type": "application/json"})
                   for _ in range(3)]
    finally:
        connection.close()
    assert [reply.status for reply in replies] == [200, 200, 200]
    assert len(api.seen) == 3 and len({seen.client for seen in api.seen}) == 3


def test_a_reply_that_is_not_http_is_a_connection_error(tester, api):
    connection = tester.api_client.ApiConnection(f"http://127.0.0.1:{api.server_port}", 2.0)
    try:
        reply = connection.post(f"http://127.0.0.1:{api.server_port}/Demo/garbage", b"{}", {})
    finally:
        connection.close()
    assert reply.status == "connection-error" and reply.latency_ms is None


def test_a_2xx_that_is_not_the_expected_json_is_a_wrong_label(tester):
    case = tester.load_message.TestCase("tc-001", "text", b"{}", {"label": 1})
    for body in (b"not json", b"[1]", b'{"label": 2}'):
        reply = tester.api_client.Reply(200, 1.5, body)
        outcome = tester.run_summary.judge(tester.open_loop.Shot(0.0, 0.0, case, reply))
        assert outcome.wrong_label and not outcome.passed and outcome.variant == "unknown"


def test_a_direct_call_without_a_context_runs(tester, aws, api):
    result = tester.handler.handler(message([("tc-001", "fast")], rate=10, duration=0.2,
                                            run_id="run-direct"), None)
    assert result["function"] == "tester" and result["requestsSent"] == 2
    assert stored_summary(aws, "run-direct", "tester")["RunId"] == "run-direct"


# --- metrics -----------------------------------------------------------------------------------

def metric_sum(aws, name, dimensions, statistic="Sum"):
    """The statistic over the last and next 10 minutes."""
    now = time.time()
    points = aws.cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=name, StartTime=now - 600, EndTime=now + 600, Period=60,
        Statistics=[statistic],
        Dimensions=[{"Name": key, "Value": value} for key, value in dimensions.items()])
    return sum(point[statistic] for point in points["Datapoints"])


def test_metrics_per_case_and_variant_in_one_batched_call(tester, aws, api, monkeypatch):
    monkeypatch.setenv("STAGE", "MetricsTest")
    result = tester.handler.handler(message([("tc-001", "fast"), ("tc-002", "wrong"),
                                             ("tc-003", "fail"), ("tc-004", "fast-b")], rate=80,
                                            duration=0.5), context())
    assert result["metrics"]["calls"] == 1 and result["metrics"]["failedCalls"] == 0
    case = {"Stage": "MetricsTest", "TestCase": "tc-001"}
    assert metric_sum(aws, "StatusSuccess", case) == 10
    assert metric_sum(aws, "TestSuccess", case) == 10
    assert metric_sum(aws, "ResponseTime", case, "SampleCount") == 10
    assert metric_sum(aws, "TestFail", {"Stage": "MetricsTest", "TestCase": "tc-002"}) == 10
    assert metric_sum(aws, "StatusError", {"Stage": "MetricsTest", "TestCase": "tc-003"}) == 10
    assert metric_sum(aws, "TestFail", {"Stage": "MetricsTest", "TestCase": "tc-003"}) == 10
    # a clean case's error counts are 0, not missing
    for counter in ("StatusError", "TestFail"):
        assert metric_sum(aws, counter, case, "SampleCount") > 0
        assert metric_sum(aws, counter, case) == 0
    assert metric_sum(aws, "StatusSuccess", {"Stage": "MetricsTest", "Variant": "Model-A"}) == 20
    assert metric_sum(aws, "StatusSuccess", {"Stage": "MetricsTest", "Variant": "Model-B"}) == 10
    assert metric_sum(aws, "ResponseTime", {"Stage": "MetricsTest", "Variant": "Model-B"},
                      "SampleCount") == 10
    listed = aws.cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName="ResponseTime")["Metrics"]
    assert {tuple(sorted(d["Name"] for d in metric["Dimensions"])) for metric in listed} == {
        ("Stage", "TestCase"), ("Stage", "Variant")}


def test_counters_without_outcomes_in_a_minute_are_zero(tester):
    outcome = tester.run_summary.Outcome
    outcomes = [outcome(sent_s=1.0, lag_ms=0.0, case_id="tc-001", status=200, latency_ms=5.0,
                        variant="Model-A", passed=True),
                outcome(sent_s=61.0, lag_ms=0.0, case_id="tc-001", status=503, latency_ms=9.0,
                        variant="unknown", passed=False)]
    data = tester.metric_publisher.metric_data(outcomes, "Demo", started_epoch_s=1_795_000_020)
    counts = {}
    for datum in data:
        if datum["MetricName"] != "ResponseTime":
            key = (datum["Timestamp"].minute, datum["MetricName"], datum["Dimensions"][1]["Value"])
            counts[key] = sum(v * c for v, c in zip(datum["Values"], datum["Counts"]))
    first, second = sorted({minute for minute, _, _ in counts})
    assert {name: value for (minute, name, dim), value in counts.items()
            if minute == first and dim == "tc-001"} == {
        "StatusSuccess": 1, "StatusError": 0, "TestSuccess": 1, "TestFail": 0}
    assert {name: value for (minute, name, dim), value in counts.items()
            if minute == second and dim == "tc-001"} == {
        "StatusSuccess": 0, "StatusError": 1, "TestSuccess": 0, "TestFail": 1}
    # a variant that had no request in a minute gets nothing that minute
    assert {dim for minute, _, dim in counts if minute == first} == {"tc-001", "Model-A"}
    assert {dim for minute, _, dim in counts if minute == second} == {"tc-001", "unknown"}


def test_metric_batches_respect_the_put_metric_data_limits(tester):
    publisher, summary = tester.metric_publisher, tester.run_summary
    outcomes = [summary.Outcome(sent_s=i * 0.001, lag_ms=0.0, case_id=f"tc-{i % 700}", status=200,
                                latency_ms=i * 0.37, variant="Model-A", passed=True)
                for i in range(3000)]
    data = publisher.metric_data(outcomes, "Demo", started_epoch_s=1_795_000_000)
    assert all(len(datum["Values"]) <= 150 for datum in data)
    latencies = [d for d in data if d["MetricName"] == "ResponseTime"
                 and d["Dimensions"][1]["Name"] == "Variant"]
    assert sum(sum(d["Counts"]) for d in latencies) == 3000 and len(latencies) > 1
    calls = publisher.batches(data)
    assert len(calls) >= 2 and sum(map(len, calls)) == len(data)
    assert all(len(call) <= 1000 for call in calls)
    assert all(len(json.dumps(call, default=str)) < 1_000_000 for call in calls)


def test_a_failed_metric_call_is_reported_and_the_rest_still_go(tester):
    client = boto3.client("cloudwatch", region_name="us-east-1")
    data = [{"MetricName": "StatusSuccess", "Dimensions": [{"Name": "Stage", "Value": "Demo"}],
             "Unit": "Count", "Values": [1.0], "Counts": [float(i + 1)]} for i in range(1500)]
    with Stubber(client) as stubber:
        stubber.add_client_error("put_metric_data", "Throttling", "Rate exceeded", 400)
        stubber.add_response("put_metric_data", {}, {"Namespace": NAMESPACE,
                                                     "MetricData": data[1000:]})
        report = tester.metric_publisher.publish(client, NAMESPACE, data)
    assert report["calls"] == 2 and report["failedCalls"] == 1 and report["dataPoints"] == 1500
    assert "Throttling" in report["errors"][0]


def test_percentiles_use_the_nearest_rank(tester):
    values = list(range(1, 101))
    assert tester.run_summary.percentiles(values) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert tester.run_summary.percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0, "max": 7.0}


# --- events, bad messages, bad environment ------------------------------------------------------

def test_sns_event_runs_the_message_and_falls_back_to_the_sns_message_id(tester, aws, api):
    sns_event = event("tester_sns.json")
    inner = json.loads(sns_event["Records"][0]["Sns"]["Message"])
    del inner["RunId"]
    inner["Config"].update(DurationInSec=0.2)
    for case in inner["TestData"]:
        case["resource"] = "fast"
    sns_event["Records"][0]["Sns"]["Message"] = json.dumps(inner)
    result = tester.handler.handler(sns_event, context())
    assert result["RunId"] == sns_event["Records"][0]["Sns"]["MessageId"]
    assert result["requestsSent"] == 2 and result["passed"] == 1  # tc-002 expects label 2


def test_the_canned_message_is_valid(tester):
    test = tester.load_message.parse_load_test(event("tester_message.json"), "fallback")
    assert test.run_id == "20261124T013000Z-3f2a" and len(test.cases) == 2


def test_null_run_id_falls_back_and_rate_wins_over_interval(tester):
    msg = message([("tc-001", "fast")], rate=5, interval=2, run_id=None)
    test = tester.load_message.parse_load_test(msg, "fallback-id")
    assert test.run_id == "fallback-id"
    assert (test.rate_per_sec, test.interval_sec) == (5, None)


def test_a_leading_slash_in_a_resource_is_accepted(tester):
    test = tester.load_message.parse_load_test(message([("tc-001", "/text")], rate=5), "fallback")
    assert test.cases[0].resource == "text"


def bad(change):
    msg = message([("tc-001", "fast")], rate=5)
    change(msg)
    return msg


BAD_MESSAGES = [
    ("not an object", ["a"], "not list"),
    ("missing config", bad(lambda m: m.pop("Config")), "Config: expected a JSON object"),
    ("missing duration", bad(lambda m: m["Config"].pop("DurationInSec")),
     "Config.DurationInSec is missing"),
    ("negative duration", bad(lambda m: m["Config"].update(DurationInSec=-1)),
     "Config.DurationInSec=-1: expected a number in (0, 900]"),
    ("duration too long", bad(lambda m: m["Config"].update(DurationInSec=3600)),
     "Config.DurationInSec=3600"),
    ("duration as text", bad(lambda m: m["Config"].update(DurationInSec="20")),
     'Config.DurationInSec="20"'),
    ("duration as bool", bad(lambda m: m["Config"].update(DurationInSec=True)),
     "Config.DurationInSec=true"),
    ("no rate or interval", bad(lambda m: m["Config"].update(RatePerSec=None)),
     "set RatePerSec"),
    ("rate too high", bad(lambda m: m["Config"].update(RatePerSec=5000)), "Config.RatePerSec=5000"),
    ("too many requests", bad(lambda m: m["Config"].update(RatePerSec=1000, DurationInSec=101)),
     "Config: 101000 requests planned; one tester sends at most 100000 per run"),
    ("intervals too short", bad(lambda m: m["Config"].update(RatePerSec=None, DurationInSec=900,
                                                             IntervalInSec=0.001)),
     "Config: 900000 requests planned"),
    ("an interval whose rounds overflow", bad(lambda m: m["Config"].update(
        RatePerSec=None, DurationInSec=900, IntervalInSec=1e-310)),
     "Config: unboundedly many requests planned; one tester sends at most 100000 per run"),
    ("unknown config key", bad(lambda m: m["Config"].update(Rate=5)),
     "Config: unknown key(s) Rate"),
    ("bad run id", bad(lambda m: m.update(RunId="../etc")), 'RunId="../etc"'),
    ("empty test data", bad(lambda m: m.update(TestData=[])), "TestData: expected a list"),
    ("case without type", bad(lambda m: m["TestData"][0].pop("type")), "TestData[0].type=null"),
    ("request not object", bad(lambda m: m["TestData"][0].update(request="hi")),
     "TestData[0].request: expected the JSON object to POST"),
    ("bad resource", bad(lambda m: m["TestData"][0].update(resource="../x")),
     'TestData[0].resource="../x"'),
    ("expected not object", bad(lambda m: m["TestData"][0].update(response=[1])),
     "TestData[0].response"),
    ("case typo", bad(lambda m: m["TestData"][0].update(respons={})),
     "TestData[0]: unknown key(s) respons"),
    ("negative case interval", bad(lambda m: m["TestData"][0].update(interval=-1)),
     "TestData[0].interval=-1"),
    ("NaN in request", bad(lambda m: m["TestData"][0].update(request={"sentence": float("nan")})),
     "TestData[0].request cannot be sent as JSON"),
]


@pytest.mark.parametrize("msg, fragment", [case[1:] for case in BAD_MESSAGES],
                         ids=[case[0] for case in BAD_MESSAGES])
def test_bad_messages_are_rejected_with_the_key_path_and_no_request(tester, tester_env, api, capsys,
                                                                    msg, fragment):
    result = tester.handler.handler(msg, context())
    assert result["status"] == "rejected" and result["error"]["code"] == "MessageError"
    assert fragment in result["error"]["message"]
    assert api.seen == []
    logs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    rejected = [log for log in logs if log["event"] == "load-test-rejected"]
    assert len(rejected) == 1 and fragment in rejected[0]["message"]


@pytest.mark.parametrize("sns_event, fragment", [
    ({"Records": [{"Sns": {"Message": "{not json"}}]}, "Records[0].Sns.Message is not valid JSON"),
    ({"Records": []}, "exactly one SNS record"),
    ({"Records": [{"Sns": {"Message": None}}]}, "Records[0].Sns.Message"),
    (None, "not NoneType"),
])
def test_bad_sns_events_are_rejected(tester, tester_env, api, sns_event, fragment):
    result = tester.handler.handler(sns_event, context())
    assert result["status"] == "rejected" and fragment in result["error"]["message"]


def test_tester_accepts_exactly_what_the_config_allows(tester):
    # The zip cannot import the generator, so the tester repeats these; they must not drift.
    assert tester.tester_config.AUTH_MODES == config.AUTH_MODES
    assert tester.tester_config.MAX_FLEET_SIZE == config.MAX_TESTERS
    assert tester.load_message.MAX_REQUESTS_PER_RUN == config.MAX_TESTER_REQUESTS
    assert tester.load_message.MAX_RATE_PER_SEC == config.MAX_TESTER_RATE
    # make test-load repeats the tester's finish margin to refuse a run the testers would cut.
    assert tester.handler.FINISH_MARGIN_SEC == loadtest.TESTER_FINISH_MARGIN_SEC
    # the tester dashboard counts requests no variant answered under the tester's name for them
    assert tester.run_summary.UNKNOWN_VARIANT == config.NO_ANSWER_VARIANT
    # and graphs the counters the tester publishes
    assert tester.metric_publisher.COUNTERS == tester_dashboard.COUNTERS


@pytest.mark.parametrize("key, value, fragment", [
    ("AUTH_MODE", "basic", "AUTH_MODE='basic': expected one of api_key, iam"),
    ("API_URL", "ftp://example.com/Demo", "API_URL='ftp://example.com/Demo'"),
    ("RESULTS_BUCKET", "", "RESULTS_BUCKET is missing"),
    ("TESTER_INDEX", "2", "TESTER_INDEX='2': expected an integer in [1, 1]"),
    ("TESTER_COUNT", "0", "TESTER_COUNT='0': expected an integer in [1, 50]"),
])
def test_bad_environment_is_rejected_naming_the_variable(tester, tester_env, api, key, value,
                                                         fragment):
    tester_env.setenv(key, value)
    result = tester.handler.handler(message([("tc-001", "fast")], rate=5), context())
    assert result == {"status": "rejected", "error": {"code": "ConfigError", "message": result[
        "error"]["message"]}} and fragment in result["error"]["message"]
    assert api.seen == []


def test_iam_mode_without_a_region_is_rejected(tester, tester_env, api):
    tester_env.setenv("AUTH_MODE", "iam")
    tester_env.delenv("AWS_REGION")
    tester_env.delenv("AWS_DEFAULT_REGION")
    result = tester.handler.handler(message([("tc-001", "fast")], rate=5), context())
    assert result["status"] == "rejected" and "AWS_REGION is not set" in result["error"]["message"]


def test_unknown_api_key_is_rejected(tester, aws, api, monkeypatch):
    monkeypatch.setenv("API_KEY_ID", "nosuchkey")
    result = tester.handler.handler(message([("tc-001", "fast")], rate=5), context())
    assert result["status"] == "rejected" and result["error"]["code"] == "AuthSetupFailed"
    assert api.seen == []


def test_a_rejected_run_is_stored_where_its_summary_would_be(tester, aws, api):
    msg = message([("tc-001", "fast")], rate=5000, duration=0.2, run_id="run-rejected")
    result = tester.handler.handler(msg, context())
    assert result["status"] == "rejected"
    stored = stored_summary(aws, "run-rejected")
    assert stored["status"] == "rejected" and "RatePerSec=5000" in stored["error"]["message"]
    assert api.seen == []


@pytest.mark.parametrize("without", [lambda m: m.pop("RunId"), lambda m: m.update(RunId=None)],
                         ids=["missing", "null"])
def test_a_rejected_sns_run_without_a_run_id_is_stored_under_the_sns_message_id(tester, aws, api,
                                                                                without):
    sns_event = event("tester_sns.json")
    inner = json.loads(sns_event["Records"][0]["Sns"]["Message"])
    without(inner)
    inner["Config"].update(DurationInSec="5")
    sns_event["Records"][0]["Sns"]["Message"] = json.dumps(inner)
    result = tester.handler.handler(sns_event, context())
    assert result["status"] == "rejected"
    stored = stored_summary(aws, sns_event["Records"][0]["Sns"]["MessageId"])
    assert stored["status"] == "rejected" and 'DurationInSec="5"' in stored["error"]["message"]
    assert api.seen == []


def test_too_little_remaining_time_is_rejected(tester, tester_env, api):
    result = tester.handler.handler(message([("tc-001", "fast")], rate=5, timeout=10),
                                    context(remaining_s=12))
    assert result["status"] == "rejected" and "function timeout" in result["error"]["message"]


def test_failing_to_store_the_summary_raises_for_a_retry(tester, aws, api, monkeypatch):
    monkeypatch.setenv("RESULTS_BUCKET", "no-such-results-bucket")
    with pytest.raises(Exception, match="NoSuchBucket"):
        tester.handler.handler(message([("tc-001", "fast")], rate=5, duration=0.2), context())


@pytest.mark.parametrize("position, fleet, rate, now, expected", [
    (1, 2, 100, 1000.0, 0.0),  # on tester 1's grid point
    (1, 2, 100, 1000.004, 0.006),
    (2, 2, 100, 1000.0, 0.005),  # half an interval after tester 1
    (2, 2, 100, 1000.007, 0.008),
    (3, 4, 100, 1000.0, 0.005),  # 3 of 4: two quarters of an interval after tester 1
    (1, 2, 0.5, 1000.3, 0.0),  # slower than one per second: no waiting
    (1, 2, None, 1000.3, 0.0),  # interval mode: no waiting
])
def test_fleet_schedules_interleave_on_a_shared_wall_clock_grid(tester, position, fleet, rate,
                                                                now, expected):
    test = tester.load_message.LoadTest(
        run_id="r", cases=(), duration_sec=1, rate_per_sec=rate,
        interval_sec=None if rate else 1.0, request_timeout_sec=1)
    delay = tester.open_loop.fleet_start_delay(test, position, fleet, now)
    assert delay == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("fleet, cases, per_tester", [
    (50, 50, 5), (2, 4, 2), (3, 10, 4), (4, 3, 1), (1, 5, 5),
])
def test_a_fleet_of_short_runs_covers_every_case(tester, fleet, cases, per_tester):
    """The fleet sends every case, though each tester may send only a few of them."""
    test = tester.load_message.LoadTest(
        run_id="r", cases=tuple(f"case-{i}" for i in range(cases)), duration_sec=1,
        rate_per_sec=per_tester, interval_sec=None, request_timeout_sec=1)
    sent = collections.Counter()
    for position in range(1, fleet + 1):
        first = tester.open_loop.fleet_first_case(position, fleet, cases)
        plan = tester.open_loop.schedule(test, first)
        sent.update(case for _, case in itertools.islice(plan, per_tester))
    assert set(sent) == set(test.cases)
    assert max(sent.values()) - min(sent.values()) <= 1 + (fleet * per_tester) // cases


def test_a_tester_starts_its_cases_on_its_place_in_the_fleet(tester, aws, api, monkeypatch):
    monkeypatch.setenv("TESTER_INDEX", "2")
    monkeypatch.setenv("TESTER_COUNT", "2")
    cases = [(f"tc-{i}", "fast") for i in range(1, 5)]
    tester.handler.handler(message(cases, rate=20, duration=0.1), context())
    sent = [json.loads(seen.body)["sentence"] for seen in api.seen]
    assert sent == ["text for tc-3", "text for tc-4"]  # tester 1 sends tc-1 and tc-2


def test_a_tester_starts_its_requests_on_its_place_in_the_fleet(tester, aws, api, monkeypatch):
    monkeypatch.setenv("TESTER_INDEX", "2")
    monkeypatch.setenv("TESTER_COUNT", "2")
    sent_at = []
    real_exchange = tester.http11.Connection.exchange

    def timed_exchange(connection, request):
        sent_at.append(time.time())
        return real_exchange(connection, request)

    monkeypatch.setattr(tester.http11.Connection, "exchange", timed_exchange)
    tester.handler.handler(message([("tc-001", "fast")], rate=20, duration=0.3), context())
    assert len(sent_at) == 6
    # 20 req/s each: tester 2 of 2 sends 25 ms after the fleet's grid points (every 50 ms)
    phases = [(at % 0.05) * 1000 for at in sent_at]
    assert all(24 <= phase <= 32 for phase in phases), phases
