import asyncio
import base64
import http.client
import json
import logging
import re
import time
import uuid
from types import SimpleNamespace

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from localcloud import metrics, request_validation
from localcloud.apigateway import ApiGatewayDataPlane, TokenBucket, install_moto_hooks
from localcloud.lambdas import SYNC_PAYLOAD_LIMIT

from .conftest import REGION

ECHO = """
    import base64, json, time
    def handler(event, context):
        mode = (event.get("queryStringParameters") or {}).get("mode")
        if mode == "slow":
            time.sleep(5)
        if mode == "raise":
            raise RuntimeError("handler failed")
        if mode == "malformed":
            return {"statusCode": "two hundred", "body": "x"}
        if mode == "binary":
            return {"statusCode": 201, "isBase64Encoded": True,
                    "body": base64.b64encode(b"\\x00\\x01").decode(),
                    "headers": {"Content-Type": "application/octet-stream"},
                    "multiValueHeaders": {"X-Multi": ["a", "b"]}}
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                "body": json.dumps(event)}
"""


JSON_TYPE = "application/json"


@pytest.fixture
def apigw(aws):
    install_moto_hooks()
    return boto3.client("apigateway", region_name=REGION)


@pytest.fixture
def plane(runtime):
    return ApiGatewayDataPlane(runtime)


@pytest.fixture
def echo_arn(create_function):
    return create_function("echo", ECHO, timeout=10).function_arn


def make_api(
    apigw,
    function_arn,
    *,
    auth="NONE",
    key_required=False,
    parts=("text",),
    method="POST",
    timeout_ms=29000,
    body_schema=None,
    validate_body=True,
    model_types=("application/json",),
    api_id=None,
):
    """A REST API with one Lambda-proxy method on /<parts...>, deployed to stage ``prod``;
    with ``body_schema``, a request validator and that model for ``model_types``."""
    api = api_id or apigw.create_rest_api(name="demo-api")["id"]
    parent = apigw.get_resources(restApiId=api)["items"][0]["id"]
    for part in parts:
        parent = apigw.create_resource(restApiId=api, parentId=parent, pathPart=part)["id"]
    validation = {}
    if body_schema is not None:
        apigw.create_model(
            restApiId=api, name="Req", contentType=JSON_TYPE, schema=json.dumps(body_schema)
        )
        validator = apigw.create_request_validator(
            restApiId=api,
            name="body",
            validateRequestBody=validate_body,
            validateRequestParameters=False,
        )
        validation = {
            "requestValidatorId": validator["id"],
            "requestModels": {content_type: "Req" for content_type in model_types},
        }
    apigw.put_method(
        restApiId=api,
        resourceId=parent,
        httpMethod=method,
        authorizationType=auth,
        apiKeyRequired=key_required,
        **validation,
    )
    apigw.put_integration(
        restApiId=api,
        resourceId=parent,
        httpMethod=method,
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
        f"{function_arn}/invocations",
        timeoutInMillis=timeout_ms,
    )
    apigw.create_deployment(restApiId=api, stageName="prod")
    return api


def attach_key(apigw, api, *, enabled=True, throttle=None, quota=None, stage="prod"):
    key = apigw.create_api_key(name="k", enabled=enabled)
    plan_args = {"name": "plan", "apiStages": [{"apiId": api, "stage": stage}]}
    if throttle:
        plan_args["throttle"] = throttle
    if quota:
        plan_args["quota"] = quota
    plan = apigw.create_usage_plan(**plan_args)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return key["value"]


def call(
    loop_thread,
    plane,
    api,
    path="/text",
    method="POST",
    headers=(),
    body=b"{}",
    query=b"",
    stage="prod",
):
    status, out_headers, out = loop_thread.run(
        plane.handle(method, api, stage, path, query, list(headers), body, "127.0.0.1")
    )
    return status, dict((k.lower(), v) for k, v in out_headers), out


def message(body: bytes) -> str:
    return json.loads(body)["message"]


def test_api_key_required(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, key_required=True)
    good = attach_key(apigw, api)
    disabled = attach_key(apigw, api, enabled=False)
    other_stage = attach_key(apigw, api, stage="other")

    for headers in (
        [],
        [("x-api-key", "wrong")],
        [("x-api-key", disabled)],
        [("x-api-key", other_stage)],
    ):
        status, _, body = call(loop_thread, plane, api, headers=headers)
        assert (status, message(body)) == (403, "Forbidden"), headers
    status, _, body = call(loop_thread, plane, api, headers=[("x-api-key", good)])
    assert status == 200
    identity = json.loads(body)["requestContext"]["identity"]
    assert identity["apiKey"] == good and identity["apiKeyId"]


