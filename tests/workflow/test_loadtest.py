"""Merging tester summaries into one load-test report."""

import json

import pytest

from workflow.context import WorkflowError
from workflow.loadtest import (
    merge,
    percentiles,
    plot,
    render,
    server_error_hint,
    wait_for_summaries,
)


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
    assert server_error_hint({"errors_by_status": {"429": 3, "connection": 1}}, local=True) is None
    assert server_error_hint({"errors_by_status": {}}, local=False) is None


def test_a_tester_without_a_summary_is_named_with_where_to_read_why():
    class NoSummaries:
        def list_objects_v2(self, **_):
            return {}

    with pytest.raises(WorkflowError) as raised:
        wait_for_summaries(NoSummaries(), "results", "run-1", ["tester-001"], timeout=0)
    message = str(raised.value)
    assert message.startswith("no summary from tester-001 after 0 s")
    assert "Lambda log groups" in message and "FailedRuns queue" in message
