"""The load test's settings checks, and merging tester summaries into one report."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from generator import config
from workflow import loadtest
from workflow.context import WorkflowError
from workflow.loadtest import (
    build_message,
    merge,
    message_text,
    percentiles,
    plot,
    render,
    run_settings,
    server_error_hint,
    shortened_runs,
    summary_wait_seconds,
    throttle_hint,
    unpublished_metrics,
    wait_for_summaries,
)

TESTKIT = Path(__file__).resolve().parents[1] / "lambda_src" / "lambda_testkit.py"


def load_test(duration=20, request_timeout=10, rate=10):
    """A deployment's load_test: testers with a 20 + 10 + 60 s timeout by default."""
    return config.LoadTest(
        tester_count=2,
        rate_per_second=rate,
        duration_seconds=duration,
        request_timeout_seconds=request_timeout,
        tester_memory_mb=256,
        results_expiry_days=30,
        cases=(config.TestCase("tc-1", "Some news.", 1),),
    )


@pytest.fixture(scope="module")
def tester():
    """The tester Lambda's modules, loaded as its zip lays them out."""
    spec = importlib.util.spec_from_file_location("lambda_testkit", TESTKIT)
    testkit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(testkit)
    return testkit.load_function("tester")


def runs_in_full(tester, load, duration, rate) -> bool:
    """The tester accepts the message and, starting with its timeout less the moment its start
    may take, does not cut it."""
    cfg = SimpleNamespace(load_test=load, api_hosting=SimpleNamespace(resource_path="text"))
    try:
        test = tester.load_message.parse_load_test(build_message(cfg, "run-1", duration, rate), "")
    except tester.load_message.MessageError:
        return False
    remaining_ms = (load.tester_timeout_seconds - loadtest.TESTER_START_SLACK_SEC) * 1000
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: remaining_ms)
    return tester.handler._runnable_duration(test, context) == duration


@pytest.mark.parametrize("load, duration, rate", [
    (load_test(), "74", None),  # 20 + 10 + 60 s timeout, less 10 s request timeout, 5 s, 1 s
    (load_test(), "74.01", None),
    (load_test(duration=300, request_timeout=60), "354", None),
    (load_test(duration=300, request_timeout=60), "354.5", None),
    (load_test(), None, "1000"),
    (load_test(), None, "1000.5"),
    (load_test(duration=200), None, "500"),  # 100000 requests
    (load_test(duration=200), None, "500.01"),
])
def test_the_workflow_accepts_exactly_what_the_testers_run_in_full(tester, load, duration, rate):
    try:
        settings = run_settings(load, "config.json", duration, rate)
    except WorkflowError:
        settings = None
    expected = float(duration or load.duration_seconds), float(rate or load.rate_per_second)
    assert (settings == expected) == runs_in_full(tester, load, *expected)


LONGEST = ("expected seconds > 0 and <= 74, the longest run the testers' Lambda timeout holds "
           "(to run longer, raise load_test.duration_seconds in config.json, then make deploy)")


@pytest.mark.parametrize("argv, line", [
    (["--duration", "abc"], f"DURATION=abc: {LONGEST}"),
    (["--duration", "120"], f"DURATION=120: {LONGEST}"),
    (["--duration", "99999"], f"DURATION=99999: {LONGEST}"),
    (["--duration", "inf"], f"DURATION=inf: {LONGEST}"),
    (["--duration", "nan"], f"DURATION=nan: {LONGEST}"),
    (["--duration", "-1"], f"DURATION=-1: {LONGEST}"),
    (["--rate", "x"], "RATE=x: expected requests per second per tester > 0 and <= 1000"),
    (["--rate", "100000"], "RATE=100000: expected requests per second per tester > 0 and <= 1000"),
    (["--rate", "0"], "RATE=0: expected requests per second per tester > 0 and <= 1000"),
    (["--duration", "74", "--rate", "1400"],
     "RATE=1400: expected requests per second per tester > 0 and <= 1000"),
])
def test_bad_settings_are_one_line_and_nothing_is_published(monkeypatch, capsys, argv, line):
    ctx = SimpleNamespace(cfg=SimpleNamespace(load_test=load_test()))
    monkeypatch.setattr(loadtest, "load_context", lambda *_: ctx)
    monkeypatch.setattr(loadtest, "run", pytest.fail)  # run publishes the message
    assert loadtest.main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [f"test-load: {line}"]


