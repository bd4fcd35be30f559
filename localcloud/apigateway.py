"""API Gateway (REST API) data plane: route, authorise, throttle, and run Lambda-proxy integrations.

Requests arrive from :mod:`localcloud.gateway` as
``/restapis/<apiId>/<stage>/_user_request_/<path>``
(the local stage URL, :func:`localcloud.urls.stage_url`). The API's resources, methods,
integrations, stages, usage plans and keys are read from moto's API Gateway backend and
compiled into a routing table per API; the table is rebuilt when any API Gateway call changed
the backend (a generation counter bumped by :func:`install_moto_hooks`), and at least every
``MAX_TABLE_AGE`` seconds, so the hot path makes no moto call and no lookup by scanning.

What API Gateway does and this module does too, in its order:
  unknown stage -> 403 {"message": "Forbidden"}; unknown resource or method -> 403
  {"message": "Missing Authentication Token"}; AWS_IAM without a well-formed SigV4
  Authorization header -> 403; ``apiKeyRequired`` without an enabled key attached through a
  usage plan to this stage -> 403 Forbidden; usage-plan throttling (per key, per method
  override), then quota (429 "Limit Exceeded"), then the stage's method throttling -> 429
  {"message": "Too Many Requests"} (token buckets: rate per second, burst capacity); the
  request body against the method's model -> 400 {"message": "Invalid request body"}
  (:mod:`localcloud.request_validation`); the Lambda-proxy event as API Gateway builds it (REST
  payload format 1.0); the proxy response; a Lambda error or malformed proxy response -> 502
  {"message": "Internal server error"}; no answer within the integration timeout (29 s unless
  lowered) -> 504 {"message": "Endpoint request timed out"}; metrics AWS/ApiGateway (ApiName,
  Stage). Each refusal after the stage check goes through the API's gateway responses (its own
  response type's, else DEFAULT_4XX or DEFAULT_5XX: :mod:`localcloud.gateway_responses`).
Not done: custom/Cognito authorizers, non-proxy integrations, parameter validation, mapping
templates, resource policies, quota ``offset``, account-level throttling (each answers or is
skipped as documented in docs/local-cloud.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from localcloud import metrics, request_validation
from localcloud.gateway_responses import (
    INTEGRATION_FAILURE,
    JSON,
    MISSING_TOKEN,
    THROTTLED,
    TOO_LARGE,
    GatewayResponse,
    Refusal,
    Response,
    compile_gateway_response,
    render_gateway_response,
)
from localcloud.lambdas import (
    ChangeCounter,
    LambdaRuntime,
    PayloadTooLarge,
    Throttled,
    new_request_id,
)

log = logging.getLogger("localcloud.apigateway")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_TABLE_AGE = 5.0

_LAMBDA_URI = re.compile(r":lambda:path/[^/]+/functions/(?P<arn>arn:[^/]+)/invocations")
_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=[^/,\s]+/\d{8}/[a-z0-9-]+/[a-z0-9-]+/aws4_request,\s*"
    r"SignedHeaders=[a-z0-9;-]+,\s*Signature=[0-9a-f]{64}$"
)


API_CHANGES = ChangeCounter(
    "apigateway", {"create", "update", "delete", "put", "import", "tag", "untag", "add", "apply"}
)


def install_moto_hooks() -> None:
    """Count changes to moto's API Gateway state so routing tables know when to rebuild.

    The backend's mutating methods and those of the models it hands out (CloudFormation and
    the compatibility layer call the latter directly) all count.
    """
    from moto.apigateway import models

    API_CHANGES.watch(
        models.APIGatewayBackend,
        models.RestAPI,
        models.Resource,
        models.Stage,
        models.ApiKey,
        models.UsagePlan,
    )


def _pick(mapping: Any, *names: str) -> Any:
    """A value under any spelling moto or CloudFormation uses (``rateLimit``/``RateLimit``)."""
    if not isinstance(mapping, dict):
        return None
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]
    return None


def _error(status: int, message: str, error_type: str) -> Response:
    """An answer before any deployment's gateway responses can apply (no such API or stage)."""
    return render_gateway_response({}, Refusal(status, message, error_type), {})


