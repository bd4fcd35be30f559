"""Load config.json once into frozen dataclasses; every invalid value raises ConfigError.

Each message names the key path, the bad value and what is allowed, e.g.
`model_serving.models[1].initial_weight: -1 is not allowed; expected a finite number > 0 and
<= 1000`.
Unknown keys are errors too, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config.json"

# Lambda's hard limit; the tester needs headroom after its load loop to publish and write results.
LAMBDA_MAX_TIMEOUT_S = 900
TESTER_MARGIN_S = 60
# API Gateway's default integration timeout is 29 s; the predictor must finish first.
API_INTEGRATION_TIMEOUT_S = 29
# The predictor's slowest own answer: two SageMaker attempts of 2 s connect + 6 s read and a
# backoff under 1 s (lambda_src/predictor/endpoint.py). A shorter function timeout lets Lambda
# end it first, and API Gateway then answers a bare 502 instead of the predictor's JSON 504.
MIN_PREDICTOR_TIMEOUT_S = 18
# Lambda's synchronous payload limit (6 MB): it bounds the whole proxy event, not the body.
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# api_hosting.max_body_bytes' upper bound. The body reaches the predictor as a JSON string inside
# the proxy event, where each '"', '\\' and raw tab or line break of a JSON body takes two bytes,
# next to the headers (twice: headers and multiValueHeaders) and the request context. A larger
# body than this could make the event too large for Lambda: the predictor would not run and API
# Gateway would answer 500 instead of the predictor's 413.
MAX_BODY_BYTES = 3_000_000
# Values CloudWatch Logs accepts for RetentionInDays.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
AUTH_MODES = ("api_key", "iam")
# Who sets API Gateway's CloudWatch Logs role, one setting per account and region.
ACCOUNT_LOGGING_ROLES = ("create", "existing")
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
LABELS = (1, 2, 3, 4)
# Longest prefix that survives CloudFormation's truncation of generated physical names.
CICD_MAX_PREFIX = 24
MAX_VARIANTS = 10  # SageMaker's limit of production variants per endpoint config
# A guarded endpoint rolls back on two alarms per variant, and its AutoRollbackConfiguration
# takes at most 10 alarms.
MAX_GUARDED_VARIANTS = 5
# CloudWatch's longest alarm evaluation range (Period x EvaluationPeriods): seven days, and one
# day for an alarm whose period is under an hour.
ALARM_WINDOW_SECONDS = 7 * 86400
SHORT_PERIOD_ALARM_WINDOW_SECONDS = 86400
MAX_TESTERS = 50  # load_test.tester_count's upper bound; the tester function checks it too
MAX_TESTER_RATE = 1000  # load_test.rate_per_second's upper bound; the tester checks it too
# Requests one tester sends in one run (tester_requests); the tester refuses more (it keeps
# every reply for its samples), and so does make test-load before publishing.
MAX_TESTER_REQUESTS = 100_000
# The testers' Variant metric dimension for a request no variant answered (an error or a
# timeout); the tester dashboard shows it beside the variants, so no variant may take the name.
NO_ANSWER_VARIANT = "unknown"
# Upper bounds of api_hosting.throttle and api_hosting.predictor.reserved_concurrency.
MAX_API_RATE_LIMIT = 10000
MAX_API_BURST_LIMIT = 5000
MAX_RESERVED_CONCURRENCY = 1000
# Upper bound of model_serving.max_batch_size; the predictor and the model check it too.
MAX_BATCH_SIZE = 1024
MAX_TEXT_CHARS = 100000  # model_serving.max_text_chars' upper bound
# Variant weights are relative; a bound keeps their sum finite.
MAX_VARIANT_WEIGHT = 1000
# API Gateway quota limits are 32-bit integers.
MAX_QUOTA_LIMIT = 2**31 - 1
# CloudFormation's limit of stack tags; the project adds Project and Stage itself.
MAX_STACK_TAGS = 50
RESERVED_TAG_KEYS = ("Project", "Stage")

_ALNUM = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_ACCOUNT = re.compile(r"\d{12}")
_ARTIFACT_ID = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
# ECR image; region and URL suffix may be the ${AWS::Region}/${AWS::URLSuffix} placeholders.
ECR_IMAGE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>\$\{AWS::Region\}|[a-z0-9-]+)\."
    r"(?P<suffix>\$\{AWS::URLSuffix\}|amazonaws\.com(?:\.cn)?)"
    r"/(?P<repository>[a-z0-9][a-z0-9._/-]*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})"
)
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
_S3_PREFIX = re.compile(r"[a-zA-Z0-9!_.*'()-]+(/[a-zA-Z0-9!_.*'()-]+)*")
_PATH_PART = re.compile(r"(?!\.+$)[a-zA-Z0-9._-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CONNECTION_ARN = re.compile(
    r"arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:"
    r"connection/[A-Za-z0-9-]+"
)
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# No "=": the aws CLI reads --tags Key=Value up to the first one.
_TAG_KEY = re.compile(r"[A-Za-z0-9 _.:/+@-]{1,128}")
# git check-ref-format: no control or special character, no "..", "@{", "//", leading "-" or
# "/", no part starting with "." or ending in ".lock", no trailing "/" or ".".
_GIT_BRANCH = re.compile(
    r"(?![-/.]|@$)(?!.*(?:\.\.|@\{|//|/\.|\.lock/))[^\x00-\x20\x7f~^:?*\[\\]+(?<![/.])(?<!\.lock)"
)
_NOT_BLANK = re.compile(r"(?s).*\S.*")
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+@/-]*")
# A relative path inside the project: no leading slash, no . or .. part.
_PROJECT_PATH = re.compile(r"(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_SECRET_HINT = re.compile(r"(password|secret|token|credential|private_key|access_key)", re.I)


class ConfigError(ValueError):
    """An invalid config.json value; the message names key path, value and what is allowed."""


@dataclass(frozen=True)
class Project:
    name: str
    stage: str
    region: str
    account: str | None
    profile: str | None
    log_retention_days: int
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ModelArchiving:
    retain_on_delete: bool
    noncurrent_version_expiry_days: int


@dataclass(frozen=True)
class Autoscaling:
    enabled: bool
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: float


@dataclass(frozen=True)
class Model:
    name: str
    artifact_dir: str
    image_uri: str
    variant_name: str
    initial_weight: float
    instance_type: str
    instance_count: int
    server_workers: int
    autoscaling: Autoscaling


@dataclass(frozen=True)
class DataCapture:
    enabled: bool
    sampling_percentage: int
    prefix: str
    capture_json_as_json: bool
    expiry_days: int


@dataclass(frozen=True)
class DeploymentGuardrail:
    enabled: bool
    canary_percentage: int
    wait_seconds: int
    bake_seconds: int


@dataclass(frozen=True)
class ModelServing:
    endpoint_name: str
    max_batch_size: int
    max_text_chars: int
    models: tuple[Model, ...]
    data_capture: DataCapture
    deployment_guardrail: DeploymentGuardrail


@dataclass(frozen=True)
class Throttle:
    rate_limit: float
    burst_limit: int


@dataclass(frozen=True)
class Quota:
    limit: int
    period: str


@dataclass(frozen=True)
class Predictor:
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int
    log_request_text: bool


@dataclass(frozen=True)
class ApiHosting:
    resource_path: str
    auth: str
    throttle: Throttle
    quota: Quota
    max_body_bytes: int
    predictor: Predictor
    account_logging_role: str


@dataclass(frozen=True)
class Alarms:
    api_requests_per_period: int
    api_4xx_per_period: int
    api_5xx_per_period: int
    model_invocation_errors_per_period: int
    model_latency_p99_ms: float


@dataclass(frozen=True)
class Monitoring:
    period_seconds: int
    evaluation_periods: int
    alarms: Alarms
    subscription_emails: tuple[str, ...]


@dataclass(frozen=True)
class Cicd:
    enabled: bool
    connection_arn: str | None
    repository: str | None
    branch: str
    manual_approval: bool


@dataclass(frozen=True)
class TestCase:
    id: str
    sentence: str
    expected_label: int


@dataclass(frozen=True)
class LoadTest:
    tester_count: int
    rate_per_second: float
    duration_seconds: int
    request_timeout_seconds: int
    tester_memory_mb: int
    results_expiry_days: int
    cases: tuple[TestCase, ...]

    @property
    def tester_timeout_seconds(self) -> int:
        """Lambda timeout: the load loop, one last request, and time to report."""
        return self.duration_seconds + self.request_timeout_seconds + TESTER_MARGIN_S


@dataclass(frozen=True)
class Config:
    project: Project
    model_archiving: ModelArchiving
    model_serving: ModelServing
    api_hosting: ApiHosting
    monitoring: Monitoring
    cicd: Cicd
    load_test: LoadTest


_MISSING = object()


class _Node:
    """A JSON object being read at `path`; remembers which keys were consumed."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            _fail(path, data, "expected an object")
        self.data, self.path, self.seen = data, path, set()
        duplicates = getattr(data, "duplicate_keys", ())
        if duplicates:
            raise ConfigError(f"{self._key(duplicates[0])}: duplicate key; give each key once")

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = _MISSING) -> tuple[Any, str]:
        self.seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self._key(key)}: missing; this key is required")
            return default, self._key(key)
        return self.data[key], self._key(key)

    def node(self, key: str) -> "_Node":
        value, path = self.raw(key)
        return _Node(value, path)

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value, path = self.raw(key, default)
        if not isinstance(value, bool):
            _fail(path, value, "expected true or false")
        return value

    def integer(
        self, key: str, lo: int | None = None, hi: int | None = None, default: Any = _MISSING
    ) -> int:
        value, path = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or _out(value, lo, hi):
            _fail(path, value, "expected an integer" + _range_text(lo, hi))
        return value

    def number(self, key: str, gt: float, hi: float | None = None) -> float:
        value, path = self.raw(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= gt or (hi is not None and value > hi):
            _fail(
                path,
                value,
                f"expected a finite number > {gt}" + (f" and <= {hi}" if hi is not None else ""),
            )
        return value

    def string(
        self,
        key: str,
        pattern: re.Pattern | None = None,
        what: str = "",
        max_len: int = 0,
        nullable: bool = False,
        default: Any = _MISSING,
    ) -> str | None:
        value, path = self.raw(key, default)
        if value is None and nullable:
            return None
        bad = not isinstance(value, str) or not value or (max_len and len(value) > max_len)
        if bad or (pattern is not None and not pattern.fullmatch(value)):
            allowed = what or "a non-empty string"
            if max_len:
                allowed += f" of at most {max_len} characters"
            _fail(path, value, "expected " + allowed + (" or null" if nullable else ""))
        return value

    def choice(self, key: str, allowed: tuple, default: Any = _MISSING) -> Any:
        value, path = self.raw(key, default)
        if not any(type(value) is type(a) and value == a for a in allowed):  # 30.0 is not 30
            _fail(path, value, "expected one of " + ", ".join(json.dumps(a) for a in allowed))
        return value

    def items(
        self, key: str, min_items: int = 0, max_items: int | None = None
    ) -> list[tuple[Any, str]]:
        value, path = self.raw(key)
        if not isinstance(value, list) or _out(len(value), min_items, max_items):
            _fail(path, value, "expected a list" + _range_text(min_items, max_items, "items"))
        return [(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def done(self) -> None:
        """Reject keys nobody read: typos must not pass silently."""
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise ConfigError(f"{self._key(unknown[0])}: unknown key; allowed keys here: {known}")


def _out(value, lo, hi) -> bool:
    return (lo is not None and value < lo) or (hi is not None and value > hi)


def _range_text(lo, hi, unit: str = "") -> str:
    unit = f" {unit}" if unit else ""
    if lo is not None and hi is not None:
        return f" between {lo} and {hi}{unit}"
    if lo is not None:
        return f" >= {lo}{unit}"
    return f" <= {hi}{unit}" if hi is not None else ""


def _fail(path: str, value: Any, allowed: str):
    shown = "object" if isinstance(value, dict) else "list" if isinstance(value, list) else None
    shown = shown or json.dumps(value)
    raise ConfigError(f"{path or 'top level'}: {shown} is not allowed; {allowed}")


def _unique(values: list[tuple[Any, str]], what: str) -> None:
    seen: dict = {}
    for value, path in values:
        key = value.lower() if isinstance(value, str) else value
        if key in seen:
            raise ConfigError(
                f"{path}: {json.dumps(value)} is not allowed; {what} must be unique "
                f"(already used at {seen[key]})"
            )
        seen[key] = path


def _read(node: _Node, build: Callable[[_Node], Any]) -> Any:
    value = build(node)
    node.done()
    return value


def _project(n: _Node) -> Project:
    tags_node = n.node("tags")
    tags = []
    for key in sorted(tags_node.data):
        if key in RESERVED_TAG_KEYS:
            _fail(
                f"{tags_node.path}.{key}",
                key,
                f"{' and '.join(RESERVED_TAG_KEYS)} are set by the project (name and stage)",
            )
        if not _TAG_KEY.fullmatch(key) or key.lower().startswith("aws:"):
            _fail(
                tags_node.path,
                key,
                "expected a tag key of 1-128 letters, digits, "
                "spaces or _.:/+@- not starting with aws:",
            )
        tags.append((key, tags_node.string(key, max_len=256)))
    tags_node.done()
    own_tags = MAX_STACK_TAGS - len(RESERVED_TAG_KEYS)
    if len(tags) > own_tags:
        _fail(
            tags_node.path,
            tags_node.data,
            f"expected at most {own_tags} tags (CloudFormation takes {MAX_STACK_TAGS} per stack, "
            f"and the project adds {', '.join(RESERVED_TAG_KEYS)})",
        )
    return Project(
        name=n.string("name", _ALNUM, "letters and digits starting with a letter", 32),
        stage=n.string("stage", _ALNUM, "letters and digits starting with a letter", 16),
        region=n.string("region", _REGION, "an AWS region name such as us-east-1"),
        account=n.string("account", _ACCOUNT, "a 12-digit AWS account id", nullable=True),
        profile=n.string(
            "profile",
            _PROFILE,
            "an AWS profile name (letters, digits and _.+@/-, starting with a letter or digit)",
            64,
            nullable=True,
        ),
        log_retention_days=n.choice("log_retention_days", LOG_RETENTION_DAYS),
        tags=tuple(tags),
    )


def _model_archiving(n: _Node) -> ModelArchiving:
    return ModelArchiving(
        retain_on_delete=n.boolean("retain_on_delete"),
        noncurrent_version_expiry_days=n.integer("noncurrent_version_expiry_days", 1, 3650),
    )


def _autoscaling(n: _Node) -> Autoscaling:
    scaling = Autoscaling(
        enabled=n.boolean("enabled"),
        min_capacity=n.integer("min_capacity", 1, 100),
        max_capacity=n.integer("max_capacity", 1, 100),
        target_invocations_per_instance=n.number("target_invocations_per_instance", 0),
    )
    if scaling.max_capacity < scaling.min_capacity:
        _fail(
            f"{n.path}.max_capacity",
            scaling.max_capacity,
            f"expected an integer >= min_capacity ({scaling.min_capacity})",
        )
    return scaling


def _model(n: _Node) -> Model:
    model = Model(
        name=n.string("name", _ARTIFACT_ID, "a lower-case kebab-case id such as model-a", 32),
        artifact_dir=n.string(
            "artifact_dir",
            _PROJECT_PATH,
            "a directory relative to the project, such as model/model-a (no . or .. parts)",
            200,
        ),
        image_uri=n.string(
            "image_uri",
            ECR_IMAGE,
            "an ECR image URI <account>.dkr.ecr.<region or "
            "${AWS::Region}>.<amazonaws.com or ${AWS::URLSuffix}>/<repository>:<tag>",
            255,
        ),
        variant_name=n.string(
            "variant_name", _SAGEMAKER_NAME, "letters, digits and inner hyphens", 63
        ),
        initial_weight=n.number("initial_weight", 0, MAX_VARIANT_WEIGHT),
        instance_type=n.string(
            "instance_type", _INSTANCE_TYPE, "a SageMaker instance type such as ml.c5.large"
        ),
        instance_count=n.integer("instance_count", 1, 100),
        server_workers=n.integer("server_workers", 1, 64),
        autoscaling=_read(n.node("autoscaling"), _autoscaling),
    )
    if model.autoscaling.enabled and not (
        model.autoscaling.min_capacity <= model.instance_count <= model.autoscaling.max_capacity
    ):
        _fail(
            f"{n.path}.instance_count",
            model.instance_count,
            "expected a count within autoscaling min_capacity..max_capacity "
            f"({model.autoscaling.min_capacity}..{model.autoscaling.max_capacity})",
        )
    return model


def _data_capture(n: _Node) -> DataCapture:
    return DataCapture(
        enabled=n.boolean("enabled"),
        sampling_percentage=n.integer("sampling_percentage", 0, 100),
        prefix=n.string(
            "prefix", _S3_PREFIX, "an S3 key prefix without leading or trailing /", 200
        ),
        capture_json_as_json=n.boolean("capture_json_as_json"),
        expiry_days=n.integer("expiry_days", 1, 3650),
    )


def _guardrail(n: _Node) -> DeploymentGuardrail:
    return DeploymentGuardrail(
        enabled=n.boolean("enabled"),
        # SageMaker's CanarySize: at most 50% of the variant's instances.
        canary_percentage=n.integer("canary_percentage", 1, 50),
        wait_seconds=n.integer("wait_seconds", 0, 3600),
        bake_seconds=n.integer("bake_seconds", 0, 3600),
    )


def _model_serving(n: _Node) -> ModelServing:
    models = [
        (_read(_Node(item, path), _model), path)
        for item, path in n.items("models", 1, MAX_VARIANTS)
    ]
    _unique([(m.name, f"{p}.name") for m, p in models], "model names")
    _unique([(m.variant_name, f"{p}.variant_name") for m, p in models], "variant names")
    for model, path in models:
        if model.variant_name.lower() == NO_ANSWER_VARIANT:
            _fail(
                f"{path}.variant_name",
                model.variant_name,
                f'"{NO_ANSWER_VARIANT}" (in any case) is reserved: the load testers count '
                "requests no variant answered under it",
            )
    # Each variant's alarms (and scaling resources) take its name without hyphens as part of
    # their logical ids: Model-A and ModelA would both make VariantModelA5xxAlarm.
    _unique(
        [(m.variant_name.replace("-", ""), f"{p}.variant_name") for m, p in models],
        "variant names without their hyphens (they name the variant's alarms in the templates)",
    )
    guardrail = _read(n.node("deployment_guardrail"), _guardrail)
    if guardrail.enabled and len(models) > MAX_GUARDED_VARIANTS:
        _fail(
            "model_serving.deployment_guardrail.enabled",
            True,
            f"at most {MAX_GUARDED_VARIANTS} models can have a deployment guardrail (two rollback "
            f"alarms each, and SageMaker takes at most {2 * MAX_GUARDED_VARIANTS}), not "
            f"{len(models)}",
        )
    return ModelServing(
        endpoint_name=n.string(
            "endpoint_name", _SAGEMAKER_NAME, "letters, digits and inner hyphens", 40
        ),
        max_batch_size=n.integer("max_batch_size", 1, MAX_BATCH_SIZE),
        max_text_chars=n.integer("max_text_chars", 1, MAX_TEXT_CHARS),
        models=tuple(m for m, _ in models),
        data_capture=_read(n.node("data_capture"), _data_capture),
        deployment_guardrail=guardrail,
    )


def _api_hosting(n: _Node) -> ApiHosting:
    path, key = n.raw("resource_path")
    if (
        not isinstance(path, str)
        or not path
        or not all(_PATH_PART.fullmatch(p) for p in path.split("/"))
    ):
        _fail(
            key,
            path,
            "expected a resource path such as text or v1/text (letters, digits, ._- "
            "between single slashes, no leading slash, no part of dots alone)",
        )
    throttle_node, quota_node, predictor_node = (
        n.node("throttle"),
        n.node("quota"),
        n.node("predictor"),
    )
    throttle = Throttle(
        rate_limit=throttle_node.number("rate_limit", 0, MAX_API_RATE_LIMIT),
        burst_limit=throttle_node.integer("burst_limit", 1, MAX_API_BURST_LIMIT),
    )
    throttle_node.done()
    quota = Quota(
        limit=quota_node.integer("limit", 1, MAX_QUOTA_LIMIT),
        period=quota_node.choice("period", QUOTA_PERIODS),
    )
    quota_node.done()
    predictor = Predictor(
        memory_mb=predictor_node.integer("memory_mb", 128, 10240),
        timeout_seconds=predictor_node.integer(
            "timeout_seconds", MIN_PREDICTOR_TIMEOUT_S, API_INTEGRATION_TIMEOUT_S - 1
        ),
        reserved_concurrency=predictor_node.integer(
            "reserved_concurrency", 1, MAX_RESERVED_CONCURRENCY
        ),
        log_request_text=predictor_node.boolean("log_request_text"),
    )
    predictor_node.done()
    return ApiHosting(
        resource_path=path,
        auth=n.choice("auth", AUTH_MODES),
        throttle=throttle,
        quota=quota,
        max_body_bytes=n.integer("max_body_bytes", 1, MAX_BODY_BYTES),
        predictor=predictor,
        account_logging_role=n.choice(
            "account_logging_role", ACCOUNT_LOGGING_ROLES, default="create"
        ),
    )


def _monitoring(n: _Node) -> Monitoring:
    period, period_path = n.raw("period_seconds")
    if (
        isinstance(period, bool)
        or not isinstance(period, int)
        or not (60 <= period <= 86400 and period % 60 == 0)
    ):
        # The alarmed metrics (API Gateway, Lambda, SageMaker) have one-minute resolution: a
        # 10 or 30 second alarm finds no data in most periods and so never fires.
        _fail(period_path, period, "expected a multiple of 60 seconds from 60 up to 86400")
    evaluation_periods = n.integer("evaluation_periods", 1, 100)
    window = ALARM_WINDOW_SECONDS if period >= 3600 else SHORT_PERIOD_ALARM_WINDOW_SECONDS
    if period * evaluation_periods > window:
        _fail(
            f"{n.path}.evaluation_periods",
            evaluation_periods,
            f"expected period_seconds * evaluation_periods <= {window} "
            f"(period_seconds is {period}; CloudWatch allows {ALARM_WINDOW_SECONDS} for a period "
            f"of 3600 or more and {SHORT_PERIOD_ALARM_WINDOW_SECONDS} below)",
        )
    a = n.node("alarms")
    alarms = Alarms(
        api_requests_per_period=a.integer("api_requests_per_period", 1),
        api_4xx_per_period=a.integer("api_4xx_per_period", 1),
        api_5xx_per_period=a.integer("api_5xx_per_period", 1),
        model_invocation_errors_per_period=a.integer("model_invocation_errors_per_period", 1),
        model_latency_p99_ms=a.number("model_latency_p99_ms", 0, 60000),
    )
    a.done()
    entries = n.items("subscription_emails", 0, 20)
    emails = [_email(item, path) for item, path in entries]
    _unique(list(zip(emails, (path for _, path in entries))), "subscription e-mails")
    return Monitoring(
        period_seconds=period,
        evaluation_periods=evaluation_periods,
        alarms=alarms,
        subscription_emails=tuple(emails),
    )


def _email(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value) or len(value) > 254:
        _fail(path, value, "expected an e-mail address")
    return value


def _cicd(n: _Node) -> Cicd:
    cicd = Cicd(
        enabled=n.boolean("enabled"),
        connection_arn=n.string(
            "connection_arn", _CONNECTION_ARN, "a CodeConnections connection ARN", nullable=True
        ),
        repository=n.string("repository", _REPOSITORY, "owner/name", 200, nullable=True),
        branch=n.string("branch", _GIT_BRANCH, "a git branch name (git check-ref-format)", 255),
        manual_approval=n.boolean("manual_approval"),
    )
    if cicd.repository and not cicd.connection_arn:
        _fail(
            f"{n.path}.connection_arn", None, "a repository needs a CodeConnections connection ARN"
        )
    if cicd.connection_arn and not cicd.repository:
        _fail(f"{n.path}.repository", None, "a connection ARN needs a repository (owner/name)")
    return cicd


def _case(n: _Node, max_chars: int) -> TestCase:
    return TestCase(
        id=n.string("id", _CASE_ID, "1-64 letters, digits or ._- (used as a metric dimension)"),
        sentence=n.string("sentence", _NOT_BLANK, "text that is not only whitespace", max_chars),
        expected_label=n.choice("expected_label", LABELS),
    )


def _load_test(n: _Node, max_chars: int) -> LoadTest:
    cases = [
        (_read(_Node(item, path), lambda c: _case(c, max_chars)), path)
        for item, path in n.items("cases", 1, 50)
    ]
    _unique([(c.id, f"{p}.id") for c, p in cases], "test case ids")
    load = LoadTest(
        tester_count=n.integer("tester_count", 1, MAX_TESTERS),
        rate_per_second=n.number("rate_per_second", 0, MAX_TESTER_RATE),
        duration_seconds=n.integer("duration_seconds", 1),
        request_timeout_seconds=n.integer("request_timeout_seconds", 1, 60),
        tester_memory_mb=n.integer("tester_memory_mb", 128, 10240, default=256),
        results_expiry_days=n.integer("results_expiry_days", 1, 3650, default=30),
        cases=tuple(c for c, _ in cases),
    )
    if load.tester_timeout_seconds > LAMBDA_MAX_TIMEOUT_S:
        limit = LAMBDA_MAX_TIMEOUT_S - TESTER_MARGIN_S - load.request_timeout_seconds
        _fail(
            f"{n.path}.duration_seconds",
            load.duration_seconds,
            f"expected an integer <= {limit} (duration + request_timeout_seconds + "
            f"{TESTER_MARGIN_S} s "
            f"margin must fit the {LAMBDA_MAX_TIMEOUT_S} s Lambda timeout)",
        )
    # The run make test-load publishes by default must be one the testers accept.
    planned = tester_requests(load.duration_seconds, load.rate_per_second)
    if planned > MAX_TESTER_REQUESTS:
        _fail(
            f"{n.path}.rate_per_second",
            load.rate_per_second,
            f"rate_per_second x duration_seconds is {planned} requests per tester and run; "
            f"a tester sends at most {MAX_TESTER_REQUESTS} (lower either, or add testers)",
        )
    return load


def _screen(data: Any, path: str = "") -> None:
    """Refuse, anywhere in the document, keys that look like secrets (config.json must hold
    none) and text that is not Unicode (a lone surrogate escape such as \\ud800 decodes, but
    no file, command line or AWS API can carry it)."""
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else key
            _unicode(key, sub)
            if _SECRET_HINT.search(key):
                raise ConfigError(
                    f"{sub}: secret-looking keys are not allowed; config.json must hold no "
                    "secrets (use IAM roles or a secrets store)"
                )
            _screen(value, sub)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _screen(item, f"{path}[{i}]")
    elif isinstance(data, str):
        _unicode(data, path)


def _unicode(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{path or 'top level'}: {text!r} is not allowed; expected Unicode text "
            f"(character {exc.start} is a lone surrogate)"
        ) from None


def parse(data: Any) -> Config:
    """Validate a decoded config.json document."""
    _screen(data)
    root = _Node(data, "")
    serving = _read(root.node("model_serving"), _model_serving)
    project = _read(root.node("project"), _project)
    cfg = Config(
        project=project,
        model_archiving=_read(root.node("model_archiving"), _model_archiving),
        model_serving=serving,
        api_hosting=_read(root.node("api_hosting"), _api_hosting),
        monitoring=_read(root.node("monitoring"), _monitoring),
        cicd=_read(root.node("cicd"), _cicd),
        load_test=_read(root.node("load_test"), lambda n: _load_test(n, serving.max_text_chars)),
    )
    root.done()
    prefix = f"{project.name}{project.stage}"
    if cfg.cicd.enabled and len(prefix) > CICD_MAX_PREFIX:
        _fail(
            "project.name",
            project.name,
            f"with cicd.enabled the prefix name + stage ({prefix!r}) must be at most "
            f"{CICD_MAX_PREFIX} characters: CloudFormation-generated names keep only the start "
            "of the stack name, and the pipeline's deploy role is scoped by that prefix",
        )
    for index, model in enumerate(serving.models):
        _check_image_region(f"model_serving.models[{index}].image_uri", model.image_uri, project)
    endpoint = f"{project.name}{project.stage}-{serving.endpoint_name}"
    if len(endpoint) > 63:
        _fail(
            "model_serving.endpoint_name",
            serving.endpoint_name,
            f"the endpoint name {endpoint!r} must be at most 63 characters",
        )
    return cfg


def tester_requests(duration_seconds: float, rate_per_second: float) -> int:
    """Requests one tester sends in a run of that duration and rate (what MAX_TESTER_REQUESTS
    bounds; the tester counts them the same way)."""
    return math.ceil(duration_seconds * rate_per_second)


def _check_image_region(path: str, image_uri: str, project) -> None:
    """SageMaker pulls images only from its own region ("Cross region ECR image pulls are not
    allowed"), named with that region's DNS suffix."""
    parts = ECR_IMAGE.fullmatch(image_uri)
    region, suffix = parts["region"], parts["suffix"]
    if region not in ("${AWS::Region}", project.region):
        _fail(
            path,
            image_uri,
            f"the image's region {region} must be project.region ({project.region}) or "
            "${AWS::Region}: SageMaker pulls no image from another region",
        )
    expected = "amazonaws.com.cn" if project.region.startswith("cn-") else "amazonaws.com"
    if suffix not in ("${AWS::URLSuffix}", expected):
        _fail(
            path,
            image_uri,
            f"the image's domain suffix {suffix} must be {expected} in project.region "
            f"({project.region}) or ${{AWS::URLSuffix}}",
        )


class _JsonObject(dict):
    """A decoded JSON object that remembers the keys it held more than once."""

    duplicate_keys: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        obj.duplicate_keys = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def fingerprint(cfg: Config) -> str:
    """sha256 of the validated configuration: the manifest records what it was generated from."""
    canonical = json.dumps(dataclasses.asdict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load(path: str | Path = DEFAULT_PATH) -> Config:
    """Read and validate a config file; every message starts with the file's path as given."""
    try:
        return parse(_read_json(Path(path)))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ConfigError("not valid JSON for a config: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"not valid JSON for a config: {exc}") from None
