"""Predictor: every status the handler can answer, against a local stub of the SageMaker runtime."""

import base64
import json
import socket
import threading
from types import SimpleNamespace

import pytest
from lambda_testkit import event, load_function
from runtime_stub import RuntimeStub

ENV = {"ENDPOINT_NAME": "TextClassification-Endpoint", "MAX_BATCH_SIZE": "4",
       "MAX_BODY_BYTES": "262144", "MAX_TEXT_CHARS": "200", "LOG_REQUEST_TEXT": "false"}
CONTEXT = SimpleNamespace(aws_request_id="lambda-req-1", function_name="predictor",
                          get_remaining_time_in_millis=lambda: 20000)
ANSWER = {"success": "true", "label": 3, "labelName": "Business",
          "probabilities": {"World": 0.01, "Sports": 0.0, "Business": 0.97, "Sci/Tech": 0.02}}
INVOCATIONS_PATH = "/endpoints/TextClassification-Endpoint/invocations"


@pytest.fixture(scope="module")
def predictor():
    return load_function("predictor")


@pytest.fixture
def env(predictor, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(predictor.handler, "_settings", None)
    monkeypatch.setattr(predictor.endpoint, "_client", None)
    return monkeypatch


@pytest.fixture
def sagemaker(predictor, env):
    """The predictor's own runtime client, pointed at a stub runtime; backoffs are recorded."""
    stub = RuntimeStub()
    env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", stub.url)
    client = predictor.endpoint.runtime_client()
    stub.backoffs = []
    client.sleep = stub.backoffs.append
    yield stub
    client.close()
    stub.stop()
    assert stub.unexpected == 0, "the predictor called the model when no answer was queued"
    assert not stub.answers, "queued answers were not asked for"


def queue_answer(stub, answer, variant="Model-A"):
    stub.answer(answer, variant)


def assert_forwarded(stub, body: bytes, inference_id: str):
    """The last InvokeEndpoint carried exactly this model payload and InferenceId."""
    seen = stub.seen[-1]
    assert seen.path == INVOCATIONS_PATH
    assert seen.body == body
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["x-amzn-sagemaker-inference-id"] == inference_id


def call(predictor, proxy_event, context=CONTEXT):
    response = predictor.handler.handler(proxy_event, context)
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/json; charset=utf-8"
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def with_body(body, content_type="application/json", base64_encoded=False, **changes):
    proxy_event = event("predictor_single.json")
    proxy_event["body"] = body
    proxy_event["isBase64Encoded"] = base64_encoded
    proxy_event["headers"]["Content-Type"] = content_type
    proxy_event.update(changes)
    return proxy_event


def assert_error(status, body, expected_status, code=None, message_id=None):
    assert status == expected_status
    assert set(body) == {"MessageId", "error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    if message_id:
        assert body["MessageId"] == message_id


# --- success ----------------------------------------------------------------------------------


def test_single_sentence_answers_model_output_with_message_id_and_variant(predictor, sagemaker):
    proxy_event = event("predictor_single.json")
    request_id = proxy_event["requestContext"]["requestId"]
    sentence = json.loads(proxy_event["body"])["sentence"]
    queue_answer(sagemaker, ANSWER)
    status, body, _ = call(predictor, proxy_event)
    assert status == 200
    assert_forwarded(sagemaker, json.dumps({"sentence": sentence}).replace(": ", ":").encode(),
                     request_id)
    assert body == {"MessageId": request_id, "variant": "Model-A", **ANSWER}
    assert list(body)[:2] == ["MessageId", "variant"]


def test_batch_answers_results_in_order(predictor, sagemaker):
    proxy_event = event("predictor_batch.json")
    sentences = json.loads(proxy_event["body"])["sentences"]
    answers = [dict(ANSWER, label=2, labelName="Sports"),
               dict(ANSWER, label=4, labelName="Sci/Tech")]
    model_body = json.dumps({"sentences": sentences}, separators=(",", ":")).encode()
    queue_answer(sagemaker, answers, variant="Model-B")
    status, body, _ = call(predictor, proxy_event)
    assert status == 200
    assert_forwarded(sagemaker, model_body, proxy_event["requestContext"]["requestId"])
    assert body == {"MessageId": proxy_event["requestContext"]["requestId"], "variant": "Model-B",
                    "results": answers}


def test_base64_body_is_decoded(predictor, sagemaker):
    queue_answer(sagemaker, ANSWER)
    status, body, _ = call(predictor, event("predictor_base64.json"))
    assert status == 200 and body["label"] == 3


def test_only_the_validated_field_is_forwarded_and_utf8_text_survives(predictor, sagemaker):
    sentence = "Zürich's café – 東京 📈"
    queue_answer(sagemaker, ANSWER)
    status, _, _ = call(predictor, with_body(json.dumps({"sentence": sentence})))
    assert status == 200
    assert_forwarded(sagemaker, json.dumps({"sentence": sentence}, ensure_ascii=False,
                                           separators=(",", ":")).encode("utf-8"),
                     "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")


@pytest.mark.parametrize("header_name, content_type", [
    ("content-type", "application/json"),
    ("CONTENT-TYPE", "Application/JSON"),
    ("Content-Type", "application/json; charset=utf-8"),
    ("Content-Type", 'application/json;charset="UTF-8"'),
])
def test_content_type_is_matched_without_regard_to_case(predictor, sagemaker, header_name,
                                                        content_type):
    queue_answer(sagemaker, ANSWER)
    proxy_event = with_body('{"sentence": "markets rallied"}')
    proxy_event["headers"] = {header_name: content_type}
    status, _, _ = call(predictor, proxy_event)
    assert status == 200


def test_message_id_falls_back_to_the_lambda_request_id(predictor, sagemaker):
    queue_answer(sagemaker, ANSWER)
    proxy_event = with_body('{"sentence": "markets rallied"}')
    del proxy_event["requestContext"]
    status, body, _ = call(predictor, proxy_event)
    assert status == 200 and body["MessageId"] == CONTEXT.aws_request_id
    assert_forwarded(sagemaker, b'{"sentence":"markets rallied"}', CONTEXT.aws_request_id)


# --- invalid requests: 4xx, and the model is never called -----------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
BAD_REQUESTS = [
    ("malformed json", with_body("{"), 400, "InvalidJson"),
    ("missing field", with_body("{}"), 400, "InvalidRequest"),
    ("unknown field", with_body('{"sentence": "a", "debug": true}'), 400, "InvalidRequest"),
    ("both fields", with_body('{"sentence": "a", "sentences": ["b"]}'), 400, "InvalidRequest"),
    ("sentence not a string", with_body('{"sentence": 5}'), 400, "InvalidRequest"),
    ("sentence null", with_body('{"sentence": null}'), 400, "InvalidRequest"),
    ("empty sentence", with_body('{"sentence": ""}'), 400, "EmptyText"),
    ("blank sentence", with_body('{"sentence": " \\t\\n"}'), 400, "EmptyText"),
    ("sentences not a list", with_body('{"sentences": "abc"}'), 400, "InvalidRequest"),
    ("empty sentences", with_body('{"sentences": []}'), 400, "InvalidRequest"),
    ("empty string in list", with_body('{"sentences": ["a", ""]}'), 400, "EmptyText"),
    ("number in list", with_body('{"sentences": ["a", 1]}'), 400, "InvalidRequest"),
    ("too many sentences", with_body(json.dumps({"sentences": ["a"] * 5})), 400,
     "TooManySentences"),
    ("text too long", with_body(json.dumps({"sentence": "x" * 201})), 400, "TextTooLong"),
    ("NaN", with_body('{"sentence": NaN}'), 400, "InvalidJson"),
    ("Infinity", with_body('{"sentences": [Infinity]}'), 400, "InvalidJson"),
    ("-Infinity", with_body('{"sentence": -Infinity}'), 400, "InvalidJson"),
    ("huge integer", with_body('{"sentence": ' + "9" * 5000 + "}"), 400, "InvalidJson"),
    ("deep nesting", with_body(DEEP), 400, "InvalidJson"),
    ("array body", with_body('["a"]'), 400, "InvalidRequest"),
    ("no body", with_body(None), 400, "EmptyBody"),
    ("empty body", with_body(""), 400, "EmptyBody"),
    ("non-utf8 bytes", with_body(base64.b64encode(b'{"sentence": "\xff\xfe"}').decode(),
                                 base64_encoded=True), 400, "InvalidEncoding"),
    ("bad base64", with_body("not base64!", base64_encoded=True), 400, "InvalidEncoding"),
    ("surrogate escape", with_body('{"sentence": "a\\ud800b"}'), 400, "InvalidEncoding"),
    ("surrogate in body text", with_body('{"sentence": "a\ud800"}'), 400, "InvalidEncoding"),
    ("utf-8 BOM", with_body('\ufeff{"sentence": "a"}'), 400, "InvalidJson"),
    ("body over limit", with_body(json.dumps({"sentence": "x" * 262144})), 413, "PayloadTooLarge"),
    ("multibyte body over limit",
     with_body(json.dumps({"sentence": "é" * 131072}, ensure_ascii=False)), 413, "PayloadTooLarge"),
    ("base64 just over limit",
     with_body(base64.b64encode(b" " * 262145).decode(), base64_encoded=True), 413,
     "PayloadTooLarge"),
    ("base64 far over limit", with_body("A" * 400000, base64_encoded=True), 413, "PayloadTooLarge"),
    ("text/plain", with_body('{"sentence": "a"}', content_type="text/plain"), 415,
     "UnsupportedMediaType"),
    ("form encoded", with_body("sentence=a", content_type="application/x-www-form-urlencoded"), 415,
     "UnsupportedMediaType"),
    ("latin-1 charset",
     with_body('{"sentence": "a"}', content_type="application/json; charset=latin-1"), 415,
     "UnsupportedMediaType"),
    ("no content type", with_body('{"sentence": "a"}', headers=None), 415, "UnsupportedMediaType"),
    ("GET", with_body('{"sentence": "a"}', httpMethod="GET"), 405, "MethodNotAllowed"),
]


@pytest.mark.parametrize("proxy_event, status, code", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_invalid_requests_get_a_4xx_naming_the_problem(predictor, sagemaker, proxy_event, status,
                                                       code):
    # No answer is queued: the fixture fails the test if the model is called.
    got_status, body, headers = call(predictor, proxy_event)
    assert_error(got_status, body, status, code, "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    if status == 405:
        assert headers["Allow"] == "POST"


@pytest.mark.parametrize("not_an_event", [None, [], "body", 42])
def test_non_proxy_events_get_400(predictor, env, not_an_event):
    status, body, _ = call(predictor, not_an_event, None)
    assert_error(status, body, 400, "InvalidRequest")


@pytest.mark.parametrize("body, key", [
    ('{"sentence": "a", "sentence": "b"}', "sentence"),
    ('{"sentences": ["a"], "sentences": ["b"]}', "sentences"),
    ('{"sentences": ["a", {"x": 1, "y": 2, "x": 3}]}', "x"),
])
def test_a_repeated_key_at_any_depth_is_invalid_json_naming_the_key(predictor, sagemaker, body,
                                                                    key):
    # Parsers disagree on which value of a repeated key wins: none may reach the model.
    status, payload, _ = call(predictor, with_body(body))
    assert_error(status, payload, 400, "InvalidJson")
    assert f"repeats the key {key!r}" in payload["error"]["message"]


def test_error_messages_name_the_field_and_the_limit(predictor, sagemaker):
    _, body, _ = call(predictor, with_body(json.dumps({"sentences": ["ok", "x" * 300]})))
    assert "sentences[1]" in body["error"]["message"] and "200" in body["error"]["message"]
    _, body, _ = call(predictor, with_body(json.dumps({"sentences": ["a"] * 9})))
    assert "9" in body["error"]["message"] and "4" in body["error"]["message"]


# --- SageMaker failures ------------------------------------------------------------------------

def model_error(original_status, original_message):
    """SageMaker's ModelError: the container answered non-2xx (424, with the original answer)."""
    return dict(status=424, code="ModelError",
                message=f"Received client error ({original_status}) from primary with message "
                        f"\"{original_message}\".",
                OriginalStatusCode=original_status, OriginalMessage=original_message,
                LogStreamArn="arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/x")


# (error as the runtime sends it, InvokeEndpoint calls made (2 = retried, as botocore's standard
# mode retries), status, code, message)
MODEL_FAILURES = [
    ("model 400 json", model_error(
        400, '{"error": {"code": "EmptyText", "message": "no known words in sentence"}}'),
     1, 400, "InvalidRequest", "no known words in sentence"),
    ("model 413 text", model_error(413, "batch of 80 exceeds 64"),
     1, 400, "InvalidRequest", "batch of 80 exceeds 64"),
    ("model 400 error string", model_error(406, '{"error": "send JSON"}'),
     1, 400, "InvalidRequest", "send JSON"),
    ("model 400 empty", model_error(400, " "),
     1, 400, "InvalidRequest", "the model rejected the request"),
    ("model 500", model_error(500, "CUDA exploded at /opt/ml/model/code/x.py"),
     1, 502, "ModelError", None),
    ("not ready", dict(status=429, code="ModelNotReadyException"),
     1, 503, "ModelUnavailable", None),
    ("unavailable", dict(status=503, code="ServiceUnavailable"),
     2, 503, "ModelUnavailable", None),
    ("throttled", dict(status=400, code="ThrottlingException"),
     2, 429, "TooManyRequests", None),
    ("endpoint missing", dict(status=400, code="ValidationError",
                              message="Endpoint TextClassification-Endpoint of account "
                                      "123456789012 not found."),
     1, 502, "UpstreamError", None),
    ("internal failure", dict(status=500, code="InternalFailure"),
     2, 502, "UpstreamError", None),
    ("internal dependency", dict(status=530, code="InternalDependencyException"),
     1, 502, "UpstreamError", None),
    ("access denied", dict(status=403, code="AccessDeniedException",
                           message="role/predictor is not authorized"),
     1, 500, "InternalError", None),
]


@pytest.mark.parametrize("error, calls, status, code, message",
                         [case[1:] for case in MODEL_FAILURES],
                         ids=[case[0] for case in MODEL_FAILURES])
def test_sagemaker_errors_map_to_honest_statuses(predictor, sagemaker, error, calls, status, code,
                                                 message):
    for _ in range(calls):
        sagemaker.error(**error)
    got_status, body, headers = call(predictor, event("predictor_single.json"))
    assert_error(got_status, body, status, code)
    if message:
        assert body["error"]["message"] == message
    assert "123456789012" not in body["error"]["message"]
    assert "/opt/ml" not in body["error"]["message"]
    assert ("Retry-After" in headers) == (status in (429, 503))
    assert len(sagemaker.seen) == calls and len(sagemaker.backoffs) == calls - 1
    assert all(0 <= delay <= 1 for delay in sagemaker.backoffs)


def test_a_retried_failure_that_then_succeeds_is_a_200(predictor, sagemaker):
    sagemaker.error(status=503, code="ServiceUnavailable")
    queue_answer(sagemaker, ANSWER)
    status, body, _ = call(predictor, event("predictor_single.json"))
    assert status == 200 and body["label"] == 3
    assert len(sagemaker.seen) == 2 and len(sagemaker.backoffs) == 1


def test_calls_share_one_keep_alive_connection_and_survive_its_closing(predictor, sagemaker):
    for close in (False, True, False):
        sagemaker.answer(ANSWER, close=close)
    statuses = [call(predictor, event("predictor_single.json"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    clients = [seen.client for seen in sagemaker.seen]
    assert clients[0] == clients[1] != clients[2]  # the runtime closed the first connection
    assert sagemaker.backoffs == []  # reopening a closed idle connection is not a retry


@pytest.mark.parametrize("answer, proxy_file", [
    (b"body", "predictor_single.json"),
    (b"", "predictor_single.json"),
    ([ANSWER], "predictor_single.json"),
    ("label 3", "predictor_single.json"),
    ([ANSWER], "predictor_batch.json"),
    (ANSWER, "predictor_batch.json"),
])
def test_unusable_model_answers_are_502(predictor, sagemaker, answer, proxy_file):
    queue_answer(sagemaker, answer)
    status, body, _ = call(predictor, event(proxy_file))
    assert_error(status, body, 502, "InvalidModelResponse")


def test_model_fields_cannot_override_message_id_or_variant(predictor, sagemaker):
    queue_answer(sagemaker, dict(ANSWER, MessageId="forged", variant="forged"))
    _, body, _ = call(predictor, event("predictor_single.json"))
    assert body["MessageId"] != "forged" and body["variant"] == "Model-A"


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def unused_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("target, status, code", [
    ("silent", 504, "ModelTimeout"),
    ("refused", 503, "ModelUnavailable"),
])
def test_network_failures_are_504_and_503(predictor, env, silent_server, target, status, code):
    env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
               silent_server if target == "silent" else unused_port_url())
    env.setattr(predictor.endpoint, "CONNECT_TIMEOUT_SEC", 0.5)
    env.setattr(predictor.endpoint, "READ_TIMEOUT_SEC", 0.2)
    client = predictor.endpoint.runtime_client()
    backoffs = []
    client.sleep = backoffs.append
    try:
        got_status, body, headers = call(predictor, event("predictor_single.json"))
    finally:
        client.close()
    assert_error(got_status, body, status, code)
    assert ("Retry-After" in headers) == (status == 503)
    assert len(backoffs) == predictor.endpoint.TOTAL_ATTEMPTS - 1


def test_unexpected_exceptions_become_a_generic_500(predictor, env, capsys):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    env.setattr(predictor.handler, "invoke", explode)
    env.setattr(predictor.handler, "runtime_client", lambda: None)
    status, body, _ = call(predictor, event("predictor_single.json"))
    assert_error(status, body, 500, "InternalError")
    assert "secret" not in json.dumps(body)
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert log["status"] == 500 and "secret internal detail" in log["errorDetail"]


# --- configuration, client, logs ---------------------------------------------------------------

@pytest.mark.parametrize("key, value, detail", [
    ("ENDPOINT_NAME", "", "missing or empty"),
    ("MAX_BATCH_SIZE", "many", "'many': expected an integer in [1, 1024]"),
    ("MAX_BODY_BYTES", "99999999", "'99999999': expected an integer in [1, 6291456]"),
    ("LOG_REQUEST_TEXT", "yes", "'yes': expected one of true, false"),
])
def test_bad_environment_is_a_500_and_the_log_names_it(predictor, env, capsys, key, value,
                                                       detail):
    env.setenv(key, value)
    status, body, _ = call(predictor, event("predictor_single.json"))
    assert_error(status, body, 500, "InternalError")
    assert key not in json.dumps(body)
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert log["errorCode"] == "ConfigError"
    assert key in log["errorDetail"] and detail in log["errorDetail"]


@pytest.mark.parametrize("bound", ["lowest", "highest"])
def test_the_generated_environment_at_the_configs_bounds_is_accepted(predictor, bound):
    # The zip cannot import the generator; the predictor must accept every value it may emit.
    from generator import config
    from generator.render import render

    lowest = bound == "lowest"
    document = json.loads(config.DEFAULT_PATH.read_text())
    document["model_serving"].update(max_batch_size=1 if lowest else config.MAX_BATCH_SIZE,
                                     max_text_chars=1 if lowest else config.MAX_TEXT_CHARS)
    document["api_hosting"]["max_body_bytes"] = (1 if lowest
                                                 else config.MAX_BODY_BYTES)
    for case in document["load_test"]["cases"]:
        case["sentence"] = "a"
    template = json.loads(render(config.parse(document))["api-hosting.json"])
    functions = [r["Properties"] for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function"]
    (variables,) = [f["Environment"]["Variables"] for f in functions
                    if "MAX_BATCH_SIZE" in f["Environment"]["Variables"]]
    settings = predictor.predictor_config.PredictorSettings.from_env(
        {**variables, "ENDPOINT_NAME": "endpoint"})
    assert (settings.max_batch_size, settings.max_text_chars, settings.max_body_bytes) == (
        (1, 1, 1) if lowest else
        (config.MAX_BATCH_SIZE, config.MAX_TEXT_CHARS, config.MAX_BODY_BYTES))


def test_runtime_client_is_cached_with_timeouts_retries_and_env_endpoint(predictor, env):
    env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:4567")
    client = predictor.endpoint.runtime_client()
    assert predictor.endpoint.runtime_client() is client
    assert client.endpoint_url == "http://127.0.0.1:4567"
    assert (client.region, client.signing_name) == ("us-east-1", "sagemaker")
    assert client.connect_timeout == predictor.endpoint.CONNECT_TIMEOUT_SEC
    assert client.read_timeout == predictor.endpoint.READ_TIMEOUT_SEC
    assert client.total_attempts == predictor.endpoint.TOTAL_ATTEMPTS == 2


def test_the_shortest_allowed_timeout_outlasts_the_runtime_attempts(predictor):
    """The predictor answers a SageMaker timeout (504) before Lambda can end it (a bare 502)."""
    from generator import config

    endpoint, runtime = predictor.endpoint, predictor.sagemaker_runtime
    attempts = endpoint.TOTAL_ATTEMPTS * (endpoint.CONNECT_TIMEOUT_SEC + endpoint.READ_TIMEOUT_SEC)
    backoffs = sum(min(runtime.MAX_BACKOFF_SEC, 2 ** (attempt - 1))
                   for attempt in range(1, endpoint.TOTAL_ATTEMPTS))
    assert attempts + backoffs < config.MIN_PREDICTOR_TIMEOUT_S


def test_the_aws_endpoint_is_the_regional_https_runtime(predictor, env):
    env.setenv("AWS_REGION", "eu-west-1")
    client = predictor.endpoint.runtime_client()
    assert client.endpoint_url == "https://runtime.sagemaker.eu-west-1.amazonaws.com"
    assert client.region == "eu-west-1"


def test_missing_credentials_are_a_500_naming_the_cause_in_the_log(predictor, env, capsys):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.delenv(key)
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    env.setenv("AWS_CONFIG_FILE", "/nonexistent")
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    env.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    status, body, _ = call(predictor, event("predictor_single.json"))
    assert_error(status, body, 500, "InternalError")
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert log["errorCode"] == "ConfigError" and "credentials" in log["errorDetail"]


def test_requests_are_signed_for_sagemaker_with_the_session_token(predictor, sagemaker):
    queue_answer(sagemaker, ANSWER)
    call(predictor, event("predictor_single.json"))
    headers = sagemaker.seen[-1].headers
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/sagemaker/aws4_request, SignedHeaders=" in headers["authorization"]
    assert headers["x-amz-security-token"] == "testing"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-type",
            "x-amzn-sagemaker-inference-id"} <= set(signed)


def log_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_log_line_has_request_fields_and_no_text_by_default(predictor, sagemaker, capsys):
    queue_answer(sagemaker, ANSWER)
    call(predictor, event("predictor_single.json"))
    (line,) = log_lines(capsys)
    assert line["messageId"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert line["requestId"] == "lambda-req-1"
    assert line["variant"] == "Model-A" and line["status"] == 200
    assert isinstance(line["latencyMs"], float) and isinstance(line["modelLatencyMs"], float)
    assert "investors" not in json.dumps(line)


def test_log_includes_text_when_the_debug_flag_is_set(predictor, sagemaker, env, capsys):
    env.setenv("LOG_REQUEST_TEXT", "true")
    queue_answer(sagemaker, ANSWER)
    call(predictor, event("predictor_single.json"))
    (line,) = log_lines(capsys)
    assert line["texts"] == ["Stocks rallied as investors bet on banks and retailers."]