def test_key_changes_are_seen_at_once(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, key_required=True)
    key = attach_key(apigw, api)
    assert call(loop_thread, plane, api, headers=[("x-api-key", key)])[0] == 200
    key_id = apigw.get_api_keys()["items"][0]["id"]
    apigw.update_api_key(
        apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    assert call(loop_thread, plane, api, headers=[("x-api-key", key)])[0] == 403


def test_usage_plan_throttle_gives_429(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, key_required=True)
    key = attach_key(apigw, api, throttle={"rateLimit": 0.01, "burstLimit": 2})
    statuses = [call(loop_thread, plane, api, headers=[("x-api-key", key)])[0] for _ in range(3)]
    assert statuses[:2] == [200, 200]
    status, headers, body = call(loop_thread, plane, api, headers=[("x-api-key", key)])
    assert (status, message(body)) == (429, "Too Many Requests")


def test_quota_gives_limit_exceeded(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, key_required=True)
    key = attach_key(apigw, api, quota={"limit": 2, "period": "DAY"})
    assert [call(loop_thread, plane, api, headers=[("x-api-key", key)])[0] for _ in range(2)] == [
        200,
        200,
    ]
    status, _, body = call(loop_thread, plane, api, headers=[("x-api-key", key)])
    assert (status, message(body)) == (429, "Limit Exceeded")


def test_stage_method_throttle_gives_429(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    apigw.update_stage(
        restApiId=api,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "0.01"},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "1"},
        ],
    )
    assert call(loop_thread, plane, api)[0] == 200
    status, _, body = call(loop_thread, plane, api)
    assert (status, message(body)) == (429, "Too Many Requests")