def test_too_many_requests_per_tester_are_refused_before_publishing():
    with pytest.raises(WorkflowError) as raised:
        run_settings(load_test(duration=200), "config.json", None, "600")
    assert str(raised.value) == (
        "600 req/s for 200 s is 120000 requests per tester; a tester sends at most 100000 per "
        "run: lower RATE or DURATION"
    )


@pytest.mark.parametrize("argv, settings", [
    ([], (20, 10)),
    (["--duration", "74", "--rate", "1000"], (74.0, 1000.0)),
    (["--duration", "0.5", "--rate", "2.5"], (0.5, 2.5)),
])
def test_good_settings_reach_the_run(monkeypatch, argv, settings):
    ctx = SimpleNamespace(cfg=SimpleNamespace(load_test=load_test()))
    runs = []
    monkeypatch.setattr(loadtest, "load_context", lambda *_: ctx)
    monkeypatch.setattr(loadtest, "run", lambda _, duration, rate, __: runs.append(
        (duration, rate)) or {"totals": {"errors": 0, "wrong_labels": 0}})
    assert loadtest.main(argv) == 0
    assert runs == [settings]


def summary(samples, wrong=0, errors=None):
    per_case, per_variant = {}, {}
    for _, _, _, case, variant in samples:
        per_case.setdefault(case, {"wrongLabels": 0, "errorsByStatus": {}})
        per_variant.setdefault(variant, {"wrongLabels": 0, "errorsByStatus": {}})
    if wrong:
        per_case[samples[0][3]]["wrongLabels"] = wrong
        per_variant[samples[0][4]]["wrongLabels"] = wrong
    return {
        "requestsSent": len(samples),
        "requestsCompleted": len([s for s in samples if isinstance(s[2], int)]),
        "requestsUnfinished": 0,
        "errorsByStatus": errors or {},
        "wrongLabels": wrong,
        "achievedRatePerSec": 2.0,
        "perCase": per_case,
        "perVariant": per_variant,
        "samples": samples,
    }


def test_percentiles_are_nearest_rank():
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}


def test_merge_pools_samples_across_testers_before_taking_percentiles():
    a = summary([[0.0, 1.0, 200, "tc-1", "A"], [0.5, 2.0, 200, "tc-2", "B"]])
    b = summary(
        [[0.1, 100.0, 503, "tc-1", "A"], [0.6, 3.0, 200, "tc-2", "B"]], wrong=1, errors={"503": 1}
    )
    report = merge({"t1": a, "t2": b})
    assert report["totals"]["sent"] == 4 and report["totals"]["errors"] == 1
    assert report["totals"]["wrong_labels"] == 1
    assert (
        report["totals"]["latency_ms"]["max"] == 100.0
        and report["totals"]["latency_ms"]["p50"] == 2.0
    )
    assert (
        report["per_case"]["tc-1"]["requests"] == 2
        and report["per_variant"]["B"]["latency_ms"]["max"] == 3.0
    )
    assert report["totals"]["achieved_rate_per_sec"] == 4.0
    text = render(report)
    assert "variant A" in text and "case tc-2" in text


def test_render_names_each_case_and_variant_whole():
    """Case ids and variant names that share their first characters stay apart in the table."""
    report = merge({"t1": summary([
        [0.0, 1.0, 200, "news-sports-001", "Production-Blue"],
        [0.5, 2.0, 200, "news-sports-002", "Production-Green"],
    ])})
    lines = render(report).splitlines()
    for label in ("case news-sports-001", "case news-sports-002",
                  "variant Production-Blue", "variant Production-Green"):
        assert any(line.startswith(label + " ") for line in lines), label
    assert len({len(line) for line in lines[:-1]}) == 1  # the columns line up


