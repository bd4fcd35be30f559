"""Tester: run one open-loop load test against the API, publish metrics, store the summary.

A bad message or environment is logged and answered with an error result (retrying the
invocation cannot fix it), which is also stored where the summary would go when the run id and
the results bucket are known, so whoever waits for the run learns at once why it did not happen.
Failing to store a summary raises; the run is not retried (the stack sets MaximumRetryAttempts
to 0) and Lambda parks its event in the stack's FailedRuns dead-letter queue.
"""

import datetime
import json
import os
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import awsclients
import envconfig
import jsonlog
from api_auth import auth_for
from api_client import ApiConnection
from botocore.exceptions import BotoCoreError, ClientError
from load_message import (
    RUN_ID,
    LoadTest,
    MessageError,
    message_from_event,
    parse_load_test,
    run_id_of,
)
from metric_publisher import metric_data, publish
from open_loop import fleet_first_case, fleet_start_delay, run_open_loop, schedule
from run_summary import judge, summarize
from tester_config import AWS_CLIENT_CONFIG, TesterSettings

# Time kept after the last reply for metrics, the S3 write and the return.
FINISH_MARGIN_SEC = 5.0


def handler(event, context):
    settings = message = default_run_id = None
    try:
        settings = TesterSettings.from_env(os.environ)
        message, sns_message_id = message_from_event(event)
        # Testers fed by one SNS message share its MessageId, hence one run id and S3 prefix.
        default_run_id = (sns_message_id or getattr(context, "aws_request_id", None)
                          or uuid.uuid4().hex)
        test = parse_load_test(message, default_run_id)
        duration_s = _runnable_duration(test, context)
        auth = auth_for(settings)
    except (MessageError, envconfig.ConfigError) as error:
        return _rejected(settings, message, default_run_id, context, type(error).__name__,
                         str(error))
    except (BotoCoreError, ClientError) as error:
        key_id = os.environ.get("API_KEY_ID")
        return _rejected(settings, message, default_run_id, context, "AuthSetupFailed",
                         f"cannot read the API key {key_id}: {error}")
    return _run(settings, test, auth, duration_s, context)


def _function_name(context) -> str:
    return getattr(context, "function_name", None) or "tester"


def _results_key(run_id: str, context) -> str:
    return f"load-tests/{run_id}/{_function_name(context)}.json"


def _run(settings: TesterSettings, test: LoadTest, auth, duration_s: float, context) -> dict:
    function_name = _function_name(context)
    time.sleep(fleet_start_delay(test, settings.fleet_position, settings.fleet_size, time.time()))
    started_at = time.time()
    jsonlog.log("INFO", "load-test-start", runId=test.run_id, durationSec=duration_s,
                ratePerSec=test.rate_per_sec, intervalSec=test.interval_sec, cases=len(test.cases))

    def send(client: ApiConnection, case):
        url = _case_url(settings, case.resource)
        return client.post(url, case.body, auth.headers(url, case.body))

    shots, stats = run_open_loop(
        schedule(test, fleet_first_case(settings.fleet_position, settings.fleet_size,
                                        len(test.cases))),
        lambda: ApiConnection(settings.api_url, test.request_timeout_sec), send,
        duration_s, drain_s=test.request_timeout_sec)
    outcomes = [judge(shot) for shot in shots]
    summary = {
        "RunId": test.run_id,
        "function": function_name,
        "status": "completed",
        "startedAt": datetime.datetime.fromtimestamp(started_at, datetime.timezone.utc).isoformat(),
        "target": settings.api_url,
        "auth": settings.auth_mode,
        "config": {"durationSec": test.duration_sec, "runDurationSec": duration_s,
                   "ratePerSec": test.rate_per_sec, "intervalSec": test.interval_sec,
                   "requestTimeoutSec": test.request_timeout_sec},
        **summarize(outcomes, stats, duration_s),
    }
    cloudwatch = awsclients.cached_client("cloudwatch", AWS_CLIENT_CONFIG)
    summary["metrics"] = publish(cloudwatch, settings.metric_namespace,
                                 metric_data(outcomes, settings.stage, started_at))
    key = _results_key(test.run_id, context)
    summary["resultsS3Uri"] = f"s3://{settings.results_bucket}/{key}"
    brief = {name: value for name, value in summary.items() if name != "samples"}
    jsonlog.log("INFO", "load-test-summary", **brief)
    awsclients.cached_client("s3", AWS_CLIENT_CONFIG).put_object(
        Bucket=settings.results_bucket, Key=key, ContentType="application/json",
        Body=json.dumps(summary, separators=(",", ":")).encode("utf-8"))
    return brief


def _case_url(settings: TesterSettings, resource) -> str:
    parts = urlsplit(settings.api_url)
    path = f"{parts.path}/{resource or settings.api_resource_path}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _runnable_duration(test: LoadTest, context) -> float:
    """The test's duration, shortened so the last replies and the summary fit in the timeout."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return test.duration_sec
    remaining_s = context.get_remaining_time_in_millis() / 1000
    budget_s = remaining_s - test.request_timeout_sec - FINISH_MARGIN_SEC
    if budget_s <= 0:
        raise envconfig.ConfigError(
            f"the function timeout leaves no time to test: it needs at least "
            f"RequestTimeoutSec + {FINISH_MARGIN_SEC:g} s plus the duration")
    if budget_s < test.duration_sec:
        jsonlog.log("WARNING", "duration-shortened", requestedSec=test.duration_sec,
                    runSec=budget_s)
    return min(test.duration_sec, budget_s)


def _rejected(settings, message, default_run_id, context, code: str, text: str) -> dict:
    """The error result, also stored where the run's summary would go (the message's RunId,
    else the same default a summary would use) so whoever waits for the run learns why."""
    jsonlog.log("ERROR", "load-test-rejected", code=code, message=text)
    result = {"status": "rejected", "error": {"code": code, "message": text}}
    run_id = run_id_of(message, default_run_id)
    if settings is not None and isinstance(run_id, str) and RUN_ID.fullmatch(run_id):
        try:
            awsclients.cached_client("s3", AWS_CLIENT_CONFIG).put_object(
                Bucket=settings.results_bucket, Key=_results_key(run_id, context),
                ContentType="application/json",
                Body=json.dumps({"RunId": run_id, "function": _function_name(context), **result},
                                separators=(",", ":")).encode("utf-8"))
        except (BotoCoreError, ClientError) as error:
            jsonlog.log("ERROR", "rejection-not-stored", message=str(error))
    return result
