import json
import logging
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import lambdas
from localcloud.lambdas import Throttled, ThrottleWarnings, sns_event

from .conftest import REGION

ECHO = """
    import json, os, sys
    import helper

    def handler(event, context):
        print("handled", context.aws_request_id)
        return {
            "event": event,
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "helper": helper.VALUE,
            "env": {k: os.environ.get(k) for k in (
                "GREETING", "API_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
                "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                "AWS_LAMBDA_FUNCTION_NAME")},
            "remaining_ms": context.get_remaining_time_in_millis(),
            "function_name": context.function_name,
        }
"""


def _result(res):
    assert res.error_type is None, res.payload
    return json.loads(res.payload)


def test_handler_from_zip_runs_warm_with_the_function_environment(
    runtime, create_function, monkeypatch
):
    monkeypatch.setenv("LOCALCLOUD_PORT", "4566")
    fn = create_function(
        "echo",
        ECHO,
        timeout=5,
        env={
            "GREETING": "hi",
            "API_URL": "https://abc123.execute-api.us-east-1.amazonaws.com/Demo",
        },
        extra={"helper.py": "VALUE = 'from the zip'\n"},
    )
    first = _result(runtime.invoke_blocking(fn, b'{"n": 1}'))
    second = _result(runtime.invoke_blocking(fn, b'{"n": 2}'))

    assert first["event"] == {"n": 1} and second["event"] == {"n": 2}
    assert first["pid"] == second["pid"], "the second call must reuse the warm worker"
    assert first["helper"] == "from the zip"
    assert first["cwd"].startswith(str(runtime.functions_dir))
    assert first["function_name"] == "echo"
    assert 0 < first["remaining_ms"] <= 5000
    assert first["env"] == {
        "GREETING": "hi",
        "API_URL": "http://127.0.0.1:4567/restapis/abc123/Demo/_user_request_",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": "http://127.0.0.1:4567",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_LAMBDA_FUNCTION_NAME": "echo",
    }
    log_text = runtime.function_log("echo").read_text()
    assert "handled" in log_text, "handler prints go to the function's log file"


def test_handler_cannot_import_from_the_source_tree(runtime, create_function):
    fn = create_function(
        "isolated",
        """
        import importlib
        def importable(name):
            try:
                importlib.import_module(name)
                return True
            except ImportError:
                return False
        def handler(event, context):
            return {name: importable(name)
                    for name in ("localcloud.urls", "generator", "workflow", "boto3")}
        """,
    )
    found = _result(runtime.invoke_blocking(fn, b"{}"))
    assert found == {"localcloud.urls": False, "generator": False, "workflow": False, "boto3": True}


def test_handler_exception_is_a_function_error(runtime, create_function):
    fn = create_function("boom", "def handler(event, context):\n    raise KeyError('missing')\n")
    res = runtime.invoke_blocking(fn, b"{}")
    assert res.error_type == "KeyError"
    body = json.loads(res.payload)
    assert body["errorMessage"] == "'missing'" and body["stackTrace"]


def test_import_error_is_reported_on_every_call(runtime, create_function):
    fn = create_function("broken", "import no_such_module\n")
    for _ in range(2):
        res = runtime.invoke_blocking(fn, b"{}")
        assert res.error_type == "Runtime.ImportModuleError"
        assert "no_such_module" in json.loads(res.payload)["errorMessage"]


def test_timeout_kills_the_worker_and_a_fresh_one_serves_the_next_call(runtime, create_function):
    fn = create_function(
        "slow",
        """
        import os, time
        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            return os.getpid()
        """,
        timeout=1,
    )
    first_pid = _result(runtime.invoke_blocking(fn, b"{}"))
    res = runtime.invoke_blocking(fn, b'{"sleep": 30}')
    assert res.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in json.loads(res.payload)["errorMessage"]
    assert 900 <= res.duration_ms < 5000
    second_pid = _result(runtime.invoke_blocking(fn, b"{}"))
    assert second_pid != first_pid


def test_crashing_worker_is_restarted_and_logged(runtime, create_function, caplog):
    fn = create_function(
        "crash",
        """
        import os
        def handler(event, context):
            if event.get("crash"):
                os._exit(3)
            return os.getpid()
        """,
    )
    first_pid = _result(runtime.invoke_blocking(fn, b"{}"))
    res = runtime.invoke_blocking(fn, b'{"crash": true}')
    assert res.error_type == "Runtime.ExitError"
    assert _result(runtime.invoke_blocking(fn, b"{}")) != first_pid
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "died during an invocation" in messages
    assert "exit code 3" in messages  # the supervisor's restart log


def test_code_update_replaces_the_pool(runtime, create_function, lambda_client):
    from .conftest import handler_zip

    fn = create_function("versioned", "def handler(e, c):\n    return 'v1'\n")
    assert _result(runtime.invoke_blocking(fn, b"{}")) == "v1"
    lambda_client.update_function_code(
        FunctionName="versioned", ZipFile=handler_zip("def handler(e, c):\n    return 'v2'\n")
    )
    assert _result(runtime.invoke_blocking(fn, b"{}")) == "v2"