def test_unknown_routes(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    assert call(loop_thread, plane, api, path="/nope")[:1] == (403,)
    assert message(call(loop_thread, plane, api, path="/nope")[2]) == "Missing Authentication Token"
    assert message(call(loop_thread, plane, api, method="GET")[2]) == "Missing Authentication Token"
    status, _, body = call(loop_thread, plane, api, stage="nostage")
    assert (status, message(body)) == (403, "Forbidden")
    status, _, body = call(loop_thread, plane, "noapi")
    assert status == 404


def test_proxy_event_shape(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, parts=("items", "{id}", "{rest+}"), method="ANY")
    status, headers, body = call(
        loop_thread,
        plane,
        api,
        path="/items/42/a/b",
        method="PUT",
        headers=[
            ("content-type", "application/json"),
            ("x-multi", "1"),
            ("x-multi", "2"),
            ("user-agent", "tests"),
        ],
        body=b'{"sentence": "hi"}',
        query=b"q=1&q=2&single=x",
    )
    assert status == 200 and headers["content-type"] == "application/json"
    event = json.loads(body)
    assert event["resource"] == "/items/{id}/{rest+}"
    assert event["path"] == "/items/42/a/b"
    assert event["httpMethod"] == "PUT"
    assert event["pathParameters"] == {"id": "42", "rest": "a/b"}
    assert event["queryStringParameters"] == {"q": "2", "single": "x"}
    assert event["multiValueQueryStringParameters"] == {"q": ["1", "2"], "single": ["x"]}
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["body"] == '{"sentence": "hi"}' and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    ctx = event["requestContext"]
    assert ctx["stage"] == "prod" and ctx["apiId"] == api
    assert ctx["resourcePath"] == "/items/{id}/{rest+}" and ctx["httpMethod"] == "PUT"
    assert ctx["path"] == "/prod/items/42/a/b" and ctx["requestId"]
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "tests"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", ctx["requestTime"])
    assert abs(ctx["requestTimeEpoch"] / 1000 - time.time()) < 60


def test_binary_and_multi_value_response(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    status, _, body = call(loop_thread, plane, api, query=b"mode=binary")
    assert (status, body) == (201, b"\x00\x01")
    _, out_headers, _ = loop_thread.run(
        plane.handle("POST", api, "prod", "/text", b"mode=binary", [], b"", "127.0.0.1")
    )
    assert [v for k, v in out_headers if k == "X-Multi"] == ["a", "b"]


def test_lambda_error_and_malformed_response_give_502(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    for mode in (b"mode=raise", b"mode=malformed"):
        status, _, body = call(loop_thread, plane, api, query=mode)
        assert (status, message(body)) == (502, "Internal server error"), mode


def test_a_body_over_lambdas_6_mb_gives_500_without_running_the_function(
    loop_thread, plane, apigw, echo_arn, caplog
):
    api = make_api(apigw, echo_arn)
    body = b"x" * SYNC_PAYLOAD_LIMIT  # fits API Gateway's 10 MB; the event around it does not
    with caplog.at_level(logging.WARNING, logger="localcloud.apigateway"):
        status, _, out = call(loop_thread, plane, api, body=body)
    assert (status, message(out)) == (500, "Internal server error")
    assert "byte payload is too large for the RequestResponse invocation type" in caplog.text


def test_integration_timeout_gives_504(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, timeout_ms=300)
    status, _, body = call(loop_thread, plane, api, query=b"mode=slow")
    assert (status, message(body)) == (504, "Endpoint request timed out")
    assert call(loop_thread, plane, api)[0] == 200  # a fresh worker serves the next request


def _signed_headers(url: str) -> list[tuple[str, str]]:
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=b"{}")
    botocore.auth.SigV4Auth(
        botocore.credentials.Credentials("AKIDLOCAL", "secret"), "execute-api", REGION
    ).add_auth(request)
    return [(k.lower(), v) for k, v in request.headers.items()]


def test_iam_auth_needs_a_well_formed_signature(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, auth="AWS_IAM")
    status, _, body = call(loop_thread, plane, api)
    assert (status, message(body)) == (403, "Missing Authentication Token")
    status, _, _ = call(loop_thread, plane, api, headers=[("authorization", "Bearer abc")])
    assert status == 403
    signed = _signed_headers(f"https://{api}.execute-api.{REGION}.amazonaws.com/prod/text")
    status, _, body = call(loop_thread, plane, api, headers=signed)
    assert status == 200
    assert json.loads(body)["requestContext"]["identity"]["caller"] == "AKIDLOCAL"


def test_metrics_are_recorded(loop_thread, plane, apigw, echo_arn, monkeypatch):
    api = make_api(apigw, echo_arn)
    monkeypatch.setattr(metrics, "SINK", metrics.MetricsSink())  # nothing from earlier tests
    call(loop_thread, plane, api)
    call(loop_thread, plane, api, path="/nope")
    call(loop_thread, plane, api, query=b"mode=raise")
    metrics.SINK.flush()

    cloudwatch = boto3.client("cloudwatch", region_name=REGION)

    def total(name, namespace="AWS/ApiGateway", dims=(("ApiName", "demo-api"), ("Stage", "prod"))):
        import datetime

        now = datetime.datetime.now(datetime.timezone.utc)
        points = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=[{"Name": k, "Value": v} for k, v in dims],
            StartTime=now - datetime.timedelta(minutes=5),
            EndTime=now + datetime.timedelta(minutes=1),
            Period=60,
            Statistics=["Sum", "SampleCount"],
        )["Datapoints"]
        return sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points)

    assert total("Count") == (3, 3)
    assert total("4XXError")[0] == 1 and total("5XXError")[0] == 1
    assert total("Latency")[1] == 3 and total("IntegrationLatency")[1] == 2
    fn_dims = (("FunctionName", "echo"),)
    assert total("Invocations", "AWS/Lambda", fn_dims)[0] == 2
    assert total("Errors", "AWS/Lambda", fn_dims)[0] == 1


def test_token_bucket_refills_at_the_rate():
    bucket = TokenBucket(rate=1000.0, burst=1.0)
    assert bucket.take() and not bucket.take()
    bucket.stamp -= 0.002  # 2 ms later: refilled, but never above the burst capacity
    assert bucket.take() and not bucket.take()


# -- over HTTP, through the gateway server ---------------------------------------------------------


class FakeSageMaker:
    def __init__(self):
        self.calls = []

    async def handle(self, method, path, headers, body):
        self.calls.append((method, path, headers.get("content-type"), body))
        return (
            200,
            {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": "A"},
            b"{}",
        )


@pytest.fixture
def gateway_port(loop_thread, plane):
    from localcloud import gateway

    sock = gateway.listening_socket("127.0.0.1", 0)
    sagemaker = FakeSageMaker()
    server = gateway.make_server(gateway.Gateway(plane, sagemaker))
    task = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop_thread.loop)
    port = sock.getsockname()[1]
    yield port, sagemaker
    server.should_exit = True
    task.result(10)