def test_merge_counts_error_codes_beside_statuses():
    a = summary([[0.0, 5.0, 429, "tc-1", "unknown"]], errors={"429": 1})
    a["errorsByCode"] = {"429 QuotaExceeded": 1}
    a["perCase"]["tc-1"].update(errorsByStatus={"429": 1}, errorsByCode={"429 QuotaExceeded": 1})
    b = summary([[0.1, 5.0, 429, "tc-1", "unknown"], [0.2, 6.0, 502, "tc-1", "unknown"]],
                errors={"429": 1, "502": 1})
    b["errorsByCode"] = {"429 TooManyRequests": 1}  # the 502 had no error body
    report = merge({"t1": a, "t2": b})
    assert report["totals"]["errors_by_status"] == {"429": 2, "502": 1}
    assert report["totals"]["errors_by_code"] == {"429 QuotaExceeded": 1, "429 TooManyRequests": 1}
    assert report["per_case"]["tc-1"]["errors_by_code"] == {"429 QuotaExceeded": 1}
    assert "by code {'429 QuotaExceeded': 1, '429 TooManyRequests': 1}" in render(report)
    old_testers = merge({"t1": summary([[0.0, 1.0, 200, "tc-1", "A"]])})
    assert old_testers["totals"]["errors_by_code"] == {} and "by code" not in render(old_testers)


