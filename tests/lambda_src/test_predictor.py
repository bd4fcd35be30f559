"""Predictor: every status the handler can answer, with SageMaker stubbed (botocore Stubber)."""

import base64
import io
import json
import socket
import threading
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber
from lambda_testkit import event, load_function

ENV = {"ENDPOINT_NAME": "TextClassification-Endpoint", "MAX_BATCH_SIZE": "4",
       "MAX_BODY_BYTES": "262144", "MAX_TEXT_CHARS": "200", "LOG_REQUEST_TEXT": "false"}
CONTEXT = SimpleNamespace(aws_request_id="lambda-req-1", function_name="predictor",
                          get_remaining_time_in_millis=lambda: 20000)
ANSWER = {"success": "true", "label": 3, "labelName": "Business",
          "probabilities": {"World": 0.01, "Sports": 0.0, "Business": 0.97, "Sci/Tech": 0.02}}


@pytest.fixture(scope="module")
def predictor():
    return load_function("predictor")


@pytest.fixture
def env(predictor, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(predictor.handler, "_settings", None)
    return monkeypatch


@pytest.fixture
def sagemaker(predictor, env):
    """A real sagemaker-runtime client under a Stubber, handed to the handler."""
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    env.setattr(predictor.handler, "runtime_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def streaming(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def queue_answer(stubber, answer, expected_body=None, inference_id=None, variant="Model-A"):
    data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    expected = None
    if expected_body is not None:
        expected = {"EndpointName": ENV["ENDPOINT_NAME"], "Body": expected_body,
                    "ContentType": "application/json", "Accept": "application/json",
                    "InferenceId": inference_id}
    response = {"Body": streaming(data), "ContentType": "application/json",
                "InvokedProductionVariant": variant}
    stubber.add_response("invoke_endpoint", response, expected)


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
    queue_answer(sagemaker, ANSWER, json.dumps({"sentence": sentence}).replace(": ", ":").encode(),
                 request_id)
    status, body, _ = call(predictor, proxy_event)
    assert status == 200
    assert body == {"MessageId": request_id, "variant": "Model-A", **ANSWER}
    assert list(body)[:2] == ["MessageId", "variant"]


def test_batch_answers_results_in_order(predictor, sagemaker):
    proxy_event = event("predictor_batch.json")
    sentences = json.loads(proxy_event["body"])["sentences"]
    answers = [dict(ANSWER, label=2, labelName="Sports"),
               dict(ANSWER, label=4, labelName="Sci/Tech")]
    model_body = json.dumps({"sentences": sentences}, separators=(",", ":")).encode()
    queue_answer(sagemaker, answers, model_body, proxy_event["requestContext"]["requestId"],
                 variant="Model-B")
    status, body, _ = call(predictor, proxy_event)
    assert status == 200
    assert body == {"MessageId": proxy_event["requestContext"]["requestId"], "variant": "Model-B",
                    "results": answers}


def test_base64_body_is_decoded(predictor, sagemaker):
    queue_answer(sagemaker, ANSWER)
    status, body, _ = call(predictor, event("predictor_base64.json"))
    assert status == 200 and body["label"] == 3


def test_only_the_validated_field_is_forwarded_and_utf8_text_survives(predictor, sagemaker):
    sentence = "Zürich's café – 東京 📈"
    queue_answer(sagemaker, ANSWER, json.dumps({"sentence": sentence}, ensure_ascii=False,
                                               separators=(",", ":")).encode("utf-8"),
                 "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    status, _, _ = call(predictor, with_body(json.dumps({"sentence": sentence})))
    assert status == 200


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
    queue_answer(sagemaker, ANSWER, b'{"sentence":"markets rallied"}', CONTEXT.aws_request_id)
    proxy_event = with_body('{"sentence": "markets rallied"}')
    del proxy_event["requestContext"]
    status, body, _ = call(predictor, proxy_event)
    assert status == 200 and body["MessageId"] == CONTEXT.aws_request_id


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
    # No response is queued: a call to the model would fail the Stubber and turn into a 500.
    got_status, body, headers = call(predictor, proxy_event)
    assert_error(got_status, body, status, code, "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    if status == 405:
        assert headers["Allow"] == "POST"


@pytest.mark.parametrize("not_an_event", [None, [], "body", 42])
def test_non_proxy_events_get_400(predictor, env, not_an_event):
    status, body, _ = call(predictor, not_an_event, None)
    assert_error(status, body, 400, "InvalidRequest")


def test_error_messages_name_the_field_and_the_limit(predictor, sagemaker):
    _, body, _ = call(predictor, with_body(json.dumps({"sentences": ["ok", "x" * 300]})))
    assert "sentences[1]" in body["error"]["message"] and "200" in body["error"]["message"]
    _, body, _ = call(predictor, with_body(json.dumps({"sentences": ["a"] * 9})))
    assert "9" in body["error"]["message"] and "4" in body["error"]["message"]


# --- SageMaker failures ------------------------------------------------------------------------

MODEL_FAILURES = [
    ("model 400 json", dict(service_error_code="ModelError", http_status_code=424, modeled_fields={
        "OriginalStatusCode": 400,
        "OriginalMessage":
            '{"error": {"code": "EmptyText", "message": "no known words in sentence"}}'}),
     400, "InvalidRequest", "no known words in sentence"),
    ("model 413 text", dict(service_error_code="ModelError", http_status_code=424, modeled_fields={
        "OriginalStatusCode": 413, "OriginalMessage": "batch of 80 exceeds 64"}),
     400, "InvalidRequest", "batch of 80 exceeds 64"),
    ("model 400 error string", dict(service_error_code="ModelError", http_status_code=424,
                                    modeled_fields={"OriginalStatusCode": 406,
                                                    "OriginalMessage": '{"error": "send JSON"}'}),
     400, "InvalidRequest", "send JSON"),
    ("model 400 empty", dict(service_error_code="ModelError", http_status_code=424,
                             modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": " "}),
     400, "InvalidRequest", "the model rejected the request"),
    ("model 500", dict(service_error_code="ModelError", http_status_code=424, modeled_fields={
        "OriginalStatusCode": 500, "OriginalMessage": "CUDA exploded at /opt/ml/model/code/x.py"}),
     502, "ModelError", None),
    ("not ready", dict(service_error_code="ModelNotReadyException", http_status_code=429),
     503, "ModelUnavailable", None),
    ("unavailable", dict(service_error_code="ServiceUnavailable", http_status_code=503),
     503, "ModelUnavailable", None),
    ("throttled", dict(service_error_code="ThrottlingException", http_status_code=400),
     429, "TooManyRequests", None),
    ("endpoint missing", dict(service_error_code="ValidationError", http_status_code=400,
                              service_message="Endpoint TextClassification-Endpoint of account "
                                              "123456789012 not found."),
     502, "UpstreamError", None),
    ("internal failure", dict(service_error_code="InternalFailure", http_status_code=500),
     502, "UpstreamError", None),
    ("internal dependency",
     dict(service_error_code="InternalDependencyException", http_status_code=530),
     502, "UpstreamError", None),
    ("access denied", dict(service_error_code="AccessDeniedException", http_status_code=403,
                           service_message="role/predictor is not authorized"),
     500, "InternalError", None),
]


@pytest.mark.parametrize("error, status, code, message", [case[1:] for case in MODEL_FAILURES],
                         ids=[case[0] for case in MODEL_FAILURES])
def test_sagemaker_errors_map_to_honest_statuses(predictor, sagemaker, error, status, code,
                                                 message):
    sagemaker.add_client_error("invoke_endpoint", **error)
    got_status, body, headers = call(predictor, event("predictor_single.json"))
    assert_error(got_status, body, status, code)
    if message:
        assert body["error"]["message"] == message
    assert "123456789012" not in body["error"]["message"]
    assert "/opt/ml" not in body["error"]["message"]
    assert ("Retry-After" in headers) == (status in (429, 503))


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
    url = silent_server if target == "silent" else unused_port_url()
    client = boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=url,
                          config=Config(connect_timeout=0.5, read_timeout=0.3,
                                        retries={"mode": "standard", "max_attempts": 1}))
    env.setattr(predictor.handler, "runtime_client", lambda: client)
    got_status, body, headers = call(predictor, event("predictor_single.json"))
    assert_error(got_status, body, status, code)
    assert ("Retry-After" in headers) == (status == 503)


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
    ("MAX_BATCH_SIZE", "many", "'many': expected an integer in [1, 1000]"),
    ("MAX_BODY_BYTES", "99999999", "'99999999': expected an integer in [2, 6291456]"),
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


def test_runtime_client_is_cached_with_timeouts_retries_and_env_endpoint(predictor, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:4567")
    predictor.awsclients.reset_clients()
    try:
        client = predictor.endpoint.runtime_client()
        assert predictor.endpoint.runtime_client() is client
        assert client.meta.endpoint_url == "http://127.0.0.1:4567"
        assert client.meta.config.connect_timeout == predictor.endpoint.CONNECT_TIMEOUT_SEC
        assert client.meta.config.read_timeout == predictor.endpoint.READ_TIMEOUT_SEC
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    finally:
        predictor.awsclients.reset_clients()


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