# -- throttling ----------------------------------------------------------------------------------


class TokenBucket:
    """API Gateway's throttle: ``burst`` tokens of capacity, refilled at ``rate`` per second."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _throttle_of(settings: Any) -> tuple[float, float] | None:
    rate = _pick(settings, "rateLimit", "RateLimit", "throttlingRateLimit", "ThrottlingRateLimit")
    burst = _pick(
        settings, "burstLimit", "BurstLimit", "throttlingBurstLimit", "ThrottlingBurstLimit"
    )
    if rate is None and burst is None:
        return None
    rate = float(rate if rate is not None else burst)
    return rate, float(burst if burst is not None else max(1.0, rate))


def _quota_window(period: str, now: datetime) -> str:
    if period == "WEEK":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week}"
    if period == "MONTH":
        return now.strftime("%Y-%m")
    return now.strftime("%Y-%m-%d")


# -- compiled routing table ---------------------------------------------------------------------


@dataclass
class MethodRoute:
    resource_id: str
    resource_path: str  # the template, e.g. /items/{id}
    http_method: str  # as defined (may be ANY)
    authorization: str
    api_key_required: bool
    integration_type: str | None
    function_arn: str | None  # AWS_PROXY to Lambda, with stage variables still in it
    timeout_s: float  # the integration timeout (API Gateway: 29 s unless lowered)
    body_validators: dict[str, Any]  # content type -> schema validator (request_validation)


@dataclass
class Node:
    literal: dict[str, "Node"] = field(default_factory=dict)
    param: tuple[str, "Node"] | None = None
    greedy: tuple[str, "Node"] | None = None
    methods: dict[str, MethodRoute] = field(default_factory=dict)


@dataclass
class KeyGrant:
    plan_id: str
    key_id: str
    throttle: tuple[float, float] | None
    method_throttles: dict[str, tuple[float, float]]  # "<resourcePath>/<METHOD>" -> limits
    quota: tuple[int, str] | None


@dataclass
class StageRoute:
    name: str
    variables: dict[str, str]
    method_throttles: dict[tuple[str, str], tuple[float, float]]  # (path or *, method or *)
    keys: dict[str, list[KeyGrant]]  # key value -> grants (enabled keys only)


@dataclass
class CompiledApi:
    api_id: str
    name: str
    account_id: str
    region: str
    root: Node
    stages: dict[str, StageRoute]
    binary_types: list[str]
    gateway_responses: dict[str, GatewayResponse]
    built_at: float
    generation: int

    def match(self, path: str, method: str) -> tuple[MethodRoute | None, dict[str, str]]:
        segments = [s for s in path.split("/") if s]
        found = _match(self.root, segments, {})
        if found is None:
            return None, {}
        node, params = found
        route = node.methods.get(method) or node.methods.get("ANY")
        return route, params


def _match(node: Node, segments: list[str], params: dict[str, str]) -> tuple[Node, dict] | None:
    if not segments:
        return node, params
    head, rest = segments[0], segments[1:]
    child = node.literal.get(head)
    if child is not None:
        found = _match(child, rest, params)
        if found is not None and found[0].methods:
            return found
    if node.param is not None:
        name, child = node.param
        found = _match(child, rest, {**params, name: head})
        if found is not None and found[0].methods:
            return found
    if node.greedy is not None:
        name, child = node.greedy
        return child, {**params, name: "/".join(segments)}
    return None


def _compile(backend: Any, api: Any) -> CompiledApi:
    generation = API_CHANGES.value  # before reading, so a concurrent change forces a rebuild
    resources = api.resources
    paths: dict[str, list[str]] = {}

    def parts_of(resource_id: str) -> list[str]:
        if resource_id not in paths:
            resource = resources[resource_id]
            parent = resource.parent_id
            paths[resource_id] = (parts_of(parent) if parent in resources else []) + (
                [] if resource.path_part in ("/", "") else [resource.path_part]
            )
        return paths[resource_id]

    root = Node()
    for resource_id, resource in resources.items():
        node = root
        for part in parts_of(resource_id):
            if part.startswith("{") and part.endswith("+}"):
                if node.greedy is None:
                    node.greedy = (part[1:-2], Node())
                node = node.greedy[1]
            elif part.startswith("{") and part.endswith("}"):
                if node.param is None:
                    node.param = (part[1:-1], Node())
                node = node.param[1]
            else:
                node = node.literal.setdefault(part, Node())
        template = "/" + "/".join(parts_of(resource_id))
        for http_method, method in resource.resource_methods.items():
            integration = method.method_integration
            uri = getattr(integration, "uri", None) or ""
            found = _LAMBDA_URI.search(uri)
            node.methods[http_method.upper()] = MethodRoute(
                resource_id=resource_id,
                resource_path=template,
                http_method=http_method.upper(),
                authorization=(method.authorization_type or "NONE").upper(),
                api_key_required=bool(method.api_key_required),
                integration_type=getattr(integration, "integration_type", None),
                function_arn=found.group("arn") if found else None,
                timeout_s=int(getattr(integration, "timeout_in_millis", None) or 29000) / 1000,
                body_validators=request_validation.body_validators(api, method),
            )

    stages = {name: _compile_stage(backend, api, stage) for name, stage in api.stages.items()}
    return CompiledApi(
        api_id=api.id,
        name=api.name,
        account_id=backend.account_id,
        region=backend.region_name,
        root=root,
        stages=stages,
        binary_types=list(getattr(api, "binaryMediaTypes", None) or []),
        gateway_responses={
            response_type: compile_gateway_response(response)
            for response_type, response in (getattr(api, "gateway_responses", None) or {}).items()
        },
        built_at=time.monotonic(),
        generation=generation,
    )


def _compile_stage(backend: Any, api: Any, stage: Any) -> StageRoute:
    method_throttles = {}
    for key, settings in (getattr(stage, "method_settings", None) or {}).items():
        limits = _throttle_of(settings)
        if limits is None or "/" not in key:
            continue
        path, method = key.rsplit("/", 1)
        path = path.replace("~1", "/")
        method_throttles[(path if path == "*" else "/" + path.lstrip("/"), method.upper())] = limits

    keys: dict[str, list[KeyGrant]] = {}
    for plan_id, plan in backend.usage_plans.items():
        stage_entry = next(
            (
                entry
                for entry in plan.api_stages
                if _pick(entry, "apiId", "ApiId") == api.id
                and _pick(entry, "stage", "Stage") == stage.name
            ),
            None,
        )
        if stage_entry is None:
            continue
        per_method = {}
        for method_key, limits in (_pick(stage_entry, "throttle", "Throttle") or {}).items():
            parsed = _throttle_of(limits)
            if parsed is not None:
                per_method["/" + method_key.lstrip("/")] = parsed
        quota = plan.quota or {}
        limit = _pick(quota, "limit", "Limit")
        grant_quota = (
            (int(limit), str(_pick(quota, "period", "Period") or "DAY")) if limit else None
        )
        for key_id in backend.usage_plan_keys.get(plan_id, {}):
            api_key = backend.keys.get(key_id)
            if api_key is None or not _enabled(api_key.enabled):
                continue
            keys.setdefault(api_key.value, []).append(
                KeyGrant(plan_id, key_id, _throttle_of(plan.throttle), per_method, grant_quota)
            )
    return StageRoute(stage.name, dict(stage.variables or {}), method_throttles, keys)


def _enabled(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# -- the data plane -----------------------------------------------------------------------------


class ApiGatewayDataPlane:
    def __init__(self, runtime: LambdaRuntime) -> None:
        self.runtime = runtime
        self._apis: dict[str, CompiledApi] = {}
        self._buckets: dict[tuple, TokenBucket] = {}
        self._quotas: dict[tuple, list] = {}

    def api(self, api_id: str) -> CompiledApi | None:
        compiled = self._apis.get(api_id)
        if (
            compiled is not None
            and compiled.generation == API_CHANGES.value
            and time.monotonic() - compiled.built_at < MAX_TABLE_AGE
        ):
            return compiled
        from moto.apigateway.models import apigateway_backends

        for by_region in list(apigateway_backends.values()):
            for backend in list(by_region.values()):
                api = backend.apis.get(api_id)
                if api is not None:
                    compiled = self._apis[api_id] = _compile(backend, api)
                    return compiled
        self._apis.pop(api_id, None)
        return None

    async def handle(
        self,
        method: str,
        api_id: str,
        stage_name: str,
        path: str,
        query_string: bytes,
        headers: list[tuple[str, str]],
        body: bytes | None,
        source_ip: str,
    ) -> Response:
        """One request to a stage; ``body`` None stands for one over the 10 MB limit."""
        api = self.api(api_id)
        if api is None:
            return _error(404, "Not Found", "NotFoundException")
        stage = api.stages.get(stage_name)
        if stage is None:
            return _error(403, "Forbidden", "ForbiddenException")
        started = time.perf_counter()
        request_id = new_request_id()
        if body is None:
            answer, integration_ms = TOO_LARGE, None
        else:
            answer, integration_ms = await self._serve(
                api, stage, method, path, query_string, headers, body, source_ip, request_id
            )
        if isinstance(answer, Refusal):
            context = {"requestId": request_id, "apiId": api.api_id, "stage": stage.name}
            answer = render_gateway_response(api.gateway_responses, answer, context)
        status, out_headers, out_body = answer
        latency_ms = (time.perf_counter() - started) * 1000
        values = [
            ("Count", 1, "Count"),
            ("4XXError", 1 if 400 <= status < 500 else 0, "Count"),
            ("5XXError", 1 if status >= 500 else 0, "Count"),
            ("Latency", latency_ms, "Milliseconds"),
        ]
        if integration_ms is not None:
            values.append(("IntegrationLatency", integration_ms, "Milliseconds"))
        metrics.record_many("AWS/ApiGateway", {"ApiName": api.name, "Stage": stage.name}, values)
        return status, out_headers, out_body

    async def _serve(
        self,
        api: CompiledApi,
        stage: StageRoute,
        method: str,
        path: str,
        query_string: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
    ) -> tuple[Response | Refusal, float | None]:
        """The answer, and the integration's latency when the function was called."""
        route, path_params = api.match(path, method)
        if route is None:
            return MISSING_TOKEN, None
        header_map = {name.lower(): value for name, value in headers}

        caller = None
        if route.authorization == "AWS_IAM":
            authorization = header_map.get("authorization")
            if authorization is None:
                return MISSING_TOKEN, None
            if not _SIGV4.match(authorization) or not (
                header_map.get("x-amz-date") or header_map.get("date")
            ):
                message = "Authorization header is not a valid AWS Signature Version 4 header"
                return Refusal(403, message, "IncompleteSignatureException"), None
            caller = authorization.split("Credential=", 1)[1].split("/", 1)[0]
        elif route.authorization != "NONE":
            log.error("authorizer type %s is not served locally", route.authorization)
            return Refusal(500, "Internal server error", "AuthorizerConfigurationException"), None

        grant = None
        api_key = header_map.get("x-api-key")
        if route.api_key_required:
            grants = stage.keys.get(api_key or "")
            if not grants:
                # AWS names a type for a key that is not valid here, none for a missing one.
                response_type = "INVALID_API_KEY" if api_key is not None else None
                return Refusal(403, "Forbidden", "ForbiddenException", response_type), None
            grant = grants[0]
            refusal = self._usage_plan_admits(grant, route)
            if refusal is not None:
                return refusal, None
        if not self._stage_admits(api, stage, route):
            return THROTTLED, None
        if route.body_validators:
            refusal = request_validation.refusal_of(
                route.body_validators, header_map.get("content-type", ""), body
            )
            if refusal is not None:
                return refusal, None

        if route.integration_type != "AWS_PROXY" or route.function_arn is None:
            log.error(
                "%s %s on API %s: integration %s is not served locally "
                "(only Lambda proxy integrations are)",
                route.http_method,
                route.resource_path,
                api.api_id,
                route.integration_type,
            )
            return INTEGRATION_FAILURE, None
        fn = self._function(api, stage, route)
        if fn is None:
            return INTEGRATION_FAILURE, None

        event = self.proxy_event(
            api,
            stage,
            route,
            method,
            path,
            path_params,
            query_string,
            headers,
            body,
            source_ip,
            request_id,
            api_key if grant else None,
            grant.key_id if grant else None,
            caller,
        )
        started = time.perf_counter()
        invocation = self.runtime.invoke(fn, json.dumps(event).encode())
        try:
            if float(fn.timeout or 3) > route.timeout_s:
                result = await asyncio.wait_for(invocation, route.timeout_s)
            else:  # the function's own timeout ends it first: no timer needed
                result = await invocation
        except asyncio.TimeoutError:
            timed_out = Refusal(
                504, "Endpoint request timed out", "IntegrationTimeout", "INTEGRATION_TIMEOUT"
            )
            return timed_out, route.timeout_s * 1000
        except Throttled:
            return INTEGRATION_FAILURE, None
        except PayloadTooLarge as exc:  # the body fits API Gateway's 10 MB, not Lambda's 6 MB
            log.warning("API %s %s %s: Lambda %s: %s", api.api_id, method, path,
                        fn.function_name, exc)
            return INTEGRATION_FAILURE, None
        integration_ms = (time.perf_counter() - started) * 1000
        response = None if result.error_type is not None else _proxy_response(result.payload)
        if response is None:
            problem = (
                "failed" if result.error_type is not None else "gave a malformed proxy response"
            )
            log.warning(
                "API %s %s %s: Lambda %s %s: %s",
                api.api_id,
                method,
                path,
                fn.function_name,
                problem,
                result.payload[:500].decode(errors="replace"),
            )
            failed = Refusal(502, "Internal server error", "InternalServerErrorException")
            return failed, integration_ms
        response[1].append(("x-amzn-requestid", request_id))
        return response, integration_ms

    def _usage_plan_admits(self, grant: KeyGrant, route: MethodRoute) -> Refusal | None:
        limits = (
            grant.method_throttles.get(f"{route.resource_path}/{route.http_method}")
            or grant.throttle
        )
        if (
            limits is not None
            and not self._bucket(("plan", grant.plan_id, grant.key_id, limits), limits).take()
        ):
            return THROTTLED
        if grant.quota is not None:
            limit, period = grant.quota
            window = _quota_window(period, datetime.now(timezone.utc))
            key = (grant.plan_id, grant.key_id)
            used = self._quotas.get(key)
            if used is None or used[0] != window:
                used = self._quotas[key] = [window, 0]
            if used[1] >= limit:
                return Refusal(429, "Limit Exceeded", "LimitExceededException", "QUOTA_EXCEEDED")
            used[1] += 1
        return None

    def _stage_admits(self, api: CompiledApi, stage: StageRoute, route: MethodRoute) -> bool:
        throttles = stage.method_throttles
        limits = (
            throttles.get((route.resource_path, route.http_method))
            or throttles.get((route.resource_path, "*"))
            or throttles.get(("*", "*"))
        )
        if limits is None:
            return True
        key = ("stage", api.api_id, stage.name, route.resource_path, route.http_method, limits)
        return self._bucket(key, limits).take()

    def _bucket(self, key: tuple, limits: tuple[float, float]) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(*limits)
        return bucket

    def _function(self, api: CompiledApi, stage: StageRoute, route: MethodRoute) -> Any:
        arn = route.function_arn
        for name, value in stage.variables.items():
            arn = arn.replace("${stageVariables.%s}" % name, value)
        try:
            return self.runtime.function(arn)
        except LookupError as exc:
            log.error(
                "API %s %s %s: integration function %s: %s",
                api.api_id,
                route.http_method,
                route.resource_path,
                arn,
                exc,
            )
            return None

    @staticmethod
    def proxy_event(
        api: CompiledApi,
        stage: StageRoute,
        route: MethodRoute,
        method: str,
        path: str,
        path_params: dict[str, str],
        query_string: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
        api_key: str | None,
        api_key_id: str | None,
        caller: str | None,
    ) -> dict:
        """The Lambda-proxy event (payload format 1.0) for one request."""
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            name = _canonical_header(name)
            single[name] = value
            multi.setdefault(name, []).append(value)
        query_single: dict[str, str] = {}
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)
        content_type = single.get("Content-Type", "")
        body_text, is_base64 = _event_body(body, content_type, api.binary_types)
        now = time.time()
        domain = f"{api.api_id}.execute-api.{api.region}.amazonaws.com"
        return {
            "resource": route.resource_path,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": path_params or None,
            "stageVariables": stage.variables or None,
            "requestContext": {
                "resourceId": route.resource_id,
                "resourcePath": route.resource_path,
                "httpMethod": method,
                "extendedRequestId": request_id,
                "requestTime": _request_time_text(now),
                "path": f"/{stage.name}{path}",
                "accountId": api.account_id,
                "protocol": "HTTP/1.1",
                "stage": stage.name,
                "domainPrefix": api.api_id,
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": api.account_id if caller else None,
                    "cognitoIdentityId": None,
                    "caller": caller,
                    "apiKey": api_key,
                    "apiKeyId": api_key_id,
                    "sourceIp": source_ip,
                    "principalOrgId": None,
                    "accessKey": caller,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": f"arn:aws:iam::{api.account_id}:user/local" if caller else None,
                    "userAgent": single.get("User-Agent"),
                    "user": caller,
                },
                "domainName": domain,
                "apiId": api.api_id,
            },
            "body": body_text,
            "isBase64Encoded": is_base64,
        }


