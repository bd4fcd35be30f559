import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from localcloud.metrics import MetricsSink


@pytest.fixture
def cloudwatch():
    with mock_aws():
        yield boto3.client(
            "cloudwatch",
            region_name="eu-west-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def _stats(cloudwatch, namespace, name, dims):
    now = datetime.now(timezone.utc)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum", "SampleCount", "Minimum", "Maximum"],
    )["Datapoints"]
    return points


def test_values_of_one_minute_are_flushed_as_one_statistic_set(cloudwatch):
    sink = MetricsSink()
    sink.configure("123456789012", "eu-west-1")
    dims = {"ApiName": "demo", "Stage": "prod"}
    at = time.time() // 60 * 60 + 1
    for value in (3.0, 1.0, 8.0):
        sink.record("AWS/ApiGateway", "Latency", value, "Milliseconds", dims, at=at)
    sink.record("AWS/ApiGateway", "Latency", 5.0, "Milliseconds", {"ApiName": "other"}, at=at)

    assert sink.flush() == 2
    assert sink.flush() == 0  # nothing is written twice

    [point] = _stats(cloudwatch, "AWS/ApiGateway", "Latency", dims)
    assert (point["Sum"], point["SampleCount"]) == (12.0, 3.0)
    assert (point["Minimum"], point["Maximum"]) == (1.0, 8.0)
    assert point["Unit"] == "Milliseconds"


def test_partial_flushes_of_a_minute_add_up(cloudwatch):
    sink = MetricsSink()
    sink.configure("123456789012", "eu-west-1")
    dims = {"FunctionName": "fn"}
    at = time.time() // 60 * 60 + 1
    sink.record("AWS/Lambda", "Invocations", 1, "Count", dims, at=at)
    sink.flush()
    sink.record("AWS/Lambda", "Invocations", 1, "Count", dims, at=at + 2)
    sink.flush()

    points = _stats(cloudwatch, "AWS/Lambda", "Invocations", dims)
    assert sum(p["Sum"] for p in points) == 2.0


def test_background_thread_flushes_and_stop_flushes_the_rest(cloudwatch):
    sink = MetricsSink(flush_interval=0.05)
    sink.configure("123456789012", "eu-west-1")
    sink.start()
    sink.record("AWS/Lambda", "Errors", 1, "Count", {"FunctionName": "fn"})
    deadline = time.time() + 5
    while not _stats(cloudwatch, "AWS/Lambda", "Errors", {"FunctionName": "fn"}):
        assert time.time() < deadline, "the flush thread never wrote the datum"
        time.sleep(0.02)
    sink.record("AWS/Lambda", "Throttles", 1, "Count", {"FunctionName": "fn"})
    sink.stop()
    assert _stats(cloudwatch, "AWS/Lambda", "Throttles", {"FunctionName": "fn"})


def test_record_many_shares_dimensions_and_minute(cloudwatch):
    sink = MetricsSink()
    sink.configure("123456789012", "eu-west-1")
    dims = {"FunctionName": "fn"}
    at = time.time() // 60 * 60 + 1
    sink.record_many(
        "AWS/Lambda", dims, [("Invocations", 1, "Count"), ("Duration", 12.5, "Milliseconds")], at
    )
    sink.record_many("AWS/Lambda", dims, [("Duration", 7.5, "Milliseconds")], at)
    assert sink.flush() == 2
    [point] = _stats(cloudwatch, "AWS/Lambda", "Duration", dims)
    assert (point["Sum"], point["SampleCount"], point["Minimum"]) == (20.0, 2.0, 7.5)