def test_gateway_routes_over_keep_alive_http(gateway_port, apigw, echo_arn):
    port, sagemaker = gateway_port
    api = make_api(apigw, echo_arn)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        f"/restapis/{api}/prod/_user_request_/text?a=1",
        body=b'{"x": 1}',
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    event = json.loads(resp.read())
    assert resp.status == 200 and event["queryStringParameters"] == {"a": "1"}
    assert resp.getheader("x-amzn-RequestId")

    conn.request("GET", "/elsewhere")  # same connection: keep-alive
    resp = conn.getresponse()
    assert resp.status == 404 and json.loads(resp.read()) == {"message": "Not Found"}

    conn.request(
        "POST", "/endpoints/ep/invocations", body=b"abc", headers={"Content-Type": "text/csv"}
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("x-Amzn-Invoked-Production-Variant") == "A"
    resp.read()
    assert sagemaker.calls == [("POST", "/endpoints/ep/invocations", "text/csv", b"abc")]

    conn.request("GET", "/_localcloud/health")
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
    conn.close()


def test_gateway_refuses_bodies_over_10_mb(gateway_port, apigw, echo_arn):
    port, _ = gateway_port
    api = make_api(apigw, echo_arn)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", f"/restapis/{api}/prod/_user_request_/text")
    conn.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read()) == {"message": "Request Too Long"}
    conn.close()