def test_report_files_are_written(tmp_path):
    report = merge(
        {"t1": summary([[0.0, 1.0, 200, "tc-1", "A"], [0.2, None, "timeout", "tc-1", "unknown"]])}
    )
    images = plot(report, tmp_path)
    assert [p.name for p in images] == ["latency-over-time.png", "latency-histogram.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in images)
    json.dumps(report)  # the report is plain JSON


def test_server_errors_point_at_the_logs_that_say_why(tmp_path):
    totals = {"errors_by_status": {"429": 3, "500": 2, "504": 1, "connection": 4}}
    local = server_error_hint(totals, local=True, home=tmp_path)
    assert local == (
        f"3 answers were 5xx: {tmp_path / 'localcloud.log'} (Lambda throttles, failed "
        f"integrations) and the functions' logs in {tmp_path / 'logs' / 'lambda'} say why"
    )
    assert server_error_hint(totals, local=False).startswith(
        "3 answers were 5xx: the predictor's CloudWatch log group and its AWS/Lambda Throttles"
    )
    coded = {**totals, "errors_by_code": {"500 GatewayError": 2, "429 TooManyRequests": 3}}
    assert server_error_hint(coded, local=False).startswith(
        "3 answers were 5xx (500 GatewayError: 2): the predictor's CloudWatch log group"
    )
    assert server_error_hint({"errors_by_status": {"429": 3, "connection": 1}}, local=True) is None
    assert server_error_hint({"errors_by_status": {}}, local=False) is None


def test_throttled_answers_name_the_limits_that_refused_them():
    from dataclasses import replace

    api = config.load(Path(__file__).resolve().parents[2] / "config.json").api_hosting
    totals = {"errors_by_status": {"429": 7, "500": 1}}
    assert throttle_hint(totals, api) == (
        "7 answers were 429: the load went over the stage's throttle (api_hosting.throttle: "
        "200 requests/s, burst 400), or the API key's quota (api_hosting.quota: 1000000 per DAY) "
        "ran out"
    )
    assert throttle_hint(totals, replace(api, auth="iam")) == (
        "7 answers were 429: the load went over the stage's throttle (api_hosting.throttle: "
        "200 requests/s, burst 400)"
    )
    assert throttle_hint({"errors_by_status": {"500": 1}}, api) is None
    coded = {"errors_by_status": {"429": 7}, "errors_by_code": {
        "429 QuotaExceeded": 2, "429 TooManyRequests": 4}}
    assert throttle_hint(coded, api) == (
        "7 answers were 429: 2 QuotaExceeded: the API key's quota (api_hosting.quota: "
        "1000000 per DAY) ran out; 4 TooManyRequests: the load went over the stage's "
        "throttle (api_hosting.throttle: 200 requests/s, burst 400) or SageMaker's for the "
        "endpoint; 1 without an error code"
    )


def test_a_tester_without_a_summary_is_named_with_where_to_read_why():
    class NoSummaries:
        def list_objects_v2(self, **_):
            return {}

    with pytest.raises(WorkflowError) as raised:
        wait_for_summaries(NoSummaries(), "results", "run-1", ["tester-001"], timeout=0)
    message = str(raised.value)
    assert message.startswith("no summary from tester-001 after 0 s")
    assert "Lambda log groups" in message and "FailedRuns queue" in message
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/x-FailedRuns-1A2B"
    with pytest.raises(WorkflowError) as raised:
        wait_for_summaries(NoSummaries(), "results", "run-1", ["tester-001"], 0, url)
    assert str(raised.value).endswith(f"in the api-testing stack's FailedRuns queue {url}")


@pytest.mark.parametrize("request_timeout", [1, 10, 30, 60])
def test_the_wait_outlasts_a_tester_that_runs_its_full_time(request_timeout):
    load = load_test(duration=20, request_timeout=request_timeout)
    cfg = SimpleNamespace(load_test=load, api_hosting=SimpleNamespace(resource_path="text"))
    run_config = build_message(cfg, "run-1", load.duration_seconds, 10)["Config"]
    assert summary_wait_seconds(run_config) > load.tester_timeout_seconds


def test_an_interrupted_wait_says_the_testers_keep_running(capsys):
    class Interrupted:
        def list_objects_v2(self, **_):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wait_for_summaries(Interrupted(), "results", "run-1", ["tester-001"], timeout=90)
    note = capsys.readouterr().err
    assert note.startswith("[!] load test run-1: its testers keep running (for up to 90 s more)")
    assert "s3://results/load-tests/run-1/" in note


def test_a_message_sns_would_refuse_is_refused_before_publishing():
    """Every case within max_text_chars, yet together over SNS's 256 KiB."""
    def message(sentence, count):
        cases = tuple(config.TestCase(f"tc-{i}", sentence, 1) for i in range(count))
        load = config.LoadTest(**{**vars(load_test()), "cases": cases})
        cfg = SimpleNamespace(load_test=load, api_hosting=SimpleNamespace(resource_path="text"))
        return build_message(cfg, "run-1", 20, 10)

    fits = message("新闻" * 2500, 8)  # 5,000 characters a case, written as 6-byte \u escapes
    assert json.loads(message_text(fits)) == fits
    with pytest.raises(WorkflowError, match=r"the load-test message is 2\d\d,\d{3} bytes, over "
                                            r"SNS's 262,144: make load_test.cases fewer"):
        message_text(message("新闻" * 2500, 9))


def test_a_run_the_deployed_testers_cut_short_is_named():
    """load_test.duration_seconds raised in config.json but not deployed: DURATION passes the
    config's check, the testers' older timeout cuts the run, and the report says so."""
    def ran(seconds):
        return {**summary([[0.0, 1.0, 200, "tc-1", "A"]]),
                "config": {"durationSec": 80.0, "runDurationSec": seconds}}

    lines = shortened_runs({"tester-002": ran(74.999), "tester-001": ran(80.0)}, 80.0)
    assert lines == [
        "[!] tester tester-002 ran 75 s of the 80 s asked: its deployed Lambda timeout is "
        "shorter than load_test.duration_seconds needs (make deploy applies a changed load_test)"
    ]
    assert shortened_runs({"tester-001": ran(80.0)}, 80.0) == []
    assert shortened_runs({"tester-001": summary([])}, 80.0) == []  # a summary without config


def _deployed_testing_stack(monkeypatch, results):
    """A context whose api-testing stack has one tester and whose S3 client is ``results``."""
    monkeypatch.setattr(loadtest, "stack_outputs", lambda *_: {
        "TriggerTopicArn": "arn:aws:sns:us-east-1:123456789012:trigger",
        "TesterFunctionNames": "tester-001", "ResultsBucketName": "results"})
    cfg = SimpleNamespace(load_test=load_test(), api_hosting=SimpleNamespace(resource_path="text"))
    return SimpleNamespace(
        cfg=cfg,
        manifest=SimpleNamespace(stack=lambda _: SimpleNamespace(stack_name="api-testing")),
        target=SimpleNamespace(client=lambda name: results if name == "s3" else None,
                               region="us-east-1", env={}, is_local=False),
    )


def test_metrics_the_testers_could_not_publish_are_named():
    """A failed PutMetricData is recorded in the summary, not raised: the report says it."""
    denied = {**summary([[0.0, 1.0, 200, "tc-1", "A"]]), "metrics": {
        "dataPoints": 12, "calls": 1, "failedCalls": 1,
        "errors": ["ClientError: An error occurred (AccessDenied) when calling PutMetricData"]}}
    sent = {**summary([[0.0, 1.0, 200, "tc-1", "A"]]),
            "metrics": {"dataPoints": 12, "calls": 1, "failedCalls": 0, "errors": []}}
    assert unpublished_metrics({"tester-001": sent, "tester-002": denied}) == [
        "[!] tester tester-002: 1 of 1 PutMetricData calls failed, so the tester dashboard lacks "
        "part of this run: ClientError: An error occurred (AccessDenied) when calling "
        "PutMetricData"
    ]
    assert unpublished_metrics({"tester-001": summary([])}) == []  # a summary without metrics


def test_the_report_prints_and_keeps_what_the_testers_say_went_short(
    monkeypatch, capsys, tmp_path
):
    stored = {
        "load-tests/run-1/tester-001.json": {
            **summary([[0.0, 1.0, 200, "tc-1", "A"]]), "status": "completed",
            "config": {"durationSec": 80.0, "runDurationSec": 75.0},
            "metrics": {"calls": 1, "failedCalls": 1, "errors": ["ThrottlingException: slow"]},
        },
    }

    class Results:
        def list_objects_v2(self, **_):
            return {"Contents": [{"Key": key} for key in stored]}

        def get_object(self, Key, **_):
            return {"Body": SimpleNamespace(read=lambda: json.dumps(stored[Key]).encode())}

    ctx = _deployed_testing_stack(monkeypatch, Results())
    monkeypatch.setattr(loadtest.subprocess, "run", lambda *_, **__: SimpleNamespace(
        returncode=0, stdout="{}", stderr=""))
    monkeypatch.setattr(loadtest.uuid, "uuid4", lambda: SimpleNamespace(hex="abcdef123456"))
    monkeypatch.setattr(loadtest, "datetime", SimpleNamespace(now=lambda _: SimpleNamespace(
        strftime=lambda _: "run-1")))
    stored["load-tests/run-1abcdef/tester-001.json"] = stored.pop(
        "load-tests/run-1/tester-001.json")
    report = loadtest.run(ctx, 80.0, 10.0, tmp_path)
    printed = capsys.readouterr().out.splitlines()
    assert report["warnings"] == [line for line in printed if line.startswith("[!]")]
    assert [line.split(":")[0][:30] for line in report["warnings"]] == [
        "[!] tester tester-001 ran 75 s", "[!] tester tester-001"]


def _fake_target(monkeypatch, run_ids, on_publish=lambda: None):
    """A target whose testers answer every run at once, ``run_ids`` as the runs' ids, and what
    each ``aws sns publish`` sent (its RunId) in the returned list."""
    class Results:
        def list_objects_v2(self, Prefix, **_):
            return {"Contents": [{"Key": f"{Prefix}tester-001.json"}]}

        def get_object(self, Key, **_):
            done = {**summary([[0.0, 1.0, 200, "tc-1", "A"]]), "status": "completed"}
            return {"Body": SimpleNamespace(read=lambda: json.dumps(done).encode())}

    published = []

    def publish(command, **_):
        path = command[command.index("--message") + 1].removeprefix("file://")
        on_publish()  # another `make test-load` runs while this one's aws CLI starts
        published.append(json.loads(Path(path).read_text())["RunId"])
        return SimpleNamespace(returncode=0, stdout="{}", stderr="")

    ids = iter(run_ids)
    monkeypatch.setattr(loadtest.subprocess, "run", publish)
    monkeypatch.setattr(loadtest, "datetime", SimpleNamespace(now=lambda _: SimpleNamespace(
        strftime=lambda _: next(ids))))
    ctx = _deployed_testing_stack(monkeypatch, Results())
    return ctx, published


def _overlapping_runs(monkeypatch, tmp_path):
    """Two `make test-load` at once, the second run whole while the first's aws CLI starts:
    the first run's report, the second's, and the RunIds in the order they were published."""
    nested = []

    def second_run():
        if not nested:
            nested.append(None)
            nested[0] = loadtest.run(ctx, 20.0, 10.0, tmp_path)

    ctx, published = _fake_target(monkeypatch, ["run-1-", "run-2-"], second_run)
    first = loadtest.run(ctx, 20.0, 10.0, tmp_path)
    return first, nested[0], published


def test_a_concurrent_run_does_not_publish_the_other_runs_message(monkeypatch, tmp_path):
    """The second run writes its message while the first's aws CLI starts. Each publishes its
    own RunId, or the first waits for summaries that never come and the second's testers run
    twice, the second time over its first summaries."""
    first, second, published = _overlapping_runs(monkeypatch, tmp_path)
    assert published == [second["run_id"], first["run_id"]]
    assert first["message"]["RunId"] == first["run_id"]


def test_concurrent_runs_each_keep_their_report(monkeypatch, capsys, tmp_path):
    """The run that finishes first keeps its report (and its PNGs) when the other finishes:
    each run's in its own directory, the last one's also in build/reports/."""
    last, finished_first, _ = _overlapping_runs(monkeypatch, tmp_path)
    for report in (finished_first, last):
        kept = tmp_path / "load-tests" / report["run_id"]
        assert json.loads((kept / "load-test.json").read_text())["run_id"] == report["run_id"]
        assert json.loads((kept / "load-test-message.json").read_text()) == report["message"]
        assert (kept / "latency-over-time.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "load-test.json").read_text())["run_id"] == last["run_id"]
    assert (tmp_path / "latency-histogram.png").read_bytes() == (
        tmp_path / "load-tests" / last["run_id"] / "latency-histogram.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latency-histogram.png", "latency-over-time.png", "load-test-message.json",
        "load-test.json", "load-tests"]  # no partial copies left behind
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == (
        f"report: {tmp_path / 'load-tests' / last['run_id'] / 'load-test.json'}, "
        f"{tmp_path / 'load-tests' / last['run_id'] / 'latency-over-time.png'}, "
        f"{tmp_path / 'load-tests' / last['run_id'] / 'latency-histogram.png'} "
        f"(the latest run's also in {tmp_path})"
    )


def test_a_results_bucket_deleted_during_the_wait_names_the_teardown():
    """`make teardown` while `make test-load` waits: the run says what happened and what to
    run, not AWS's bare NoSuchBucket."""
    from botocore.exceptions import ClientError

    class TornDown:
        def list_objects_v2(self, **_):
            raise ClientError({"Error": {"Code": "NoSuchBucket", "Message": "gone"}},
                              "ListObjectsV2")

    with pytest.raises(WorkflowError) as raised:
        wait_for_summaries(TornDown(), "results", "run-1", ["tester-001"], timeout=90)
    assert str(raised.value) == (
        "the results bucket results no longer exists: the api-testing stack was deleted (a "
        "`make teardown`?) while this run waited for its testers, and their summaries with it; "
        "`make deploy`, then `make test-load` again"
    )

    class Denied:
        def list_objects_v2(self, **_):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}},
                              "ListObjectsV2")

    with pytest.raises(ClientError):  # other errors stay AWS's, with their own code
        wait_for_summaries(Denied(), "results", "run-1", ["tester-001"], timeout=90)


def test_the_latest_reports_are_one_runs(monkeypatch, tmp_path):
    """build/reports/ holds one run's files: the message beside the report is the one that run
    published, not that of a run started after it and finished before it."""
    last, _, _ = _overlapping_runs(monkeypatch, tmp_path)
    latest = json.loads((tmp_path / "load-test.json").read_text())
    assert latest["run_id"] == last["run_id"]
    assert json.loads((tmp_path / "load-test-message.json").read_text()) == latest["message"]