_CANONICAL_NAMES: dict[str, str] = {}


def _canonical_header(name: str) -> str:
    """HTTP/1.1 servers hand names over lowercased; API Gateway passes the client's spelling,
    which for the usual clients is this capitalisation (Content-Type, X-Api-Key)."""
    canonical = _CANONICAL_NAMES.get(name)
    if canonical is None:
        canonical = "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
        if len(_CANONICAL_NAMES) < 4096:  # clients may invent names; keep the cache bounded
            _CANONICAL_NAMES[name] = canonical
    return canonical


_request_time: tuple[int, str] = (0, "")


def _request_time_text(epoch: float) -> str:
    """``requestTime`` (``24/Nov/2026:01:30:00 +0000``), formatted once per second."""
    global _request_time
    second = int(epoch)
    if _request_time[0] != second:
        stamp = datetime.fromtimestamp(second, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
        _request_time = (second, stamp)
    return _request_time[1]


def _event_body(body: bytes, content_type: str, binary_types: list[str]) -> tuple[str | None, bool]:
    if not body:
        return None, False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if any(_media_matches(pattern, media_type) for pattern in binary_types):
        return base64.b64encode(body).decode(), True
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def _media_matches(pattern: str, media_type: str) -> bool:
    pattern = pattern.replace("~1", "/").lower()
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return media_type.startswith(pattern[:-1])
    return pattern == media_type


def _proxy_response(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Validate a Lambda-proxy response as API Gateway does; None when it is malformed."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    status = document.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    headers = document.get("headers") or {}
    multi = document.get("multiValueHeaders") or {}
    body = document.get("body")
    is_base64 = document.get("isBase64Encoded", False)
    if not isinstance(headers, dict) or not isinstance(multi, dict):
        return None
    if body is not None and not isinstance(body, str) or not isinstance(is_base64, bool):
        return None
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        if isinstance(value, (dict, list)):
            return None
        if name not in multi:
            out.append((name, _header_text(value)))
    for name, values in multi.items():
        if not isinstance(values, list) or any(isinstance(v, (dict, list)) for v in values):
            return None
        out.extend((name, _header_text(v)) for v in values)
    if not any(name.lower() == "content-type" for name, _ in out):
        out.append(("content-type", JSON))
    if body is None:
        return status, out, b""
    if is_base64:
        try:
            return status, out, base64.b64decode(body, validate=True)
        except ValueError:
            return None
    return status, out, body.encode()


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
