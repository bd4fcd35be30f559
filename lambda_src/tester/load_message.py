"""The load-test message (SNS Message JSON or the dict itself), validated into a LoadTest.

Every error names the key path, the bad value and what is allowed: a bad message is the
sender's mistake, and retrying the invocation cannot fix it.
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple

MAX_DURATION_SEC = 900  # the longest a Lambda function can run
MAX_RATE_PER_SEC = 1000
MAX_REQUEST_TIMEOUT_SEC = 60
DEFAULT_REQUEST_TIMEOUT_SEC = 10
MAX_CASES = 100
# Every reply is kept for the summary's samples: this bounds a run's memory (about 70 MB).
MAX_REQUESTS_PER_RUN = 100_000
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESOURCE = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")
MESSAGE_KEYS = ("RunId", "Config", "TestData")
CONFIG_KEYS = ("DurationInSec", "RatePerSec", "IntervalInSec", "RequestTimeoutSec")
# "interval" (seconds to sleep after a case in the reference tester) is accepted so old
# messages still validate; pacing now comes from the open-loop schedule alone.
CASE_KEYS = ("type", "resource", "request", "response", "interval")


class MessageError(Exception):
    """The message cannot be run as a load test."""


@dataclass(frozen=True)
class TestCase:
    case_id: str
    resource: Optional[str]
    body: bytes
    expected: dict


@dataclass(frozen=True)
class LoadTest:
    run_id: str
    duration_sec: float
    rate_per_sec: Optional[float]
    interval_sec: Optional[float]
    request_timeout_sec: float
    cases: Tuple[TestCase, ...]


def message_from_event(event) -> Tuple[dict, Optional[str]]:
    """The message and, for SNS, its MessageId (the same for every subscribed tester)."""
    if not isinstance(event, dict):
        raise MessageError("the event must be an SNS event or a load-test object, "
                           f"not {type(event).__name__}")
    if "Records" not in event:
        return event, None
    records = event["Records"]
    if not isinstance(records, list) or len(records) != 1 or not isinstance(records[0], dict):
        raise MessageError("Records: expected exactly one SNS record")
    sns = records[0].get("Sns")
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        raise MessageError(
            "Records[0].Sns.Message: expected the load-test message as a JSON string")
    try:
        message = json.loads(sns["Message"])
    except (ValueError, RecursionError) as error:
        raise MessageError(f"Records[0].Sns.Message is not valid JSON: {error}") from None
    sns_id = sns.get("MessageId")
    return message, sns_id if isinstance(sns_id, str) else None


def run_id_of(message, default_run_id: Optional[str]):
    """The message's RunId, or ``default_run_id`` where it gives none (missing or null)."""
    run_id = message.get("RunId") if isinstance(message, dict) else None
    return default_run_id if run_id is None else run_id


def parse_load_test(message, default_run_id: str) -> LoadTest:
    """Validate ``message``; RatePerSec wins over IntervalInSec when both are set."""
    _require_object(message, "message", MESSAGE_KEYS)
    run_id = run_id_of(message, default_run_id)
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise MessageError(f"RunId={_show(run_id)}: expected 1-128 characters of A-Z a-z 0-9 . _ - "
                           "starting with a letter or digit")
    config = message.get("Config")
    _require_object(config, "Config", CONFIG_KEYS)
    duration = _number(config, "DurationInSec", 0, MAX_DURATION_SEC, required=True)
    rate = _number(config, "RatePerSec", 0, MAX_RATE_PER_SEC)
    interval = _number(config, "IntervalInSec", 0, MAX_DURATION_SEC)
    if rate is None and interval is None:
        raise MessageError("Config: set RatePerSec (requests per second) or IntervalInSec "
                           "(seconds between rounds of all cases)")
    timeout = _number(config, "RequestTimeoutSec", 0, MAX_REQUEST_TIMEOUT_SEC)
    cases = message.get("TestData")
    if not isinstance(cases, list) or not 1 <= len(cases) <= MAX_CASES:
        raise MessageError(f"TestData: expected a list of 1-{MAX_CASES} cases, got {_show(cases)}")
    test = LoadTest(
        run_id=run_id,
        duration_sec=duration,
        rate_per_sec=rate,
        interval_sec=None if rate is not None else interval,
        request_timeout_sec=timeout or DEFAULT_REQUEST_TIMEOUT_SEC,
        cases=tuple(_case(case, f"TestData[{index}]") for index, case in enumerate(cases)),
    )
    planned = planned_requests(test)
    if planned > MAX_REQUESTS_PER_RUN:
        raise MessageError(
            f"Config: {planned if math.isfinite(planned) else 'unboundedly many'} requests "
            f"planned; one tester sends at most "
            f"{MAX_REQUESTS_PER_RUN} per run (lower the rate or the duration, or add testers)")
    return test


def planned_requests(test: LoadTest) -> float:
    """Requests one tester would send; infinite when a tiny interval overflows the division."""
    if test.rate_per_sec is not None:
        return math.ceil(test.duration_sec * test.rate_per_sec)
    rounds = test.duration_sec / test.interval_sec
    return math.ceil(rounds) * len(test.cases) if math.isfinite(rounds) else math.inf


def _case(case, path: str) -> TestCase:
    _require_object(case, path, CASE_KEYS)
    case_id = case.get("type")
    if not isinstance(case_id, str) or not 1 <= len(case_id) <= 255 or not case_id.isprintable():
        raise MessageError(f"{path}.type={_show(case_id)}: expected 1-255 printable characters")
    resource = case.get("resource")
    if isinstance(resource, str) and resource.startswith("/"):
        resource = resource[1:]  # "/text" and "text" name the same resource under the stage
    if resource is not None and not (isinstance(resource, str) and RESOURCE.fullmatch(resource)
                                     and not {".", ".."}.intersection(resource.split("/"))):
        raise MessageError(f"{path}.resource={_show(resource)}: expected a URL path like 'text'")
    request = case.get("request")
    if not isinstance(request, dict):
        raise MessageError(
            f"{path}.request: expected the JSON object to POST, got {_show(request)}")
    expected = case.get("response", {})
    if not isinstance(expected, dict):
        raise MessageError(f"{path}.response: expected an object of expected key/values, "
                           f"got {_show(expected)}")
    interval = case.get("interval")
    if interval is not None and (isinstance(interval, bool)
                                 or not isinstance(interval, (int, float))
                                 or not 0 <= interval <= MAX_DURATION_SEC):
        raise MessageError(f"{path}.interval={_show(interval)}: expected a number in "
                           f"[0, {MAX_DURATION_SEC}] (accepted for compatibility, not used)")
    try:
        body = json.dumps(request, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as error:
        raise MessageError(f"{path}.request cannot be sent as JSON: {error}") from None
    return TestCase(case_id, resource, body, expected)


def _require_object(value, path: str, allowed: Tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise MessageError(f"{path}: expected a JSON object, got {_show(value)}")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise MessageError(f"{path}: unknown key(s) {', '.join(unknown[:5])}; "
                           f"allowed: {', '.join(allowed)}")


def _number(config: dict, key: str, low: float, high: float,
            required: bool = False) -> Optional[float]:
    """A number in (low, high]; JSON null counts as absent."""
    value = config.get(key)
    where = f"Config.{key}"
    if value is None:
        if required:
            raise MessageError(f"{where} is missing: expected a number in ({low}, {high}]")
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not low < value <= high):
        raise MessageError(f"{where}={_show(value)}: expected a number in ({low}, {high}]")
    return float(value)


def _show(value) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."