def test_reserved_concurrency_zero_throttles(runtime, create_function):
    fn = create_function("off", "def handler(e, c):\n    return 1\n", reserved=0)
    with pytest.raises(Throttled):
        runtime.invoke_blocking(fn, b"{}")


def test_calls_past_the_reserved_concurrency_are_throttled_naming_why(
    runtime, create_function, caplog
):
    fn = create_function(
        "single",
        "import time\ndef handler(e, c):\n    time.sleep(e['sleep'])\n    return 1\n",
        reserved=1,
    )
    _result(runtime.invoke_blocking(fn, b'{"sleep": 0}'))  # the one worker is warm
    slow = threading.Thread(target=runtime.invoke_blocking, args=(fn, b'{"sleep": 1.5}'))
    slow.start()
    deadline = time.time() + 10
    while not any(worker.pending for pool in runtime.pools.values() for worker in pool.workers):
        assert time.time() < deadline, "the slow call never reached the worker"
        time.sleep(0.01)
    caplog.set_level(logging.WARNING, logger="localcloud.lambdas")
    runtime.throttle_warnings.interval = 0.5
    for _ in range(3):
        with pytest.raises(Throttled) as throttled:
            runtime.invoke_blocking(fn, b'{"sleep": 0}')
    slow.join()
    reason = (
        "single: reserved concurrency 1 used up: 1 running, 0 waiting for one of 1 local workers"
    )
    assert str(throttled.value) == reason
    warnings = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert warnings == [  # the burst's first call at once, the rest as a count after the interval
        f"Lambda throttled a call of {reason}",
        f"Lambda throttled 2 more calls since the previous warning; the latest: {reason}",
    ]
    _result(runtime.invoke_blocking(fn, b'{"sleep": 0}'))  # free again once the slow call ended


def test_throttle_warnings_log_a_burst_once_then_its_count_when_the_interval_ends():
    timers = []
    warnings = ThrottleWarnings(5.0, call_later=lambda delay, fire: timers.append((delay, fire)))
    assert warnings.note("f", "f: why", now=100.0) == "Lambda throttled a call of f: why"
    assert warnings.note("f", "f: why", now=101.0) is None
    assert warnings.note("g", "g: why", now=101.0) == "Lambda throttled a call of g: why"
    assert warnings.note("f", "f: later", now=104.0) is None
    assert [delay for delay, _ in timers] == [4.0]  # one timer per interval, not per call
    assert warnings.flush("f", now=105.0) == (
        "Lambda throttled 2 more calls since the previous warning; the latest: f: later"
    )
    assert warnings.flush("f", now=105.0) is None  # nothing new since
    assert warnings.note("f", "f: why", now=106.0) is None  # within 5 s of the last warning
    assert len(timers) == 2
    assert warnings.note("f", "f: again", now=111.0) == (
        "Lambda throttled a call of f: again (1 more since the previous warning)"
    )  # the timer had not fired yet: the count is not lost
    assert warnings.flush("h") is None


def test_deleted_function_stops_its_workers(runtime, create_function, lambda_client):
    fn = create_function("gone", "def handler(e, c):\n    return 1\n")
    _result(runtime.invoke_blocking(fn, b"{}"))
    assert runtime.registry.entries()
    lambda_client.delete_function(FunctionName="gone")  # noticed by the reconcile loop
    deadline = time.time() + 10
    while runtime.registry.entries():
        assert time.time() < deadline, "the deleted function's worker kept running"
        time.sleep(0.05)


def test_invoke_api_runs_the_code(runtime, create_function, lambda_client):
    create_function("api", "def handler(e, c):\n    return {'got': e}\n")
    resp = lambda_client.invoke(FunctionName="api", Payload=b'{"a": 1}')
    assert json.loads(resp["Payload"].read()) == {"got": {"a": 1}}
    assert "FunctionError" not in resp

    create_function("api-error", "def handler(e, c):\n    raise ValueError('bad')\n")
    resp = lambda_client.invoke(FunctionName="api-error", Payload=b"{}")
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "ValueError"


def test_invoke_api_refuses_what_lambda_refuses_before_running_the_code(
    runtime, create_function, lambda_client
):
    create_function("api", "def handler(e, c):\n    return len(e['a'])\n")
    with pytest.raises(ClientError) as not_utf8:
        lambda_client.invoke(FunctionName="api", Payload=b'{"a": "\xff"}')
    error = not_utf8.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "InvalidRequestContentException"
    assert "not UTF-8 (byte 0xff at offset 7)" in error["Error"]["Message"]

    limit = lambdas.SYNC_PAYLOAD_LIMIT
    fits = json.dumps({"a": "x" * (limit - 9)}).encode()
    assert len(fits) == limit
    assert json.loads(lambda_client.invoke(FunctionName="api", Payload=fits)["Payload"].read()) \
        == limit - 9
    with pytest.raises(ClientError) as too_large:
        lambda_client.invoke(FunctionName="api", Payload=fits[:-1] + b' }')
    error = too_large.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert error["Error"]["Message"] == (
        f"{limit + 1} byte payload is too large for the RequestResponse invocation type ({limit})"
    )