def test_base64_body_for_binary_media_types(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    apigw.update_rest_api(
        restApiId=api, patchOperations=[{"op": "add", "path": "/binaryMediaTypes/image~1png"}]
    )
    status, _, body = call(
        loop_thread, plane, api, headers=[("content-type", "image/png")], body=b"\x89PNG"
    )
    event = json.loads(body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x89PNG"


# -- gateway responses ---------------------------------------------------------------------------

SHAPED = '{"id":"$context.requestId","type":"$context.error.responseType","text":%s}'


def shape(apigw, api, response_type, text="$context.error.messageString", **extra):
    apigw.put_gateway_response(
        restApiId=api,
        responseType=response_type,
        responseTemplates={"application/json": SHAPED % text},
        **extra,
    )


def test_gateway_responses_reshape_api_gateways_own_refusals(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, key_required=True)
    key = attach_key(apigw, api, throttle={"rateLimit": 0.01, "burstLimit": 1})
    shape(
        apigw,
        api,
        "THROTTLED",
        responseParameters={"gatewayresponse.header.Retry-After": "'1'"},
    )
    shape(apigw, api, "DEFAULT_4XX")
    shape(apigw, api, "DEFAULT_5XX", text='"$context.error.message"')

    # its own response type's
    assert call(loop_thread, plane, api, headers=[("x-api-key", key)])[0] == 200
    status, headers, body = call(loop_thread, plane, api, headers=[("x-api-key", key)])
    answer = json.loads(body)
    assert (status, answer["type"], answer["text"]) == (429, "THROTTLED", "Too Many Requests")
    assert answer["id"] == headers["x-amzn-requestid"] and headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"

    # a 4xx without a response of its own type takes DEFAULT_4XX, and keeps its status
    status, headers, body = call(loop_thread, plane, api, headers=[("x-api-key", "wrong")])
    answer = json.loads(body)
    assert (status, answer["type"], answer["text"]) == (403, "INVALID_API_KEY", "Forbidden")
    assert "retry-after" not in headers
    status, _, body = call(loop_thread, plane, api)  # no key at all: AWS names no type
    assert (status, json.loads(body)["type"]) == (403, "DEFAULT_4XX")
    status, _, body = call(loop_thread, plane, api, path="/nope")
    assert (status, json.loads(body)["type"]) == (403, "MISSING_AUTHENTICATION_TOKEN")

    # a 5xx takes DEFAULT_5XX
    key2 = attach_key(apigw, api)
    status, _, body = call(
        loop_thread, plane, api, headers=[("x-api-key", key2)], query=b"mode=raise"
    )
    answer = json.loads(body)
    assert (status, answer["type"], answer["text"]) == (502, "DEFAULT_5XX", "Internal server error")

    # before the stage there is no deployment, so no gateway response
    status, _, body = call(loop_thread, plane, api, stage="nostage")
    assert (status, message(body)) == (403, "Forbidden")


def test_gateway_response_status_codes(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, key_required=True)
    shape(apigw, api, "DEFAULT_4XX", statusCode="400")
    shape(apigw, api, "MISSING_AUTHENTICATION_TOKEN", statusCode="404")
    # DEFAULT_4XX's status is every other 4xx's; a response type's own status comes first
    assert call(loop_thread, plane, api, headers=[("x-api-key", "wrong")])[0] == 400
    assert call(loop_thread, plane, api, path="/nope")[0] == 404


def test_gateway_response_without_a_template_keeps_the_default_body(
    loop_thread, plane, apigw, echo_arn, caplog
):
    api = make_api(apigw, echo_arn)
    apigw.put_gateway_response(
        restApiId=api,
        responseType="MISSING_AUTHENTICATION_TOKEN",
        responseParameters={
            "gatewayresponse.header.X-Static": "'yes'",
            "gatewayresponse.header.X-Echo": "method.request.header.origin",
        },
    )
    with caplog.at_level(logging.WARNING, logger="localcloud.apigateway"):
        status, headers, body = call(loop_thread, plane, api, path="/nope")
    assert (status, message(body), headers["x-static"]) == (
        403,
        "Missing Authentication Token",
        "yes",
    )
    assert "x-echo" not in headers
    assert "method.request.header.origin" in caplog.text  # named as not served locally


def test_gateway_response_template_for_another_media_type(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    apigw.put_gateway_response(
        restApiId=api,
        responseType="DEFAULT_4XX",
        responseTemplates={"text/plain": "refused: $context.error.message (${context.stage})"},
    )
    status, headers, body = call(loop_thread, plane, api, path="/nope")
    assert (status, headers["content-type"]) == (403, "text/plain")
    assert body == b"refused: Missing Authentication Token (prod)"


def test_gateway_responses_reach_bodies_over_10_mb(gateway_port, apigw, echo_arn):
    port, _ = gateway_port
    api = make_api(apigw, echo_arn)
    shape(apigw, api, "REQUEST_TOO_LARGE")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", f"/restapis/{api}/prod/_user_request_/text")
    conn.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
    conn.endheaders()
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    assert (resp.status, answer["type"], answer["text"]) == (
        413,
        "REQUEST_TOO_LARGE",
        "Request Too Long",
    )
    assert answer["id"] == resp.getheader("x-amzn-RequestId")
    conn.close()


# -- request body validation --------------------------------------------------------------------

SCHEMA = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "properties": {"sentence": {"type": "string", "minLength": 1}},
    "required": ["sentence"],
    "additionalProperties": False,
}


def test_request_bodies_are_validated_against_the_model(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, body_schema=SCHEMA)
    apigw.put_gateway_response(
        restApiId=api,
        responseType="BAD_REQUEST_BODY",
        responseTemplates={"text/plain": "$context.error.validationErrorString"},
    )
    json_type = [("content-type", "application/json; charset=utf-8")]
    assert call(loop_thread, plane, api, headers=json_type, body=b'{"sentence": "a"}')[0] == 200
    for bad, problem in (
        (b'{"sentence": 5}', "data.sentence must be string"),
        (b'{"sentence": "a", "x": 1}', "must not contain {'x'} properties"),
        (b"{}", "data must contain ['sentence'] properties"),
        (b'{"sentence": NaN}', "not JSON"),
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"sentence": "\xff"}', "not JSON"),
    ):
        status, headers, body = call(loop_thread, plane, api, headers=json_type, body=bad)
        assert (status, headers["x-amzn-errortype"]) == (400, "BadRequestException"), bad
        assert problem in body.decode(), (bad, body)
    # a content type without a model (and no $default) is not validated
    text_type = [("content-type", "text/plain")]
    assert call(loop_thread, plane, api, headers=text_type, body=b"{not json")[0] == 200
    assert call(loop_thread, plane, api, body=b"{not json")[0] == 200  # no content type


def test_default_model_and_validator_without_body_check(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn, body_schema=SCHEMA, model_types=("$default",))
    status, _, body = call(loop_thread, plane, api, headers=[("content-type", "text/csv")])
    assert (status, message(body)) == (400, "Invalid request body")

    other = make_api(apigw, echo_arn, body_schema=SCHEMA, validate_body=False)
    assert call(loop_thread, plane, other, headers=[("content-type", JSON_TYPE)])[0] == 200


@pytest.mark.parametrize("schema", [[], {"pattern": "("}, {"type": "nonsense"}])
def test_a_model_that_is_no_schema_is_named_and_not_applied(
    loop_thread, plane, apigw, echo_arn, caplog, schema
):
    api = make_api(apigw, echo_arn, body_schema=schema)
    with caplog.at_level(logging.ERROR, logger="localcloud.apigateway"):
        assert call(loop_thread, plane, api, headers=[("content-type", JSON_TYPE)])[0] == 200
    assert "model Req is not a usable JSON schema" in caplog.text


def test_a_model_that_is_no_schema_is_logged_once_across_rebuilds(caplog):
    api = SimpleNamespace(
        id=uuid.uuid4().hex,
        request_validators={"v": SimpleNamespace(validate_request_body=True)},
        models={"Req": SimpleNamespace(schema='{"pattern": "("}')},
    )
    method = SimpleNamespace(request_validator_id="v", request_models={JSON_TYPE: "Req"})
    with caplog.at_level(logging.ERROR, logger="localcloud.apigateway"):
        for _ in range(3):  # as routing tables are rebuilt
            assert request_validation.body_validators(api, method) == {}
    assert caplog.text.count("is not a usable JSON schema") == 1


@pytest.mark.parametrize("status_code", ["4xx", "99", "600"])
def test_a_gateway_response_with_a_bad_status_code_keeps_the_api_serving(
    loop_thread, plane, apigw, echo_arn, caplog, status_code
):
    """moto stores any statusCode; the routing table must still compile."""
    api = make_api(apigw, echo_arn)
    apigw.put_gateway_response(restApiId=api, responseType="DEFAULT_4XX", statusCode=status_code)
    with caplog.at_level(logging.WARNING, logger="localcloud.apigateway"):
        assert call(loop_thread, plane, api)[0] == 200
        assert call(loop_thread, plane, api, path="/nope")[0] == 403
    assert f"status code {status_code!r}" in caplog.text


def test_gateway_response_headers_replace_api_gateways_own(loop_thread, plane, apigw, echo_arn):
    api = make_api(apigw, echo_arn)
    apigw.put_gateway_response(
        restApiId=api,
        responseType="MISSING_AUTHENTICATION_TOKEN",
        responseParameters={"gatewayresponse.header.Content-Type": "'application/problem+json'"},
        responseTemplates={"application/json": '{"type":"$context.error.responseType"}'},
    )
    status, out_headers, _ = loop_thread.run(
        plane.handle("POST", api, "prod", "/nope", b"", [], b"{}", "127.0.0.1")
    )
    content_types = [value for name, value in out_headers if name.lower() == "content-type"]
    assert (status, content_types) == (403, ["application/problem+json"])


def test_a_model_without_schema_version_is_draft_4(loop_thread, plane, apigw, echo_arn):
    """Draft 4's boolean exclusiveMinimum, not draft 6+'s number (fastjsonschema's default)."""
    schema = {"type": "object", "properties": {"n": {"type": "number", "minimum": 0,
                                                     "exclusiveMinimum": True}}}
    api = make_api(apigw, echo_arn, body_schema=schema)
    json_type = [("content-type", JSON_TYPE)]
    assert call(loop_thread, plane, api, headers=json_type, body=b'{"n": 0.5}')[0] == 200
    assert call(loop_thread, plane, api, headers=json_type, body=b'{"n": 0}')[0] == 400


def test_a_model_refers_to_another_model_of_its_api_and_nothing_remote(
    loop_thread, plane, apigw, echo_arn, caplog, monkeypatch
):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("a schema $ref was fetched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    api = apigw.create_rest_api(name="refs")["id"]
    apigw.create_model(restApiId=api, name="Sentence", contentType=JSON_TYPE,
                       schema=json.dumps({"type": "string", "minLength": 1}))
    base = f"https://apigateway.amazonaws.com/restapis/{api}/models/"
    schema = {"type": "object", "required": ["sentence"],
              "properties": {"sentence": {"$ref": base + "Sentence"}}}
    api = make_api(apigw, echo_arn, body_schema=schema, api_id=api)
    json_type = [("content-type", JSON_TYPE)]
    assert call(loop_thread, plane, api, headers=json_type, body=b'{"sentence": "a"}')[0] == 200
    assert call(loop_thread, plane, api, headers=json_type, body=b'{"sentence": 5}')[0] == 400

    remote = make_api(apigw, echo_arn, body_schema={"$ref": "http://127.0.0.1:9/schema.json"})
    with caplog.at_level(logging.ERROR, logger="localcloud.apigateway"):
        assert call(loop_thread, plane, remote, headers=json_type)[0] == 200
    assert "is not a model of this API" in caplog.text