def test_event_invocation_returns_at_once_and_runs(
    runtime, create_function, lambda_client, tmp_path
):
    marker = tmp_path / "event-ran"
    create_function(
        "evt",
        f"""
        import time
        def handler(event, context):
            time.sleep(0.5)
            open({str(marker)!r}, "w").write(event["v"])
        """,
    )
    started = time.time()
    resp = lambda_client.invoke(FunctionName="evt", InvocationType="Event", Payload=b'{"v": "x"}')
    assert resp["StatusCode"] == 202
    assert time.time() - started < 0.5, "an Event invocation must not wait for the function"
    deadline = time.time() + 15
    while not marker.exists():
        assert time.time() < deadline
        time.sleep(0.05)
    assert marker.read_text() == "x"


def test_sns_publish_returns_at_once_and_subscribers_run_concurrently(
    runtime, create_function, tmp_path
):
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="trigger")["TopicArn"]
    source = """
        import json, time
        def handler(event, context):
            record = event["Records"][0]
            started = time.time()
            time.sleep(1.0)
            with open({path!r}, "w") as out:
                json.dump({{"record": record, "start": started, "end": time.time()}}, out)
    """
    outputs = []
    for name in ("tester-1", "tester-2"):
        out = tmp_path / f"{name}.json"
        outputs.append(out)
        fn = create_function(name, source.format(path=str(out)), timeout=10)
        sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=fn.function_arn)

    started = time.time()
    message_id = sns.publish(TopicArn=topic, Message='{"RunId": "r1"}', Subject="go")["MessageId"]
    assert time.time() - started < 0.5, "Publish must not wait for the subscribed functions"

    deadline = time.time() + 20
    while not all(p.exists() for p in outputs):
        assert time.time() < deadline, "a subscribed function never ran"
        time.sleep(0.05)
    results = [json.loads(p.read_text()) for p in outputs]
    sns_part = results[0]["record"]["Sns"]
    assert sns_part["Message"] == '{"RunId": "r1"}'
    assert sns_part["MessageId"] == message_id and sns_part["TopicArn"] == topic
    assert sns_part["Subject"] == "go"
    assert results[0]["record"]["EventSource"] == "aws:sns"
    # both ran at the same time: each started before the other ended
    assert results[0]["start"] < results[1]["end"] and results[1]["start"] < results[0]["end"]


def test_sns_event_shape():
    class Topic:
        arn = "arn:aws:sns:eu-west-1:123456789012:t"

    class Sub:
        topic = Topic()
        arn = Topic.arn + ":sub-1"

    event = sns_event(Sub(), "m", "id-1", None, {"k": {"Type": "String", "Value": "v"}})
    record = event["Records"][0]
    assert record["EventSubscriptionArn"] == Sub.arn
    assert record["Sns"]["MessageAttributes"] == {"k": {"Type": "String", "Value": "v"}}
    assert record["Sns"]["Timestamp"].endswith("Z") and record["Sns"]["Subject"] is None


def test_request_ids_are_unique_and_uuid_shaped():
    import uuid

    from localcloud.lambdas import new_request_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(str(uuid.UUID(i)) == i for i in ids)


def test_an_event_lambda_gives_up_on_goes_to_the_dead_letter_queue_with_lambdas_attributes(
    runtime, create_function, lambda_client
):
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="dead-letters")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    fn = create_function(
        "failing",
        """
        def handler(event, context):
            raise ValueError("no model for " + event["case"])
        """,
    )
    fn.dead_letter_config = {"TargetArn": queue_arn}  # what localcloud.compat keeps from a stack
    lambda_client.put_function_event_invoke_config(FunctionName="failing", MaximumRetryAttempts=0)

    lambda_client.invoke(FunctionName="failing", InvocationType="Event", Payload=b'{"case": "x"}')

    deadline = time.time() + 15
    messages = []
    while not messages:
        assert time.time() < deadline, "the failed event never reached the dead-letter queue"
        messages = sqs.receive_message(
            QueueUrl=queue, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
    (message,) = messages
    assert json.loads(message["Body"]) == {"case": "x"}
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ErrorCode"] == "200"
    assert attributes["ErrorMessage"] == "no model for x"
    assert attributes["RequestID"] in runtime.function_log("failing").read_text()


def test_a_dead_letter_target_that_cannot_take_the_event_leaves_it_in_the_log(
    runtime, create_function, caplog
):
    from localcloud.lambdas import THROTTLED_ERROR_CODE, park_failed_event

    fn = create_function("parked", "def handler(event, context):\n    return 1\n")
    fn.dead_letter_config = {"TargetArn": f"arn:aws:sqs:{REGION}:123456789012:no-such-queue"}
    with caplog.at_level(logging.ERROR, logger="localcloud.lambdas"):
        park_failed_event(fn, b'{"case": "kept"}', "req-1", THROTTLED_ERROR_CODE, "throttled")
    assert "no-such-queue" in caplog.text and '{"case": "kept"}' in caplog.text
